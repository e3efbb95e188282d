//! The comparisons, as pure functions of recorded readings: frequency against each reference of
//! the same meaning, usage against /proc/stat and against the phase's expected load, the throttle
//! step in the collector's cgroup readings, and OTLP delivery latency. A reference that is
//! missing, reads the same source as the collector, or is a constant TSC value gives "not
//! comparable" with the reason — never a pass.

use super::perfstat::PerfInterval;
use super::refs::RefSample;
use serde::{Deserialize, Serialize};
use sysmon_collector::frequency::{CounterEvidence, CounterInterval, CounterVerdict};
use sysmon_collector::snapshot::{FrequencySource, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// No load at all (no stress-ng).
    Idle,
    /// One worker pinned to CPU 0.
    One,
    /// One worker per CPU.
    All,
    /// One worker in a cgroup with a CPU quota.
    Throttle,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Idle => "idle",
            PhaseKind::One => "one",
            PhaseKind::All => "all",
            PhaseKind::Throttle => "throttle",
        }
    }

    pub fn parse(s: &str) -> Option<PhaseKind> {
        [PhaseKind::Idle, PhaseKind::One, PhaseKind::All, PhaseKind::Throttle].into_iter().find(|p| p.as_str() == s)
    }
}

/// When a phase ran, in guest Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseWindow {
    pub kind: PhaseKind,
    pub start: f64,
    pub end: f64,
}

