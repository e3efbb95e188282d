//! The sample's own families: each source's success and read duration, the sample's duration and
//! timestamp, the warning count, the build.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let source = |name: &str| vec![s("source", name)];
    let p = b.family(
        "sysmon.source.success",
        "sysmon_source_success",
        "1",
        Kind::Gauge,
        "1 when the source (cpu, frequency, memory, disk, network, filesystems, thermal, containers, host) read everything it is responsible for in the last sample, 0 when something is missing (see the warnings with that subsystem in /v1/snapshot).",
    );
    for st in &snap.sources {
        p.push(Point { labels: source(&st.source), value: if st.success { 1.0 } else { 0.0 } });
    }
    let p = b.family(
        "sysmon.source.duration",
        "sysmon_source_duration_seconds",
        "s",
        Kind::Gauge,
        "How long the source's read took in the last sample.",
    );
    for st in &snap.sources {
        p.push(Point { labels: source(&st.source), value: st.duration_seconds });
    }
    b.family(
        "sysmon.sample.duration",
        "sysmon_sample_duration_seconds",
        "s",
        Kind::Gauge,
        "How long taking the last sample took.",
    )
    .push(Point { labels: vec![], value: snap.collector.sample_duration_seconds });
    b.family(
        "sysmon.sample.timestamp",
        "sysmon_sample_timestamp_seconds",
        "s",
        Kind::Gauge,
        "Unix time the last sample was taken; stale when it stops moving.",
    )
    .push(Point { labels: vec![], value: snap.timestamp_unix_nano as f64 / 1e9 });
    b.family(
        "sysmon.warnings",
        "sysmon_warnings",
        "{warning}",
        Kind::Gauge,
        "Readings that failed in the last sample (see /v1/snapshot).",
    )
    .push(Point { labels: vec![], value: snap.warnings.len() as f64 });
    b.family("sysmon.build", "sysmon_build_info", "1", Kind::Gauge, "Always 1; the collector's version.")
        .push(Point { labels: vec![s("version", &snap.collector.version)], value: 1.0 });

    b.finish()
}
