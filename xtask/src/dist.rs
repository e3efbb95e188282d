//! `cargo xtask dist`: release artifacts in `target/dist/`: `sysmonvm` for this host, the
//! collector for x86_64 and aarch64 musl (static, rust-lld), shell completions and the man page,
//! a `SHA256SUMS` over all of them, and — with `--formula URL SHA256` — the Homebrew formula
//! rendered from packaging/homebrew/sysmonvm.rb.in.

use anyhow::{Context, Result, ensure};
use sha2::Digest;
use std::path::Path;
use std::process::Command;

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let st = Command::new(env!("CARGO")).args(args).current_dir(root).status()?;
    ensure!(st.success(), "cargo {} failed", args.join(" "));
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let root = crate::workspace_root();
    let dist = root.join("target/dist");
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&dist)?;
    let host = std::env::consts::ARCH.to_string() + "-" + std::env::consts::OS;
    cargo(&root, &["build", "--release", "--locked", "-p", "sysmonvm"])?;
    let mut files = vec![(format!("sysmonvm-{host}"), root.join("target/release/sysmonvm"))];
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        cargo(&root, &["build", "--release", "--locked", "-p", "sysmon-collector", "--target", target])?;
        files.push((
            format!("sysmon-collector-{target}"),
            root.join(format!("target/{target}/release/sysmon-collector")),
        ));
    }
    for (name, from) in &files {
        std::fs::copy(from, dist.join(name)).with_context(|| format!("{}", from.display()))?;
    }
    let bin = root.join("target/release/sysmonvm");
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