impl PhaseWindow {
    /// Inside the phase, after the warm-up (load starting, counters settling).
    pub fn settled(&self, t: f64, warmup: f64) -> bool {
        t >= self.start + warmup && t <= self.end
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    NotComparable,
    /// Shown for context, never judged (a host CPU against a guest vCPU).
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    pub mean: f64,
    pub p95: f64,
    pub max: f64,
}

impl ErrorStats {
    pub fn of(values: &[f64]) -> Option<ErrorStats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let idx = ((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1;
        Some(ErrorStats { mean: v.iter().sum::<f64>() / v.len() as f64, p95: v[idx], max: v[v.len() - 1] })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `frequency`, `usage-vs-proc-stat`, `usage-vs-load`, `throttle-usage`, `throttle-visible`, `otlp-latency`, `host-frequency`.
    pub name: String,
    pub phase: Option<String>,
    pub cpu: Option<String>,
    /// What the collector reported (its frequency source, or `collector`).
    pub source: String,
    /// What it was compared with.
    pub reference: String,
    pub samples: usize,
    pub error: Option<ErrorStats>,
    /// In `unit`: relative % for frequency, percentage points for usage, seconds for latency.
    pub tolerance: f64,
    pub unit: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
}

/// One reading of the host's own CPUs (a core, or a cluster on Apple Silicon), with its time on
/// the guest's clock so it lines up with the guest's readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPoint {
    pub time: f64,
    /// `cpu3` on Linux, `P-Cluster` from powermetrics.
    pub name: String,
    /// `host cpuinfo`, `host cpufreq`, `host powermetrics`.
    pub source: String,
    pub hz: f64,
}

/// Everything the checks look at.
pub struct Inputs<'a> {
    pub phases: &'a [PhaseWindow],
    /// Distinct collector snapshots, oldest first.
    pub collector: &'a [Snapshot],
    pub refs: &'a [RefSample],
    /// perf cycles per CPU per interval, with `t` in guest Unix seconds (end of interval).
    pub perf: &'a [PerfInterval],
    /// Why there is no perf reference, when there is none.
    pub perf_missing: Option<String>,
    pub interval: f64,
    pub warmup: f64,
    /// Relative % (frequency) and percentage points (usage).
    pub tolerance: f64,
    pub throttle_cgroup: &'a str,
    pub throttle_quota_pct: f64,
    /// (host arrival time, newest reading time in the request) for each OTLP request, both in
    /// host Unix seconds (the reading time already corrected by the clock offset).
    pub otlp: &'a [(f64, f64)],
    pub latency_limit: f64,
    /// The host's CPUs during the run (context: a different quantity from a vCPU's frequency).
    pub host: &'a [HostPoint],
    /// Why there are no host readings, when there are none.
    pub host_missing: Option<String>,
}

pub fn snapshot_time(s: &Snapshot) -> f64 {
    s.timestamp_unix_nano as f64 / 1e9
}

fn pct_error(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs() * 100.0
}

fn check(name: &str, phase: Option<PhaseKind>, cpu: Option<String>, source: &str, reference: &str) -> Check {
    Check {
        name: name.into(),
        phase: phase.map(|p| p.as_str().to_string()),
        cpu,
        source: source.into(),
        reference: reference.into(),
        samples: 0,
        error: None,
        tolerance: 0.0,
        unit: String::new(),
        verdict: Verdict::NotComparable,
        reason: None,
    }
}

fn judged(mut c: Check, errors: &[f64], tolerance: f64, unit: &str, by: fn(&ErrorStats) -> f64) -> Check {
    c.samples = errors.len();
    c.error = ErrorStats::of(errors);
    c.tolerance = tolerance;
    c.unit = unit.into();
    c.verdict = match &c.error {
        Some(e) if by(e) <= tolerance => Verdict::Pass,
        Some(_) => Verdict::Fail,
        None => {
            c.reason.get_or_insert_with(|| "no readings in the phase".into());
            Verdict::Fail
        }
    };
    c
}

fn nc(mut c: Check, reason: impl Into<String>) -> Check {
    c.verdict = Verdict::NotComparable;
    c.reason = Some(reason.into());
    c
}

/// A frequency reference: its name, its readings (cpu, guest time, Hz), and why it cannot be
/// compared when it cannot.
type Reference = (String, Vec<(u32, f64, f64)>, Option<String>);

fn references(i: &Inputs) -> Vec<Reference> {
    let mut out = Vec::new();
    let any_cpufreq = i.refs.iter().any(|s| !s.sysfs_hz.is_empty());
    for file in ["scaling_cur_freq", "cpuinfo_cur_freq"] {
        let r: Vec<_> = i
            .refs
            .iter()
            .flat_map(|s| s.sysfs_hz.iter().filter(|(_, f, _)| f == file).map(move |(c, _, hz)| (*c, s.time, *hz)))
            .collect();
        let why = r.is_empty().then(|| {
            if any_cpufreq {
                format!("the guest's cpufreq driver does not expose {file} (or it is not readable)")
            } else {
                "no cpufreq driver in the guest (no cpufreq directory in sysfs)".to_string()
            }
        });
        out.push((format!("sysfs {file}"), r, why));
    }
    let r: Vec<_> = i.refs.iter().flat_map(|s| s.cpuinfo_hz.iter().map(move |(c, hz)| (*c, s.time, *hz))).collect();
    let why = if r.is_empty() {
        Some("no `cpu MHz` in /proc/cpuinfo (usual on aarch64)".to_string())
    } else {
        let (lo, hi) = r.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x.2), hi.max(x.2)));
        ((hi - lo) <= hi * 1e-6).then(|| {
            format!("/proc/cpuinfo shows one constant {:.0} MHz on every CPU in every phase: the TSC rate, not a running frequency", hi / 1e6)
        })
    };
    out.push(("/proc/cpuinfo cpu MHz".into(), r, why));
    // perf: cycles ÷ busy time, busy time from the reference /proc/stat around the interval. The
    // reference counter is judged by the collector's own rule (shared/notes/clarifications.md):
    // a counter that keeps its rate per wall second idle and busy is no clock, so cycles ÷ busy
    // time would be a made-up number (QEMU's emulated PMU under TCG and HVF: 1 GHz whatever the load).
    let mut r = Vec::new();
    let mut evidence: std::collections::BTreeMap<u32, CounterEvidence> = Default::default();
    for p in i.perf {
        let before = i.refs.iter().rev().find(|s| s.time <= p.t - i.interval + 0.5 * i.interval);
        let after = i.refs.iter().find(|s| s.time >= p.t - 0.5 * i.interval);
        let busy = match (before.and_then(|s| cpu_times(s, p.cpu)), after.and_then(|s| cpu_times(s, p.cpu))) {
            (Some(a), Some(b)) => {
                let d = b.since(&a);
                (d.total() > 0).then(|| d.busy() as f64 / d.total() as f64)
            }
            _ => None,
        };
        if let Some(b) = busy {
            evidence.entry(p.cpu).or_default().observe(p.cycles as f64, i.interval, b);
        }
        if let Some(b) = busy.filter(|b| *b > 0.2) {
            r.push((p.cpu, p.t, p.cycles as f64 / (i.interval * b)));
        }
    }
    let constant: Vec<(u32, CounterInterval, CounterInterval)> = evidence
        .iter()
        .filter_map(|(cpu, e)| match e.verdict() {
            CounterVerdict::ConstantRate { idle, busy } => Some((*cpu, idle, busy)),
            _ => None,
        })
        .collect();
    let why = if let Some((cpu, idle, busy)) = constant.first() {
        Some(format!(
            "perf stat's cycles are an emulated constant-rate counter, not a clock: cpu{cpu} counted {:.3} GHz per wall second at {:.0} % busy and {:.3} GHz at {:.0} % busy ({} of {} CPUs seen so)",
            idle.rate_hz / 1e9,
            idle.busy_fraction * 100.0,
            busy.rate_hz / 1e9,
            busy.busy_fraction * 100.0,
            constant.len(),
            evidence.len()
        ))
    } else if r.is_empty() {
        Some(i.perf_missing.clone().unwrap_or_else(|| "perf counted no cycles on a busy CPU".into()))
    } else {
        None
    };
    out.push(("perf stat cycles / busy time".into(), r, why));
    out
}

