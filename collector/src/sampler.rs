//! Takes samples: reads every source once, and turns counters into rates against the previous
//! sample. The only stateful part of the collector; everything it calls is a reader or a pure
//! function.

use crate::containers::{self, CgroupLayout};
use crate::files::{KernelFiles, read_optional};
use crate::frequency::{self, CounterEvidence, CpufreqCache, FrequencyInputs, PerfInput};
use crate::parse::{self, cpuinfo::CpuInfo, diskstats, stat::CpuTimes};
use crate::perf::{CounterValue, CycleCounters};
use crate::platform::{self, Platform};
use crate::roots::Roots;
use crate::snapshot::*;
use crate::warnings::Warnings;
use crate::{filesystems, host, thermal};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Containers come and go; walking the cgroup tree for them is the costliest read, so it is
/// repeated every this many samples (10 s at the default serve interval), and the containers
/// found are read on every sample in between.
const REDISCOVER_CONTAINERS_EVERY: u64 = 10;
/// Hostname, kernel and OS name are read again every this many samples.
const REFRESH_HOST_EVERY: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerOptions {
    /// Open per-CPU cycle counters (needs a PMU and CAP_PERFMON or perf_event_paranoid <= 0).
    pub perf: bool,
    /// Extra cgroups to report as containers, relative to the cgroup root.
    pub cgroups: Vec<String>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions { perf: true, cgroups: Vec::new() }
    }
}

struct Previous {
    at: Instant,
    stat: Vec<(u32, CpuTimes)>,
    disks: HashMap<String, diskstats::DiskStat>,
    nets: HashMap<String, (u64, u64)>,
    cgroup_cpu: HashMap<String, f64>,
    cycles: HashMap<u32, CounterValue>,
    own_cpu: Option<f64>,
}

pub struct Sampler {
    roots: Roots,
    options: SamplerOptions,
    platform: Platform,
    cpufreq: CpufreqCache,
    cgroups: CgroupLayout,
    counters: Option<CycleCounters>,
    /// Per CPU, what the cycle counter's intervals so far say it is (a clock or a constant-rate
    /// counter); kept across samples, fed one interval per sample.
    counter_evidence: HashMap<u32, CounterEvidence>,
    containers: Vec<containers::Found>,
    host: Option<host::HostFacts>,
    /// Warnings from the last host-facts read, repeated in every sample until the next read.
    host_warnings: Vec<crate::warnings::Warning>,
    /// Samples taken so far; discovery work is repeated every so many samples, not every time.
    samples: u64,
    files: KernelFiles,
    previous: Option<Previous>,
    clock_ticks: f64,
    vcgencmd: Option<PathBuf>,
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|c| c.is_file()))
        .unwrap_or(None)
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { part as f64 * 100.0 / total as f64 }
}

