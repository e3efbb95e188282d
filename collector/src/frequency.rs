//! Per-CPU frequency: reading cpufreq sysfs, and the pure choice between sources.
//!
//! Chain (shared/notes/clarifications.md): `cpuinfo_avg_freq` → `scaling_cur_freq` →
//! `cpuinfo_cur_freq` (all `cpufreq`) → cycles ÷ busy time (`perf`, only for a counter the
//! collector has *seen* slow down while its CPU idled) → `cpu MHz` (`cpuinfo`) → a counter that is
//! not a clock: `perf-synthetic` (seen to keep its rate idle and busy: a fixed virtual clock) or
//! `perf-unverified` (not yet seen both idle and busy) — neither publishes a frequency, both report
//! the counter's rate as `counter_rate_hz` → `none`. A null value always comes with a note saying
//! why. Measurement decides ([`CounterEvidence`]); vendor strings ([`Platform`]) are only quoted in
//! the notes. BogoMIPS and SMBIOS speeds are never read as a frequency.

use crate::files::{KernelFiles, read_optional};
use crate::parse::{self, cpuinfo::CpuInfo, cpulist, stat::ProcStat};
use crate::perf::{CounterValue, CycleCounters};
use crate::platform::Platform;
use crate::roots::Roots;
use crate::snapshot::{CpuReading, FrequencySource};
use crate::warnings::Warnings;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The current-frequency files, best first (all in kHz).
const CURRENT_FILES: [&str; 3] = ["cpuinfo_avg_freq", "scaling_cur_freq", "cpuinfo_cur_freq"];

/// Below this share of the interval busy, cycles ÷ busy time is mostly noise from /proc/stat's tick granularity.
pub const MIN_BUSY_FRACTION: f64 = 0.05;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpufreqReading {
    pub khz: Option<u64>,
    pub file: Option<&'static str>,
    /// Why no current value was usable, when there is none.
    pub note: Option<String>,
    pub min_khz: Option<u64>,
    pub max_khz: Option<u64>,
    pub governor: Option<String>,
    pub driver: Option<String>,
    pub policy: Option<String>,
}

/// After this many samples the directory layout and the static files (min, max, driver, policy)
/// are read again; in between, a sample reads one current-frequency file and the governor per CPU.
const REFRESH_EVERY: u32 = 60;

/// What does not change between samples for one CPU's cpufreq directory.
#[derive(Debug, Clone)]
struct CpufreqEntry {
    dir: PathBuf,
    /// The current-frequency files this directory has, best first.
    current_files: Vec<&'static str>,
    min_khz: Option<u64>,
    max_khz: Option<u64>,
    driver: Option<String>,
    policy: Option<String>,
}

/// Finds each CPU's cpufreq directory — `cpuN/cpufreq` (often a symlink to `cpufreq/policyM`),
/// else the policy whose `related_cpus` names the CPU — and keeps its static facts.
#[derive(Debug, Default)]
pub struct CpufreqCache {
    policies: Option<Vec<(PathBuf, Vec<u32>)>>,
    entries: HashMap<u32, Option<CpufreqEntry>>,
    samples: u32,
}

fn discover_policies(roots: &Roots) -> Vec<(PathBuf, Vec<u32>)> {
    let mut policies = Vec::new();
    if let Ok(entries) = std::fs::read_dir(roots.cpu_dir().join("cpufreq")) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with("policy") {
                continue;
            }
            let path = e.path();
            let cpus = ["related_cpus", "affected_cpus"]
                .iter()
                .find_map(|f| read_optional(&path.join(f)).and_then(|t| cpulist::parse(&t)));
            if let Some(cpus) = cpus {
                policies.push((path, cpus));
            }
        }
    }
    policies.sort();
    policies
}

/// A one-value sysfs field, under the small field cap (a governor or driver name, a frequency).
fn read_trimmed(path: &Path) -> Option<String> {
    crate::files::field_optional(path)
}

fn read_khz(path: &Path) -> Option<u64> {
    read_trimmed(path).and_then(|t| parse::single_u64(&t)).filter(|v| *v > 0)
}

impl CpufreqCache {
    /// Call once per sample: every [`REFRESH_EVERY`] samples the cached layout is dropped.
    pub fn begin_sample(&mut self) {
        if self.samples.is_multiple_of(REFRESH_EVERY) {
            self.policies = None;
            self.entries.clear();
        }
        self.samples = self.samples.wrapping_add(1);
    }

    fn entry(&mut self, roots: &Roots, cpu: u32) -> Option<&CpufreqEntry> {
        if !self.entries.contains_key(&cpu) {
            let own = roots.cpu_dir().join(format!("cpu{cpu}/cpufreq"));
            let dir = if own.is_dir() {
                Some(own)
            } else {
                let policies = self.policies.get_or_insert_with(|| discover_policies(roots));
                policies.iter().find(|(_, cpus)| cpus.contains(&cpu)).map(|(p, _)| p.clone())
            };
            let entry = dir.map(|dir| CpufreqEntry {
                current_files: CURRENT_FILES.iter().copied().filter(|f| dir.join(f).exists()).collect(),
                min_khz: read_khz(&dir.join("cpuinfo_min_freq")),
                max_khz: read_khz(&dir.join("cpuinfo_max_freq")),
                driver: read_trimmed(&dir.join("scaling_driver")),
                // The canonical name says which policy (cluster) this CPU is in: `policy3`.
                policy: std::fs::canonicalize(&dir)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .filter(|n| n.starts_with("policy")),
                dir,
            });
            self.entries.insert(cpu, entry);
        }
        self.entries.get(&cpu).and_then(|e| e.as_ref())
    }

