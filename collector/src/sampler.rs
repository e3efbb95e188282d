//! Takes samples: runs every source's reader once ([`Source::ALL`]), times each one and records
//! whether it read everything it is responsible for, and turns counters into rates against the
//! previous sample. The only stateful part of the collector; everything it calls is a reader or a
//! pure function, and what a reader needs from earlier samples it gets from here.

use crate::container_view::{self, ContainerView};
use crate::containers::{self, CgroupLayout, ContainerState};
use crate::files::{KernelFiles, read_optional};
use crate::frequency::{self, CpuInterval, FrequencyState};
use crate::host::{self, HostState, REFRESH_FACTS_EVERY};
use crate::network::ByteCounters;
use crate::parse::{self, diskstats::DiskStat, stat::ProcStat};
use crate::perf::CycleCounters;
use crate::platform::{self, Platform};
use crate::roots::Roots;
use crate::snapshot::*;
use crate::source::Source;
use crate::warnings::Warnings;
use crate::{cpu, disk, filesystems, memory, network, thermal};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Containers come and go; walking the cgroup tree for them is the costliest read, so it is
/// repeated every this many samples (10 s at the default serve interval), and the containers
/// found are read on every sample in between.
const REDISCOVER_CONTAINERS_EVERY: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerOptions {
    /// Open per-CPU cycle counters (needs a PMU and CAP_PERFMON or perf_event_paranoid <= 0).
    pub perf: bool,
    /// Extra cgroups to report as containers, relative to the cgroup root.
    pub cgroups: Vec<String>,
    /// The container the collector runs in (`container_view::detect`), whose narrowed view of
    /// the host each affected source warns about in every sample; None on the host.
    pub container: Option<ContainerView>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions { perf: true, cgroups: Vec::new(), container: None }
    }
}

/// The previous sample's counters, for this sample's deltas and rates.
#[derive(Default)]
struct Previous {
    stat: ProcStat,
    disks: HashMap<String, DiskStat>,
    nets: HashMap<String, ByteCounters>,
    cgroup_cpu: HashMap<String, f64>,
    own_cpu: Option<f64>,
}

pub struct Sampler {
    roots: Roots,
    options: SamplerOptions,
    platform: Platform,
    frequency: FrequencyState,
    containers: ContainerState,
    host: HostState,
    /// Samples taken so far; discovery work is repeated every so many samples, not every time.
    samples: u64,
    files: KernelFiles,
    /// When the previous sample was taken, and its counters.
    previous: Option<(Instant, Previous)>,
    clock_ticks: f64,
    vcgencmd: Option<PathBuf>,
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|c| c.is_file()))
        .unwrap_or(None)
}

/// A snapshot with nothing read yet: the sources fill it in.
fn blank(unix_nanos: u64, interval_seconds: Option<f64>, virtualization: Option<String>) -> Snapshot {
    Snapshot {
        timestamp: host::rfc3339(unix_nanos),
        timestamp_unix_nano: unix_nanos,
        interval_seconds,
        host: HostInfo {
            hostname: None,
            os: None,
            arch: std::env::consts::ARCH.to_string(),
            kernel: None,
            cpu_count: 0,
            virtualization,
        },
        cpus: Vec::new(),
        cpu_total: None,
        memory: Memory::default(),
        load: None,
        disks: Vec::new(),
        networks: Vec::new(),
        filesystems: Vec::new(),
        temperatures: Vec::new(),
        throttling: None,
        containers: Vec::new(),
        collector: CollectorSelf {
            version: env!("CARGO_PKG_VERSION").to_string(),
            rss_bytes: None,
            cpu_seconds: None,
            cpu_pct: None,
            sample_duration_seconds: 0.0,
        },
        sources: Vec::with_capacity(Source::ALL.len()),
        warnings: Vec::new(),
    }
}

