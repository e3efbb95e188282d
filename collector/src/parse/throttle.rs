//! Raspberry Pi firmware throttle flags: `vcgencmd get_throttled` prints `throttled=0x50005`.
//! Bit meanings from the Raspberry Pi documentation (bits 0–3 now, 16–19 since boot).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleFlags {
    pub raw: u32,
    pub under_voltage: bool,
    pub frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
    pub under_voltage_occurred: bool,
    pub frequency_capped_occurred: bool,
    pub throttled_occurred: bool,
    pub soft_temperature_limit_occurred: bool,
}

pub fn parse(text: &str) -> Option<ThrottleFlags> {
    let value = text.trim().strip_prefix("throttled=")?;
    let hex = value.strip_prefix("0x").unwrap_or(value);
    let raw = u32::from_str_radix(hex, 16).ok()?;
    let bit = |n: u32| raw & (1 << n) != 0;
    Some(ThrottleFlags {
        raw,
        under_voltage: bit(0),
        frequency_capped: bit(1),
        throttled: bit(2),
        soft_temperature_limit: bit(3),
        under_voltage_occurred: bit(16),
        frequency_capped_occurred: bit(17),
        throttled_occurred: bit(18),
        soft_temperature_limit_occurred: bit(19),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let f = parse("throttled=0x50005\n").unwrap();
        assert!(f.under_voltage && f.throttled && f.under_voltage_occurred && f.throttled_occurred);
        assert!(!f.frequency_capped && !f.soft_temperature_limit_occurred);
        assert_eq!(parse("throttled=0x0").unwrap().raw, 0);
        assert_eq!(parse("error"), None);
    }
}
