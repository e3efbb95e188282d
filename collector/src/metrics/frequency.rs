//! The `frequency` source's families: each CPU's frequency and where it came from, the cycle
//! counter's rate, the cpufreq limits.

use super::{Builder, Family, Kind, Label, LabelValue, Point, cpu_labels};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let p = b.family("system.cpu.frequency", "system_cpu_frequency_hertz", "Hz", Kind::Gauge,
        "Current frequency of the logical CPU, from the source named in `source` (cpufreq, perf, cpuinfo). A CPU whose only counter is constant-rate (perf-synthetic) or not yet verified (perf-unverified) has no sample here.");
    for c in &snap.cpus {
        if let Some(hz) = c.frequency_hz {
            let mut l = cpu_labels(&c.cpu, c.logical_number);
            l.push(Label {
                otel: "frequency.source",
                prom: Some("source"),
                value: LabelValue::Str(c.frequency_source.as_str().into()),
            });
            p.push(Point { labels: l, value: hz });
        }
    }
    let p = b.family(
        "sysmon.cpu.frequency.source",
        "sysmon_cpu_frequency_source_info",
        "1",
        Kind::Gauge,
        "Always 1: which frequency source each CPU has; source=\"none\" when the guest offers none.",
    );
    for c in &snap.cpus {
        let mut l = cpu_labels(&c.cpu, c.logical_number);
        l.push(Label {
            otel: "frequency.source",
            prom: Some("source"),
            value: LabelValue::Str(c.frequency_source.as_str().into()),
        });
        p.push(Point { labels: l, value: 1.0 });
    }
    let p = b.family(
        "sysmon.cpu.cycles.rate",
        "sysmon_cpu_cycles_rate_hertz",
        "Hz",
        Kind::Gauge,
        "Cycles per wall-clock second counted by the CPU's cycle counter over the last interval: a counter rate, not a frequency (an emulated constant-rate counter reads the same idle and busy). The CPU's frequency, when there is one, is system.cpu.frequency.",
    );
    for c in &snap.cpus {
        if let Some(rate) = c.counter_rate_hz {
            p.push(Point { labels: cpu_labels(&c.cpu, c.logical_number), value: rate });
        }
    }
    let p = b.family(
        "system.cpu.frequency.min",
        "system_cpu_frequency_min_hertz",
        "Hz",
        Kind::Gauge,
        "Lowest frequency the CPU can run at (cpufreq cpuinfo_min_freq).",
    );
    for c in &snap.cpus {
        if let Some(v) = c.frequency_min_hz {
            p.push(Point { labels: cpu_labels(&c.cpu, c.logical_number), value: v });
        }
    }
    let p = b.family(
        "system.cpu.frequency.max",
        "system_cpu_frequency_max_hertz",
        "Hz",
        Kind::Gauge,
        "Highest frequency the CPU can run at (cpufreq cpuinfo_max_freq).",
    );
    for c in &snap.cpus {
        if let Some(v) = c.frequency_max_hz {
            p.push(Point { labels: cpu_labels(&c.cpu, c.logical_number), value: v });
        }
    }

    b.finish()
}