fn cpu_times(s: &RefSample, cpu: u32) -> Option<sysmon_collector::parse::stat::CpuTimes> {
    s.stat.as_ref()?.cpus.iter().find(|(c, _)| *c == cpu).map(|(_, t)| *t)
}

/// Whether the collector's reading and a reference measure the same thing from the same place,
/// or the collector published no frequency to compare (`counter_rate_hz`: its measured counter rate).
fn same_source(
    source: FrequencySource,
    detail: Option<&str>,
    counter_rate_hz: Option<f64>,
    reference: &str,
) -> Option<String> {
    let rate = counter_rate_hz.map(|r| format!(" (measured {:.3} GHz per wall second)", r / 1e9)).unwrap_or_default();
    match source {
        FrequencySource::Cpufreq if detail.is_some_and(|d| reference.ends_with(d)) => {
            Some(format!("the collector reads the same file ({})", detail.unwrap_or("")))
        }
        FrequencySource::Cpuinfo if reference.starts_with("/proc/cpuinfo") => {
            Some("the collector reads the same source (/proc/cpuinfo)".into())
        }
        FrequencySource::Perf if reference.starts_with("perf") => {
            Some("the collector counts the same cycles (perf)".into())
        }
        FrequencySource::PerfSynthetic => Some(format!(
            "the collector publishes no frequency: its cycle counter is an emulated constant-rate counter (perf-synthetic){rate}, not a clock"
        )),
        FrequencySource::PerfUnverified => Some(format!(
            "the collector publishes no frequency: it was still checking whether its cycle counter is a clock (perf-unverified){rate}"
        )),
        FrequencySource::None => Some("the collector reports no frequency in this guest".into()),
        _ => None,
    }
}

