//! Every exported metric is defined once here, from a [`Snapshot`], with both its OpenTelemetry
//! name and its Prometheus name (as the OpenTelemetry-to-Prometheus convention derives it: dots
//! to underscores, unit suffix, `_total` on counters). The Prometheus and OTLP exporters only
//! render this list, so the two can never disagree.

use crate::snapshot::{CpuUsage, Snapshot};

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
}

fn cpu_labels(cpu: &str, n: u32) -> Vec<Label> {
    vec![s("cpu", cpu), Label { otel: "cpu.logical_number", prom: None, value: LabelValue::Int(n as i64) }]
}

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

/// All metric families for one snapshot. Readings that are null produce no point.
pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder(Vec::new());

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
    b.family(
        "system.cpu.logical.count",
        "system_cpu_logical_cpus",
        "{cpu}",
        Kind::Gauge,
        "Number of logical CPUs online.",
    )
    .push(Point { labels: vec![], value: snap.cpus.len() as f64 });

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

    if let Some(l) = &snap.load {
        for (otel, prom, v) in [
            ("system.cpu.load_average.1m", "system_cpu_load_average_1m", l.load1),
            ("system.cpu.load_average.5m", "system_cpu_load_average_5m", l.load5),
            ("system.cpu.load_average.15m", "system_cpu_load_average_15m", l.load15),
        ] {
            b.family(otel, prom, "{thread}", Kind::Gauge, "Load average.").push(Point { labels: vec![], value: v });
        }
    }

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

    let ndir = |d: &'static str| s("network.io.direction", d);
    for (otel, prom, unit, help, get) in [
        (
            "system.network.io",
            "system_network_io_bytes_total",
            "By",
            "Bytes received and sent per interface.",
            (|n: &crate::snapshot::Network| (n.rx_bytes, n.tx_bytes)) as fn(&crate::snapshot::Network) -> (u64, u64),
        ),
        (
            "system.network.packets",
            "system_network_packets_total",
            "{packet}",
            "Packets received and sent per interface.",
            |n| (n.rx_packets, n.tx_packets),
        ),
        (
            "system.network.errors",
            "system_network_errors_total",
            "{error}",
            "Receive and transmit errors per interface.",
            |n| (n.rx_errors, n.tx_errors),
        ),
        ("system.network.dropped", "system_network_dropped_total", "{packet}", "Packets dropped per interface.", |n| {
            (n.rx_dropped, n.tx_dropped)
        }),
    ] {
        let p = b.family(otel, prom, unit, Kind::Counter, help);
        for n in &snap.networks {
            let (rx, tx) = get(n);
            p.push(Point {
                labels: vec![s("network.interface.name", &n.interface), ndir("receive")],
                value: rx as f64,
            });
            p.push(Point {
                labels: vec![s("network.interface.name", &n.interface), ndir("transmit")],
                value: tx as f64,
            });
        }
    }

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

    let p = b.family(
        "hw.temperature",
        "hw_temperature_celsius",
        "Cel",
        Kind::Gauge,
        "Sensor temperature (thermal zones and hwmon).",
    );
    for t in &snap.temperatures {
        p.push(Point { labels: vec![s("sensor", &t.sensor), s("hw.type", &t.kind)], value: t.celsius });
    }
    if let Some(t) = &snap.throttling {
        let p = b.family(
            "sysmon.rpi.throttle",
            "sysmon_rpi_throttle_flag",
            "1",
            Kind::Gauge,
            "Raspberry Pi firmware throttle flags from vcgencmd get_throttled (1 = set).",
        );
        for (flag, v) in [
            ("under_voltage", t.under_voltage),
            ("frequency_capped", t.frequency_capped),
            ("throttled", t.throttled),
            ("soft_temperature_limit", t.soft_temperature_limit),
            ("under_voltage_occurred", t.under_voltage_occurred),
            ("frequency_capped_occurred", t.frequency_capped_occurred),
            ("throttled_occurred", t.throttled_occurred),
            ("soft_temperature_limit_occurred", t.soft_temperature_limit_occurred),
        ] {
            p.push(Point { labels: vec![s("flag", flag)], value: if v { 1.0 } else { 0.0 } });
        }
    }

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

    b.0.retain(|f| !f.points.is_empty());
    b.0
}
