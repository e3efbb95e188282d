//! The independent references `validate` reads in the guest, not through the collector's code:
//! a shell loop (templates/guest/validate-refs.sh.j2) that prints `/proc/stat`'s cpu lines, the
//! `processor` and `cpu MHz` lines of `/proc/cpuinfo` and every readable cpufreq file once per
//! interval, between `@@t` markers carrying the guest's uptime. Only builtins run in the loop
//! (and one `sleep`), so the reference costs the guest next to nothing. Parsing is pure and
//! survives any input; the kernel formats themselves go through the collector's own parsers.

use sysmon_collector::parse::{cpuinfo, stat};

/// One pass of the loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefSample {
    /// Guest wall-clock time in Unix seconds (from `@@wall` + uptime).
    pub time: f64,
    pub stat: Option<stat::ProcStat>,
    /// `cpu MHz` per logical CPU, in Hz.
    pub cpuinfo_hz: Vec<(u32, f64)>,
    /// (cpu, file name, Hz) for `scaling_cur_freq` / `cpuinfo_cur_freq` (kHz in sysfs).
    pub sysfs_hz: Vec<(u32, String, f64)>,
}

/// One pass being collected: its time and its /proc/stat, /proc/cpuinfo and sysfs lines.
struct Pass<'a> {
    time: f64,
    stat: Vec<&'a str>,
    cpuinfo: Vec<&'a str>,
    sysfs: Vec<&'a str>,
}

/// Parses the loop's whole output. The first line is `@@wall <unix seconds> <uptime seconds>
/// [<uptime seconds after>]` (the wall clock read between the two uptimes, which are averaged);
/// each pass starts with `@@t <uptime seconds>`.
pub fn parse(text: &str) -> Vec<RefSample> {
    let mut wall_minus_uptime: Option<f64> = None;
    let mut out = Vec::new();
    let mut current: Option<Pass> = None;
    let finish = |c: Option<Pass>, out: &mut Vec<RefSample>| {
        if let Some(p) = c {
            out.push(sample(p.time, &p.stat, &p.cpuinfo, &p.sysfs));
        }
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("@@wall") => {
                let mut num = || words.next().and_then(|w| w.parse::<f64>().ok()).filter(|v| v.is_finite());
                let (wall, up, up_after) = (num(), num(), num());
                // The uptime read after `date` too, when the loop printed it: the midpoint.
                let up = match (up, up_after) {
                    (Some(a), Some(b)) if b >= a => Some((a + b) / 2.0),
                    (up, _) => up,
                };
                if let (Some(w), Some(u)) = (wall, up) {
                    wall_minus_uptime = Some(w - u);
                }
            }
            Some("@@t") => {
                finish(current.take(), &mut out);
                let (Some(base), Some(up)) = (wall_minus_uptime, words.next().and_then(|w| w.parse::<f64>().ok()))
                else {
                    continue;
                };
                if up.is_finite() {
                    current = Some(Pass { time: base + up, stat: Vec::new(), cpuinfo: Vec::new(), sysfs: Vec::new() });
                }
            }
            Some("@@sysfs") => {
                if let Some(c) = current.as_mut() {
                    c.sysfs.push(line);
                }
            }
            // `cpu3 12 0 …` from /proc/stat, not `cpu MHz : …` from /proc/cpuinfo.
            Some(w) if w.starts_with("cpu") && words.next().is_some_and(|n| n.parse::<u64>().is_ok()) => {
                if let Some(c) = current.as_mut() {
                    c.stat.push(line);
                }
            }
            Some(_) => {
                if let Some(c) = current.as_mut() {
                    c.cpuinfo.push(line);
                }
            }
            None => {}
        }
    }
    finish(current, &mut out);
    out
}

fn sample(time: f64, stat_lines: &[&str], cpuinfo_lines: &[&str], sysfs: &[&str]) -> RefSample {
    let st = stat::parse(&stat_lines.join("\n"));
    let ci = cpuinfo::parse(&cpuinfo_lines.join("\n"));
    let cpuinfo_hz =
        ci.cpus.iter().filter_map(|c| c.mhz.filter(|m| m.is_finite()).map(|m| (c.processor, m * 1e6))).collect();
    // `@@sysfs /sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq 2400000`
    let sysfs_hz = sysfs
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let path = w.next()?;
            let khz: f64 = w.next()?.parse().ok()?;
            let mut parts = path.rsplit('/');
            let file = parts.next()?;
            let cpu = parts.nth(1)?.strip_prefix("cpu")?.parse().ok()?;
            (khz.is_finite() && khz > 0.0).then(|| (cpu, file.to_string(), khz * 1000.0))
        })
        .collect();
    RefSample { time, stat: (st.total.is_some() || !st.cpus.is_empty()).then_some(st), cpuinfo_hz, sysfs_hz }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &str = "@@wall 1764000000.50 100.25
@@t 101.00
cpu  10 0 5 1000 0 0 0 0 0 0
cpu0 5 0 2 500 0 0 0 0 0 0
cpu1 5 0 3 500 0 0 0 0 0 0
processor\t: 0
cpu MHz\t\t: 2893.204
processor\t: 1
cpu MHz\t\t: 2893.204
@@sysfs /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq 2400000
@@sysfs /sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq 1200000
@@t 102.00
cpu  110 0 5 1000 0 0 0 0 0 0
cpu0 105 0 2 500 0 0 0 0 0 0
cpu1 5 0 3 500 0 0 0 0 0 0
";

    #[test]
    fn a_recorded_stream_parses() {
        let s = parse(RECORDED);
        assert_eq!(s.len(), 2);
        assert!((s[0].time - 1764000001.25).abs() < 1e-6);
        assert_eq!(s[0].cpuinfo_hz, [(0, 2893.204e6), (1, 2893.204e6)]);
        assert_eq!(s[0].sysfs_hz[1], (1, "scaling_cur_freq".to_string(), 1.2e9));
        assert_eq!(s[1].stat.as_ref().unwrap().cpus[0].1.user, 105);
        assert!(s[1].cpuinfo_hz.is_empty());
    }

    #[test]
    fn the_wall_clock_is_placed_between_the_uptimes_around_it() {
        // `date` took 0.08 s to start in a loaded guest: the pass is timed by the midpoint.
        let s = parse("@@wall 1764000000.50 100.20 100.28\n@@t 101.00\ncpu  1 0 0 1 0 0 0 0 0 0\n");
        assert!((s[0].time - (1764000000.50 - 100.24 + 101.00)).abs() < 1e-6, "{}", s[0].time);
        // An uptime after that is earlier than the one before is ignored.
        let s = parse("@@wall 1764000000.50 100.20 99.0\n@@t 101.00\ncpu  1 0 0 1 0 0 0 0 0 0\n");
        assert!((s[0].time - 1764000001.30).abs() < 1e-6, "{}", s[0].time);
    }

    #[test]
    fn garbage_never_panics() {
        use proptest::prelude::*;
        proptest!(|(text in "(@@wall|@@t|@@sysfs|cpu|processor|cpu MHz|[ :0-9a-z./\\n\\t-]){0,60}")| {
            let _ = parse(&text);
        });
        for junk in ["@@t", "@@wall x y", "@@wall 1 2\n@@t NaN\n@@t inf", "@@wall 1 2\n@@t 3\n@@sysfs /x 5", "\u{0}"] {
            let _ = parse(junk);
        }
    }
}
