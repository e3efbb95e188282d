//! The lifecycle with real QEMU under TCG, booting firmware only (a blank disk): create, start,
//! QMP status, serial log, `up` on a running VM, stop, kill -9 recovery, destroy — for
//! qemu-system-x86_64 with OVMF and qemu-system-aarch64 with an unpadded QEMU_EFI.fd that must be
//! padded. Plus the KVM self-test on this machine.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Lab {
    dir: tempfile::TempDir,
    profile: PathBuf,
}

use common::sysmonvm_json as sysmonvm;

fn lab(arch: &str) -> Option<Lab> {
    let qemu = format!("qemu-system-{arch}");
    if !common::have(&qemu) || !common::have("qemu-img") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("blank.qcow2");
    assert!(
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&base).arg("1G").status().unwrap().success()
    );
    let (sha, _) = sysmonvm::image::download::hash_file(&base).unwrap();
    let (machine, firmware) = match arch {
        "x86_64" => ("q35", "auto".to_string()),
        // The unpadded 2 MiB image from qemu-efi-aarch64: the VM gets a padded copy.
        _ => ("virt", "\n  code: /usr/share/qemu-efi-aarch64/QEMU_EFI.fd\n  vars: \"\"".to_string()),
    };
    if arch == "aarch64" && !Path::new("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd").exists() {
        let _ = common::have("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd");
        return None;
    }
    let yaml = format!(
        "name: fw-{arch}\narch: {arch}\naccel: tcg\nmachine: {machine}\ncpu: max\nsmp: 1\nmemory_mib: 256\ndisk_gib: 2\nfirmware: {firmware}\nimage:\n  path: {}\n  sha256: {sha}\nssh:\n  user: tester\nforwards:\n  - guest: 9105\nseed: virtio\nguest_family: apt\n",
        base.display()
    );
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, yaml).unwrap();
    Some(Lab { dir, profile })
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what} did not happen within {within:?}");
}

/// A daemonized QEMU is reparented to PID 1; in a container that never reaps, it stays a zombie.
fn gone_or_zombie(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z"),
    }
}