pub fn frequency(i: &Inputs) -> Vec<Check> {
    let mut out = Vec::new();
    let cpus: Vec<(u32, String)> = i
        .collector
        .last()
        .map(|s| s.cpus.iter().map(|c| (c.logical_number, c.cpu.clone())).collect())
        .unwrap_or_default();
    let refs = references(i);
    for (n, cpu) in &cpus {
        let reading = |s: &Snapshot| s.cpus.iter().find(|c| c.logical_number == *n).cloned();
        let last = i.collector.last().and_then(reading);
        let source = last.as_ref().map(|c| c.frequency_source).unwrap_or(FrequencySource::None);
        let detail = last.as_ref().and_then(|c| c.frequency_detail.clone());
        let counter_rate = last.as_ref().and_then(|c| c.counter_rate_hz);
        for (name, readings, missing) in &refs {
            let c = check("frequency", None, Some(cpu.clone()), source.as_str(), name);
            // A collector that published no frequency is the first reason for every reference.
            if matches!(source, FrequencySource::PerfSynthetic | FrequencySource::PerfUnverified) {
                let mut why = same_source(source, detail.as_deref(), counter_rate, name).unwrap_or_default();
                if let Some(m) = missing {
                    why.push_str(&format!("; the reference: {m}"));
                }
                out.push(nc(c, why));
                continue;
            }
            if let Some(why) = missing {
                out.push(nc(c, why.clone()));
                continue;
            }
            if let Some(why) = same_source(source, detail.as_deref(), counter_rate, name) {
                out.push(nc(c, why));
                continue;
            }
            for p in i.phases {
                let mut errors = Vec::new();
                for s in i.collector.iter().filter(|s| p.settled(snapshot_time(s), i.warmup)) {
                    let (t, Some(hz)) = (snapshot_time(s), reading(s).and_then(|c| c.frequency_hz)) else { continue };
                    let nearest = readings
                        .iter()
                        .filter(|(c, rt, _)| c == n && (rt - t).abs() <= 0.75 * i.interval.max(1.0))
                        .min_by(|a, b| (a.1 - t).abs().total_cmp(&(b.1 - t).abs()));
                    if let Some((_, _, r)) = nearest.filter(|r| r.2 > 0.0) {
                        errors.push(pct_error(hz, *r));
                    }
                }
                let mut c = check("frequency", Some(p.kind), Some(cpu.clone()), source.as_str(), name);
                if errors.is_empty() {
                    out.push(nc(c, "no reading of the reference close enough in time to the collector's"));
                } else {
                    c.reason =
                        Some("relative error of each collector reading against the nearest reference reading".into());
                    out.push(judged(c, &errors, i.tolerance, "relative %", |e| e.p95));
                }
            }
        }
    }
    out
}

/// Busy share of a CPU (None: the total) between the first and last reference readings in the window.
fn ref_usage(i: &Inputs, p: &PhaseWindow, cpu: Option<u32>) -> Option<f64> {
    let inside: Vec<&RefSample> = i.refs.iter().filter(|s| p.settled(s.time, i.warmup) && s.stat.is_some()).collect();
    let (a, b) = (inside.first()?, inside.last()?);
    let pick = |s: &RefSample| match cpu {
        Some(c) => cpu_times(s, c),
        None => s.stat.as_ref()?.total,
    };
    let d = pick(b)?.since(&pick(a)?);
    (d.total() > 0).then(|| d.busy() as f64 / d.total() as f64 * 100.0)
}

/// A CPU's (None: the total's) cumulative busy and total ticks in one reference reading.
fn ref_ticks(s: &RefSample, cpu: Option<u32>) -> Option<(f64, f64)> {
    let t = match cpu {
        Some(c) => cpu_times(s, c)?,
        None => s.stat.as_ref()?.total?,
    };
    Some((t.busy() as f64, t.total() as f64))
}