    /// The CPU's cpufreq reading, or None when it has no cpufreq directory. Unparsable values
    /// (some drivers print `<unknown>`) are treated as unreadable, never as 0.
    pub fn read(&mut self, roots: &Roots, cpu: u32, files: &mut KernelFiles) -> Option<CpufreqReading> {
        let e = self.entry(roots, cpu)?;
        let fresh = |files: &mut KernelFiles, p: &Path| files.field(p);
        let mut r = CpufreqReading {
            min_khz: e.min_khz,
            max_khz: e.max_khz,
            driver: e.driver.clone(),
            policy: e.policy.clone(),
            governor: fresh(files, &e.dir.join("scaling_governor")),
            ..Default::default()
        };
        let mut problems = Vec::new();
        for file in &e.current_files {
            match fresh(files, &e.dir.join(file)) {
                Some(text) => match parse::single_u64(&text).filter(|v| *v > 0) {
                    Some(khz) => {
                        r.khz = Some(khz);
                        r.file = Some(file);
                        break;
                    }
                    None => {
                        problems.push(format!("{file} unparsable ({:?})", text.chars().take(32).collect::<String>()))
                    }
                },
                None => problems.push(format!("{file} unreadable")),
            }
        }
        if r.khz.is_none() {
            r.note = Some(if problems.is_empty() {
                "cpufreq directory has no current-frequency file".into()
            } else {
                problems.join("; ")
            });
        }
        Some(r)
    }
}

/// What the cycle counter offered for this CPU over the interval.
#[derive(Debug, Clone, PartialEq)]
pub enum PerfInput {
    /// No counter: the reason (no PMU, not permitted, disabled).
    Unavailable(String),
    /// A counter, but nothing to compare yet (first sample).
    NoInterval,
    Reading {
        /// Cycles counted over the interval (scaled up when the PMU was multiplexed).
        cycles: f64,
        /// Wall-clock length of the interval.
        wall_seconds: f64,
        /// Time the CPU was busy in the interval, from /proc/stat.
        busy_seconds: f64,
        /// Busy share of the interval (0–1), from /proc/stat.
        busy_fraction: f64,
    },
}

// What tells a clock from a constant-rate counter (shared/notes/clarifications.md, first section).
// A real core clock's cycle count stops or slows when its core idles, so its rate per wall second
// is roughly (frequency × busy fraction); QEMU's emulated arm PMU (TCG and HVF) counts 1e9 per
// wall second of virtual time whatever the load (the arm64 probe: 1.0e9 idle and busy alike).
// The collector compares the latest "idle" interval with the latest "busy" one.

/// An interval under this busy share is "idle" evidence ("mostly idle": under about 20 % busy).
pub const IDLE_MAX_BUSY_FRACTION: f64 = 0.20;
/// An interval at least this busy is "busy" evidence: at most 0.2 / 0.5 = 0.4× the busy interval's
/// running time is in the idle one, so a clock's idle rate is at most ~0.4× its busy rate.
pub const BUSY_MIN_BUSY_FRACTION: f64 = 0.50;
/// A clock: the idle interval's rate per wall second is below this share of the busy interval's.
/// 0.5 rather than 0.4 leaves room for an idle core running up to 25 % faster than a busy one
/// (single-core turbo vs. all-core), while a constant-rate counter (ratio ≈ 1) is far from it.
pub const CLOCK_MAX_IDLE_RATIO: f64 = 0.5;
/// A constant-rate counter: the idle interval's rate is within this share of the busy interval's.
/// QEMU's counter measured 1.004e9 idle vs 1.000e9 busy (0.4 %); 10 % absorbs the collector being
/// scheduled late on a loaded host. A real clock would need to run 2.25× faster idle than busy
/// (0.9 × 0.5 / 0.2) to land here.
pub const CONSTANT_RATE_TOLERANCE: f64 = 0.10;
/// A busy interval counting fewer cycles per wall second than this is no reference: the counter
/// barely advanced while the CPU worked, so neither verdict can be drawn from it.
pub const MIN_REFERENCE_RATE_HZ: f64 = 1e6;
/// Rates or frequencies above this (100 GHz) are garbage (a broken counter, a bogus interval),
/// never evidence and never a value.
pub const MAX_PLAUSIBLE_RATE_HZ: f64 = 1e11;

/// One interval of a counter as evidence: cycles per wall second and how busy the CPU was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterInterval {
    pub rate_hz: f64,
    pub busy_fraction: f64,
}

/// What the measurements say a CPU's cycle counter is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum CounterVerdict {
    /// Not yet seen both an idle and a busy interval that settle it: no frequency from it.
    #[default]
    Unverified,
    /// Seen to slow down with its CPU idle: it follows the CPU's clock (`perf`).
    Clock { idle: CounterInterval, busy: CounterInterval },
    /// Seen to keep its rate per wall second idle and busy: a fixed virtual clock (`perf-synthetic`).
    ConstantRate { idle: CounterInterval, busy: CounterInterval },
}

