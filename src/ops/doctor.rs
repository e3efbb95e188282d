//! `doctor`: is this host ready to run the profile's guest? Each check says its fix.

use super::Result;
use super::events::Sink;
use crate::profile::Arch;
use crate::qemu::accel::{self, HostFacts, HostOs, SelfTest};
use crate::qemu::{argv, firmware};
use crate::system_packages::{self, ForGuest};
use crate::workspace::Workspace;
use serde::Serialize;

#[derive(Debug, Clone, Default)]
pub struct DoctorRequest {
    pub profile: Option<String>,
    /// Install what is missing with the platform's package manager.
    pub fix: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub ready: bool,
    pub profile: String,
    pub host: HostFacts,
    pub checks: Vec<Check>,
    /// Packages `--fix` installed (the checks are from before).
    pub installed: Vec<String>,
    pub exit_status: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to run or install when it failed.
    pub fix: Option<String>,
}

/// Minimum QEMU versions: Lima requires 8.2.1 on Apple Silicon (older edk2 cannot boot AlmaLinux's shim).
fn minimum_qemu(os: HostOs, arch: Arch) -> (u32, u32, u32) {
    if os == HostOs::Macos && arch == Arch::Aarch64 { (8, 2, 1) } else { (7, 2, 0) }
}

pub fn parse_qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split("version ").nth(1)?.split_whitespace().next()?;
    let mut it = v.split('.').map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// What a Linux host needs to run guests of `arch`, from the one list of system packages.
fn host_packages(arch: Arch) -> Vec<&'static system_packages::SystemPackage> {
    let guest = match arch {
        Arch::X86_64 => ForGuest::X86_64,
        Arch::Aarch64 => ForGuest::Aarch64,
    };
    system_packages::selected(&[system_packages::Role::Vm], Some(guest))
}

fn package_hint(os: HostOs, arch: Arch) -> String {
    match os {
        HostOs::Macos => "brew install qemu".into(),
        _ => system_packages::install_hint(&host_packages(arch)),
    }
}

pub async fn doctor(ws: &Workspace, req: &DoctorRequest, sink: &dyn Sink) -> Result<DoctorReport> {
    let p = super::load_profile(ws, req.profile.as_deref())?;
    let host = HostFacts::detect();
    let mut checks = Vec::new();
    let hint = package_hint(host.os, p.arch);

    let qemu = argv::program(p.arch);
    match std::process::Command::new(qemu).arg("--version").output() {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let v = parse_qemu_version(&text);
            let min = minimum_qemu(host.os, p.arch);
            let ok = v.is_some_and(|v| v >= min);
            checks.push(Check {
                name: qemu.into(),
                ok,
                detail: format!("{} (minimum {}.{}.{})", text.lines().next().unwrap_or("?"), min.0, min.1, min.2),
                fix: (!ok).then(|| hint.clone()),
            });
        }
        Err(_) => {
            checks.push(Check { name: qemu.into(), ok: false, detail: "not found".into(), fix: Some(hint.clone()) })
        }
    }
    let img = std::process::Command::new("qemu-img").arg("--version").output();
    checks.push(Check {
        name: "qemu-img".into(),
        ok: img.is_ok(),
        detail: img
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
            .unwrap_or_else(|_| "not found".into()),
        fix: None,
    });
    match firmware::find(p.arch, |f| f.exists()) {
        Ok(f) => checks.push(Check {
            name: "firmware".into(),
            ok: true,
            detail: format!("{} ({})", f.code.display(), f.origin),
            fix: None,
        }),
        Err(e) => checks.push(Check {
            name: "firmware".into(),
            ok: false,
            detail: crate::errors::chain(&e),
            fix: Some(e.hint.to_string()),
        }),
    }
    let test = accel::kvm_self_test(p.arch, &host, super::vm::SELF_TEST_SETTLE).await;
    let chosen = accel::choose(p.accel, p.arch, &host, &test);
    let (ok, detail) = match (&chosen, &test) {
        (Ok((a, w)), _) => {
            (true, format!("{}{}", a.as_str(), w.as_ref().map(|w| format!(" — {w}")).unwrap_or_default()))
        }
        (Err(e), _) => (false, crate::errors::chain(e)),
    };
    checks.push(Check { name: "accelerator".into(), ok, detail, fix: None });
    if let SelfTest::Failed(why) = &test {
        checks.push(Check {
            name: "kvm self-test".into(),
            ok: true,
            detail: format!("kvm unusable here ({why}); tcg works, only slower"),
            fix: None,
        });
    }
    if host.os == HostOs::Macos {
        let ent = std::process::Command::new("codesign")
            .args(["-d", "--entitlements", "-", "--xml"])
            .arg(format!("/opt/homebrew/bin/{qemu}"))
            .output();
        let has = ent.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("com.apple.security.hypervisor"));
        checks.push(Check {
            name: "hypervisor entitlement".into(),
            ok: has,
            detail: if has { "present".into() } else { "missing: QEMU would crash under hvf".into() },
            fix: (!has).then(|| "brew reinstall qemu".to_string()),
        });
    }
    let free = sysmon_collector::filesystems::available_bytes(ws.cache.parent().unwrap_or(&ws.cache)).unwrap_or(0);
    let need = (p.disk_gib.min(20) << 30) / 4;
    checks.push(Check {
        name: "disk space".into(),
        ok: free >= need,
        detail: format!("{} GiB free near {}", free >> 30, ws.cache.display()),
        fix: None,
    });
    let key = ws.user_key();
    checks.push(Check {
        name: "ssh key".into(),
        ok: true,
        detail: if key.exists() {
            key.display().to_string()
        } else {
            format!("{} (made on first `up`)", key.display())
        },
        fix: None,
    });

    let ready = checks.iter().all(|c| c.ok);
    let mut installed = Vec::new();
    if req.fix && !ready && host.os == HostOs::Linux {
        installed =
            system_packages::install_missing(&host_packages(p.arch))?.iter().map(|p| p.name.to_string()).collect();
        if installed.is_empty() {
            sink.info("fix: every system package is installed; the failing checks need another fix".into());
        }
    } else if req.fix && !ready && host.os == HostOs::Macos {
        let st = std::process::Command::new("brew").args(["install", "qemu"]).status();
        if st.is_ok_and(|s| s.success()) {
            installed.push("qemu".into());
        } else {
            sink.warning("fix: `brew install qemu` failed".into());
        }
    }
    Ok(DoctorReport {
        ready,
        profile: p.name.clone(),
        host,
        checks,
        installed,
        exit_status: if ready { crate::exit::OK } else { crate::exit::ERROR },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            Some((7, 2, 22))
        );
        assert_eq!(parse_qemu_version("QEMU emulator version 10.1.0"), Some((10, 1, 0)));
        assert!(parse_qemu_version("QEMU emulator version 8.2.1") >= Some((8, 2, 1)));
        assert_eq!(parse_qemu_version("garbage"), None);
    }
}
