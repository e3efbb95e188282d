//! The `disk` source's families: bytes, operations and time per whole disk.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let dir = |d: &'static str| s("disk.io.direction", d);
    let p = b.family(
        "system.disk.io",
        "system_disk_io_bytes_total",
        "By",
        Kind::Counter,
        "Bytes read from and written to each disk.",
    );
    for d in &snap.disks {
        p.push(Point { labels: vec![s("system.device", &d.device), dir("read")], value: d.read_bytes as f64 });
        p.push(Point { labels: vec![s("system.device", &d.device), dir("write")], value: d.write_bytes as f64 });
    }
    let p = b.family(
        "system.disk.operations",
        "system_disk_operations_total",
        "{operation}",
        Kind::Counter,
        "Completed reads and writes per disk.",
    );
    for d in &snap.disks {
        p.push(Point { labels: vec![s("system.device", &d.device), dir("read")], value: d.reads as f64 });
        p.push(Point { labels: vec![s("system.device", &d.device), dir("write")], value: d.writes as f64 });
    }
    let p = b.family(
        "system.disk.io_time",
        "system_disk_io_time_seconds_total",
        "s",
        Kind::Counter,
        "Time each disk had I/O in flight.",
    );
    for d in &snap.disks {
        p.push(Point { labels: vec![s("system.device", &d.device)], value: d.io_time_seconds });
    }
    let p = b.family(
        "system.disk.operation_time",
        "system_disk_operation_time_seconds_total",
        "s",
        Kind::Counter,
        "Sum of the time reads and writes took per disk.",
    );
    for d in &snap.disks {
        p.push(Point { labels: vec![s("system.device", &d.device), dir("read")], value: d.read_time_seconds });
        p.push(Point { labels: vec![s("system.device", &d.device), dir("write")], value: d.write_time_seconds });
    }

    b.finish()
}