/// The reference's cumulative (busy, total) ticks of a CPU (None: the total) at guest time `t`,
/// interpolated linearly between the last reading at or before `t` and the first at or after it.
/// None outside the readings: never extrapolated.
pub fn ref_ticks_at(refs: &[RefSample], cpu: Option<u32>, t: f64) -> Option<(f64, f64)> {
    let with = |s: &&RefSample| s.time.is_finite() && ref_ticks(s, cpu).is_some();
    let before = refs.iter().filter(with).filter(|s| s.time <= t).max_by(|a, b| a.time.total_cmp(&b.time))?;
    let after = refs.iter().filter(with).filter(|s| s.time >= t).min_by(|a, b| a.time.total_cmp(&b.time))?;
    let (a, b) = (ref_ticks(before, cpu)?, ref_ticks(after, cpu)?);
    let span = after.time - before.time;
    if span <= 0.0 {
        return Some(a);
    }
    let f = (t - before.time) / span;
    Some((a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f))
}

/// The reference's busy share in percent over exactly `[from, to]` (guest times), from its
/// counters interpolated to both ends; None when the readings do not cover it or no tick passed.
pub fn ref_usage_between(refs: &[RefSample], cpu: Option<u32>, from: f64, to: f64) -> Option<f64> {
    let (a, b) = (ref_ticks_at(refs, cpu, from)?, ref_ticks_at(refs, cpu, to)?);
    let (busy, total) = ((b.0 - a.0).max(0.0), b.1 - a.1);
    (total > 0.0).then(|| (busy / total * 100.0).min(100.0))
}

/// For each settled collector snapshot of the phase whose window (its `interval_seconds` up to
/// its timestamp) the reference readings cover: (the collector's usage, the reference's usage
/// over exactly that window). Comparing these compares the same intervals, whichever snapshots
/// the polling saw and wherever the reference's own readings fell.
pub fn matched_usage(i: &Inputs, p: &PhaseWindow, cpu: Option<u32>) -> Vec<(f64, f64)> {
    i.collector
        .iter()
        .filter(|s| p.settled(snapshot_time(s), i.warmup))
        .filter_map(|s| {
            let dt = s.interval_seconds.filter(|d| d.is_finite() && *d > 0.0)?;
            let u = match cpu {
                Some(c) => s.cpus.iter().find(|r| r.logical_number == c)?.usage?.usage_pct,
                None => s.cpu_total?.usage_pct,
            };
            let t = snapshot_time(s);
            Some((u, ref_usage_between(i.refs, cpu, t - dt, t)?))
        })
        .collect()
}

