//! Every exported metric is defined once here, from a [`Snapshot`], with both its OpenTelemetry
//! name and its Prometheus name (as the OpenTelemetry-to-Prometheus convention derives it: dots
//! to underscores, unit suffix, `_total` on counters). The Prometheus and OTLP exporters only
//! render this list, so the two can never disagree. Each source owns its families (one module per
//! [`Source`](crate::source::Source)); [`collector`] has the sample's own, including every
//! source's success and duration.

use crate::snapshot::Snapshot;

mod collector;
mod containers;
mod cpu;
mod disk;
mod filesystems;
mod frequency;
mod host;
mod memory;
mod network;
mod thermal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Monotonic cumulative sum.
    Counter,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue {
    Str(String),
    Int(i64),
}

impl LabelValue {
    pub fn render(&self) -> String {
        match self {
            LabelValue::Str(s) => s.clone(),
            LabelValue::Int(i) => i.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Attribute key in OTLP (`cpu.logical_number`).
    pub otel: &'static str,
    /// Label name in Prometheus, or None to leave it out there (it would repeat another label).
    pub prom: Option<&'static str>,
    pub value: LabelValue,
}

fn s(key: &'static str, value: impl Into<String>) -> Label {
    Label { otel: key, prom: Some(key), value: LabelValue::Str(value.into()) }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: Vec<Label>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub otel_name: &'static str,
    pub prom_name: &'static str,
    pub help: &'static str,
    /// UCUM unit as OTLP carries it.
    pub unit: &'static str,
    pub kind: Kind,
    pub points: Vec<Point>,
}
/// Collects the families of one module; points are pushed into the family just added.
#[derive(Default)]
struct Builder(Vec<Family>);

impl Builder {
    fn family(
        &mut self,
        otel_name: &'static str,
        prom_name: &'static str,
        unit: &'static str,
        kind: Kind,
        help: &'static str,
    ) -> &mut Vec<Point> {
        self.0.push(Family { otel_name, prom_name, help, unit, kind, points: Vec::new() });
        &mut self.0.last_mut().expect("just pushed").points
    }

    fn finish(self) -> Vec<Family> {
        self.0
    }
}

fn cpu_labels(cpu: &str, n: u32) -> Vec<Label> {
    vec![s("cpu", cpu), Label { otel: "cpu.logical_number", prom: None, value: LabelValue::Int(n as i64) }]
}

/// All metric families for one snapshot, source by source. Readings that are null produce no
/// point, and a family without points is left out (a source that failed adds no made-up zeros;
/// its `sysmon_source_success` says it failed).
pub fn families(snap: &Snapshot) -> Vec<Family> {
    let per_source: [fn(&Snapshot) -> Vec<Family>; 10] = [
        frequency::families,
        cpu::families,
        memory::families,
        disk::families,
        network::families,
        filesystems::families,
        thermal::families,
        containers::families,
        host::families,
        collector::families,
    ];
    let mut out: Vec<Family> = per_source.iter().flat_map(|f| f(snap)).collect();
    out.retain(|f| !f.points.is_empty());
    out
}
