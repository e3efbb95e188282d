//! The QEMU command line as a pure function of (profile, resolved accelerator, firmware files, VM
//! paths, host ports). Nothing here touches the system, so every arch × accelerator combination is
//! covered by golden tests (`tests/golden/`).

use crate::profile::{Accel, Arch, Profile, SeedAttachment};
use crate::workspace::VmPaths;
use std::path::PathBuf;

/// An accelerator after `auto` was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedAccel {
    Hvf,
    Kvm,
    Tcg,
}

impl ResolvedAccel {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedAccel::Hvf => "hvf",
            ResolvedAccel::Kvm => "kvm",
            ResolvedAccel::Tcg => "tcg",
        }
    }

    pub fn from_profile(a: Accel) -> Option<ResolvedAccel> {
        match a {
            Accel::Hvf => Some(ResolvedAccel::Hvf),
            Accel::Kvm => Some(ResolvedAccel::Kvm),
            Accel::Tcg => Some(ResolvedAccel::Tcg),
            Accel::Auto => None,
        }
    }
}

/// Files and ports decided before launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    pub accel: ResolvedAccel,
    /// Firmware code as QEMU should read it (the system file, or the VM's padded copy).
    pub firmware_code: PathBuf,
    /// Host port on 127.0.0.1 forwarded to the guest's sshd.
    pub ssh_port: u16,
    /// (host port, guest port) for the profile's other forwards.
    pub forwards: Vec<(u16, u16)>,
    /// Whether to daemonize (the CLI does; tests that watch stderr do not).
    pub daemonize: bool,
}

pub fn program(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "qemu-system-aarch64",
        Arch::X86_64 => "qemu-system-x86_64",
    }
}

/// The CPU model: `host` needs a hardware accelerator; under TCG it becomes `max`.
pub fn cpu_model(profile_cpu: &str, accel: ResolvedAccel) -> String {
    match (accel, profile_cpu) {
        (ResolvedAccel::Tcg, "host") => "max".to_string(),
        (_, cpu) => cpu.to_string(),
    }
}

/// A value inside a QEMU option list: commas doubled.
pub fn option_value(v: &str) -> String {
    v.replace(',', ",,")
}

pub fn argv(p: &Profile, plan: &LaunchPlan, vm: &VmPaths) -> Vec<String> {
    let mut a: Vec<String> = vec![program(p.arch).into()];
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    // Inside a QEMU option list (`key=value,key=value`) a comma is written `,,`; without that a
    // path containing `,readonly=off` would become an option of its own.
    let path = |p: &PathBuf| option_value(&p.display().to_string());

    // No `process=`: QEMU exits on macOS when asked to rename its process.
    push(&["-name", &format!("sysmonvm-{}", vm.name)]);
    push(&["-nodefaults", "-display", "none"]);
    let machine = format!("{},accel={}", p.machine, plan.accel.as_str());
    push(&["-machine", &machine]);
    push(&["-cpu", &cpu_model(&p.cpu, plan.accel)]);
    push(&["-smp", &p.smp.to_string(), "-m", &format!("{}M", p.memory_mib)]);

    // UEFI: read-only code and this VM's own variable store.
    push(&["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={}", path(&plan.firmware_code))]);
    push(&["-drive", &format!("if=pflash,format=raw,unit=1,file={}", path(&vm.efi_vars))]);

    push(&["-drive", &format!("if=none,id=disk0,format=qcow2,discard=unmap,file={}", path(&vm.disk))]);
    push(&["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
    match p.seed {
        // Debian's cloud kernel has no AHCI driver, so a CD-ROM on q35 is invisible to it: virtio by default.
        SeedAttachment::Virtio => {
            push(&["-drive", &format!("if=none,id=seed,format=raw,readonly=on,file={}", path(&vm.seed))]);
            push(&["-device", "virtio-blk-pci,drive=seed"]);
        }
        SeedAttachment::Cdrom => {
            push(&["-drive", &format!("if=none,id=seed,media=cdrom,format=raw,readonly=on,file={}", path(&vm.seed))]);
            match p.arch {
                Arch::X86_64 => push(&["-device", "ide-cd,drive=seed,bus=ide.2"]),
                Arch::Aarch64 => {
                    push(&["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-cd,drive=seed,bus=scsi0.0"])
                }
            }
        }
    }

    // User-mode networking; every forward binds 127.0.0.1 only.
    let mut netdev = format!("user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22", plan.ssh_port);
    for (host, guest) in &plan.forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
    push(&["-device", "virtio-rng-pci"]);

    push(&["-chardev", &format!("socket,id=qmp,path={},server=on,wait=off", path(&vm.qmp_socket))]);
    push(&["-mon", "chardev=qmp,mode=control"]);
    push(&["-chardev", &format!("socket,id=qga,path={},server=on,wait=off", path(&vm.qga_socket))]);
    push(&["-device", "virtio-serial-pci", "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"]);
    push(&["-chardev", &format!("file,id=serial0,path={}", path(&vm.serial_log)), "-serial", "chardev:serial0"]);
    // A plain argument, not an option list: no doubling.
    push(&["-pidfile", &vm.pidfile.display().to_string()]);
    if plan.daemonize {
        push(&["-daemonize"]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_in_paths_are_doubled_in_option_lists() {
        let ws = crate::workspace::Workspace::at(std::path::Path::new("/tmp/a,readonly=off,b"));
        let vm = ws.vm("lab").unwrap();
        let p = crate::profile::load("almalinux-9-x86_64", None).unwrap();
        let plan = LaunchPlan {
            accel: ResolvedAccel::Tcg,
            firmware_code: PathBuf::from("/fw/x,y.fd"),
            ssh_port: 2222,
            forwards: vec![],
            daemonize: true,
        };
        let a = argv(&p, &plan, &vm);
        let drive = a.iter().find(|x| x.contains("id=disk0")).unwrap();
        assert_eq!(
            drive,
            "if=none,id=disk0,format=qcow2,discard=unmap,file=/tmp/a,,readonly=off,,b/vms/lab/disk.qcow2"
        );
        assert!(a.contains(&"if=pflash,format=raw,unit=0,readonly=on,file=/fw/x,,y.fd".to_string()), "{a:?}");
        assert!(
            a.iter().any(|x| x == "socket,id=qmp,path=/tmp/a,,readonly=off,,b/vms/lab/qmp.sock,server=on,wait=off")
        );
        let pid = a.iter().position(|x| x == "-pidfile").unwrap();
        assert_eq!(a[pid + 1], "/tmp/a,readonly=off,b/vms/lab/qemu.pid");
    }

    #[test]
    fn host_cpu_becomes_max_under_tcg_only() {
        assert_eq!(cpu_model("host", ResolvedAccel::Tcg), "max");
        assert_eq!(cpu_model("host", ResolvedAccel::Kvm), "host");
        assert_eq!(cpu_model("max", ResolvedAccel::Hvf), "max");
        assert_eq!(cpu_model("cortex-a72", ResolvedAccel::Tcg), "cortex-a72");
    }
}