fn collector_usage(i: &Inputs, p: &PhaseWindow, cpu: Option<u32>) -> Vec<f64> {
    i.collector
        .iter()
        .filter(|s| p.settled(snapshot_time(s), i.warmup))
        .filter_map(|s| match cpu {
            Some(c) => s.cpus.iter().find(|r| r.logical_number == c)?.usage.map(|u| u.usage_pct),
            None => s.cpu_total.map(|u| u.usage_pct),
        })
        .collect()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

pub fn usage(i: &Inputs) -> Vec<Check> {
    let mut out = Vec::new();
    let ncpu = i.collector.last().map(|s| s.cpus.len()).unwrap_or(0) as u32;
    for p in i.phases {
        let targets: Vec<Option<u32>> = std::iter::once(None).chain((0..ncpu).map(Some)).collect();
        for cpu in &targets {
            let label = cpu.map(|c| format!("cpu{c}")).unwrap_or_else(|| "total".into());
            let col = collector_usage(i, p, *cpu);
            let c =
                check("usage-vs-proc-stat", Some(p.kind), Some(label.clone()), "collector", "/proc/stat read directly");
            let pairs = matched_usage(i, p, *cpu);
            let (m, r) = (
                mean(&pairs.iter().map(|x| x.0).collect::<Vec<_>>()),
                mean(&pairs.iter().map(|x| x.1).collect::<Vec<_>>()),
            );
            if let (Some(m), Some(r)) = (m, r) {
                let mut c = judged(c, &[(m - r).abs()], i.tolerance, "pp", |e| e.max);
                c.samples = pairs.len();
                c.reason = Some(format!(
                    "collector {m:.1} % vs /proc/stat {r:.1} % over the same {} collector intervals (the reference's counters interpolated to each interval's ends)",
                    pairs.len()
                ));
                out.push(c);
                continue;
            }
            // Snapshots without their window's length (an older collector): first to last reading.
            match (mean(&col), ref_usage(i, p, *cpu)) {
                (Some(m), Some(r)) => {
                    let mut c = judged(c, &[(m - r).abs()], i.tolerance, "pp", |e| e.max);
                    c.samples = col.len();
                    c.reason = Some(format!("collector {m:.1} % vs /proc/stat {r:.1} % over the phase"));
                    out.push(c);
                }
                _ => out.push(judged(c, &[], i.tolerance, "pp", |e| e.max)),
            }
        }
        // Against the load itself, where the phase defines it.
        let expected: Vec<(Option<u32>, f64)> = match p.kind {
            PhaseKind::Idle => vec![(None, 0.0)],
            PhaseKind::One => vec![(Some(0), 100.0)],
            PhaseKind::All => (0..ncpu).map(|c| (Some(c), 100.0)).collect(),
            PhaseKind::Throttle => vec![],
        };
        for (cpu, want) in expected {
            let label = cpu.map(|c| format!("cpu{c}")).unwrap_or_else(|| "total".into());
            let col = collector_usage(i, p, cpu);
            let c = check(
                "usage-vs-load",
                Some(p.kind),
                Some(label),
                "collector",
                &format!("expected {want:.0} % (the phase's load)"),
            );
            let achieved = ref_usage(i, p, cpu);
            let mut c = match (mean(&col), achieved) {
                // Judged against the load as the guest's own kernel accounted for it: a load that
                // is off its nominal level (an idle guest's own background is ~5 % busy under TCG)
                // widens the tolerance by exactly that, no more.
                (Some(m), Some(r)) => {
                    let shortfall = (r - want).abs();
                    let mut c = judged(c, &[(m - want).abs()], i.tolerance + shortfall, "pp", |e| e.max);
                    c.reason = Some(format!(
                        "collector {m:.1} % while the load asks for {want:.0} % and /proc/stat saw {r:.1} % (tolerance {:.0} pp + the load's own shortfall {shortfall:.1} pp)",
                        i.tolerance
                    ));
                    c
                }
                (Some(m), None) => {
                    let mut c = judged(c, &[(m - want).abs()], i.tolerance, "pp", |e| e.max);
                    c.reason = Some(format!("collector {m:.1} % while the load asks for {want:.0} %"));
                    c
                }
                (None, _) => judged(c, &[], i.tolerance, "pp", |e| e.max),
            };
            c.samples = col.len();
            out.push(c);
        }
    }
    out
}

pub fn throttle(i: &Inputs) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(p) = i.phases.iter().find(|p| p.kind == PhaseKind::Throttle) else { return out };
    let seen: Vec<_> = i
        .collector
        .iter()
        .filter(|s| p.settled(snapshot_time(s), i.warmup))
        .filter_map(|s| s.containers.iter().find(|c| c.id == i.throttle_cgroup).cloned())
        .collect();
    let usage: Vec<f64> = seen.iter().filter_map(|c| c.cpu_usage_pct).collect();
    let reference = format!("CPUQuota={:.0}%", i.throttle_quota_pct);
    let c = check("throttle-usage", Some(p.kind), Some(i.throttle_cgroup.into()), "collector cgroup usage", &reference);
    match mean(&usage) {
        Some(m) => {
            let mut c = judged(c, &[(m - i.throttle_quota_pct).abs()], i.tolerance, "pp", |e| e.max);
            c.samples = usage.len();
            c.reason = Some(format!(
                "the collector saw the cgroup use {m:.1} % of a CPU under a {:.0} % quota",
                i.throttle_quota_pct
            ));
            out.push(c);
        }
        None => {
            let mut c = judged(c, &[], i.tolerance, "pp", |e| e.max);
            c.reason = Some(format!("the collector never reported cgroup {} during the phase", i.throttle_cgroup));
            out.push(c);
        }
    }
    // The drop must show in the telemetry: the limit, throttled periods rising, and less than the
    // unthrottled load of the `one` phase.
    let mut c = check(
        "throttle-visible",
        Some(p.kind),
        Some(i.throttle_cgroup.into()),
        "collector cgroup",
        "cpu.max / cpu.stat",
    );
    let limit = seen.last().and_then(|c| c.cpu_limit_cores);
    let periods =
        (seen.first().and_then(|c| c.cpu_throttled_periods), seen.last().and_then(|c| c.cpu_throttled_periods));
    let unthrottled =
        i.phases.iter().find(|p| p.kind == PhaseKind::One).and_then(|one| mean(&collector_usage(i, one, Some(0))));
    let limit_ok = limit.is_some_and(|l| (l * 100.0 - i.throttle_quota_pct).abs() < 0.5);
    let rising = matches!(periods, (Some(a), Some(b)) if b > a);
    // The drop from the unthrottled level (what the `one` phase really reached) down to the quota.
    let drop_ok = match (unthrottled, mean(&usage)) {
        (Some(u), Some(t)) => u - t >= (u - i.throttle_quota_pct) - i.tolerance,
        _ => true, // no `one` phase to compare with: the limit and the periods decide
    };
    c.samples = seen.len();
    c.verdict = if limit_ok && rising && drop_ok { Verdict::Pass } else { Verdict::Fail };
    let too_few = if seen.len() < 2 {
        format!(
            "; only {} collector sample(s) after the {:.0} s warm-up: a longer --duration-per-phase is needed to see periods rise",
            seen.len(),
            i.warmup
        )
    } else {
        String::new()
    };
    c.reason = Some(format!(
        "limit {} cores, throttled periods {} → {}{}{too_few}",
        limit.map(|l| format!("{l:.2}")).unwrap_or_else(|| "not reported".into()),
        periods.0.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        periods.1.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        match (unthrottled, mean(&usage)) {
            (Some(u), Some(t)) => format!(", usage {u:.1} % unthrottled (phase one) → {t:.1} % throttled"),
            _ => String::new(),
        }
    ));
    out.push(c);
    out
}

