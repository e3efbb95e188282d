//! Recognises the virtual platform, because it decides what a cycle counter means. QEMU's arm
//! PMU (under TCG and HVF alike) counts at a hard-coded 1 GHz of virtual time, so cycles ÷ busy
//! time there is a synthetic number, not the M-series clock (see notes in collector/README.md).

use crate::parse::cpuinfo::CpuInfo;
use crate::roots::Roots;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// `apple-hvf`, `qemu`, `hypervisor` or None on bare metal (as far as we can tell).
    pub virtualization: Option<String>,
    /// Whether a cycle counter here is emulated at a fixed virtual clock.
    pub synthetic_cycles: bool,
    /// What gave it away, for the frequency note.
    pub evidence: Option<String>,
}

/// Apple's HVF virtual CPU: implementer 0x61 ('a', Apple) with part 0x000.
fn is_hvf_vcpu(cpuinfo: &CpuInfo) -> bool {
    cpuinfo.cpus.iter().any(|c| c.implementer == Some(0x61) && c.part == Some(0))
}

/// Pure decision from what was read: DMI vendor/product, device-tree compatible/model, cpuinfo.
pub fn classify(dmi: &str, device_tree: &str, cpuinfo: &CpuInfo) -> Platform {
    let dmi_qemu = dmi.contains("QEMU");
    let dt_qemu = device_tree.contains("linux,dummy-virt") || device_tree.contains("QEMU");
    if is_hvf_vcpu(cpuinfo) {
        return Platform {
            virtualization: Some("apple-hvf".into()),
            synthetic_cycles: true,
            evidence: Some("CPU implementer 0x61 part 0x000 (Apple HVF virtual CPU)".into()),
        };
    }
    if dmi_qemu || dt_qemu {
        return Platform {
            virtualization: Some("qemu".into()),
            synthetic_cycles: true,
            evidence: Some(if dmi_qemu { "DMI names QEMU".into() } else { "device tree names QEMU virt".into() }),
        };
    }
    if cpuinfo.cpus.iter().any(|c| c.hypervisor_flag) {
        return Platform {
            virtualization: Some("hypervisor".into()),
            synthetic_cycles: false,
            evidence: Some("cpuinfo has the hypervisor flag".into()),
        };
    }
    Platform::default()
}

pub fn detect(roots: &Roots, cpuinfo: &CpuInfo) -> Platform {
    let read = |p: &str| {
        std::fs::read(roots.sys(p)).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
    };
    let dmi = format!("{} {}", read("class/dmi/id/sys_vendor"), read("class/dmi/id/product_name"));
    let dt = format!("{} {}", read("firmware/devicetree/base/compatible"), read("firmware/devicetree/base/model"));
    classify(&dmi, &dt, cpuinfo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cpuinfo;

    #[test]
    fn hvf_guest_is_synthetic() {
        let c = cpuinfo::parse(include_str!(
            "../tests/fixtures/proc-cpuinfo/aarch64-apple-m3-max-vm-guest.cpuinfo.excerpt"
        ));
        let p = classify("", "", &c);
        assert_eq!(p.virtualization.as_deref(), Some("apple-hvf"));
        assert!(p.synthetic_cycles);
    }

    #[test]
    fn qemu_dmi_and_device_tree() {
        let none = CpuInfo::default();
        assert!(classify("QEMU Standard PC (Q35 + ICH9, 2009)", "", &none).synthetic_cycles);
        assert!(classify("", "linux,dummy-virt", &none).synthetic_cycles);
        assert_eq!(classify("Dell Inc. PowerEdge", "", &none), Platform::default());
    }

    #[test]
    fn x86_hypervisor_flag_alone_is_not_synthetic() {
        let c = cpuinfo::parse(include_str!("../tests/fixtures/firecracker-x86_64-host/proc/cpuinfo"));
        let p = classify("", "", &c);
        assert_eq!(p.virtualization.as_deref(), Some("hypervisor"));
        assert!(!p.synthetic_cycles);
    }

    #[test]
    fn bare_metal_graviton_is_not_virtual() {
        let c =
            cpuinfo::parse(include_str!("../tests/fixtures/proc-cpuinfo/aarch64-aws-graviton2-m6g.4xlarge.cpuinfo"));
        assert_eq!(classify("", "", &c).virtualization, None);
    }
}
