//! Pure parsers, one per kernel file format. Each takes the file's text and returns what it
//! could make of it; none of them panics on any input (see `tests/fuzz_parsers.rs`). Lines that
//! do not fit the format are skipped and counted, so the caller can warn without losing the rest.

pub mod cgroup;
pub mod cpuinfo;
pub mod cpulist;
pub mod diskstats;
pub mod keyvalue;
pub mod loadavg;
pub mod meminfo;
pub mod mounts;
pub mod netdev;
pub mod stat;
pub mod throttle;

/// Parses one number written alone in a file (sysfs style), such as `2893313\n`.
pub fn single_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parses a signed number written alone in a file (thermal zones report millidegrees, which may be negative).
pub fn single_i64(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}
