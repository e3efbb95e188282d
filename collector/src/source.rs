//! The subsystems a sample is made of, node_exporter style: one source per subsystem behind one
//! interface. Each source has a reader (a function of its module that fills its part of the
//! [`Snapshot`](crate::snapshot::Snapshot) and records what it could not read in its own
//! [`Warnings`](crate::warnings::Warnings)) and its metric families (`metrics::<source>`). The
//! sampler runs the readers in [`Source::ALL`] order, times each one and records a
//! [`SourceStatus`](crate::snapshot::SourceStatus): a source succeeds exactly when its read
//! recorded no warning, so a failure always comes with a warning naming the source
//! (`Warning::subsystem`). What each source is responsible for is listed in `collector/SCHEMA.md`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `/proc/stat` (CPU list, times, usage) and `/proc/loadavg`.
    Cpu,
    /// The per-CPU frequency chain: cpufreq, cycle counters, `cpu MHz`.
    Frequency,
    /// `/proc/meminfo`.
    Memory,
    /// `/proc/diskstats`, whole disks.
    Disk,
    /// `/proc/net/dev`.
    Network,
    /// `/proc/mounts` and statvfs of each real filesystem.
    Filesystems,
    /// Thermal zones, hwmon, and the Raspberry Pi throttle flags.
    Thermal,
    /// Container cgroups: discovery, named cgroups, their readings.
    Containers,
    /// Hostname, kernel, OS name, and the collector's own memory and CPU time.
    Host,
}

impl Source {
    /// Every source, in the order the sampler reads them: `frequency` right after `cpu`, because
    /// it needs this sample's CPU list and /proc/stat ticks (and its cycle counters are best read
    /// close in time to /proc/stat, so cycles and busy time cover the same interval).
    pub const ALL: [Source; 9] = [
        Source::Cpu,
        Source::Frequency,
        Source::Memory,
        Source::Disk,
        Source::Network,
        Source::Filesystems,
        Source::Thermal,
        Source::Containers,
        Source::Host,
    ];

    /// The name in JSON (`sources[].source`, `warnings[].subsystem`) and in the `source` label.
    pub fn name(self) -> &'static str {
        match self {
            Source::Cpu => "cpu",
            Source::Frequency => "frequency",
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Network => "network",
            Source::Filesystems => "filesystems",
            Source::Thermal => "thermal",
            Source::Containers => "containers",
            Source::Host => "host",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Source;

    #[test]
    fn names_are_unique_and_match_serde() {
        let mut names: Vec<&str> = Source::ALL.iter().map(|s| s.name()).collect();
        for s in Source::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Source::ALL.len());
    }
}
