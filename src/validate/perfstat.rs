//! `perf stat -x, -a -A -e cycles -I <ms>` output: per interval and CPU, the cycles counted. A
//! reference only where the guest has a PMU; `<not supported>` / `<not counted>` mean it has none.
//! Pure and garbage-tolerant.

#[derive(Debug, Clone, PartialEq)]
pub struct PerfInterval {
    /// Seconds since perf started (the end of the interval).
    pub t: f64,
    pub cpu: u32,
    pub cycles: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerfStat {
    pub intervals: Vec<PerfInterval>,
    /// perf said the event is not supported or was never counted.
    pub unsupported: bool,
}

pub fn parse(text: &str) -> PerfStat {
    let mut out = PerfStat::default();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() < 5 || !f[4].starts_with("cycles") {
            continue;
        }
        if f[2].starts_with("<not") {
            out.unsupported = true;
            continue;
        }
        let (Ok(t), Some(cpu), Ok(cycles)) =
            (f[0].trim().parse::<f64>(), f[1].strip_prefix("CPU").and_then(|c| c.parse().ok()), f[2].parse::<u64>())
        else {
            continue;
        };
        if t.is_finite() && t >= 0.0 {
            out.intervals.push(PerfInterval { t, cpu, cycles });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_output_and_a_guest_without_pmu() {
        let s = parse(
            "# started on Tue\n     1.001034567,CPU0,2400123456,,cycles,1001234567,100.00,,\n     1.001034567,CPU1,1200000000,,cycles,1001234567,100.00,,\n",
        );
        assert_eq!(s.intervals.len(), 2);
        assert_eq!(s.intervals[1], PerfInterval { t: 1.001034567, cpu: 1, cycles: 1_200_000_000 });
        let none = parse("     1.000512,CPU0,<not supported>,,cycles,0,100.00,,\n");
        assert!(none.unsupported && none.intervals.is_empty());
        for junk in ["", ",,,,", "x,CPUx,1,,cycles", "NaN,CPU0,1,,cycles", "-1,CPU0,5,,cycles", "1,CPU0,-5,,cycles"] {
            assert!(parse(junk).intervals.is_empty(), "{junk:?}");
        }
    }
}