fn usage(delta: &CpuTimes, cumulative: &CpuTimes, ticks: f64) -> CpuUsage {
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

fn rate(now: u64, before: Option<u64>, secs: Option<f64>) -> Option<f64> {
    match (before, secs) {
        (Some(b), Some(s)) if s > 0.0 && now >= b => Some((now - b) as f64 / s),
        _ => None,
    }
}

impl Sampler {
    pub fn new(roots: Roots, options: SamplerOptions) -> Self {
        let cpuinfo = read_optional(&roots.proc("cpuinfo")).map(|t| parse::cpuinfo::parse(&t)).unwrap_or_default();
        let platform = platform::detect(&roots, &cpuinfo);
        let cgroups = CgroupLayout::detect(&roots.cgroupfs);
        let counters = (!options.perf).then(CycleCounters::disabled);
        Sampler {
            roots,
            options,
            platform,
            cpufreq: CpufreqCache::default(),
            cgroups,
            counters,
            counter_evidence: HashMap::new(),
            containers: Vec::new(),
            host: None,
            host_warnings: Vec::new(),
            samples: 0,
            files: KernelFiles::default(),
            previous: None,
            clock_ticks: host::clock_ticks(),
            vcgencmd: find_on_path("vcgencmd"),
        }
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// One sample taken `interval` after a first one, so usage, rates and perf cycles cover it.
    pub fn sample_over(&mut self, interval: Duration) -> Snapshot {
        if self.previous.is_none() {
            self.sample();
            std::thread::sleep(interval);
        }
        self.sample()
    }

    pub fn sample(&mut self) -> Snapshot {
        self.sample_at(Instant::now())
    }

    /// A sample whose monotonic time is `started` (tests use it to state the interval exactly;
    /// the wall-clock timestamp is still the real time of the reading).
    pub fn sample_at(&mut self, started: Instant) -> Snapshot {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let unix_nanos = wall.as_nanos().min(u128::from(u64::MAX)) as u64;
        let mut w = Warnings::default();
        let prev = self.previous.take();
        let secs = prev.as_ref().map(|p| started.saturating_duration_since(p.at).as_secs_f64()).filter(|s| *s > 0.0);

        // CPU times and the CPU list.
        let stat_path = self.roots.proc("stat");
        let stat = self.files.or_warn(&stat_path, &mut w).map(|t| parse::stat::parse(&t)).unwrap_or_default();
        if stat.bad_lines > 0 {
            w.file(&stat_path, format!("{} cpu line(s) unreadable", stat.bad_lines));
        }
        let cpu_ids: Vec<u32> = if stat.cpus.is_empty() {
            read_optional(&self.roots.cpu_dir().join("online"))
                .and_then(|t| parse::cpulist::parse(&t))
                .unwrap_or_default()
        } else {
            stat.cpus.iter().map(|(n, _)| *n).collect()
        };

        self.cpufreq.begin_sample();
        // Cycle counters: opened once, at the first sample, for the CPUs then online.
        let counters = self.counters.get_or_insert_with(|| CycleCounters::open(&cpu_ids));
        let cycles: HashMap<u32, CounterValue> = counters.read_all().into_iter().collect();
        let perf_reason = counters.unavailable.as_ref().map(|u| u.to_string());

        let mut cpuinfo: Option<CpuInfo> = None;
        let mut cpus = Vec::with_capacity(cpu_ids.len());
        for &n in &cpu_ids {
            let times = stat.cpus.iter().find(|(c, _)| *c == n).map(|(_, t)| *t);
            let before = prev.as_ref().and_then(|p| p.stat.iter().find(|(c, _)| *c == n).map(|(_, t)| *t));
            let delta = match (times, before) {
                (Some(t), Some(b)) => Some(t.since(&b)),
                _ => None,
            };
            let cpu_usage = match (delta, times) {
                (Some(d), Some(t)) if d.total() > 0 => Some(usage(&d, &t, self.clock_ticks)),
                _ => None,
            };
            let cf = self.cpufreq.read(&self.roots, n, &mut self.files);
            let perf = match (&perf_reason, cycles.get(&n), prev.as_ref().and_then(|p| p.cycles.get(&n)), delta) {
                (Some(reason), _, _, _) => PerfInput::Unavailable(reason.clone()),
                (None, None, _, _) => PerfInput::Unavailable("no counter for this CPU".into()),
                (None, Some(now), Some(then), Some(d)) if d.total() > 0 => match now.cycles_since(then) {
                    Some(c) => PerfInput::Reading {
                        cycles: c,
                        // The sample's own interval; the CPU's /proc/stat ticks only if it has none.
                        wall_seconds: secs.unwrap_or(d.total() as f64 / self.clock_ticks),
                        busy_seconds: d.busy() as f64 / self.clock_ticks,
                        busy_fraction: d.busy() as f64 / d.total() as f64,
                    },
                    None => PerfInput::Unavailable("counter was not scheduled on the PMU in this interval".into()),
                },
                _ => PerfInput::NoInterval,
            };
            // /proc/cpuinfo is only read when cpufreq has no answer (it is the most expensive file here).
            let need_cpuinfo = cf.as_ref().and_then(|c| c.khz).is_none();
            let mhz = if need_cpuinfo {
                if cpuinfo.is_none() {
                    let text = self.files.or_warn(&self.roots.proc("cpuinfo"), &mut w);
                    cpuinfo = Some(text.map(|t| parse::cpuinfo::parse(&t)).unwrap_or_default());
                }
                let info = cpuinfo.as_ref().expect("set just above");
                info.entry(n).and_then(|e| e.mhz)
            } else {
                None
            };
            let evidence = self.counter_evidence.entry(n).or_default();
            evidence.observe_input(&perf);
            let choice = frequency::choose(&FrequencyInputs {
                cpufreq: cf.as_ref(),
                perf,
                counter: evidence,
                cpuinfo_mhz: mhz,
                platform: &self.platform,
            });
            cpus.push(CpuReading {
                cpu: format!("cpu{n}"),
                logical_number: n,
                frequency_hz: choice.hz,
                frequency_source: choice.source,
                frequency_detail: choice.detail,
                frequency_note: choice.note,
                counter_rate_hz: choice.counter_rate_hz,
                frequency_min_hz: cf.as_ref().and_then(|c| c.min_khz).map(|k| k as f64 * 1000.0),
                frequency_max_hz: cf.as_ref().and_then(|c| c.max_khz).map(|k| k as f64 * 1000.0),
                governor: cf.as_ref().and_then(|c| c.governor.clone()),
                driver: cf.as_ref().and_then(|c| c.driver.clone()),
                policy: cf.as_ref().and_then(|c| c.policy.clone()),
                usage: cpu_usage,
            });
        }
        let cpu_total = match (stat.total, prev.as_ref().and_then(|p| p.stat.iter().find(|(c, _)| *c == u32::MAX))) {
            (Some(t), Some((_, b))) if t.since(b).total() > 0 => Some(usage(&t.since(b), &t, self.clock_ticks)),
            _ => None,
        };

        let memory = self.memory(&mut w);
        let load = self.files.or_warn(&self.roots.proc("loadavg"), &mut w).and_then(|t| {
            let l = parse::loadavg::parse(&t);
            if l.is_none() {
                w.file(&self.roots.proc("loadavg"), "unparsable");
            }
            l.map(|l| Load { load1: l.load1, load5: l.load5, load15: l.load15 })
        });

        // Disks.
        let disk_path = self.roots.proc("diskstats");
        let disk_stats =
            self.files.or_warn(&disk_path, &mut w).map(|t| parse::diskstats::parse(&t)).unwrap_or_default();
        if disk_stats.bad_lines > 0 {
            w.file(&disk_path, format!("{} line(s) unreadable", disk_stats.bad_lines));
        }
        let whole: Vec<_> = disk_stats.disks.into_iter().filter(|d| diskstats::is_whole_disk(&d.name)).collect();
        let disks = whole
            .iter()
            .map(|d| {
                let b = prev.as_ref().and_then(|p| p.disks.get(&d.name));
                let sb = diskstats::SECTOR_BYTES;
                Disk {
                    device: d.name.clone(),
                    read_bytes: d.sectors_read.saturating_mul(sb),
                    write_bytes: d.sectors_written.saturating_mul(sb),
                    reads: d.reads,
                    writes: d.writes,
                    io_time_seconds: d.io_ms as f64 / 1000.0,
                    read_time_seconds: d.read_ms as f64 / 1000.0,
                    write_time_seconds: d.write_ms as f64 / 1000.0,
                    read_bytes_per_second: rate(d.sectors_read, b.map(|b| b.sectors_read), secs).map(|r| r * sb as f64),
                    write_bytes_per_second: rate(d.sectors_written, b.map(|b| b.sectors_written), secs)
                        .map(|r| r * sb as f64),
                    reads_per_second: rate(d.reads, b.map(|b| b.reads), secs),
                    writes_per_second: rate(d.writes, b.map(|b| b.writes), secs),
                    busy_pct: rate(d.io_ms, b.map(|b| b.io_ms), secs).map(|ms_per_s| (ms_per_s / 10.0).min(100.0)),
                }
            })
            .collect();

        // Network interfaces.
        let net_path = self.roots.proc("net/dev");
        let net_stats = self.files.or_warn(&net_path, &mut w).map(|t| parse::netdev::parse(&t)).unwrap_or_default();
        if net_stats.bad_lines > 0 {
            w.file(&net_path, format!("{} line(s) unreadable", net_stats.bad_lines));
        }
        let networks: Vec<Network> = net_stats
            .interfaces
            .iter()
            .map(|n| {
                let b = prev.as_ref().and_then(|p| p.nets.get(&n.interface));
                Network {
                    interface: n.interface.clone(),
                    rx_bytes: n.rx_bytes,
                    tx_bytes: n.tx_bytes,
                    rx_packets: n.rx_packets,
                    tx_packets: n.tx_packets,
                    rx_errors: n.rx_errors,
                    tx_errors: n.tx_errors,
                    rx_dropped: n.rx_dropped,
                    tx_dropped: n.tx_dropped,
                    rx_bytes_per_second: rate(n.rx_bytes, b.map(|b| b.0), secs),
                    tx_bytes_per_second: rate(n.tx_bytes, b.map(|b| b.1), secs),
                }
            })
            .collect();

        let filesystems = filesystems::collect(&self.roots, &mut self.files, &mut w);
        let temperatures = thermal::collect(&self.roots, &mut self.files, &mut w);
        let throttling = self.throttling(&mut w);

        if self.samples.is_multiple_of(REDISCOVER_CONTAINERS_EVERY) {
            self.containers = containers::discover_walk(&self.cgroups);
        }
        let named = containers::resolve_named(&self.cgroups, &self.options.cgroups, &mut w);
        let mut containers: Vec<Container> = self
            .containers
            .iter()
            .filter(|f| !named.iter().any(|n| n.id == f.id && n.runtime == f.runtime))
            .chain(&named)
            .filter_map(|f| containers::read_found(&self.cgroups, f, &mut self.files, &mut w))
            .collect();
        for c in &mut containers {
            let before = prev.as_ref().and_then(|p| p.cgroup_cpu.get(&c.cgroup_path));
            if let (Some(now), Some(b), Some(s)) = (c.cpu_seconds, before, secs)
                && now >= *b
            {
                let cores = (now - b) / s;
                c.cpu_usage_cores = Some(cores);
                c.cpu_usage_pct = Some(cores * 100.0);
            }
        }

        if self.host.is_none() || self.samples.is_multiple_of(REFRESH_HOST_EVERY) {
            let mut found = Warnings::default();
            self.host = Some(host::read(&self.roots, &mut found));
            let found = found.into_vec();
            for x in &found {
                w.push(x.source.clone(), x.message.clone());
            }
            self.host_warnings = found;
        } else {
            for x in &self.host_warnings {
                w.push(x.source.clone(), x.message.clone());
            }
        }
        let h = self.host.clone().unwrap_or_default();
        let (rss, own_cpu) = host::own_usage(&mut self.files);
        let own_pct = match (own_cpu, prev.as_ref().and_then(|p| p.own_cpu), secs) {
            (Some(now), Some(b), Some(s)) => Some((now - b).max(0.0) / s * 100.0),
            _ => None,
        };

        let mut stat_keep = stat.cpus.clone();
        if let Some(t) = stat.total {
            stat_keep.push((u32::MAX, t)); // the aggregate line, under a key no CPU can have
        }
        self.previous = Some(Previous {
            at: started,
            stat: stat_keep,
            disks: whole.into_iter().map(|d| (d.name.clone(), d)).collect(),
            nets: net_stats.interfaces.iter().map(|n| (n.interface.clone(), (n.rx_bytes, n.tx_bytes))).collect(),
            cgroup_cpu: containers.iter().filter_map(|c| Some((c.cgroup_path.clone(), c.cpu_seconds?))).collect(),
            cycles,
            own_cpu,
        });

        self.samples += 1;
        Snapshot {
            timestamp: host::rfc3339(unix_nanos),
            timestamp_unix_nano: unix_nanos,
            interval_seconds: secs,
            host: HostInfo {
                hostname: h.hostname,
                os: h.os,
                arch: std::env::consts::ARCH.to_string(),
                kernel: h.kernel,
                cpu_count: cpus.len(),
                virtualization: self.platform.virtualization.clone(),
            },
            cpus,
            cpu_total,
            memory,
            load,
            disks,
            networks,
            filesystems,
            temperatures,
            throttling,
            containers,
            collector: CollectorSelf {
                version: env!("CARGO_PKG_VERSION").to_string(),
                rss_bytes: rss,
                cpu_seconds: own_cpu,
                cpu_pct: own_pct,
                sample_duration_seconds: Instant::now().saturating_duration_since(started).as_secs_f64(),
            },
            warnings: w.into_vec(),
        }
    }

    fn memory(&mut self, w: &mut Warnings) -> Memory {
        let path = self.roots.proc("meminfo");
        let Some(text) = self.files.or_warn(&path, w) else { return Memory::default() };
        let m = parse::meminfo::parse(&text);
        if m.bad_lines > 0 {
            w.file(&path, format!("{} line(s) unreadable", m.bad_lines));
        }
        let used = match (m.total, m.free, m.buffers, m.cached) {
            (Some(t), Some(f), Some(b), Some(c)) => Some(
                t.saturating_sub(f).saturating_sub(b).saturating_sub(c).saturating_sub(m.sreclaimable.unwrap_or(0)),
            ),
            _ => None,
        };
        Memory {
            total_bytes: m.total,
            free_bytes: m.free,
            available_bytes: m.available,
            buffers_bytes: m.buffers,
            cached_bytes: m.cached,
            used_bytes: used,
            swap_total_bytes: m.swap_total,
            swap_free_bytes: m.swap_free,
            swap_used_bytes: match (m.swap_total, m.swap_free) {
                (Some(t), Some(f)) => Some(t.saturating_sub(f)),
                _ => None,
            },
        }
    }

    fn throttling(&self, w: &mut Warnings) -> Option<parse::throttle::ThrottleFlags> {
        let program = self.vcgencmd.as_ref()?;
        match std::process::Command::new(program).arg("get_throttled").output() {
            Ok(out) if out.status.success() => {
                let flags = parse::throttle::parse(&String::from_utf8_lossy(&out.stdout));
                if flags.is_none() {
                    w.push("vcgencmd get_throttled", "unparsable output");
                }
                flags
            }
            Ok(out) => {
                w.push("vcgencmd get_throttled", format!("exited with {}", out.status));
                None
            }
            Err(e) => {
                w.push("vcgencmd get_throttled", e.to_string());
                None
            }
        }
    }
}