pub fn latency(i: &Inputs) -> Vec<Check> {
    let errors: Vec<f64> = i.otlp.iter().map(|(arrived, taken)| arrived - taken).collect();
    let mut c = check("otlp-latency", None, None, "collector OTLP push", "arrival at validate's OTLP receiver");
    if errors.is_empty() {
        c.reason = Some("no OTLP request reached the receiver".into());
    } else {
        c.reason = Some(
            "from the reading's own timestamp to its arrival, corrected by the measured guest-host clock offset".into(),
        );
    }
    vec![judged(c, &errors, i.latency_limit, "s", |e| e.max)]
}

/// The host's clocks per phase, shown beside the guest's and labelled as a different meaning.
pub fn host(i: &Inputs) -> Vec<Check> {
    let mut out = Vec::new();
    for p in i.phases {
        let inside: Vec<&HostPoint> = i.host.iter().filter(|h| p.settled(h.time, i.warmup)).collect();
        let mut c = check(
            "host-frequency",
            Some(p.kind),
            Some("host".into()),
            "host monitor",
            "guest vCPUs (different meaning)",
        );
        c.verdict = Verdict::Info;
        c.samples = inside.len();
        c.reason = Some(match (inside.is_empty(), &i.host_missing) {
            (true, Some(why)) => format!("no host readings: {why}"),
            (true, None) => "no host readings in this phase".into(),
            (false, _) => {
                let mut names: Vec<&str> = inside.iter().map(|h| h.name.as_str()).collect();
                names.sort();
                names.dedup();
                let avg = inside.iter().map(|h| h.hz).sum::<f64>() / inside.len() as f64;
                format!(
                    "the host's {} ({}) averaged {:.2} GHz; a vCPU runs on whichever host core the scheduler picks, so this is context for the guest's numbers, not a reference for them",
                    names.len(),
                    inside[0].source,
                    avg / 1e9
                )
            }
        });
        out.push(c);
    }
    out
}

