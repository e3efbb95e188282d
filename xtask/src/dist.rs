//! `cargo xtask dist`: release artifacts in `target/dist/`: `sysmonvm` for this host, the
//! collector for x86_64 and aarch64 musl (static, rust-lld; and each built with feature `mtls`,
//! `sysmon-collector-mtls-<target>`, whose ring C the Debian cross compilers of the package list
//! build), shell completions and the man page,
//! a `SHA256SUMS` over all of them, and — with `--formula URL SHA256` — the Homebrew formula
//! rendered from packaging/homebrew/sysmonvm.rb.in.

use anyhow::{Context, Result, ensure};
use sha2::Digest;
use std::path::Path;
use std::process::Command;

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    cargo_env(root, args, None)
}

fn cargo_env(root: &Path, args: &[&str], env: Option<(String, &str)>) -> Result<()> {
    let mut c = Command::new(env!("CARGO"));
    if let Some((k, v)) = env
        && std::env::var_os(&k).is_none()
    {
        c.env(k, v);
    }
    let st = c.args(args).current_dir(root).status()?;
    ensure!(st.success(), "cargo {} failed", args.join(" "));
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let root = crate::workspace_root();
    let dist = root.join("target/dist");
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&dist)?;
    let host = std::env::consts::ARCH.to_string() + "-" + std::env::consts::OS;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or(root.join("target"));
    let copy = |from: &Path, name: &str| -> Result<()> {
        std::fs::copy(from, dist.join(name)).with_context(|| format!("{}", from.display()))?;
        Ok(())
    };
    cargo(&root, &["build", "--release", "--locked", "-p", "sysmonvm"])?;
    copy(&target_dir.join("release/sysmonvm"), &format!("sysmonvm-{host}"))?;
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        let built = target_dir.join(format!("{target}/release/sysmon-collector"));
        cargo(&root, &["build", "--release", "--locked", "-p", "sysmon-collector", "--target", target])?;
        copy(&built, &format!("sysmon-collector-{target}"))?;
        // The same path again: copied before the mtls build replaces it.
        let cc = sysmonvm::guest::collector::cross_cc(target);
        let args =
            ["build", "--release", "--locked", "-p", "sysmon-collector", "--features", "mtls", "--target", target];
        cargo_env(&root, &args, cc)?;
        copy(&built, &format!("sysmon-collector-mtls-{target}"))?;
    }
    let bin = target_dir.join("release/sysmonvm");
    for (shell, file) in [("bash", "sysmonvm.bash"), ("zsh", "_sysmonvm"), ("fish", "sysmonvm.fish")] {
        let o = Command::new(&bin).args(["completions", shell]).output()?;
        ensure!(o.status.success());
        std::fs::write(dist.join(file), o.stdout)?;
    }
    let o = Command::new(&bin).arg("man").output()?;
    ensure!(o.status.success());
    std::fs::write(dist.join("sysmonvm.1"), o.stdout)?;

    let version = env!("CARGO_PKG_VERSION");
    if let Some(i) = args.iter().position(|a| a == "--formula") {
        let url = args.get(i + 1).context("--formula URL SHA256")?;
        let sha = args.get(i + 2).context("--formula URL SHA256")?;
        let formula = std::fs::read_to_string(root.join("packaging/homebrew/sysmonvm.rb.in"))?
            .replace("@VERSION@", version)
            .replace("@URL@", url)
            .replace("@SHA256@", sha);
        std::fs::write(dist.join("sysmonvm.rb"), formula)?;
    }
    let mut sums = String::new();
    let mut names: Vec<String> =
        std::fs::read_dir(&dist)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for n in names {
        let digest = sha2::Sha256::digest(std::fs::read(dist.join(&n))?);
        sums += &format!("{}  {n}\n", hex::encode(digest));
    }
    std::fs::write(dist.join("SHA256SUMS"), &sums)?;
    print!("{sums}");
    println!("dist: {} (version {version})", dist.display());
    Ok(())
}
