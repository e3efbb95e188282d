//! The host monitor: what the host's own CPUs do while a VM runs. On macOS, `powermetrics`
//! (root) streamed as plist and turned into per-cluster and per-core frequency, active residency
//! and power; on Linux, the host's cpufreq and /proc through the collector's own library. Both
//! export OTLP (`service.name` `macos-host-monitor` / `linux-host-monitor`). Pure parts here: the
//! powermetrics argv, its metric families, `vm_stat` for host memory, the launchd daemon.

pub mod powermetrics;

use sysmon_collector::metrics::{Family, Kind, Label, LabelValue, Point};

pub const LAUNCHD_LABEL: &str = "com.sysmonvm.host-monitor";
pub const LAUNCHD_PLIST: &str = "/Library/LaunchDaemons/com.sysmonvm.host-monitor.plist";
pub const LOG_DIR: &str = "/var/log/serviceradar";

pub fn service_name() -> &'static str {
    if cfg!(target_os = "macos") { "macos-host-monitor" } else { "linux-host-monitor" }
}

/// `powermetrics` streaming plist samples every `interval_ms`, `count` of them (or until stopped).
/// It needs root: run by anyone else, it goes through `sudo -n` (the sudoers rule in the README).
pub fn powermetrics_argv(interval_ms: u64, count: Option<u64>, as_root: bool) -> Vec<String> {
    let mut argv: Vec<String> = if as_root { vec![] } else { vec!["sudo".into(), "-n".into()] };
    argv.extend(
        ["powermetrics", "--samplers", "cpu_power", "-i", &interval_ms.max(100).to_string(), "-f", "plist"]
            .map(String::from),
    );
    if let Some(n) = count {
        argv.extend(["-n".to_string(), n.to_string()]);
    }
    argv
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn gauge(
    otel_name: &'static str,
    prom_name: &'static str,
    unit: &'static str,
    help: &'static str,
    points: Vec<Point>,
) -> Family {
    Family { otel_name, prom_name, unit, help, kind: Kind::Gauge, points }
}

fn label(key: &'static str, value: &str) -> Label {
    Label { otel: key, prom: Some(key), value: LabelValue::Str(value.to_string()) }
}

/// The metric families of one powermetrics sample, for the collector's OTLP and Prometheus encoders.
pub fn families(s: &powermetrics::Sample) -> Vec<Family> {
    let mut cf = Vec::new();
    let mut ca = Vec::new();
    let mut f = Vec::new();
    let mut a = Vec::new();
    for c in &s.clusters {
        if let Some(v) = c.freq_hz {
            cf.push(Point { labels: vec![label("cluster", &c.name)], value: v });
        }
        if let Some(v) = c.active_ratio {
            ca.push(Point { labels: vec![label("cluster", &c.name)], value: v });
        }
        for core in &c.cores {
            let labels = || vec![label("cluster", &c.name), label("cpu", &format!("cpu{}", core.cpu))];
            if let Some(v) = core.freq_hz {
                f.push(Point { labels: labels(), value: v });
            }
            if let Some(v) = core.active_ratio {
                a.push(Point { labels: labels(), value: v });
            }
        }
    }
    let power: Vec<Point> =
        [("cpu", s.cpu_power_mw), ("gpu", s.gpu_power_mw), ("ane", s.ane_power_mw), ("combined", s.combined_power_mw)]
            .into_iter()
            .filter_map(|(k, v)| Some(Point { labels: vec![label("component", k)], value: v? / 1000.0 }))
            .collect();
    vec![
        gauge(
            "host.cpu.cluster.frequency",
            "host_cpu_cluster_frequency_hertz",
            "Hz",
            "Cluster frequency while active (powermetrics freq_hz).",
            cf,
        ),
        gauge(
            "host.cpu.cluster.active_ratio",
            "host_cpu_cluster_active_ratio",
            "1",
            "Share of the sample the cluster was active (1 - idle - down).",
            ca,
        ),
        gauge(
            "host.cpu.frequency",
            "host_cpu_frequency_hertz",
            "Hz",
            "Per-core frequency while active (powermetrics freq_hz).",
            f,
        ),
        gauge("host.cpu.active_ratio", "host_cpu_active_ratio", "1", "Share of the sample the core was active.", a),
        gauge("host.power", "host_power_watts", "W", "Power by component (powermetrics, mW converted to W).", power),
    ]
    .into_iter()
    .filter(|f| !f.points.is_empty())
    .collect()
}

/// macOS `vm_stat` output: the page size and `Pages …` counters. Pure, garbage-tolerant.
pub fn parse_vm_stat(text: &str) -> Option<(u64, std::collections::BTreeMap<String, u64>)> {
    let mut lines = text.lines();
    let header = lines.next()?;
    let page_size: u64 = header.split("page size of ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    let counters = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().trim_end_matches('.').parse::<u64>().ok()?))
        })
        .collect();
    Some((page_size, counters))
}

