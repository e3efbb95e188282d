//! The `host` source's families: the collector's own resident memory and CPU time.

use super::{Builder, Family, Kind, Point};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    if let Some(v) = snap.collector.rss_bytes {
        b.family(
            "process.memory.usage",
            "process_resident_memory_bytes",
            "By",
            Kind::Gauge,
            "Resident memory of the collector.",
        )
        .push(Point { labels: vec![], value: v as f64 });
    }
    if let Some(v) = snap.collector.cpu_seconds {
        b.family(
            "process.cpu.time",
            "process_cpu_seconds_total",
            "s",
            Kind::Counter,
            "CPU time used by the collector.",
        )
        .push(Point { labels: vec![], value: v });
    }
    b.finish()
}