impl Sampler {
    pub fn new(roots: Roots, options: SamplerOptions) -> Self {
        let cpuinfo = read_optional(&roots.proc("cpuinfo")).map(|t| parse::cpuinfo::parse(&t)).unwrap_or_default();
        let platform = platform::detect(&roots, &cpuinfo);
        let containers = ContainerState { layout: CgroupLayout::detect(&roots.cgroupfs), ..Default::default() };
        let frequency =
            FrequencyState { counters: (!options.perf).then(CycleCounters::disabled), ..Default::default() };
        Sampler {
            roots,
            options,
            platform,
            frequency,
            containers,
            host: HostState::default(),
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
        let prev = self.previous.take();
        let secs =
            prev.as_ref().map(|(at, _)| started.saturating_duration_since(*at).as_secs_f64()).filter(|s| *s > 0.0);
        let prev = prev.map(|(_, p)| p);

        let mut snap = blank(unix_nanos, secs, self.platform.virtualization.clone());
        let mut next = Previous::default();
        for source in Source::ALL {
            let began = Instant::now();
            let mut w = Warnings::for_source(source.name());
            self.read(source, prev.as_ref(), secs, &mut next, &mut snap, &mut w);
            if let Some(view) = &self.options.container {
                container_view::warn_limits(view, source, &self.roots, &mut w);
            }
            snap.sources.push(SourceStatus {
                source: source.name().to_string(),
                success: w.is_empty(),
                duration_seconds: began.elapsed().as_secs_f64(),
            });
            snap.warnings.extend(w.into_vec());
        }
        self.previous = Some((started, next));
        self.samples += 1;
        snap.collector.sample_duration_seconds = Instant::now().saturating_duration_since(started).as_secs_f64();
        snap
    }

    /// Runs one source's reader: it fills its part of `snap`, keeps its counters in `next` for the
    /// next sample's rates, and records in `w` whatever it could not read.
    fn read(
        &mut self,
        source: Source,
        prev: Option<&Previous>,
        secs: Option<f64>,
        next: &mut Previous,
        snap: &mut Snapshot,
        w: &mut Warnings,
    ) {
        let (roots, files) = (&self.roots, &mut self.files);
        match source {
            Source::Cpu => {
                let read = cpu::read(roots, files, prev.map(|p| &p.stat), self.clock_ticks, w);
                snap.host.cpu_count = read.cpus.len();
                (snap.cpus, snap.cpu_total, snap.load, next.stat) = (read.cpus, read.total, read.load, read.stat);
            }
            Source::Frequency => {
                let interval = CpuInterval {
                    now: &next.stat,
                    before: prev.map(|p| &p.stat),
                    seconds: secs,
                    clock_ticks: self.clock_ticks,
                };
                frequency::read(&mut self.frequency, roots, files, &self.platform, interval, &mut snap.cpus, w);
            }
            Source::Memory => snap.memory = memory::read(roots, files, w),
            Source::Disk => (snap.disks, next.disks) = disk::read(roots, files, prev.map(|p| &p.disks), secs, w),
            Source::Network => (snap.networks, next.nets) = network::read(roots, files, prev.map(|p| &p.nets), secs, w),
            Source::Filesystems => snap.filesystems = filesystems::read(roots, files, w),
            Source::Thermal => {
                (snap.temperatures, snap.throttling) = thermal::read(roots, files, self.vcgencmd.as_deref(), w)
            }
            Source::Containers => {
                if self.samples.is_multiple_of(REDISCOVER_CONTAINERS_EVERY) {
                    containers::rediscover(&mut self.containers, &roots.cgroupfs);
                }
                let previous_cpu = prev.map(|p| &p.cgroup_cpu);
                (snap.containers, next.cgroup_cpu) =
                    containers::read(&self.containers, &self.options.cgroups, files, previous_cpu, secs, w);
            }
            Source::Host => {
                let refresh = self.samples.is_multiple_of(REFRESH_FACTS_EVERY);
                let previous_cpu = prev.and_then(|p| p.own_cpu);
                let (facts, own) = host::read(&mut self.host, roots, refresh, files, previous_cpu, secs, w);
                (snap.host.hostname, snap.host.os, snap.host.kernel) = (facts.hostname, facts.os, facts.kernel);
                (snap.collector.rss_bytes, snap.collector.cpu_seconds, snap.collector.cpu_pct) =
                    (own.rss_bytes, own.cpu_seconds, own.cpu_pct);
                next.own_cpu = own.cpu_seconds;
            }
        }
    }
}
