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
        "--install" => ensure_installed(&wanted),
        _ => {
            let missing = sp::missing(&wanted);
            if missing.is_empty() {
                println!("deps: all {} system packages present", wanted.len());
                return Ok(());
            }
            report_missing(&missing);
            bail!("{} system packages missing; install them with: {}", missing.len(), sp::install_hint(&missing))
        }
    }
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