/// Per-CPU evidence about a cycle counter, fed one interval per sample. Once a verdict is reached
/// it is kept: what a counter is does not change while the collector runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterEvidence {
    verdict: CounterVerdict,
    last_idle: Option<CounterInterval>,
    last_busy: Option<CounterInterval>,
    /// The latest interval of any kind, for the note while nothing settles it.
    last: Option<CounterInterval>,
}

/// Cycles per wall second, when the numbers make one (finite, non-negative, plausible).
pub fn counter_rate(cycles: f64, wall_seconds: f64) -> Option<f64> {
    if !(cycles.is_finite() && cycles >= 0.0 && wall_seconds.is_finite() && wall_seconds > 0.0) {
        return None;
    }
    Some(cycles / wall_seconds).filter(|r| r.is_finite() && *r <= MAX_PLAUSIBLE_RATE_HZ)
}

fn valid_fraction(f: f64) -> bool {
    f.is_finite() && (0.0..=1.0).contains(&f)
}

/// The verdict one idle and one busy interval support, if any.
fn judge(idle: CounterInterval, busy: CounterInterval) -> CounterVerdict {
    if busy.rate_hz < MIN_REFERENCE_RATE_HZ {
        return CounterVerdict::Unverified;
    }
    let ratio = idle.rate_hz / busy.rate_hz;
    if ratio < CLOCK_MAX_IDLE_RATIO {
        CounterVerdict::Clock { idle, busy }
    } else if (ratio - 1.0).abs() <= CONSTANT_RATE_TOLERANCE {
        CounterVerdict::ConstantRate { idle, busy }
    } else {
        CounterVerdict::Unverified
    }
}

fn ghz(hz: f64) -> String {
    format!("{:.3} GHz", hz / 1e9)
}

fn pct(fraction: f64) -> String {
    format!("{:.0} % busy", fraction * 100.0)
}

impl CounterEvidence {
    pub fn verdict(&self) -> CounterVerdict {
        self.verdict
    }

    /// Feeds one interval. Garbage (NaN, infinite, negative, a zero-length interval, a busy share
    /// outside 0–1, an implausible rate) is ignored.
    pub fn observe(&mut self, cycles: f64, wall_seconds: f64, busy_fraction: f64) {
        let Some(rate_hz) = counter_rate(cycles, wall_seconds) else { return };
        if !valid_fraction(busy_fraction) {
            return;
        }
        let interval = CounterInterval { rate_hz, busy_fraction };
        self.last = Some(interval);
        if busy_fraction < IDLE_MAX_BUSY_FRACTION {
            self.last_idle = Some(interval);
        } else if busy_fraction >= BUSY_MIN_BUSY_FRACTION {
            self.last_busy = Some(interval);
        } else {
            return; // in between: evidence of neither kind
        }
        if self.verdict == CounterVerdict::Unverified
            && let (Some(idle), Some(busy)) = (self.last_idle, self.last_busy)
        {
            self.verdict = judge(idle, busy);
        }
    }

    /// Feeds the interval of a [`PerfInput::Reading`]; other inputs carry no evidence.
    pub fn observe_input(&mut self, input: &PerfInput) {
        if let PerfInput::Reading { cycles, wall_seconds, busy_fraction, .. } = input {
            self.observe(*cycles, *wall_seconds, *busy_fraction);
        }
    }

