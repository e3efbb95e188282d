//! The `memory` source's families: memory by state, total, available, swap.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let m = &snap.memory;
    let p = b.family("system.memory.usage", "system_memory_usage_bytes", "By", Kind::Gauge, "Memory in use, by state.");
    for (state, v) in
        [("used", m.used_bytes), ("free", m.free_bytes), ("buffered", m.buffers_bytes), ("cached", m.cached_bytes)]
    {
        if let Some(v) = v {
            p.push(Point { labels: vec![s("system.memory.state", state)], value: v as f64 });
        }
    }
    if let Some(v) = m.total_bytes {
        b.family("system.memory.limit", "system_memory_limit_bytes", "By", Kind::Gauge, "Total memory.")
            .push(Point { labels: vec![], value: v as f64 });
    }
    if let Some(v) = m.available_bytes {
        b.family(
            "system.linux.memory.available",
            "system_linux_memory_available_bytes",
            "By",
            Kind::Gauge,
            "Memory available for new work without swapping (MemAvailable).",
        )
        .push(Point { labels: vec![], value: v as f64 });
    }
    let p =
        b.family("system.paging.usage", "system_paging_usage_bytes", "By", Kind::Gauge, "Swap space, used and free.");
    for (state, v) in [("used", m.swap_used_bytes), ("free", m.swap_free_bytes)] {
        if let Some(v) = v {
            p.push(Point { labels: vec![s("system.paging.state", state)], value: v as f64 });
        }
    }

    b.finish()
}
