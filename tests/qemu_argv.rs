//! Golden tests of the QEMU command line for every arch × accelerator (and the cdrom seed). The
//! expected argv files in tests/golden/ were reviewed by hand; `UPDATE_GOLDEN=1 cargo test --test
//! qemu_argv` rewrites them after an intended change (review the diff).

use std::path::{Path, PathBuf};
use sysmonvm::profile::{self, SeedAttachment};
use sysmonvm::qemu::argv::{LaunchPlan, ResolvedAccel, argv};
use sysmonvm::workspace::Workspace;

fn check(name: &str, profile_name: &str, accel: ResolvedAccel, code: &str, cdrom: bool) {
    let mut p = profile::load(profile_name, None).unwrap();
    if cdrom {
        p.seed = SeedAttachment::Cdrom;
    }
    let ws = Workspace::at(Path::new("/ws"));
    let vm = ws.vm("lab").unwrap();
    let plan = LaunchPlan {
        accel,
        firmware_code: PathBuf::from(code),
        ssh_port: 50022,
        forwards: vec![(59105, 9105)],
        daemonize: true,
    };
    let got = argv(&p, &plan, &vm);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(got, want, "{name}: argv changed; if intended, UPDATE_GOLDEN=1 and review tests/golden/{name}.json");
    // Properties every combination must keep, whatever else changes.
    let joined = got.join(" ");
    assert!(joined.contains("hostfwd=tcp:127.0.0.1:50022-:22"), "SSH forward bound to 127.0.0.1");
    assert!(!joined.contains("hostfwd=tcp::"), "no forward on all interfaces");
    assert!(joined.contains("-nodefaults") && joined.contains("-display none") && joined.contains("-daemonize"));
    assert!(joined.contains("readonly=on,file=/ws/vms/lab/cidata.iso"), "seed read-only");
    assert!(joined.contains("unit=0,readonly=on"), "firmware code read-only");
}

#[test]
fn aarch64_hvf() {
    check(
        "aarch64-hvf",
        "almalinux-9-aarch64",
        ResolvedAccel::Hvf,
        "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
        false,
    );
}

#[test]
fn aarch64_kvm() {
    check("aarch64-kvm", "almalinux-9-aarch64", ResolvedAccel::Kvm, "/usr/share/AAVMF/AAVMF_CODE.fd", false);
}

#[test]
fn aarch64_tcg_with_padded_firmware() {
    check("aarch64-tcg", "almalinux-9-aarch64", ResolvedAccel::Tcg, "/ws/vms/lab/efi-code.fd", false);
}

#[test]
fn x86_64_kvm() {
    check("x86_64-kvm", "almalinux-9-x86_64", ResolvedAccel::Kvm, "/usr/share/OVMF/OVMF_CODE_4M.fd", false);
}

#[test]
fn x86_64_tcg() {
    check("x86_64-tcg", "almalinux-9-x86_64", ResolvedAccel::Tcg, "/usr/share/OVMF/OVMF_CODE_4M.fd", false);
}

#[test]
fn x86_64_tcg_cdrom_seed() {
    check("x86_64-tcg-cdrom", "almalinux-9-x86_64", ResolvedAccel::Tcg, "/usr/share/OVMF/OVMF_CODE_4M.fd", true);
}

#[test]
fn aarch64_hvf_cdrom_seed() {
    check(
        "aarch64-hvf-cdrom",
        "almalinux-9-aarch64",
        ResolvedAccel::Hvf,
        "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
        true,
    );
}