pub fn all(i: &Inputs) -> Vec<Check> {
    let mut out = frequency(i);
    out.extend(usage(i));
    out.extend(throttle(i));
    out.extend(latency(i));
    out.extend(host(i));
    out
}

/// Exit status: 0 every comparable check passed, 1 a check failed, 3 nothing was comparable.
/// `require_frequency` turns "frequency not comparable" into a failure.
pub fn exit_status(checks: &mut [Check], require_frequency: bool) -> i32 {
    if require_frequency {
        let any_freq_pass = checks.iter().any(|c| c.name == "frequency" && c.verdict == Verdict::Pass);
        if !any_freq_pass {
            for c in checks.iter_mut().filter(|c| c.name == "frequency" && c.verdict == Verdict::NotComparable) {
                c.verdict = Verdict::Fail;
                c.reason = Some(format!("--require-frequency: {}", c.reason.clone().unwrap_or_default()));
            }
        }
    }
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        crate::exit::ERROR
    } else if !checks.iter().any(|c| c.verdict == Verdict::Pass) {
        crate::exit::NOT_READY
    } else {
        crate::exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_collector::parse::stat::{CpuTimes, ProcStat};

    /// A reference reading at `time` with cpu0's and the total's cumulative (busy, idle) ticks.
    fn reading(time: f64, busy: u64, idle: u64) -> RefSample {
        let t = CpuTimes { user: busy, idle, ..Default::default() };
        RefSample {
            time,
            stat: Some(ProcStat { total: Some(t), cpus: vec![(0, t)], bad_lines: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn reference_counters_interpolate_between_readings_and_never_beyond() {
        // The guest's /proc/stat at USER_HZ 100, read 1.02 s apart: 61 busy ticks of 102.
        let refs = [reading(1_764_000_010.20, 51_234, 98_000), reading(1_764_000_011.22, 51_295, 98_041)];
        let (busy, total) = ref_ticks_at(&refs, Some(0), 1_764_000_010.71).unwrap();
        assert!((busy - 51_264.5).abs() < 1e-3 && (total - (149_234.0 + 51.0)).abs() < 1e-3, "{busy} {total}");
        assert_eq!(ref_ticks_at(&refs, None, 1_764_000_010.20), Some((51_234.0, 149_234.0)));
        assert_eq!(ref_ticks_at(&refs, Some(0), 1_764_000_010.19), None);
        assert_eq!(ref_ticks_at(&refs, Some(0), 1_764_000_011.23), None);
        assert_eq!(ref_ticks_at(&refs, Some(1), 1_764_000_010.71), None, "no such CPU");
        let u = ref_usage_between(&refs, Some(0), 1_764_000_010.40, 1_764_000_011.0).unwrap();
        assert!((u - 61.0 / 102.0 * 100.0).abs() < 1e-9, "{u}");
        // A reading without /proc/stat is skipped; no tick in the window gives no usage.
        let mut gap = refs.to_vec();
        gap.insert(1, RefSample { time: 1_764_000_010.7, ..Default::default() });
        assert_eq!(ref_ticks_at(&gap, Some(0), 1_764_000_010.71), ref_ticks_at(&refs, Some(0), 1_764_000_010.71));
        assert_eq!(ref_usage_between(&refs, Some(0), 1_764_000_010.5, 1_764_000_010.5), None);
    }
}
