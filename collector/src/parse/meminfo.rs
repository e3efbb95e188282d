//! `/proc/meminfo`: `Key:   1234 kB` lines; values converted to bytes.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: Option<u64>,
    pub free: Option<u64>,
    pub available: Option<u64>,
    pub buffers: Option<u64>,
    pub cached: Option<u64>,
    pub sreclaimable: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
    pub bad_lines: usize,
}

pub fn parse(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            if !line.trim().is_empty() {
                m.bad_lines += 1;
            }
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        let bytes = match (value, it.next()) {
            (Some(v), Some("kB")) => v.checked_mul(1024),
            (Some(v), None) => Some(v), // counts such as HugePages_Total carry no unit
            _ => {
                m.bad_lines += 1;
                continue;
            }
        };
        let slot = match key.trim() {
            "MemTotal" => &mut m.total,
            "MemFree" => &mut m.free,
            "MemAvailable" => &mut m.available,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "SReclaimable" => &mut m.sreclaimable,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            _ => continue,
        };
        *slot = bytes;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_capture() {
        // fixtures/debian12-tcg-guest/proc/meminfo: MemTotal 2019612 kB, MemAvailable 1833440 kB, Buffers 8344 kB.
        let m = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/meminfo"));
        assert_eq!(m.total, Some(2_019_612 * 1024));
        assert_eq!(m.available, Some(1_833_440 * 1024));
        assert_eq!(m.buffers, Some(8344 * 1024));
        assert_eq!(m.bad_lines, 0);
    }

    #[test]
    fn truncated_line_is_counted_not_fatal() {
        let m = parse("MemTotal: 100 kB\nMemFree:");
        assert_eq!(m.total, Some(102_400));
        assert_eq!(m.free, None);
        assert_eq!(m.bad_lines, 1);
    }
}
