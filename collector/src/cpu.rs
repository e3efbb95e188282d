//! The `cpu` source: the CPU list, per-CPU and machine-wide usage from `/proc/stat` deltas, and the
//! load average. The frequency fields of each [`CpuReading`] are left empty here and filled by the
//! `frequency` source, which reads next.

use crate::files::{KernelFiles, read_optional};
use crate::parse::{self, stat::CpuTimes, stat::ProcStat};
use crate::roots::Roots;
use crate::snapshot::{CpuReading, CpuSeconds, CpuUsage, FrequencySource, Load};
use crate::warnings::Warnings;

/// What the `cpu` source read in one sample.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    pub cpus: Vec<CpuReading>,
    pub total: Option<CpuUsage>,
    pub load: Option<Load>,
    /// This sample's /proc/stat times: the next sample's "before", and this sample's ticks for the
    /// frequency source (cycles ÷ busy time).
    pub stat: ProcStat,
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { part as f64 * 100.0 / total as f64 }
}

/// Usage over `delta`, with the cumulative seconds of `cumulative`, in USER_HZ `ticks` a second.
pub fn usage(delta: &CpuTimes, cumulative: &CpuTimes, ticks: f64) -> CpuUsage {
    let t = delta.total();
    let s = |v: u64| v as f64 / ticks;
    CpuUsage {
        usage_pct: pct(delta.busy(), t),
        user_pct: pct(delta.user, t),
        nice_pct: pct(delta.nice, t),
        system_pct: pct(delta.system, t),
        idle_pct: pct(delta.idle, t),
        iowait_pct: pct(delta.iowait, t),
        irq_pct: pct(delta.irq, t),
        softirq_pct: pct(delta.softirq, t),
        steal_pct: pct(delta.steal, t),
        seconds: CpuSeconds {
            user: s(cumulative.user),
            nice: s(cumulative.nice),
            system: s(cumulative.system),
            idle: s(cumulative.idle),
            iowait: s(cumulative.iowait),
            irq: s(cumulative.irq),
            softirq: s(cumulative.softirq),
            steal: s(cumulative.steal),
        },
    }
}

fn times_of(stat: &ProcStat, cpu: u32) -> Option<CpuTimes> {
    stat.cpus.iter().find(|(c, _)| *c == cpu).map(|(_, t)| *t)
}

/// The ticks CPU `cpu` spent in each state between `before` and `now`; None without both lines.
pub fn delta(now: &ProcStat, before: Option<&ProcStat>, cpu: u32) -> Option<CpuTimes> {
    Some(times_of(now, cpu)?.since(&times_of(before?, cpu)?))
}

/// A CPU with its usage and no frequency yet (the frequency source fills those fields).
fn reading(n: u32, usage: Option<CpuUsage>) -> CpuReading {
    CpuReading {
        cpu: format!("cpu{n}"),
        logical_number: n,
        frequency_hz: None,
        frequency_source: FrequencySource::None,
        frequency_detail: None,
        frequency_note: None,
        counter_rate_hz: None,
        frequency_min_hz: None,
        frequency_max_hz: None,
        governor: None,
        driver: None,
        policy: None,
        usage,
    }
}

/// Reads /proc/stat and /proc/loadavg. Usage needs `previous` (the last sample's /proc/stat).
pub fn read(
    roots: &Roots,
    files: &mut KernelFiles,
    previous: Option<&ProcStat>,
    clock_ticks: f64,
    w: &mut Warnings,
) -> CpuSample {
    let stat_path = roots.proc("stat");
    let stat = files.or_warn(&stat_path, w).map(|t| parse::stat::parse(&t)).unwrap_or_default();
    if stat.bad_lines > 0 {
        w.file(&stat_path, format!("{} cpu line(s) unreadable", stat.bad_lines));
    }
    let cpu_ids: Vec<u32> = if stat.cpus.is_empty() {
        read_optional(&roots.cpu_dir().join("online")).and_then(|t| parse::cpulist::parse(&t)).unwrap_or_default()
    } else {
        stat.cpus.iter().map(|(n, _)| *n).collect()
    };
    let cpus = cpu_ids
        .iter()
        .map(|&n| {
            let cpu_usage = match (delta(&stat, previous, n), times_of(&stat, n)) {
                (Some(d), Some(t)) if d.total() > 0 => Some(usage(&d, &t, clock_ticks)),
                _ => None,
            };
            reading(n, cpu_usage)
        })
        .collect();
    let total = match (stat.total, previous.and_then(|p| p.total)) {
        (Some(t), Some(b)) if t.since(&b).total() > 0 => Some(usage(&t.since(&b), &t, clock_ticks)),
        _ => None,
    };

    let load_path = roots.proc("loadavg");
    let load = files.or_warn(&load_path, w).and_then(|t| {
        let l = parse::loadavg::parse(&t);
        if l.is_none() {
            w.file(&load_path, "unparsable");
        }
        l.map(|l| Load { load1: l.load1, load5: l.load5, load15: l.load15 })
    });
    CpuSample { cpus, total, load, stat }
}