/// Used memory as Activity Monitor counts it: active + wired + compressed pages.
pub fn vm_stat_used_bytes(page_size: u64, c: &std::collections::BTreeMap<String, u64>) -> Option<u64> {
    let get = |k: &str| c.get(k).copied();
    let pages = get("Pages active")?
        .checked_add(get("Pages wired down")?)?
        .checked_add(get("Pages occupied by compressor").unwrap_or(0))?;
    pages.checked_mul(page_size)
}

/// Host load and memory families (macOS: from `getloadavg` and `vm_stat` + `hw.memsize`).
pub fn load_memory_families(load: Option<[f64; 3]>, used: Option<u64>, total: Option<u64>) -> Vec<Family> {
    let mut out = Vec::new();
    if let Some([l1, l5, l15]) = load {
        out.push(gauge(
            "system.cpu.load_average.1m",
            "system_cpu_load_average_1m",
            "{thread}",
            "Host load average, 1 minute.",
            vec![Point { labels: vec![], value: l1 }],
        ));
        out.push(gauge(
            "system.cpu.load_average.5m",
            "system_cpu_load_average_5m",
            "{thread}",
            "Host load average, 5 minutes.",
            vec![Point { labels: vec![], value: l5 }],
        ));
        out.push(gauge(
            "system.cpu.load_average.15m",
            "system_cpu_load_average_15m",
            "{thread}",
            "Host load average, 15 minutes.",
            vec![Point { labels: vec![], value: l15 }],
        ));
    }
    if let Some(u) = used {
        out.push(gauge(
            "system.memory.usage",
            "system_memory_usage_bytes",
            "By",
            "Host memory in use (active + wired + compressed).",
            vec![Point { labels: vec![label("system.memory.state", "used")], value: u as f64 }],
        ));
    }
    if let Some(t) = total {
        out.push(gauge(
            "system.memory.limit",
            "system_memory_limit_bytes",
            "By",
            "Host memory installed.",
            vec![Point { labels: vec![], value: t as f64 }],
        ));
    }
    out
}

/// Where `host install` puts the copy of `sysmonvm` the root daemon runs: a root-owned path, so
/// the user who ran `sudo sysmonvm host install` cannot later swap the binary root executes.
pub const DAEMON_BINARY_DIR: &str = "/Library/Application Support/sysmonvm";
pub const DAEMON_BINARY: &str = "/Library/Application Support/sysmonvm/sysmonvm";

