//! Recognises the virtual platform from vendor strings (DMI, device tree, /proc/cpuinfo). These
//! strings are **evidence only**: they name the machine (`host.virtualization`) and go into the
//! frequency notes, but they never decide what a cycle counter means. A kvm guest with QEMU DMI
//! can have a real vPMU, and a blank-DMI guest can have QEMU's emulated one. Whether a counter is
//! a clock is decided by measurement ([`crate::frequency::CounterEvidence`]; collector/README.md).

use crate::parse::cpuinfo::CpuInfo;
use crate::roots::Roots;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// `apple-hvf`, `qemu`, `hypervisor` or None on bare metal (as far as we can tell).
    pub virtualization: Option<String>,
    /// Every vendor string that pointed at a virtual platform, for the frequency notes
    /// (`DMI names QEMU`, `device tree names QEMU virt (linux,dummy-virt)`, …); None when none did.
    pub evidence: Option<String>,
}

/// Apple's HVF virtual CPU: implementer 0x61 ('a', Apple) with part 0x000.
fn is_hvf_vcpu(cpuinfo: &CpuInfo) -> bool {
    cpuinfo.cpus.iter().any(|c| c.implementer == Some(0x61) && c.part == Some(0))
}

/// Pure classification from what was read: DMI vendor/product, device-tree compatible/model, cpuinfo.
pub fn classify(dmi: &str, device_tree: &str, cpuinfo: &CpuInfo) -> Platform {
    let hvf = is_hvf_vcpu(cpuinfo);
    let dmi_qemu = dmi.contains("QEMU");
    let dt_dummy_virt = device_tree.contains("linux,dummy-virt");
    let dt_qemu = dt_dummy_virt || device_tree.contains("QEMU");
    let hypervisor_flag = cpuinfo.cpus.iter().any(|c| c.hypervisor_flag);

    let mut evidence = Vec::new();
    if hvf {
        evidence.push("CPU implementer 0x61 part 0x000 (Apple HVF virtual CPU)".to_string());
    }
    if dmi_qemu {
        evidence.push("DMI names QEMU".to_string());
    }
    if dt_qemu {
        evidence.push(if dt_dummy_virt {
            "device tree names QEMU virt (linux,dummy-virt)".to_string()
        } else {
            "device tree names QEMU".to_string()
        });
    }
    if hypervisor_flag {
        evidence.push("cpuinfo has the hypervisor flag".to_string());
    }
    let virtualization = if hvf {
        Some("apple-hvf")
    } else if dmi_qemu || dt_qemu {
        Some("qemu")
    } else if hypervisor_flag {
        Some("hypervisor")
    } else {
        None
    };
    Platform {
        virtualization: virtualization.map(String::from),
        evidence: (!evidence.is_empty()).then(|| evidence.join(", ")),
    }
}

pub fn detect(roots: &Roots, cpuinfo: &CpuInfo) -> Platform {
    let read = |p: &str| {
        crate::files::read_bytes(&roots.sys(p))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default()
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
    fn hvf_guest_is_named_with_its_evidence() {
        let c = cpuinfo::parse(include_str!(
            "../tests/fixtures/proc-cpuinfo/aarch64-apple-m3-max-vm-guest.cpuinfo.excerpt"
        ));
        let p = classify("", "", &c);
        assert_eq!(p.virtualization.as_deref(), Some("apple-hvf"));
        assert!(p.evidence.unwrap().contains("0x61"));
    }

    #[test]
    fn qemu_dmi_and_device_tree_are_evidence_not_a_verdict() {
        let none = CpuInfo::default();
        let dmi = classify("QEMU Standard PC (Q35 + ICH9, 2009)", "", &none);
        assert_eq!(dmi.virtualization.as_deref(), Some("qemu"));
        assert_eq!(dmi.evidence.as_deref(), Some("DMI names QEMU"));
        let dt = classify("", "linux,dummy-virt", &none);
        assert_eq!(dt.virtualization.as_deref(), Some("qemu"));
        assert!(dt.evidence.unwrap().contains("linux,dummy-virt"));
        let both = classify("QEMU QEMU Virtual Machine", "linux,dummy-virt", &none);
        let e = both.evidence.unwrap();
        assert!(e.contains("DMI names QEMU") && e.contains("linux,dummy-virt"), "{e}");
        assert_eq!(classify("Dell Inc. PowerEdge", "", &none), Platform::default());
    }

    #[test]
    fn x86_hypervisor_flag() {
        let c = cpuinfo::parse(include_str!("../tests/fixtures/firecracker-x86_64-host/proc/cpuinfo"));
        let p = classify("", "", &c);
        assert_eq!(p.virtualization.as_deref(), Some("hypervisor"));
        assert_eq!(p.evidence.as_deref(), Some("cpuinfo has the hypervisor flag"));
    }

    #[test]
    fn bare_metal_graviton_is_not_virtual() {
        let c =
            cpuinfo::parse(include_str!("../tests/fixtures/proc-cpuinfo/aarch64-aws-graviton2-m6g.4xlarge.cpuinfo"));
        assert_eq!(classify("", "", &c), Platform::default());
    }
}