    /// What has been seen so far, while unverified.
    fn progress(&self) -> String {
        let idle_at = |i: CounterInterval| format!("{} per wall second at {}", ghz(i.rate_hz), pct(i.busy_fraction));
        let need_idle = format!("needs an interval under {:.0} % busy", IDLE_MAX_BUSY_FRACTION * 100.0);
        let need_busy = format!("needs an interval at least {:.0} % busy", BUSY_MIN_BUSY_FRACTION * 100.0);
        match (self.last_idle, self.last_busy) {
            (None, None) => match self.last {
                Some(l) => format!(
                    "last interval {}, neither idle nor busy enough to tell; {need_idle} and one at least {:.0} % busy",
                    idle_at(l),
                    BUSY_MIN_BUSY_FRACTION * 100.0
                ),
                None => "no interval measured yet".to_string(),
            },
            (None, Some(b)) => format!("busy since start ({}); {need_idle}", idle_at(b)),
            (Some(i), None) => format!("idle so far ({}); {need_busy}", idle_at(i)),
            (Some(i), Some(b)) if b.rate_hz < MIN_REFERENCE_RATE_HZ => {
                format!("the counter barely advanced while busy ({}); idle {}", idle_at(b), idle_at(i))
            }
            (Some(i), Some(b)) => format!(
                "idle {} vs busy {}: ratio {:.2}, neither below {:.1} (a clock) nor within {:.0} % of 1 (constant rate)",
                idle_at(i),
                idle_at(b),
                i.rate_hz / b.rate_hz,
                CLOCK_MAX_IDLE_RATIO,
                CONSTANT_RATE_TOLERANCE * 100.0
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyInputs<'a> {
    pub cpufreq: Option<&'a CpufreqReading>,
    pub perf: PerfInput,
    /// The CPU's counter evidence, already fed with `perf` (see [`CounterEvidence::observe_input`]).
    pub counter: &'a CounterEvidence,
    pub cpuinfo_mhz: Option<f64>,
    pub platform: &'a Platform,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyChoice {
    pub hz: Option<f64>,
    pub source: FrequencySource,
    pub detail: Option<String>,
    pub note: Option<String>,
    /// The cycle counter's rate over the interval (cycles per wall second): a counter rate, not
    /// a frequency. Set whenever the counter gave a usable reading, whatever the source.
    pub counter_rate_hz: Option<f64>,
}

fn vendor_strings(platform: &Platform) -> String {
    match &platform.evidence {
        Some(e) => format!("vendor strings (evidence only): {e}"),
        None => "no vendor string names a hypervisor".to_string(),
    }
}

/// The pure source decision for one CPU. Chain: cpufreq → perf (only a counter shown to be a
/// clock) → cpuinfo `cpu MHz` → perf-synthetic / perf-unverified (a counter, no value) → none.
pub fn choose(inputs: &FrequencyInputs<'_>) -> FrequencyChoice {
    let counter_rate_hz = match &inputs.perf {
        PerfInput::Reading { cycles, wall_seconds, busy_fraction, .. } if valid_fraction(*busy_fraction) => {
            counter_rate(*cycles, *wall_seconds)
        }
        _ => None,
    };
    let choice = |hz, source, detail: Option<&str>, note| FrequencyChoice {
        hz,
        source,
        detail: detail.map(String::from),
        note,
        counter_rate_hz,
    };
    let mut why_not = Vec::new();
    match inputs.cpufreq {
        Some(cf) => {
            if let (Some(khz), Some(file)) = (cf.khz, cf.file) {
                return choice(Some(khz as f64 * 1000.0), FrequencySource::Cpufreq, Some(file), None);
            }
            why_not.push(format!("cpufreq: {}", cf.note.as_deref().unwrap_or("no value")));
        }
        None => why_not.push("no cpufreq driver for this CPU".to_string()),
    }

    // What the counter is, when there is one: it publishes a frequency only as a proven clock.
    let has_counter = match &inputs.perf {
        PerfInput::Unavailable(reason) => {
            why_not.push(format!("perf: {reason}"));
            false
        }
        PerfInput::NoInterval | PerfInput::Reading { .. } => true,
    };
    let verdict = inputs.counter.verdict();
    if let (CounterVerdict::Clock { .. }, PerfInput::Reading { cycles, wall_seconds, busy_seconds, busy_fraction }) =
        (verdict, &inputs.perf)
    {
        let perf = |hz, note: String| {
            choice(hz, FrequencySource::Perf, Some("cycles/busy"), Some(note).filter(|n| !n.is_empty()))
        };
        if counter_rate_hz.is_none() || !busy_seconds.is_finite() {
            return perf(
                None,
                format!(
                    "cycle counter reading unusable ({cycles} cycles, {wall_seconds} s, {busy_seconds} s busy, busy share {busy_fraction})"
                ),
            );
        }
        if *busy_fraction < MIN_BUSY_FRACTION || *busy_seconds <= 0.0 {
            return perf(
                None,
                format!(
                    "CPU nearly idle ({:.1}% busy): cycles per busy second are not meaningful",
                    busy_fraction * 100.0
                ),
            );
        }
        let hz = cycles / busy_seconds;
        if !(hz.is_finite() && hz > 0.0 && hz <= MAX_PLAUSIBLE_RATE_HZ) {
            return perf(None, format!("cycles per busy second implausible ({hz:.3e} Hz)"));
        }
        return perf(Some(hz), String::new());
    }
    if matches!((verdict, &inputs.perf), (CounterVerdict::Clock { .. }, PerfInput::NoInterval)) {
        why_not.push("perf: no interval yet".to_string());
    }

    // The counter's state when it is not a proven clock, for the notes below.
    let counter_note = match verdict {
        _ if !has_counter => None,
        CounterVerdict::Clock { .. } => None,
        CounterVerdict::ConstantRate { idle, busy } => Some(format!(
            "constant-rate cycle counter: {} per wall second idle ({}) and {} busy ({}); it counts a fixed virtual clock, not the CPU's frequency (its rate is in counter_rate_hz)",
            ghz(idle.rate_hz),
            pct(idle.busy_fraction),
            ghz(busy.rate_hz),
            pct(busy.busy_fraction)
        )),
        CounterVerdict::Unverified => Some(format!(
            "cycle counter not verified yet: still checking whether it slows down when its CPU idles (a clock) or keeps its rate (a constant-rate counter), so no frequency from it; {}",
            inputs.counter.progress()
        )),
    };

    if let Some(mhz) = inputs.cpuinfo_mhz.filter(|m| m.is_finite() && *m > 0.0) {
        let tsc = inputs.platform.virtualization.as_ref().map(|_| {
            format!(
                "running under a hypervisor ({}): cpu MHz is the constant TSC rate, it does not follow the real clock",
                inputs.platform.evidence.as_deref().unwrap_or("virtual machine")
            )
        });
        let note = [tsc, counter_note.map(|n| format!("perf: {n}"))].into_iter().flatten().collect::<Vec<_>>();
        return choice(
            Some((mhz * 1e6).round()),
            FrequencySource::Cpuinfo,
            Some("cpu MHz"),
            (!note.is_empty()).then(|| note.join("; ")),
        );
    }
    why_not.push("no 'cpu MHz' in /proc/cpuinfo".to_string());

    if let Some(n) = counter_note {
        let source = match verdict {
            CounterVerdict::ConstantRate { .. } => FrequencySource::PerfSynthetic,
            _ => FrequencySource::PerfUnverified,
        };
        let note = format!("{n}; {}; also: {}", vendor_strings(inputs.platform), why_not.join("; "));
        return choice(None, source, Some("cycles/wall"), Some(note));
    }
    choice(None, FrequencySource::None, None, Some(why_not.join("; ")))
}

/// What the `frequency` source carries from one sample to the next (owned by the sampler).
#[derive(Default)]
pub struct FrequencyState {
    pub cpufreq: CpufreqCache,
    /// Cycle counters: opened at the first sample for the CPUs then online; `Some(disabled)` from
    /// the start with `perf: false`.
    pub counters: Option<CycleCounters>,
    /// Per CPU, what the cycle counter's intervals so far say it is (a clock or a constant-rate
    /// counter); fed one interval per sample.
    pub evidence: HashMap<u32, CounterEvidence>,
    /// The counters' values at the previous sample.
    pub previous_cycles: HashMap<u32, CounterValue>,
}

/// The interval a sample covers, as the `cpu` source read it.
#[derive(Debug, Clone, Copy)]
pub struct CpuInterval<'a> {
    /// This sample's /proc/stat.
    pub now: &'a ProcStat,
    /// The previous sample's /proc/stat.
    pub before: Option<&'a ProcStat>,
    /// The sample's own interval in seconds, when there is a previous sample.
    pub seconds: Option<f64>,
    /// USER_HZ, the unit of /proc/stat.
    pub clock_ticks: f64,
}

/// The frequency source's read: runs the chain for every CPU the `cpu` source listed and fills
/// their frequency fields. A CPU with no source at all is an honest `none` with a note, not a
/// failure; a warning (failure) means the chain could not run: no CPU list, or `/proc/cpuinfo`
/// needed (no cpufreq value) but unreadable.
pub fn read(
    state: &mut FrequencyState,
    roots: &Roots,
    files: &mut KernelFiles,
    platform: &Platform,
    interval: CpuInterval<'_>,
    cpus: &mut [CpuReading],
    w: &mut Warnings,
) {
    if cpus.is_empty() {
        w.push("cpu list", "no CPUs to read a frequency for: the cpu source found none (see its warnings)");
        return;
    }
    let ticks = interval.clock_ticks;
    state.cpufreq.begin_sample();
    let cpu_ids: Vec<u32> = cpus.iter().map(|c| c.logical_number).collect();
    let counters = state.counters.get_or_insert_with(|| CycleCounters::open(&cpu_ids));
    let cycles: HashMap<u32, CounterValue> = counters.read_all().into_iter().collect();
    let perf_reason = counters.unavailable.as_ref().map(|u| u.to_string());

    let mut cpuinfo: Option<CpuInfo> = None;
    for c in cpus.iter_mut() {
        let n = c.logical_number;
        let delta = crate::cpu::delta(interval.now, interval.before, n);
        let cf = state.cpufreq.read(roots, n, files);
        let perf = match (&perf_reason, cycles.get(&n), state.previous_cycles.get(&n), delta) {
            (Some(reason), _, _, _) => PerfInput::Unavailable(reason.clone()),
            (None, None, _, _) => PerfInput::Unavailable("no counter for this CPU".into()),
            (None, Some(now), Some(then), Some(d)) if d.total() > 0 => match now.cycles_since(then) {
                Some(cycles) => PerfInput::Reading {
                    cycles,
                    // The sample's own interval; the CPU's /proc/stat ticks only if it has none.
                    wall_seconds: interval.seconds.unwrap_or(d.total() as f64 / ticks),
                    busy_seconds: d.busy() as f64 / ticks,
                    busy_fraction: d.busy() as f64 / d.total() as f64,
                },
                None => PerfInput::Unavailable("counter was not scheduled on the PMU in this interval".into()),
            },
            _ => PerfInput::NoInterval,
        };
        // /proc/cpuinfo is only read when cpufreq has no answer (it is the most expensive file here).
        let mhz = if cf.as_ref().and_then(|c| c.khz).is_none() {
            let info = cpuinfo.get_or_insert_with(|| {
                files.or_warn(&roots.proc("cpuinfo"), w).map(|t| parse::cpuinfo::parse(&t)).unwrap_or_default()
            });
            info.entry(n).and_then(|e| e.mhz)
        } else {
            None
        };
        let evidence = state.evidence.entry(n).or_default();
        evidence.observe_input(&perf);
        let choice =
            choose(&FrequencyInputs { cpufreq: cf.as_ref(), perf, counter: evidence, cpuinfo_mhz: mhz, platform });
        c.frequency_hz = choice.hz;
        c.frequency_source = choice.source;
        c.frequency_detail = choice.detail;
        c.frequency_note = choice.note;
        c.counter_rate_hz = choice.counter_rate_hz;
        c.frequency_min_hz = cf.as_ref().and_then(|c| c.min_khz).map(|k| k as f64 * 1000.0);
        c.frequency_max_hz = cf.as_ref().and_then(|c| c.max_khz).map(|k| k as f64 * 1000.0);
        c.governor = cf.as_ref().and_then(|c| c.governor.clone());
        c.driver = cf.as_ref().and_then(|c| c.driver.clone());
        c.policy = cf.as_ref().and_then(|c| c.policy.clone());
    }
    state.previous_cycles = cycles;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(khz: Option<u64>) -> CpufreqReading {
        CpufreqReading { khz, file: khz.map(|_| "scaling_cur_freq"), note: Some("x".into()), ..Default::default() }
    }

    fn reading(cycles: f64, wall_seconds: f64, busy_fraction: f64) -> PerfInput {
        PerfInput::Reading { cycles, wall_seconds, busy_seconds: wall_seconds * busy_fraction, busy_fraction }
    }

    /// Feeds every interval to a fresh evidence, then chooses for the last one (as the sampler does).
    fn run(
        readings: &[PerfInput],
        cpuinfo_mhz: Option<f64>,
        platform: &Platform,
    ) -> (FrequencyChoice, CounterEvidence) {
        let mut evidence = CounterEvidence::default();
        for r in readings {
            evidence.observe_input(r);
        }
        let perf = readings.last().cloned().unwrap_or(PerfInput::NoInterval);
        let out = choose(&FrequencyInputs { cpufreq: None, perf, counter: &evidence, cpuinfo_mhz, platform });
        (out, evidence)
    }

    fn kvm_qemu_dmi() -> Platform {
        Platform { virtualization: Some("qemu".into()), evidence: Some("DMI names QEMU".into()) }
    }

    /// A kvm guest with a real vPMU (illustrative numbers: ~2.6e9 cycles per wall second busy,
    /// ~1e8 idle, since the counter stops while the vCPU halts).
    fn real_vpmu_intervals() -> Vec<PerfInput> {
        vec![reading(1.0e8, 1.0, 0.04), reading(2.548e9, 1.0, 0.98)]
    }

    /// The arm64 TCG probe (tests/fixtures/perf/debian12-arm64-tcg-guest-perf-stat-cycles.txt):
    /// per section, CPU0's cycles, the elapsed seconds and whether it ran idle or busy. The busy
    /// share comes from the fixture's /proc/stat lines (cpu0 under stress-ng: 1096 busy of 1099
    /// ticks); the idle runs' busy share was not recorded, 3 % (an idle guest) is assumed.
    fn probe_intervals() -> Vec<PerfInput> {
        let text = include_str!("../tests/fixtures/perf/debian12-arm64-tcg-guest-perf-stat-cycles.txt");
        let mut out = Vec::new();
        for section in text.split("\n\n") {
            let header = section.lines().next().unwrap_or("");
            let cycles = section.lines().find(|l| l.starts_with("CPU0") && l.contains(" cycles"));
            let elapsed = section.lines().find(|l| l.contains("seconds time elapsed"));
            let (Some(cycles), Some(elapsed)) = (cycles, elapsed) else { continue };
            let cycles: f64 = cycles.split_whitespace().nth(1).unwrap().parse().unwrap();
            let wall: f64 = elapsed.split_whitespace().next().unwrap().parse().unwrap();
            let busy = if header.ends_with("# busy") { 1096.0 / 1099.0 } else { 0.03 };
            out.push(reading(cycles, wall, busy));
        }
        assert_eq!(out.len(), 3, "two idle runs and one busy run in the fixture");
        out
    }

    #[test]
    fn cpufreq_wins() {
        let p = Platform::default();
        let c = cf(Some(2_893_313));
        let out = choose(&FrequencyInputs {
            cpufreq: Some(&c),
            perf: PerfInput::NoInterval,
            counter: &CounterEvidence::default(),
            cpuinfo_mhz: Some(2300.0),
            platform: &p,
        });
        assert_eq!(out.hz, Some(2_893_313_000.0));
        assert_eq!(out.source, FrequencySource::Cpufreq);
    }

    // (a) QEMU's emulated PMU, blank DMI: the measurement alone makes it perf-synthetic.
    #[test]
    fn arm64_probe_constant_rate_counter_is_synthetic_without_a_frequency() {
        let (out, evidence) = run(&probe_intervals(), None, &Platform::default());
        assert!(matches!(evidence.verdict(), CounterVerdict::ConstantRate { .. }), "{evidence:?}");
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfSynthetic));
        // busy run: 2095922141 cycles / 2.095807530 s = 1.000055e9 per wall second
        let rate = out.counter_rate_hz.unwrap();
        assert!((rate - 1.000e9).abs() < 1e6, "{rate}");
        let note = out.note.unwrap();
        // the latest idle run: 2049121532 cycles / 2.031075649 s = 1.00888e9 per wall second
        assert!(note.contains("constant-rate cycle counter: 1.009 GHz per wall second idle (3 % busy)"), "{note}");
        assert!(note.contains("1.000 GHz busy (100 % busy)") && note.contains("not the CPU's frequency"), "{note}");
        assert!(note.contains("no vendor string"), "{note}");
    }

