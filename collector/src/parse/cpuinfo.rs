//! `/proc/cpuinfo`: one block per logical CPU. x86 prints `cpu MHz`; arm64 prints none, but
//! names the implementer and part, which is how an HVF virtual CPU is recognised.

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuInfoEntry {
    pub processor: u32,
    pub mhz: Option<f64>,
    pub model_name: Option<String>,
    pub implementer: Option<u32>,
    pub part: Option<u32>,
    /// The x86 `hypervisor` flag: the kernel runs under a hypervisor, so `cpu MHz` is the TSC rate.
    pub hypervisor_flag: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuInfo {
    pub cpus: Vec<CpuInfoEntry>,
    /// `Hardware` / `Model` lines some arm kernels print once after the CPU blocks.
    pub hardware: Option<String>,
}

impl CpuInfo {
    pub fn entry(&self, cpu: u32) -> Option<&CpuInfoEntry> {
        self.cpus.iter().find(|e| e.processor == cpu)
    }
}

fn parse_hex_or_dec(value: &str) -> Option<u32> {
    match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

pub fn parse(text: &str) -> CpuInfo {
    let mut out = CpuInfo::default();
    let mut current: Option<CpuInfoEntry> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if key == "processor" {
            if let Some(done) = current.take() {
                out.cpus.push(done);
            }
            // armv7 kernels print `Processor : ARMv7 ...` (a name, capital P); only a number starts a block.
            if let Ok(n) = value.parse() {
                current = Some(CpuInfoEntry { processor: n, ..Default::default() });
            }
            continue;
        }
        match (key, current.as_mut()) {
            ("cpu MHz", Some(e)) => e.mhz = value.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0),
            ("model name", Some(e)) => e.model_name = Some(value.to_string()),
            ("CPU implementer", Some(e)) => e.implementer = parse_hex_or_dec(value),
            ("CPU part", Some(e)) => e.part = parse_hex_or_dec(value),
            ("flags", Some(e)) => e.hypervisor_flag = value.split_ascii_whitespace().any(|f| f == "hypervisor"),
            ("Hardware", _) | ("Model", None) => out.hardware = Some(value.to_string()),
            _ => {}
        }
    }
    if let Some(done) = current.take() {
        out.cpus.push(done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_tcg_guest_has_constant_mhz_and_the_hypervisor_flag() {
        let c = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/cpuinfo"));
        assert_eq!(c.cpus.len(), 2);
        assert_eq!(c.cpus[0].mhz, Some(2596.145));
        assert!(c.cpus[0].hypervisor_flag);
        assert_eq!(c.cpus[1].processor, 1);
        assert_eq!(c.cpus[0].model_name.as_deref(), Some("QEMU TCG CPU version 2.5+"));
    }

    #[test]
    fn arm64_has_no_mhz_but_names_implementer_and_part() {
        let c = parse(include_str!("../../tests/fixtures/proc-cpuinfo/aarch64-apple-m3-max-vm-guest.cpuinfo.excerpt"));
        assert!(!c.cpus.is_empty());
        let first = &c.cpus[0];
        assert_eq!(first.mhz, None);
        assert_eq!((first.implementer, first.part), (Some(0x61), Some(0x000)));
    }

    #[test]
    fn armv7_processor_name_line_is_not_a_block() {
        let c = parse(
            "Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 38.40\n\nHardware\t: BCM2835\n",
        );
        assert_eq!(c.cpus.len(), 1);
        assert_eq!(c.hardware.as_deref(), Some("BCM2835"));
    }
}