fn lifecycle(arch: &str) {
    let Some(lab) = lab(arch) else { return };
    let ws = lab.dir.path().join("ws");
    let p = lab.profile.to_str().unwrap();
    let vmdir = ws.join("vms/fw");

    let (code, state, err) = sysmonvm(&ws, &["vm", "create", "--profile", p, "--name", "fw"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(state["name"], "fw");
    let info =
        Command::new("qemu-img").args(["info", "--output", "json"]).arg(vmdir.join("disk.qcow2")).output().unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename"], lab.dir.path().join("blank.qcow2").display().to_string());
    assert_eq!(info["virtual-size"], 2u64 << 30, "grown to the profile's disk size");
    if arch == "aarch64" {
        assert_eq!(std::fs::metadata(vmdir.join("efi-code.fd")).unwrap().len(), 64 << 20, "padded code copy");
        assert_eq!(std::fs::metadata(vmdir.join("efi-vars.fd")).unwrap().len(), 64 << 20);
    }
    // Idempotent.
    assert_eq!(sysmonvm(&ws, &["vm", "create", "--profile", p, "--name", "fw"]).0, 0);

    let (code, start, err) = sysmonvm(&ws, &["vm", "start", "fw", "--no-wait", "--accel", "tcg"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(start["accel"], "tcg");
    let serial = vmdir.join("serial.log");
    wait_for("firmware output on the serial log", Duration::from_secs(60), || {
        std::fs::metadata(&serial).is_ok_and(|m| m.len() > 0)
    });
    let (_, st, _) = sysmonvm(&ws, &["vm", "status", "fw"]);
    assert_eq!((st["state"].as_str(), st["qmp_status"].as_str()), (Some("running"), Some("running")), "{st}");
    assert!(!st["ssh_reachable"].as_bool().unwrap(), "no OS, so no sshd");

    // `vm argv` on the running VM shows the ports it holds, and says so.
    let (code, shown, err) = sysmonvm(&ws, &["vm", "argv", "--name", "fw", "--profile", p, "--accel", "tcg"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(shown["ssh_port"], st["ssh_port"], "{shown}");
    assert_eq!(shown["forwards"], st["forwards"], "{shown}");
    let note = shown["placeholders"][0].as_str().unwrap_or_default();
    assert!(note.contains("is running"), "{shown}");

    // `up` on a running VM says so and changes nothing.
    let pid_before = std::fs::read_to_string(vmdir.join("qemu.pid")).unwrap();
    let (code, up, err) = sysmonvm(&ws, &["up", "--profile", p, "--name", "fw", "--no-wait"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(up["already_running"], true);
    assert_eq!(std::fs::read_to_string(vmdir.join("qemu.pid")).unwrap(), pid_before);

    // Stop: no OS answers the ACPI powerdown, so after the timeout QEMU is told to quit. Not clean.
    let (code, stop, err) = sysmonvm(&ws, &["vm", "stop", "fw", "--timeout", "3s"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((stop["was_running"].as_bool(), stop["clean"].as_bool()), (Some(true), Some(false)), "{stop}");
    let (_, st, _) = sysmonvm(&ws, &["vm", "status", "fw"]);
    assert_eq!(st["state"], "stopped");
    assert!(!vmdir.join("qemu.pid").exists() && !vmdir.join("qmp.sock").exists());

    // kill -9 QEMU: status reconciles, start recovers.
    assert_eq!(sysmonvm(&ws, &["vm", "start", "fw", "--no-wait", "--accel", "tcg"]).0, 0);
    let pid: i32 = std::fs::read_to_string(vmdir.join("qemu.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: killing the QEMU this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for("QEMU gone", Duration::from_secs(10), || gone_or_zombie(pid as i64));
    let (_, st, _) = sysmonvm(&ws, &["vm", "status", "fw"]);
    assert_eq!((st["state"].as_str(), st["reconciled"].as_bool()), (Some("stopped"), Some(true)), "{st}");
    assert!(!vmdir.join("qemu.pid").exists());
    let (code, _, err) = sysmonvm(&ws, &["vm", "start", "fw", "--no-wait", "--accel", "tcg"]);
    assert_eq!(code, 0, "{err}");
    let (_, st, _) = sysmonvm(&ws, &["vm", "status", "fw"]);
    assert_eq!(st["state"], "running");

    let (code, _, err) = sysmonvm(&ws, &["vm", "destroy", "fw", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(!vmdir.exists(), "destroy leaves nothing behind");
    let new_pid = st["pid"].as_i64().unwrap();
    assert!(gone_or_zombie(new_pid), "QEMU stopped by destroy");
}

#[test]
fn x86_64_ovmf_firmware_boot_under_tcg() {
    lifecycle("x86_64");
}

#[test]
fn aarch64_padded_edk2_firmware_boot_under_tcg() {
    lifecycle("aarch64");
}

#[test]
fn a_port_in_use_is_named() {
    let Some(lab) = lab("x86_64") else { return };
    let ws = lab.dir.path().join("ws");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = std::fs::read_to_string(&lab.profile)
        .unwrap()
        .replace("  - guest: 9105\n", &format!("  - guest: 9105\n    host: {port}\n"));
    std::fs::write(&lab.profile, yaml).unwrap();
    assert_eq!(sysmonvm(&ws, &["vm", "create", "--profile", lab.profile.to_str().unwrap(), "--name", "fw"]).0, 0);
    let (code, _, err) = sysmonvm(&ws, &["vm", "start", "fw", "--no-wait", "--accel", "tcg"]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("host port {port} on 127.0.0.1 is already in use")), "{err}");
}

#[test]
fn kvm_self_test_gives_a_verdict_on_this_machine() {
    use sysmonvm::profile::{Accel, Arch};
    use sysmonvm::qemu::accel::{HostFacts, SelfTest, choose, kvm_self_test};
    let host = HostFacts::detect();
    if !host.kvm_device || !common::have("qemu-system-x86_64") || host.arch != "x86_64" {
        eprintln!("SKIPPED: no /dev/kvm");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let verdict = rt.block_on(kvm_self_test(Arch::X86_64, &host, Duration::from_secs(3)));
    eprintln!("kvm self-test: {verdict:?}");
    assert!(!matches!(verdict, SelfTest::NotRun(_)), "{verdict:?}");
    let (accel, warning) = choose(Accel::Auto, Arch::X86_64, &host, &verdict).unwrap();
    match verdict {
        SelfTest::Passed => assert_eq!(accel.as_str(), "kvm"),
        _ => {
            assert_eq!(accel.as_str(), "tcg");
            assert!(warning.is_some());
        }
    }
}

#[test]
fn a_boot_that_never_reaches_the_kernel_names_its_phase_with_the_serial_tail() {
    let Some(lab) = lab("x86_64") else { return };
    let ws = lab.dir.path().join("ws");
    assert_eq!(sysmonvm(&ws, &["vm", "create", "--profile", lab.profile.to_str().unwrap(), "--name", "fw"]).0, 0);
    // A blank disk: the firmware runs, no kernel ever starts. How long OVMF takes under TCG depends
    // on how busy the host is, so the test does not guess a timeout: it waits until the firmware
    // has given up (its UEFI shell is on the serial port), then asks the running VM to become
    // ready within a short timeout, which must name the phase it never reached.
    let (code, _, err) = sysmonvm(&ws, &["vm", "start", "fw", "--accel", "tcg", "--no-wait"]);
    assert_eq!(code, 0, "{err}");
    let serial = ws.join("vms/fw/serial.log");
    wait_for("the UEFI shell on the serial log", Duration::from_secs(600), || {
        std::fs::read(&serial).is_ok_and(|b| String::from_utf8_lossy(&b).contains("UEFI Interactive Shell"))
    });
    let (code, _, err) = sysmonvm(&ws, &["vm", "start", "fw", "--timeout", "3s"]);
    assert_ne!(code, 0);
    // The firmware ran (the UEFI shell is in the log); the phase it waits for is the kernel.
    assert!(err.contains("the boot is stuck at phase `kernel`"), "{err}");
    assert!(err.contains("UEFI Interactive Shell") && !err.contains('\u{1b}'), "readable serial tail: {err}");
    assert!(err.contains("last lines of") && err.contains("serial.log"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let _ = sysmonvm(&ws, &["vm", "destroy", "fw", "--yes"]);
}

#[test]
fn a_qemu_that_exits_at_once_shows_its_stderr() {
    let Some(lab) = lab("x86_64") else { return };
    let ws = lab.dir.path().join("ws");
    let yaml = std::fs::read_to_string(&lab.profile).unwrap().replace("machine: q35", "machine: no-such-machine");
    std::fs::write(&lab.profile, yaml).unwrap();
    assert_eq!(sysmonvm(&ws, &["vm", "create", "--profile", lab.profile.to_str().unwrap(), "--name", "fw"]).0, 0);
    let (code, _, err) = sysmonvm(&ws, &["vm", "start", "fw", "--accel", "tcg", "--no-wait"]);
    assert_ne!(code, 0);
    assert!(err.contains("QEMU exited during start") && err.contains("unsupported machine type"), "{err}");
    assert!(!ws.join("vms/fw/qemu.pid").exists());
}