    #[test]
    fn the_same_counter_busy_first_then_idle_is_synthetic_too() {
        let mut r = probe_intervals();
        r.reverse(); // busy, then idle
        let (out, _) = run(&r, None, &Platform::default());
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfSynthetic));
    }

    #[test]
    fn hvf_vendor_strings_go_into_the_note_as_evidence() {
        let p = Platform {
            virtualization: Some("apple-hvf".into()),
            evidence: Some("CPU implementer 0x61 part 0x000 (Apple HVF virtual CPU)".into()),
        };
        let (out, _) = run(&probe_intervals(), None, &p);
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfSynthetic));
        assert!(out.note.unwrap().contains("evidence only): CPU implementer 0x61"));
    }

    // (b) QEMU DMI does not decide: a counter that falls when idle is a clock.
    #[test]
    fn qemu_dmi_with_a_real_vpmu_is_perf() {
        let (out, evidence) = run(&real_vpmu_intervals(), Some(2600.0), &kvm_qemu_dmi());
        assert!(matches!(evidence.verdict(), CounterVerdict::Clock { .. }), "{evidence:?}");
        // 2.548e9 cycles / 0.98 busy seconds
        assert_eq!(out.source, FrequencySource::Perf);
        assert!((out.hz.unwrap() - 2.6e9).abs() < 1.0, "{:?}", out.hz);
        assert_eq!(out.detail.as_deref(), Some("cycles/busy"));
        assert_eq!(out.counter_rate_hz, Some(2.548e9));
        // Later intervals keep the verdict; the value is cycles ÷ busy time, not wall time.
        let mut r = real_vpmu_intervals();
        r.push(reading(1.5e9, 1.0, 0.5));
        let (out, _) = run(&r, None, &kvm_qemu_dmi());
        assert_eq!((out.hz, out.source), (Some(3.0e9), FrequencySource::Perf));
    }

    #[test]
    fn a_clock_on_a_nearly_idle_cpu_is_null_with_a_reason() {
        let mut r = real_vpmu_intervals();
        r.push(reading(1e7, 1.0, 0.01));
        let (out, _) = run(&r, None, &Platform::default());
        assert_eq!((out.hz, out.source), (None, FrequencySource::Perf));
        assert!(out.note.unwrap().contains("idle"));
    }

    // (c) Busy since start: no value, and the note says it is still checking.
    #[test]
    fn only_busy_intervals_give_no_value_and_say_still_checking() {
        let r: Vec<_> = (0..5).map(|_| reading(1.0e9, 1.0, 0.97)).collect();
        let (out, evidence) = run(&r, None, &Platform::default());
        assert_eq!(evidence.verdict(), CounterVerdict::Unverified);
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfUnverified));
        assert_eq!(out.counter_rate_hz, Some(1.0e9));
        let note = out.note.unwrap();
        assert!(note.contains("still checking") && note.contains("busy since start"), "{note}");
        assert!(note.contains("needs an interval under 20 % busy"), "{note}");
    }

    #[test]
    fn only_idle_intervals_or_the_first_sample_give_no_value_either() {
        let (out, _) = run(&[reading(1.0e9, 1.0, 0.02), reading(1.0e9, 1.0, 0.03)], None, &Platform::default());
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfUnverified));
        assert!(out.note.unwrap().contains("idle so far"));
        let (out, _) = run(&[PerfInput::NoInterval], None, &Platform::default());
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfUnverified));
        assert!(out.note.unwrap().contains("no interval measured yet"));
        // Intervals between 20 % and 50 % busy are evidence of neither kind.
        let (out, ev) = run(&[reading(1.0e9, 1.0, 0.3), reading(0.2e9, 1.0, 0.35)], None, &Platform::default());
        assert_eq!((ev.verdict(), out.hz), (CounterVerdict::Unverified, None));
    }

    #[test]
    fn an_ambiguous_ratio_keeps_checking() {
        // idle at 0.7× the busy rate: neither a clock (< 0.5×) nor constant (within 10 %)
        let (out, ev) = run(&[reading(0.7e9, 1.0, 0.1), reading(1.0e9, 1.0, 0.9)], None, &Platform::default());
        assert_eq!(ev.verdict(), CounterVerdict::Unverified);
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfUnverified));
        assert!(out.note.unwrap().contains("ratio 0.70"));
    }

    #[test]
    fn a_verdict_is_kept() {
        let mut ev = CounterEvidence::default();
        for r in probe_intervals() {
            ev.observe_input(&r);
        }
        let before = ev.verdict();
        ev.observe(1e8, 1.0, 0.05); // one idle interval that looks like a clock's
        assert_eq!(ev.verdict(), before);
    }

    #[test]
    fn a_counter_that_counts_nothing_is_never_a_value() {
        // tests/fixtures/perf/vmware-workstation-guest-perf-stat-zero-cycles.excerpt.txt: cycles 0
        let (out, ev) = run(&[reading(0.0, 1.0, 0.02), reading(0.0, 1.0, 0.99)], None, &Platform::default());
        assert_eq!(ev.verdict(), CounterVerdict::Unverified);
        assert_eq!((out.hz, out.source), (None, FrequencySource::PerfUnverified));
        assert!(out.note.unwrap().contains("barely advanced"));
    }

    // The x86 TCG/KVM case: cpu MHz (the TSC) stays `cpuinfo`, before any unverified counter.
    #[test]
    fn tcg_guest_falls_to_cpuinfo_with_a_tsc_note() {
        let p = Platform { virtualization: Some("qemu".into()), evidence: Some("DMI names QEMU".into()) };
        let ev = CounterEvidence::default();
        let out = choose(&FrequencyInputs {
            cpufreq: None,
            perf: PerfInput::Unavailable("no hardware cycle counter (ENOENT)".into()),
            counter: &ev,
            cpuinfo_mhz: Some(2596.145),
            platform: &p,
        });
        assert_eq!((out.hz, out.source), (Some(2_596_145_000.0), FrequencySource::Cpuinfo));
        assert!(out.note.unwrap().contains("TSC"));
    }

    #[test]
    fn cpuinfo_comes_before_an_unverified_or_constant_counter_and_says_so() {
        let (out, _) = run(&[reading(1.0e9, 1.0, 0.97)], Some(2596.145), &kvm_qemu_dmi());
        assert_eq!((out.hz, out.source), (Some(2_596_145_000.0), FrequencySource::Cpuinfo));
        let note = out.note.unwrap();
        assert!(note.contains("TSC") && note.contains("perf: cycle counter not verified yet"), "{note}");
        let (out, _) = run(&probe_intervals(), Some(2000.0), &Platform::default());
        assert_eq!(out.source, FrequencySource::Cpuinfo);
        assert!(out.note.unwrap().starts_with("perf: constant-rate cycle counter"));
    }

    #[test]
    fn nothing_gives_null_and_every_reason() {
        let p = Platform::default();
        let out = choose(&FrequencyInputs {
            cpufreq: None,
            perf: PerfInput::Unavailable("no hardware cycle counter (ENODEV)".into()),
            counter: &CounterEvidence::default(),
            cpuinfo_mhz: None,
            platform: &p,
        });
        assert_eq!((out.hz, out.source, out.counter_rate_hz), (None, FrequencySource::None, None));
        let note = out.note.unwrap();
        assert!(note.contains("no cpufreq") && note.contains("ENODEV") && note.contains("cpu MHz"), "{note}");
    }

    #[test]
    fn unparsable_cpufreq_is_not_zero() {
        let p = Platform::default();
        let c =
            CpufreqReading { note: Some("scaling_cur_freq unparsable (\"<unknown>\")".into()), ..Default::default() };
        let out = choose(&FrequencyInputs {
            cpufreq: Some(&c),
            perf: PerfInput::Unavailable("x".into()),
            counter: &CounterEvidence::default(),
            cpuinfo_mhz: None,
            platform: &p,
        });
        assert_eq!(out.hz, None);
        assert!(out.note.unwrap().contains("<unknown>"));
    }

    // (d) Garbage in: no panic, no value, no verdict — even for a counter already shown to be a clock.
    #[test]
    fn garbage_readings_never_panic_and_never_yield_a_value() {
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -0.0, 0.0, 1e300, f64::MIN_POSITIVE, -1e300];
        let mut clock = CounterEvidence::default();
        for r in real_vpmu_intervals() {
            clock.observe_input(&r);
        }
        assert!(matches!(clock.verdict(), CounterVerdict::Clock { .. }));
        let platforms = [Platform::default(), kvm_qemu_dmi()];
        for &cycles in &bad {
            for &wall_seconds in &bad {
                for &busy_seconds in &bad {
                    for &busy_fraction in &bad {
                        let perf = PerfInput::Reading { cycles, wall_seconds, busy_seconds, busy_fraction };
                        let mut fresh = CounterEvidence::default();
                        fresh.observe_input(&perf);
                        fresh.observe_input(&perf);
                        assert_eq!(fresh.verdict(), CounterVerdict::Unverified, "{perf:?}");
                        let mut proven = clock.clone();
                        proven.observe_input(&perf);
                        for ev in [&fresh, &proven] {
                            for p in &platforms {
                                for mhz in [None, Some(f64::NAN), Some(-5.0), Some(0.0), Some(f64::INFINITY)] {
                                    let out = choose(&FrequencyInputs {
                                        cpufreq: None,
                                        perf: perf.clone(),
                                        counter: ev,
                                        cpuinfo_mhz: mhz,
                                        platform: p,
                                    });
                                    assert_eq!(out.hz, None, "{perf:?} {mhz:?} {out:?}");
                                    assert!(out.note.is_some(), "{perf:?}");
                                    if let Some(r) = out.counter_rate_hz {
                                        assert!(r.is_finite() && r >= 0.0, "{perf:?} {r}");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // BogoMIPS and SMBIOS "max speed" are never a frequency: the only inputs are cpufreq, the
    // counter and `cpu MHz`, and the cpuinfo parser reads no BogoMIPS into `cpu MHz`.
    #[test]
    fn bogomips_is_not_cpu_mhz() {
        let info = crate::parse::cpuinfo::parse(
            "processor\t: 0\nBogoMIPS\t: 2000.00\nCPU implementer\t: 0x00\nCPU part\t: 0x051\n\n\
             processor\t: 1\nBogoMIPS\t: 2000.00\nmodel name\t: virt-10.0 CPU @ 2.0GHz\n",
        );
        assert!(info.cpus.iter().all(|c| c.mhz.is_none()), "{info:?}");
        let (out, _) = run(&[PerfInput::Unavailable("perf counters disabled".into())], None, &kvm_qemu_dmi());
        assert_eq!((out.hz, out.source), (None, FrequencySource::None));
    }
}
