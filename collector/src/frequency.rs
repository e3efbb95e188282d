//! Per-CPU frequency: reading cpufreq sysfs, and the pure choice between sources.
//!
//! Chain (shared/notes/clarifications.md): `cpuinfo_avg_freq` → `scaling_cur_freq` →
//! `cpuinfo_cur_freq` (all `cpufreq`) → cycles ÷ busy time (`perf`, only with a real PMU) →
//! `cpu MHz` (`cpuinfo`) → an emulated counter (`perf-synthetic`) → `none`. A null value always
//! comes with a note saying why.

use crate::files::{KernelFiles, read_optional};
use crate::parse::{self, cpulist};
use crate::platform::Platform;
use crate::roots::Roots;
use crate::snapshot::FrequencySource;
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

fn read_trimmed(path: &Path) -> Option<String> {
    read_optional(path).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
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
        let fresh = |files: &mut KernelFiles, p: &Path| {
            files.optional(p).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
        };
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
    /// First sample: nothing to compare yet.
    NoInterval,
    Reading {
        cycles: f64,
        busy_seconds: f64,
        busy_fraction: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyInputs<'a> {
    pub cpufreq: Option<&'a CpufreqReading>,
    pub perf: PerfInput,
    pub cpuinfo_mhz: Option<f64>,
    pub platform: &'a Platform,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyChoice {
    pub hz: Option<f64>,
    pub source: FrequencySource,
    pub detail: Option<String>,
    pub note: Option<String>,
}

/// The pure source decision for one CPU.
pub fn choose(inputs: &FrequencyInputs<'_>) -> FrequencyChoice {
    let mut why_not = Vec::new();
    match inputs.cpufreq {
        Some(cf) => {
            if let (Some(khz), Some(file)) = (cf.khz, cf.file) {
                return FrequencyChoice {
                    hz: Some(khz as f64 * 1000.0),
                    source: FrequencySource::Cpufreq,
                    detail: Some(file.to_string()),
                    note: None,
                };
            }
            why_not.push(format!("cpufreq: {}", cf.note.as_deref().unwrap_or("no value")));
        }
        None => why_not.push("no cpufreq driver for this CPU".to_string()),
    }

    let synthetic = inputs.platform.synthetic_cycles;
    let perf_value = match &inputs.perf {
        PerfInput::Unavailable(reason) => {
            why_not.push(format!("perf: {reason}"));
            None
        }
        PerfInput::NoInterval => {
            why_not.push("perf: first sample, no interval yet".to_string());
            None
        }
        PerfInput::Reading { cycles, busy_seconds, busy_fraction } => {
            if *busy_fraction < MIN_BUSY_FRACTION || *busy_seconds <= 0.0 {
                let note = format!(
                    "CPU nearly idle ({:.1}% busy): cycles per busy second are not meaningful",
                    busy_fraction * 100.0
                );
                if !synthetic {
                    return FrequencyChoice {
                        hz: None,
                        source: FrequencySource::Perf,
                        detail: Some("cycles/busy".into()),
                        note: Some(note),
                    };
                }
                why_not.push(format!("perf-synthetic: {note}"));
                None
            } else {
                Some(cycles / busy_seconds)
            }
        }
    };
    if let (Some(hz), false) = (perf_value, synthetic) {
        return FrequencyChoice {
            hz: Some(hz),
            source: FrequencySource::Perf,
            detail: Some("cycles/busy".into()),
            note: None,
        };
    }

    if let Some(mhz) = inputs.cpuinfo_mhz {
        let note = inputs.platform.virtualization.as_ref().map(|_| {
            format!(
                "running under a hypervisor ({}): cpu MHz is the constant TSC rate, it does not follow the real clock",
                inputs.platform.evidence.as_deref().unwrap_or("virtual machine")
            )
        });
        return FrequencyChoice {
            hz: Some((mhz * 1e6).round()),
            source: FrequencySource::Cpuinfo,
            detail: Some("cpu MHz".into()),
            note,
        };
    }
    why_not.push("no 'cpu MHz' in /proc/cpuinfo".to_string());

    if let Some(hz) = perf_value {
        return FrequencyChoice {
            hz: Some(hz),
            source: FrequencySource::PerfSynthetic,
            detail: Some("cycles/busy".into()),
            note: Some(format!(
                "emulated cycle counter ({}): it runs at a fixed virtual clock, not the host CPU's frequency",
                inputs.platform.evidence.as_deref().unwrap_or("virtual platform")
            )),
        };
    }
    FrequencyChoice { hz: None, source: FrequencySource::None, detail: None, note: Some(why_not.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(khz: Option<u64>) -> CpufreqReading {
        CpufreqReading { khz, file: khz.map(|_| "scaling_cur_freq"), note: Some("x".into()), ..Default::default() }
    }

    #[test]
    fn cpufreq_wins() {
        let p = Platform::default();
        let c = cf(Some(2_893_313));
        let out = choose(&FrequencyInputs {
            cpufreq: Some(&c),
            perf: PerfInput::NoInterval,
            cpuinfo_mhz: Some(2300.0),
            platform: &p,
        });
        assert_eq!(out.hz, Some(2_893_313_000.0));
        assert_eq!(out.source, FrequencySource::Cpufreq);
    }

    #[test]
    fn perf_divides_by_busy_time_not_wall_time() {
        let p = Platform::default();
        let reading = PerfInput::Reading { cycles: 1.5e9, busy_seconds: 0.5, busy_fraction: 0.5 };
        let out = choose(&FrequencyInputs { cpufreq: None, perf: reading, cpuinfo_mhz: Some(2300.0), platform: &p });
        assert_eq!((out.hz, out.source), (Some(3.0e9), FrequencySource::Perf));
    }

    #[test]
    fn perf_on_an_idle_cpu_is_null_with_a_reason() {
        let p = Platform::default();
        let reading = PerfInput::Reading { cycles: 1e6, busy_seconds: 0.001, busy_fraction: 0.01 };
        let out = choose(&FrequencyInputs { cpufreq: None, perf: reading, cpuinfo_mhz: None, platform: &p });
        assert_eq!((out.hz, out.source), (None, FrequencySource::Perf));
        assert!(out.note.unwrap().contains("idle"));
    }

    #[test]
    fn tcg_guest_falls_to_cpuinfo_with_a_tsc_note() {
        let p = Platform { virtualization: Some("qemu".into()), synthetic_cycles: true, evidence: None };
        let out = choose(&FrequencyInputs {
            cpufreq: None,
            perf: PerfInput::Unavailable("no hardware cycle counter (ENOENT)".into()),
            cpuinfo_mhz: Some(2596.145),
            platform: &p,
        });
        assert_eq!((out.hz, out.source), (Some(2_596_145_000.0), FrequencySource::Cpuinfo));
        assert!(out.note.unwrap().contains("TSC"));
    }

    #[test]
    fn hvf_guest_with_emulated_pmu_is_synthetic_never_perf() {
        let p =
            Platform { virtualization: Some("apple-hvf".into()), synthetic_cycles: true, evidence: Some("hvf".into()) };
        let reading = PerfInput::Reading { cycles: 0.5e9, busy_seconds: 0.5, busy_fraction: 0.5 };
        let out = choose(&FrequencyInputs { cpufreq: None, perf: reading, cpuinfo_mhz: None, platform: &p });
        assert_eq!((out.hz, out.source), (Some(1.0e9), FrequencySource::PerfSynthetic));
    }

    #[test]
    fn nothing_gives_null_and_every_reason() {
        let p = Platform::default();
        let out = choose(&FrequencyInputs {
            cpufreq: None,
            perf: PerfInput::Unavailable("no hardware cycle counter (ENODEV)".into()),
            cpuinfo_mhz: None,
            platform: &p,
        });
        assert_eq!((out.hz, out.source), (None, FrequencySource::None));
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
            perf: PerfInput::NoInterval,
            cpuinfo_mhz: None,
            platform: &p,
        });
        assert_eq!(out.hz, None);
        assert!(out.note.unwrap().contains("<unknown>"));
    }
}
