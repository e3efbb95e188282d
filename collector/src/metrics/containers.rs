//! The `containers` source's families: CPU, memory, pids and block I/O per container cgroup.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let clabels = |c: &crate::snapshot::Container| {
        vec![s("container.id", &c.id), s("container.runtime", &c.runtime), s("cgroup.path", &c.cgroup_path)]
    };
    type Get = fn(&crate::snapshot::Container) -> Option<f64>;
    let container_metrics: [(&'static str, &'static str, &'static str, Kind, &'static str, Get); 9] = [
        (
            "container.cpu.time",
            "container_cpu_time_seconds_total",
            "s",
            Kind::Counter,
            "CPU seconds used by the container.",
            |c| c.cpu_seconds,
        ),
        (
            "container.cpu.usage",
            "container_cpu_usage",
            "{cpu}",
            Kind::Gauge,
            "CPU used over the last interval, in cores.",
            |c| c.cpu_usage_cores,
        ),
        (
            "container.cpu.limit",
            "container_cpu_limit",
            "{cpu}",
            Kind::Gauge,
            "CFS quota in cores (absent when unlimited).",
            |c| c.cpu_limit_cores,
        ),
        (
            "container.cpu.throttled.periods",
            "container_cpu_throttled_periods_total",
            "{period}",
            Kind::Counter,
            "Scheduler periods in which the container was throttled.",
            |c| c.cpu_throttled_periods.map(|v| v as f64),
        ),
        (
            "container.cpu.throttled.time",
            "container_cpu_throttled_time_seconds_total",
            "s",
            Kind::Counter,
            "Time the container was throttled.",
            |c| c.cpu_throttled_seconds,
        ),
        (
            "container.memory.usage",
            "container_memory_usage_bytes",
            "By",
            Kind::Gauge,
            "Memory charged to the container.",
            |c| c.memory_bytes.map(|v| v as f64),
        ),
        (
            "container.memory.limit",
            "container_memory_limit_bytes",
            "By",
            Kind::Gauge,
            "Memory limit (absent when unlimited).",
            |c| c.memory_limit_bytes.map(|v| v as f64),
        ),
        (
            "container.pids",
            "container_pids",
            "{process}",
            Kind::Gauge,
            "Processes and threads in the container.",
            |c| c.pids.map(|v| v as f64),
        ),
        (
            "container.disk.io.read",
            "container_disk_read_bytes_total",
            "By",
            Kind::Counter,
            "Bytes the container read from block devices.",
            |c| c.io_read_bytes.map(|v| v as f64),
        ),
    ];
    for (otel, prom, unit, kind, help, get) in container_metrics {
        let p = b.family(otel, prom, unit, kind, help);
        for c in &snap.containers {
            if let Some(v) = get(c) {
                p.push(Point { labels: clabels(c), value: v });
            }
        }
    }
    let p = b.family(
        "container.disk.io.write",
        "container_disk_written_bytes_total",
        "By",
        Kind::Counter,
        "Bytes the container wrote to block devices.",
    );
    for c in &snap.containers {
        if let Some(v) = c.io_write_bytes {
            p.push(Point { labels: clabels(c), value: v as f64 });
        }
    }

    b.finish()
}
