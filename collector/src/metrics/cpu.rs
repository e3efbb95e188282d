//! The `cpu` source's families: CPU time and utilisation per state, busy share, the logical CPU
//! count and the load average.

use super::{Builder, Family, Kind, Point, cpu_labels, s};
use crate::snapshot::{CpuUsage, Snapshot};

fn usage_states(u: &CpuUsage) -> [(&'static str, f64, f64); 8] {
    let sec = &u.seconds;
    [
        ("user", u.user_pct, sec.user),
        ("nice", u.nice_pct, sec.nice),
        ("system", u.system_pct, sec.system),
        ("idle", u.idle_pct, sec.idle),
        ("iowait", u.iowait_pct, sec.iowait),
        ("interrupt", u.irq_pct, sec.irq),
        ("softirq", u.softirq_pct, sec.softirq),
        ("steal", u.steal_pct, sec.steal),
    ]
}

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let p = b.family(
        "system.cpu.time",
        "system_cpu_time_seconds_total",
        "s",
        Kind::Counter,
        "Seconds each logical CPU spent in each state since boot.",
    );
    for c in &snap.cpus {
        if let Some(u) = &c.usage {
            for (state, _, secs) in usage_states(u) {
                let mut l = cpu_labels(&c.cpu, c.logical_number);
                l.push(s("cpu.mode", state));
                p.push(Point { labels: l, value: secs });
            }
        }
    }
    let p = b.family(
        "system.cpu.utilization",
        "system_cpu_utilization_ratio",
        "1",
        Kind::Gauge,
        "Share of the last interval each logical CPU spent in each state (0-1).",
    );
    for c in &snap.cpus {
        if let Some(u) = &c.usage {
            for (state, pct, _) in usage_states(u) {
                let mut l = cpu_labels(&c.cpu, c.logical_number);
                l.push(s("cpu.mode", state));
                p.push(Point { labels: l, value: pct / 100.0 });
            }
        }
    }
    let p = b.family(
        "sysmon.cpu.busy",
        "sysmon_cpu_busy_ratio",
        "1",
        Kind::Gauge,
        "Share of the last interval the CPU was busy (not idle, not iowait); cpu=\"all\" is the machine average.",
    );
    for c in &snap.cpus {
        if let Some(u) = &c.usage {
            p.push(Point { labels: cpu_labels(&c.cpu, c.logical_number), value: u.usage_pct / 100.0 });
        }
    }
    if let Some(u) = &snap.cpu_total {
        p.push(Point { labels: vec![s("cpu", "all")], value: u.usage_pct / 100.0 });
    }
    // No CPU list read at all (the cpu source failed) is no count, not a count of 0.
    if !snap.cpus.is_empty() {
        b.family(
            "system.cpu.logical.count",
            "system_cpu_logical_cpus",
            "{cpu}",
            Kind::Gauge,
            "Number of logical CPUs online.",
        )
        .push(Point { labels: vec![], value: snap.cpus.len() as f64 });
    }

    if let Some(l) = &snap.load {
        for (otel, prom, v) in [
            ("system.cpu.load_average.1m", "system_cpu_load_average_1m", l.load1),
            ("system.cpu.load_average.5m", "system_cpu_load_average_5m", l.load5),
            ("system.cpu.load_average.15m", "system_cpu_load_average_15m", l.load15),
        ] {
            b.family(otel, prom, "{thread}", Kind::Gauge, "Load average.").push(Point { labels: vec![], value: v });
        }
    }
    b.finish()
}