/// What `host install` does, in order (pure; the executor is `ops::host::install_daemon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonStep {
    /// Create a directory owned by root:wheel, mode 0755.
    RootDir(&'static str),
    /// Copy `from` to `to` as root:wheel 0755 (through a temporary file renamed into place).
    RootCopy { from: String, to: &'static str },
    /// Write the plist as root:wheel 0644.
    Plist { path: &'static str, contents: String },
    /// `launchctl bootout system/LABEL` (a missing daemon is fine), then `launchctl bootstrap system PLIST`.
    Reload,
}

/// The install plan for the launchd daemon: a root-owned copy of `current_exe`, a plist that
/// runs that copy (never the user's own binary), and the reload.
pub fn daemon_install_plan(
    current_exe: &str,
    endpoint: &str,
    interval: &str,
) -> Result<Vec<DaemonStep>, crate::templates::TemplateError> {
    Ok(vec![
        DaemonStep::RootDir(DAEMON_BINARY_DIR),
        DaemonStep::RootDir(LOG_DIR),
        DaemonStep::RootCopy { from: current_exe.to_string(), to: DAEMON_BINARY },
        DaemonStep::Plist { path: LAUNCHD_PLIST, contents: launchd_plist(DAEMON_BINARY, endpoint, interval)? },
        DaemonStep::Reload,
    ])
}

/// The launchd daemon that runs `sysmonvm host monitor` at boot (templates/launchd/).
pub fn launchd_plist(
    sysmonvm: &str,
    endpoint: &str,
    interval: &str,
) -> Result<String, crate::templates::TemplateError> {
    crate::templates::render(
        "host-monitor.plist.j2",
        &serde_json::json!({
            "label": LAUNCHD_LABEL, "program": sysmonvm, "endpoint": endpoint, "interval": interval, "log_dir": LOG_DIR,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_runs_a_root_owned_copy_never_the_users_binary() {
        let plan = daemon_install_plan("/Users/me/.cargo/bin/sysmonvm", "http://127.0.0.1:4318", "1s").unwrap();
        assert_eq!(plan[2], DaemonStep::RootCopy { from: "/Users/me/.cargo/bin/sysmonvm".into(), to: DAEMON_BINARY });
        let DaemonStep::Plist { contents, .. } = &plan[3] else { panic!("{plan:?}") };
        assert!(contents.contains(&format!("<string>{DAEMON_BINARY}</string>")), "{contents}");
        assert!(!contents.contains("/Users/me"), "{contents}");
        assert!(matches!(plan.last(), Some(DaemonStep::Reload)));
    }

    #[test]
    fn families_of_a_real_capture_encode_for_prometheus_and_otlp() {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/powermetrics/m1-macbookpro17_1-cpu_power-plist-sample-a.plist",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let s = powermetrics::parse_document(&bytes).unwrap();
        let f = families(&s);
        let text = sysmon_collector::export::prometheus::render(&f);
        assert!(text.contains("host_cpu_cluster_frequency_hertz{cluster=\"E-Cluster\"}"), "{text}");
        assert!(text.contains("host_cpu_frequency_hertz{cluster=\"P-Cluster\",cpu=\"cpu4\"}"), "{text}");
        assert!(text.contains("host_power_watts{component=\"cpu\"}"));
        let id = sysmon_collector::export::otlp::ResourceIdentity {
            service_name: "macos-host-monitor".into(),
            host_id: None,
            vm_id: None,
            host_name: None,
        };
        let body = sysmon_collector::export::otlp::encode(&sysmon_collector::export::otlp::request(&f, &id, 5, 1));
        let (newest, names) = sysmon_collector::export::otlp::summarize(&body).unwrap();
        assert_eq!(newest, Some(5));
        assert!(names.contains(&"host.cpu.cluster.frequency".to_string()));
    }

    #[test]
    fn vm_stat_output_and_garbage() {
        let text = "Mach Virtual Memory Statistics: (page size of 16384 bytes)\nPages free:                               12345.\nPages active:                            200000.\nPages inactive:                          100000.\nPages wired down:                         50000.\nPages occupied by compressor:             10000.\n\"Translation faults\":                  123456789.\n";
        let (ps, c) = parse_vm_stat(text).unwrap();
        assert_eq!(ps, 16384);
        assert_eq!(vm_stat_used_bytes(ps, &c), Some(260_000 * 16384));
        for junk in ["", "page size of x", "Mach (page size of 4096 bytes)\nPages active: -1.", "\u{0}:\u{0}"] {
            let parsed = parse_vm_stat(junk);
            assert!(
                parsed.is_none()
                    || vm_stat_used_bytes(parsed.as_ref().unwrap().0, &parsed.as_ref().unwrap().1).is_none()
            );
        }
        let f = load_memory_families(Some([1.0, 2.0, 3.0]), Some(5), Some(10));
        let text = sysmon_collector::export::prometheus::render(&f);
        assert!(
            text.contains("system_cpu_load_average_1m 1")
                && text.contains("system_memory_usage_bytes{system_memory_state=\"used\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn argv_and_launchd_daemon() {
        assert_eq!(powermetrics_argv(1000, None, true).join(" "), "powermetrics --samplers cpu_power -i 1000 -f plist");
        assert_eq!(
            powermetrics_argv(500, Some(20), false).join(" "),
            "sudo -n powermetrics --samplers cpu_power -i 500 -f plist -n 20"
        );
        let p = launchd_plist("/opt/homebrew/bin/sysmonvm", "http://127.0.0.1:4318", "1s").unwrap();
        assert!(p.contains("<string>com.sysmonvm.host-monitor</string>"));
        assert!(p.contains("<string>/var/log/serviceradar/host-monitor.log</string>"));
        assert!(p.contains("<string>--otlp-endpoint</string>\n    <string>http://127.0.0.1:4318</string>"), "{p}");
        let hostile = launchd_plist("/x</string><string>rm", "e", "1s").unwrap();
        assert!(!hostile.contains("</string><string>rm"), "{hostile}");
    }
}
