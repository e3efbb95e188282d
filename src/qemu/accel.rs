//! Choosing the accelerator. `auto` picks hvf on macOS when `kern.hv_support` says so, kvm only
//! when a real self-test passes, else tcg with a warning. The self-test matters: `/dev/kvm` can
//! exist and still fail (on kvm_pvm QEMU starts, then the firmware dies with a KVM internal error
//! within seconds, or QEMU 7.2 aborts on `-cpu host` at once).

use super::argv::ResolvedAccel;
use crate::profile::{Accel, Arch};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostFacts {
    pub os: String,
    pub arch: String,
    pub kvm_device: bool,
    pub hvf_supported: bool,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let hvf_supported = std::env::consts::OS == "macos"
            && std::process::Command::new("sysctl")
                .args(["-n", "kern.hv_support"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1");
        HostFacts {
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            kvm_device: Path::new("/dev/kvm").exists(),
            hvf_supported,
        }
    }

    /// Whether the guest's architecture is the host's (hardware acceleration needs that).
    pub fn native(&self, guest: Arch) -> bool {
        self.arch == guest.as_str()
    }
}

/// Outcome of running a guest's firmware under KVM for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum SelfTest {
    Passed,
    Failed(String),
    NotRun(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccelError {
    #[error("accelerator {0} is not available here: {1}")]
    Unavailable(&'static str, String),
}

/// The pure choice. `requested` is the flag, else `SYSMONVM_ACCEL`, else the profile.
pub fn choose(
    requested: Accel,
    guest: Arch,
    host: &HostFacts,
    kvm_test: &SelfTest,
) -> Result<(ResolvedAccel, Option<String>), AccelError> {
    let native = host.native(guest);
    match requested {
        Accel::Tcg => Ok((ResolvedAccel::Tcg, None)),
        Accel::Hvf => {
            if host.os != "macos" || !host.hvf_supported || !native {
                return Err(AccelError::Unavailable(
                    "hvf",
                    format!(
                        "needs an {} Mac with kern.hv_support = 1 (host: {} {})",
                        guest.as_str(),
                        host.os,
                        host.arch
                    ),
                ));
            }
            Ok((ResolvedAccel::Hvf, None))
        }
        Accel::Kvm => match kvm_test {
            SelfTest::Passed => Ok((ResolvedAccel::Kvm, None)),
            SelfTest::Failed(why) | SelfTest::NotRun(why) => Err(AccelError::Unavailable("kvm", why.clone())),
        },
        Accel::Auto => {
            if host.os == "macos" && host.hvf_supported && native {
                return Ok((ResolvedAccel::Hvf, None));
            }
            match kvm_test {
                SelfTest::Passed => Ok((ResolvedAccel::Kvm, None)),
                SelfTest::Failed(why) | SelfTest::NotRun(why) => {
                    Ok((ResolvedAccel::Tcg, Some(format!("using tcg (software emulation, much slower): kvm {why}"))))
                }
            }
        }
    }
}

pub fn parse_accel(s: &str) -> Option<Accel> {
    match s {
        "auto" => Some(Accel::Auto),
        "hvf" => Some(Accel::Hvf),
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

/// Boots the firmware under KVM for `settle` and asks QMP whether the guest still runs.
pub async fn kvm_self_test(guest: Arch, host: &HostFacts, settle: Duration) -> SelfTest {
    if host.os != "linux" {
        return SelfTest::NotRun("is Linux only".into());
    }
    if !host.native(guest) {
        return SelfTest::NotRun(format!("cannot run an {} guest on an {} host", guest.as_str(), host.arch));
    }
    if !host.kvm_device {
        return SelfTest::NotRun("has no /dev/kvm".into());
    }
    let fw = match super::firmware::find(guest, |p| p.exists()) {
        Ok(f) => f,
        Err(e) => return SelfTest::NotRun(format!("self-test skipped: {e}")),
    };
    let dir = match tempfile::Builder::new().prefix("sysmonvm-kvm-test").tempdir() {
        Ok(d) => d,
        Err(e) => return SelfTest::NotRun(format!("self-test skipped: {e}")),
    };
    let vars = dir.path().join("vars.fd");
    let code_size = std::fs::metadata(&fw.code).map(|m| m.len()).unwrap_or(0);
    let code = if super::firmware::needs_padding(guest, code_size) {
        let c = dir.path().join("code.fd");
        if super::firmware::copy_padded(Some(&fw.code), &c, Some(super::firmware::VIRT_PFLASH_SIZE)).is_err() {
            return SelfTest::NotRun("self-test skipped: cannot pad firmware".into());
        }
        c
    } else {
        fw.code.clone()
    };
    let vars_size = (guest == Arch::Aarch64).then_some(super::firmware::VIRT_PFLASH_SIZE);
    if super::firmware::copy_padded(Some(&fw.vars_template), &vars, vars_size).is_err() {
        return SelfTest::NotRun("self-test skipped: cannot copy the vars template".into());
    }
    let qmp = dir.path().join("qmp.sock");
    let machine = if guest == Arch::Aarch64 { "virt,accel=kvm" } else { "q35,accel=kvm" };
    let mut child = match tokio::process::Command::new(super::argv::program(guest))
        .args(["-nodefaults", "-display", "none", "-machine", machine, "-cpu", "host", "-m", "256M", "-serial", "none"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display()))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return SelfTest::NotRun(format!("cannot start {}: {e}", super::argv::program(guest))),
    };
    tokio::time::sleep(settle).await;
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = s.read_to_string(&mut err).await;
        }
        return SelfTest::Failed(format!("self-test: QEMU exited at once ({status}): {}", qemu_error_line(&err)));
    }
    let verdict = match crate::qmp::QmpClient::connect(&qmp, Duration::from_secs(5)).await {
        Ok(mut c) => match c.query_status().await {
            Ok(s) if s.running => SelfTest::Passed,
            Ok(s) => SelfTest::Failed(format!("self-test failed: the firmware stopped with status {}", s.status)),
            Err(e) => SelfTest::Failed(format!("self-test failed: {}", crate::errors::chain(&e))),
        },
        Err(e) => SelfTest::Failed(format!("self-test failed: {}", crate::errors::chain(&e))),
    };
    let _ = child.kill().await;
    verdict
}

/// The line of QEMU's stderr that says why it stopped: its own `error:` line when there is one
/// (QEMU 10 under kvm_pvm prints "failed to set MSR 0x10a …" and then an assertion), else the last.
fn qemu_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = lines.iter().find(|l| l.contains("error")).or(lines.last()).copied().unwrap_or("(no output)");
    crate::vm::printable(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_qemus_own_error_line() {
        // Recorded on this machine: QEMU 10.0.2, -cpu host, kvm_pvm.
        let err = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069\nqemu-system-x86_64: target/i386/kvm/kvm.c:3849: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        assert_eq!(qemu_error_line(err), "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069");
        assert_eq!(qemu_error_line("a\nlast\n"), "last");
        assert_eq!(qemu_error_line(""), "(no output)");
    }

    fn host(os: &str, arch: &str, kvm: bool, hvf: bool) -> HostFacts {
        HostFacts { os: os.into(), arch: arch.into(), kvm_device: kvm, hvf_supported: hvf }
    }

    #[test]
    fn auto_on_apple_silicon_is_hvf() {
        let (a, w) =
            choose(Accel::Auto, Arch::Aarch64, &host("macos", "aarch64", false, true), &SelfTest::NotRun("x".into()))
                .unwrap();
        assert_eq!((a, w), (ResolvedAccel::Hvf, None));
    }

    #[test]
    fn auto_with_a_failing_kvm_is_tcg_with_a_warning() {
        let (a, w) = choose(
            Accel::Auto,
            Arch::X86_64,
            &host("linux", "x86_64", true, false),
            &SelfTest::Failed("self-test failed: internal-error".into()),
        )
        .unwrap();
        assert_eq!(a, ResolvedAccel::Tcg);
        assert!(w.unwrap().contains("internal-error"));
        let (a, _) =
            choose(Accel::Auto, Arch::X86_64, &host("linux", "x86_64", true, false), &SelfTest::Passed).unwrap();
        assert_eq!(a, ResolvedAccel::Kvm);
    }

    #[test]
    fn explicit_requests_fail_loudly() {
        assert!(
            choose(Accel::Kvm, Arch::X86_64, &host("linux", "x86_64", true, false), &SelfTest::Failed("x".into()))
                .is_err()
        );
        assert!(choose(Accel::Hvf, Arch::Aarch64, &host("linux", "aarch64", true, false), &SelfTest::Passed).is_err());
        assert!(choose(Accel::Hvf, Arch::X86_64, &host("macos", "aarch64", false, true), &SelfTest::Passed).is_err());
        assert_eq!(
            choose(Accel::Tcg, Arch::Aarch64, &host("linux", "x86_64", false, false), &SelfTest::Passed).unwrap().0,
            ResolvedAccel::Tcg
        );
    }
}
