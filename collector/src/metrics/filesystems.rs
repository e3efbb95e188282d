//! The `filesystems` source's families: space by state and utilisation per real filesystem.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let p = b.family(
        "system.filesystem.usage",
        "system_filesystem_usage_bytes",
        "By",
        Kind::Gauge,
        "Filesystem space by state (reserved is free space only root may use).",
    );
    for f in &snap.filesystems {
        for (state, v) in [
            ("used", f.used_bytes),
            ("free", f.available_bytes),
            ("reserved", f.free_bytes.saturating_sub(f.available_bytes)),
        ] {
            p.push(Point {
                labels: vec![
                    s("system.device", &f.device),
                    s("system.filesystem.mountpoint", &f.mountpoint),
                    s("system.filesystem.type", &f.fstype),
                    s("system.filesystem.state", state),
                ],
                value: v as f64,
            });
        }
    }
    let p = b.family(
        "system.filesystem.utilization",
        "system_filesystem_utilization_ratio",
        "1",
        Kind::Gauge,
        "Share of the filesystem in use, as df counts it (0-1).",
    );
    for f in &snap.filesystems {
        if let Some(pct) = f.used_pct {
            p.push(Point {
                labels: vec![
                    s("system.device", &f.device),
                    s("system.filesystem.mountpoint", &f.mountpoint),
                    s("system.filesystem.type", &f.fstype),
                ],
                value: pct / 100.0,
            });
        }
    }

    b.finish()
}
