//! `cargo xtask deps [--check|--install|--list] [--role R]…`: the system packages from the one list
//! (`sysmonvm::system_packages`). `--check` exits 1 naming what is missing and the command that
//! installs it; `--install` installs the missing ones (as root; otherwise prints that command and
//! exits 1); `--list` prints the table the README quotes.

use anyhow::{Result, bail};
use sysmonvm::system_packages::{self as sp, Role, SystemPackage};

pub fn run(args: &[String]) -> Result<()> {
    let mut mode = "--check";
    let mut roles = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" | "--install" | "--list" => mode = a.as_str(),
            "--role" => {
                let r = it.next().map(String::as_str).unwrap_or("");
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                match Role::parse(r) {
                    Some(r) => roles.push(r),
                    None => bail!("--role takes one of {}, not {r:?}", names.join(", ")),
                }
            }
            other => bail!("unknown option {other:?} (deps [--check|--install|--list] [--role vm|guest-image|test]…)"),
        }
    }
    if roles.is_empty() {
        roles = Role::ALL.to_vec();
    }
    let wanted = sp::selected(&roles, None);
    match mode {
        "--list" => {
            print_table(&wanted);
            Ok(())
        }
        "--install" => {
            ensure_installed(&wanted)?;
            if roles.contains(&Role::Test) {
                ensure_grpc_venv()?;
            }
            Ok(())
        }
        _ => {
            let missing = sp::missing(&wanted);
            if roles.contains(&Role::Test) && !grpc_venv_ready() {
                eprintln!(
                    "missing: {} (PyPI {GRPC_PACKAGES:?} for the gRPC tests; `deps --install` makes it)",
                    grpc_venv().display()
                );
            }
            if missing.is_empty() {
                println!("deps: all {} system packages present", wanted.len());
                return Ok(());
            }
            report_missing(&missing);
            bail!("{} system packages missing; install them with: {}", missing.len(), sp::install_hint(&missing))
        }
    }
}

/// PyPI packages of the gRPC tests' client (collector/tests/grpc_client.py), pinned.
pub const GRPC_PACKAGES: [&str; 2] = ["grpcio==1.76.0", "grpcio-tools==1.76.0"];

/// The venv the collector's gRPC tests look for (collector/tests/grpc_serviceradar.rs).
pub fn grpc_venv() -> std::path::PathBuf {
    crate::workspace_root().join("target/grpc-venv")
}

fn grpc_venv_ready() -> bool {
    std::process::Command::new(grpc_venv().join("bin/python"))
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes target/grpc-venv with PyPI's grpcio and grpcio-tools (pip from the venv itself).
fn ensure_grpc_venv() -> Result<()> {
    use anyhow::Context;
    if grpc_venv_ready() {
        eprintln!("deps: {} has grpcio and grpcio-tools", grpc_venv().display());
        return Ok(());
    }
    let venv = grpc_venv();
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (Debian package python3-venv)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status}); is python3-venv installed?", venv.display());
    }
    let status = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(GRPC_PACKAGES)
        .status()
        .context("running pip in the venv")?;
    if !status.success() {
        bail!("pip install {} failed ({status}): PyPI must be reachable", GRPC_PACKAGES.join(" "));
    }
    eprintln!("deps: installed {} into {}", GRPC_PACKAGES.join(" "), venv.display());
    Ok(())
}

fn report_missing(missing: &[&SystemPackage]) {
    for p in missing {
        eprintln!("missing: {:<26} ({}) for {}", p.name, p.provides.join(", "), p.why);
    }
}

/// Installs what `wanted` lacks (the library's plan, as root), naming what was missing.
pub fn ensure_installed(wanted: &[&'static SystemPackage]) -> Result<()> {
    report_missing(&sp::missing(wanted));
    let installed = sp::install_missing(wanted)?;
    if installed.is_empty() {
        eprintln!("deps: all {} system packages present", wanted.len());
    } else {
        eprintln!("deps: installed {}", installed.iter().map(|p| p.name).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

fn print_table(pkgs: &[&SystemPackage]) {
    println!("| package | from | roles | for |");
    println!("|---|---|---|---|");
    for p in pkgs {
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        let from = if p.backports_on_bookworm { "bookworm-backports on Debian 12" } else { "the release" };
        println!("| `{}` | {from} | {} | {} |", p.name, roles.join(", "), p.why);
    }
}
