//! The `disk` source: whole disks from `/proc/diskstats`, with rates against the previous sample.

use crate::files::KernelFiles;
use crate::parse::diskstats::{self, DiskStat};
use crate::roots::Roots;
use crate::snapshot::Disk;
use crate::warnings::Warnings;
use std::collections::HashMap;

/// Per second between two readings of a counter; None without an earlier reading, an interval,
/// or when the counter went backwards (a device replaced under the same name).
pub fn rate(now: u64, before: Option<u64>, secs: Option<f64>) -> Option<f64> {
    match (before, secs) {
        (Some(b), Some(s)) if s > 0.0 && now >= b => Some((now - b) as f64 / s),
        _ => None,
    }
}

/// Reads /proc/diskstats. Returns the disks and this sample's counters by device (the next
/// sample's `previous`).
pub fn read(
    roots: &Roots,
    files: &mut KernelFiles,
    previous: Option<&HashMap<String, DiskStat>>,
    secs: Option<f64>,
    w: &mut Warnings,
) -> (Vec<Disk>, HashMap<String, DiskStat>) {
    let path = roots.proc("diskstats");
    let stats = files.or_warn(&path, w).map(|t| diskstats::parse(&t)).unwrap_or_default();
    if stats.bad_lines > 0 {
        w.file(&path, format!("{} line(s) unreadable", stats.bad_lines));
    }
    let whole: Vec<DiskStat> = stats.disks.into_iter().filter(|d| diskstats::is_whole_disk(&d.name)).collect();
    let disks = whole
        .iter()
        .map(|d| {
            let b = previous.and_then(|p| p.get(&d.name));
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
    (disks, whole.into_iter().map(|d| (d.name.clone(), d)).collect())
}
