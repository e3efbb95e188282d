//! The sample the collector produces: serialised as the JSON contract (documented in
//! `collector/SCHEMA.md`) and reused, deserialised, by the `sysmonvm` CLI. Every reading that
//! could not be taken is `None` (JSON null) with a matching entry in `warnings`.

use crate::parse::throttle::ThrottleFlags;
use crate::warnings::Warning;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the readings were taken (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    /// The same instant in Unix nanoseconds, as OTLP carries it.
    pub timestamp_unix_nano: u64,
    /// Length of the window that rates and usage cover; null for a first sample with nothing to compare.
    pub interval_seconds: Option<f64>,
    pub host: HostInfo,
    pub cpus: Vec<CpuReading>,
    pub cpu_total: Option<CpuUsage>,
    pub memory: Memory,
    pub load: Option<Load>,
    pub disks: Vec<Disk>,
    pub networks: Vec<Network>,
    pub filesystems: Vec<Filesystem>,
    pub temperatures: Vec<Temperature>,
    pub throttling: Option<ThrottleFlags>,
    pub containers: Vec<Container>,
    pub collector: CollectorSelf,
    /// One entry per source (`cpu`, `frequency`, …, `host`), in the order they were read: whether
    /// it read everything it is responsible for, and how long that took. Absent in older documents.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    pub warnings: Vec<Warning>,
}

/// How one source's read went (see [`crate::source::Source`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The source's name (`cpu`, `memory`, …); a string, so a newer collector's sources still parse.
    pub source: String,
    /// False when the source recorded a warning: some reading it is responsible for is missing,
    /// and `warnings[]` has an entry with this `subsystem` saying why.
    pub success: bool,
    /// Wall time the source's read took, in seconds.
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub arch: String,
    pub kernel: Option<String>,
    pub cpu_count: usize,
    /// What the collector recognised the machine as (`qemu`, `apple-hvf`, `hypervisor`), null on bare metal.
    pub virtualization: Option<String>,
}

/// Where a CPU's frequency came from. See `collector/README.md` for what each means inside a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrequencySource {
    /// cpufreq sysfs: `cpuinfo_avg_freq`, `scaling_cur_freq` or `cpuinfo_cur_freq`.
    Cpufreq,
    /// Hardware cycle counter divided by the CPU's busy time over the interval, only for a counter
    /// the collector has seen slow down while its CPU idled (a clock).
    Perf,
    /// A constant-rate cycle counter: it kept its rate per wall second idle and busy, so it counts
    /// a fixed virtual clock (QEMU's emulated arm PMU under TCG and HVF), not the CPU's frequency.
    /// No frequency value; the counter's rate is in `counter_rate_hz`.
    PerfSynthetic,
    /// A cycle counter the collector has not yet seen both idle and busy (e.g. a CPU busy since
    /// start): still checking whether it is a clock, so no frequency value yet; the note says what
    /// is missing and `counter_rate_hz` carries the counter's rate.
    PerfUnverified,
    /// `cpu MHz` in /proc/cpuinfo (x86 only; in a VM, the constant TSC rate).
    Cpuinfo,
    None,
}

impl FrequencySource {
    pub fn as_str(self) -> &'static str {
        match self {
            FrequencySource::Cpufreq => "cpufreq",
            FrequencySource::Perf => "perf",
            FrequencySource::PerfSynthetic => "perf-synthetic",
            FrequencySource::PerfUnverified => "perf-unverified",
            FrequencySource::Cpuinfo => "cpuinfo",
            FrequencySource::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReading {
    /// `cpu0`, `cpu1`, … as /proc/stat names them.
    pub cpu: String,
    pub logical_number: u32,
    pub frequency_hz: Option<f64>,
    pub frequency_source: FrequencySource,
    /// The file or method the value came from (`scaling_cur_freq`, `cycles/busy`, `cpu MHz`).
    pub frequency_detail: Option<String>,
    /// Why the value is null, or why it should not be read as a hardware clock.
    pub frequency_note: Option<String>,
    /// The CPU's cycle counter over the interval in cycles per wall-clock second: a counter rate,
    /// not a frequency (QEMU's emulated counter reads 1e9 here idle and busy alike). Null without
    /// a counter reading; present whatever `frequency_source` is. Absent in older documents.
    #[serde(default)]
    pub counter_rate_hz: Option<f64>,
    /// When the frequency reading was made (RFC 3339); equals the snapshot timestamp.
    pub frequency_min_hz: Option<f64>,
    pub frequency_max_hz: Option<f64>,
    pub governor: Option<String>,
    pub driver: Option<String>,
    /// The cpufreq policy directory this CPU belongs to (`policy3`), for big.LITTLE clusters.
    pub policy: Option<String>,
    pub usage: Option<CpuUsage>,
}

/// Shares of the interval in percent (0–100 for one CPU; for `cpu_total` the average over CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub usage_pct: f64,
    pub user_pct: f64,
    pub nice_pct: f64,
    pub system_pct: f64,
    pub idle_pct: f64,
    pub iowait_pct: f64,
    pub irq_pct: f64,
    pub softirq_pct: f64,
    pub steal_pct: f64,
    /// Cumulative seconds per state since boot (for counters such as `system.cpu.time`).
    pub seconds: CpuSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuSeconds {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub buffers_bytes: Option<u64>,
    pub cached_bytes: Option<u64>,
    /// total − free − buffers − cached − reclaimable slab, as `free(1)` counts it.
    pub used_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    pub swap_free_bytes: Option<u64>,
    pub swap_used_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
    pub io_time_seconds: f64,
    pub read_time_seconds: f64,
    pub write_time_seconds: f64,
    pub read_bytes_per_second: Option<f64>,
    pub write_bytes_per_second: Option<f64>,
    pub reads_per_second: Option<f64>,
    pub writes_per_second: Option<f64>,
    /// Share of the interval the device was busy (0–100).
    pub busy_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub interface: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_bytes_per_second: Option<f64>,
    pub tx_bytes_per_second: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Free to unprivileged users (excludes the root reserve).
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub used_pct: Option<f64>,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// `thermal_zone0/x86_pkg_temp` or `hwmon1/coretemp/Core 0`.
    pub sensor: String,
    /// `thermal` or `hwmon`.
    pub kind: String,
    pub celsius: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Container id (64 hex digits for Docker/Podman/CRI), or the cgroup path for a named cgroup.
    pub id: String,
    /// `docker`, `podman`, `containerd`, `cri-o`, `kubernetes`, or `cgroup` for a cgroup named in the config.
    pub runtime: String,
    /// Path relative to the cgroup mount (`system.slice/docker-<id>.scope`).
    pub cgroup_path: String,
    pub cgroup_version: u8,
    /// Cumulative CPU seconds used by the cgroup.
    pub cpu_seconds: Option<f64>,
    /// CPU used over the interval, in cores (1.0 = one CPU fully busy).
    pub cpu_usage_cores: Option<f64>,
    /// The same as a percentage of one core.
    pub cpu_usage_pct: Option<f64>,
    /// The CFS quota in cores (`cpu.max` 50000 100000 → 0.5), null when unlimited.
    pub cpu_limit_cores: Option<f64>,
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorSelf {
    pub version: String,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// CPU the collector itself used over the interval, percent of one core.
    pub cpu_pct: Option<f64>,
    /// How long taking this sample's readings took.
    pub sample_duration_seconds: f64,
}
