//! The real binary: Prometheus output checked by `promtool check metrics`, the HTTP endpoints of
//! `serve`, and OTLP/HTTP pushes received and decoded by a real HTTP receiver on 127.0.0.1,
//! including a receiver that comes up only after the collector started pushing.

mod common;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_sysmon-collector");
const DOCKER_ID: &str = "532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b";

fn guest_tree() -> common::Tree {
    let t = common::Tree::new();
    t.copy_dir("debian12-tcg-guest/proc", "proc");
    t.write("proc/sys/kernel/hostname", "guest-under-test\n");
    t.copy_fixture("debian12-tcg-guest/cgroup-v2/cgroup.controllers", "sys/fs/cgroup/cgroup.controllers");
    t.copy_dir(
        &format!("debian12-tcg-guest/cgroup-v2/system.slice/docker-{DOCKER_ID}.scope.t1"),
        &format!("sys/fs/cgroup/system.slice/docker-{DOCKER_ID}.scope"),
    );
    t
}

fn tree_args(t: &common::Tree) -> Vec<String> {
    let r = t.roots();
    vec![
        "--procfs".into(),
        r.procfs.display().to_string(),
        "--sysfs".into(),
        r.sysfs.display().to_string(),
        "--cgroupfs".into(),
        r.cgroupfs.display().to_string(),
        "--rootfs".into(),
        r.rootfs.display().to_string(),
        "--no-perf".into(),
    ]
}

fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return common::tool_missing("promtool");
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_output_passes_promtool_for_a_fixture_guest_and_this_machine() {
    let t = guest_tree();
    let out = Command::new(BIN)
        .args(tree_args(&t))
        .args(["snapshot", "--format", "prometheus", "--interval", "50ms"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("system_cpu_frequency_hertz{cpu=\"cpu0\",source=\"cpuinfo\"} 2596145000\n"), "{text}");
    assert!(text.contains(&format!("container_cpu_limit{{container_id=\"{DOCKER_ID}\",container_runtime=\"docker\"")));
    promtool_check(&text);

    let live = Command::new(BIN).args(["snapshot", "--format", "prometheus", "--interval", "100ms"]).output().unwrap();
    assert!(live.status.success());
    promtool_check(&String::from_utf8(live.stdout).unwrap());
}

/// Exactly one `sysmon_source_success` and one `sysmon_source_duration_seconds` sample per source,
/// from the real binary, in Prometheus text and in OTLP.
#[test]
fn every_source_has_exactly_one_success_and_one_duration_sample() {
    use sysmon_collector::{Source, export, metrics};
    let t = guest_tree();
    std::fs::remove_file(t.path("proc/diskstats")).unwrap();
    let out = Command::new(BIN)
        .args(tree_args(&t))
        .args(["snapshot", "--format", "prometheus", "--interval", "50ms"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for family in ["sysmon_source_success", "sysmon_source_duration_seconds"] {
        let samples: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{family}{{"))).collect();
        assert_eq!(samples.len(), Source::ALL.len(), "{samples:?}");
        for source in Source::ALL {
            let label = format!("{family}{{source=\"{}\"}} ", source.name());
            assert_eq!(samples.iter().filter(|l| l.starts_with(&label)).count(), 1, "{label}: {samples:?}");
        }
        assert_eq!(text.matches(&format!("# TYPE {family} gauge\n")).count(), 1);
    }
    assert!(text.contains("sysmon_source_success{source=\"disk\"} 0\n"), "{text}");
    assert!(text.contains("sysmon_source_success{source=\"memory\"} 1\n"), "{text}");
    assert!(!text.contains("system_disk_"), "no disk metrics without diskstats: {text}");
    promtool_check(&text);

    let json =
        Command::new(BIN).args(tree_args(&t)).args(["snapshot", "--json", "--interval", "50ms"]).output().unwrap();
    let snap: sysmon_collector::Snapshot = serde_json::from_slice(&json.stdout).unwrap();
    let id = export::otlp::ResourceIdentity { service_name: "s".into(), host_id: None, vm_id: None, host_name: None };
    let req = export::otlp::request(&metrics::families(&snap), &id, snap.timestamp_unix_nano, 0);
    let otlp = &req.resource_metrics[0].scope_metrics[0].metrics;
    for (name, unit) in [("sysmon.source.success", "1"), ("sysmon.source.duration", "s")] {
        let m = otlp.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(m.unit, unit);
        let Some(Data::Gauge(g)) = &m.data else { panic!("{name}: gauge expected") };
        let mut sources: Vec<String> = g
            .data_points
            .iter()
            .map(|p| match attr(&p.attributes, "source") {
                Some(AnyValue::StringValue(s)) => s.clone(),
                other => panic!("{name}: source attribute {other:?}"),
            })
            .collect();
        sources.sort();
        let mut expected: Vec<String> = Source::ALL.iter().map(|s| s.name().to_string()).collect();
        expected.sort();
        assert_eq!(sources, expected, "{name}");
    }
    let disk = snap.sources.iter().find(|s| s.source == "disk").unwrap();
    assert!(!disk.success);
    assert!(snap.warnings.iter().any(|w| w.subsystem.as_deref() == Some("disk") && w.source.ends_with("diskstats")));
}

#[test]
fn snapshot_json_has_the_documented_top_level_fields() {
    let t = guest_tree();
    let out =
        Command::new(BIN).args(tree_args(&t)).args(["snapshot", "--json", "--interval", "50ms"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "timestamp",
        "host",
        "cpus",
        "memory",
        "load",
        "disks",
        "networks",
        "filesystems",
        "temperatures",
        "containers",
        "sources",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["host"]["hostname"], "guest-under-test");
    assert_eq!(v["cpus"][0]["cpu"], "cpu0");
    assert_eq!(v["cpus"][0]["frequency_source"], "cpuinfo");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    // Typed round trip: the CLI reuses these types.
    let _: sysmon_collector::Snapshot = serde_json::from_value(v).unwrap();
}

/// A CPU whose counter is constant-rate (perf-synthetic) or not yet verified (perf-unverified)
/// has no frequency anywhere: null in JSON, no Prometheus sample, no OTLP data point; its counter
/// rate is its own metric. The readings are set by hand on a fixture snapshot (this machine has
/// no PMU; the decision itself is unit-tested in src/frequency.rs from recorded readings).
#[test]
fn a_counter_that_is_not_a_clock_publishes_a_counter_rate_and_no_frequency() {
    use sysmon_collector::{FrequencySource, Sampler, SamplerOptions, export, metrics};
    let t = guest_tree();
    let mut snap = Sampler::new(t.roots(), SamplerOptions { perf: false, cgroups: vec![], container: None }).sample();
    assert_eq!(snap.cpus.len(), 2);
    for (c, source) in snap.cpus.iter_mut().zip([FrequencySource::PerfSynthetic, FrequencySource::PerfUnverified]) {
        c.frequency_hz = None;
        c.frequency_source = source;
        c.frequency_detail = Some("cycles/wall".into());
        c.frequency_note = Some("constant-rate cycle counter: ...".into());
        c.counter_rate_hz = Some(1.0e9);
    }

    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["cpus"][0]["frequency_hz"], serde_json::Value::Null);
    assert_eq!(json["cpus"][0]["frequency_source"], "perf-synthetic");
    assert_eq!(json["cpus"][0]["counter_rate_hz"], 1.0e9);
    assert_eq!(json["cpus"][1]["frequency_source"], "perf-unverified");
    let back: sysmon_collector::Snapshot = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, snap);
    // A document from before counter_rate_hz existed still reads.
    let mut old = json;
    for c in old["cpus"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("counter_rate_hz");
    }
    let old: sysmon_collector::Snapshot = serde_json::from_value(old).unwrap();
    assert_eq!(old.cpus[0].counter_rate_hz, None);

    let families = metrics::families(&snap);
    let text = export::prometheus::render(&families);
    assert!(!text.contains("system_cpu_frequency_hertz{"), "{text}");
    assert!(text.contains("sysmon_cpu_cycles_rate_hertz{cpu=\"cpu0\"} 1000000000\n"), "{text}");
    assert!(text.contains("sysmon_cpu_cycles_rate_hertz{cpu=\"cpu1\"} 1000000000\n"), "{text}");
    assert!(text.contains("# HELP sysmon_cpu_cycles_rate_hertz Cycles per wall-clock second"), "{text}");
    assert!(text.contains("a counter rate, not a frequency"), "{text}");
    assert!(text.contains("sysmon_cpu_frequency_source_info{cpu=\"cpu0\",source=\"perf-synthetic\"} 1\n"), "{text}");
    assert!(text.contains("sysmon_cpu_frequency_source_info{cpu=\"cpu1\",source=\"perf-unverified\"} 1\n"), "{text}");
    promtool_check(&text);

    let id = export::otlp::ResourceIdentity { service_name: "s".into(), host_id: None, vm_id: None, host_name: None };
    let req = export::otlp::request(&families, &id, snap.timestamp_unix_nano, 0);
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    assert!(metrics.iter().all(|m| m.name != "system.cpu.frequency"), "no frequency data point at all");
    let rate = metrics.iter().find(|m| m.name == "sysmon.cpu.cycles.rate").expect("counter rate metric");
    assert_eq!(rate.unit, "Hz");
    let Some(Data::Gauge(g)) = &rate.data else { panic!("gauge expected") };
    assert_eq!(g.data_points.len(), 2);
    assert!(g.data_points.iter().all(|p| p.value == Some(Value::AsDouble(1.0e9))));

    // One CPU with a real frequency beside them: only that CPU has a frequency sample.
    snap.cpus[1].frequency_source = FrequencySource::Cpuinfo;
    snap.cpus[1].frequency_hz = Some(2_596_145_000.0);
    let text = export::prometheus::render(&metrics::families(&snap));
    assert!(!text.contains("system_cpu_frequency_hertz{cpu=\"cpu0\""), "{text}");
    assert!(text.contains("system_cpu_frequency_hertz{cpu=\"cpu1\",source=\"cpuinfo\"} 2596145000\n"), "{text}");
}

struct Serve(Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[String]) -> Serve {
    let mut child = Command::new(BIN).args(args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("collector announces its address");
    Serve(child, addr)
}

fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn serve_answers_metrics_snapshot_and_health() {
    let t = guest_tree();
    let mut args = tree_args(&t);
    args.extend(["serve", "--listen", "127.0.0.1:0", "--interval", "200ms"].map(String::from));
    let s = serve(&args);
    let (status, body) = get(&s.1, "/healthz");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok\n"));
    let (status, body) = get(&s.1, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("# TYPE system_cpu_frequency_hertz gauge"));
    promtool_check(&body);
    let (_, body) = get(&s.1, "/v1/snapshot");
    let snap: sysmon_collector::Snapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(snap.cpus.len(), 2);
    assert_eq!(get(&s.1, "/nope").0, "HTTP/1.1 404 Not Found");
    // Scrapes come from the background sample: two snapshots 500 ms apart differ in time.
    std::thread::sleep(Duration::from_millis(500));
    let (_, later) = get(&s.1, "/v1/snapshot");
    let later: sysmon_collector::Snapshot = serde_json::from_str(&later).unwrap();
    assert!(later.timestamp_unix_nano > snap.timestamp_unix_nano);
    assert!(later.interval_seconds.is_some());
}

/// A minimal OTLP/HTTP receiver: accepts POST /v1/metrics, answers 200, hands decoded requests over.
fn receiver(listener: TcpListener) -> mpsc::Receiver<(String, ExportMetricsServiceRequest, u64)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut r = BufReader::new(stream);
            let mut request_line = String::new();
            if r.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut len = 0usize;
            let mut content_type = String::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("content-type:") {
                    content_type = v.trim().to_string();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            assert_eq!(content_type, "application/x-protobuf");
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
            let req = ExportMetricsServiceRequest::decode(&body[..]).expect("valid protobuf");
            if tx.send((request_line.trim().to_string(), req, now)).is_err() {
                break;
            }
        }
    });
    rx
}

fn attr<'a>(attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn check_frequency_gauge(req: &ExportMetricsServiceRequest) {
    let rm = &req.resource_metrics[0];
    let res = &rm.resource.as_ref().unwrap().attributes;
    assert_eq!(attr(res, "service.name"), Some(&AnyValue::StringValue("sysmon-vm".into())));
    assert_eq!(attr(res, "host.id"), Some(&AnyValue::StringValue("host-7".into())));
    assert_eq!(attr(res, "vm.id"), Some(&AnyValue::StringValue("vm-42".into())));
    let m = rm.scope_metrics[0].metrics.iter().find(|m| m.name == "system.cpu.frequency").expect("frequency metric");
    assert_eq!(m.unit, "Hz");
    let Some(Data::Gauge(g)) = &m.data else { panic!("gauge expected") };
    assert_eq!(g.data_points.len(), 2);
    for (i, p) in g.data_points.iter().enumerate() {
        assert_eq!(p.value, Some(Value::AsDouble(2_596_145_000.0)));
        assert_eq!(attr(&p.attributes, "cpu"), Some(&AnyValue::StringValue(format!("cpu{i}"))));
        assert_eq!(attr(&p.attributes, "cpu.logical_number"), Some(&AnyValue::IntValue(i as i64)));
        assert_eq!(attr(&p.attributes, "frequency.source"), Some(&AnyValue::StringValue("cpuinfo".into())));
        assert!(p.time_unix_nano > 0);
    }
    let time = rm.scope_metrics[0].metrics.iter().find(|m| m.name == "container.cpu.time").unwrap();
    let Some(Data::Sum(sum)) = &time.data else { panic!("sum expected") };
    assert!(sum.is_monotonic);
    // t1 cpu.stat: usage_usec 7335029
    assert_eq!(sum.data_points[0].value, Some(Value::AsDouble(7.335029)));
}

fn push_args(t: &common::Tree, endpoint: &str) -> Vec<String> {
    let mut args = tree_args(t);
    args.extend(
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "200ms",
            "--otlp-endpoint",
            endpoint,
            "--interval-push",
            "500ms",
            "--service-name",
            "sysmon-vm",
            "--host-id",
            "host-7",
            "--vm-id",
            "vm-42",
        ]
        .map(String::from),
    );
    args
}

#[test]
fn otlp_push_reaches_a_real_receiver_with_the_frequency_gauge() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let rx = receiver(listener);
    let t = guest_tree();
    let _s = serve(&push_args(&t, &endpoint));
    let (line, req, received_at) = rx.recv_timeout(Duration::from_secs(10)).expect("an OTLP push");
    assert_eq!(line, "POST /v1/metrics HTTP/1.1");
    check_frequency_gauge(&req);
    let sample_time = req.resource_metrics[0].scope_metrics[0].metrics[0].data.as_ref().map(|d| match d {
        Data::Gauge(g) => g.data_points[0].time_unix_nano,
        _ => 0,
    });
    let latency = received_at.saturating_sub(sample_time.unwrap()) as f64 / 1e9;
    assert!(latency < 2.0, "sample to receiver took {latency} s");
}

#[test]
fn otlp_batches_wait_for_a_receiver_that_comes_up_late() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // free, then closed
    let t = guest_tree();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let _s = serve(&push_args(&t, &format!("http://127.0.0.1:{port}/v1/metrics")));
    std::thread::sleep(Duration::from_millis(2500)); // pushes fail: nothing listens
    let up_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let rx = receiver(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut times = Vec::new();
    while Instant::now() < deadline && times.len() < 4 {
        if let Ok((_, req, _)) = rx.recv_timeout(Duration::from_millis(500)) {
            check_frequency_gauge(&req);
            let Some(Data::Gauge(g)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!() };
            times.push(g.data_points[0].time_unix_nano);
        }
    }
    assert!(times.len() >= 2, "queued batches delivered after the outage: {times:?}");
    assert!(times.iter().any(|t| *t > started && *t < up_at), "a batch sampled during the outage arrived later");
    assert!(times.windows(2).all(|w| w[0] < w[1]), "delivered in order: {times:?}");
}

#[test]
fn bad_config_names_the_key_and_a_taken_port_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sysmon-vm.json");
    std::fs::write(&cfg, r#"{"listen_addr": "127.0.0.1:0", "otlp": {"push_intervall": "10s"}}"#).unwrap();
    let out = Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("otlp") && err.contains("push_intervall") && err.contains("sysmon-vm.json"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN).args(["serve", "--listen", &addr]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on") && err.contains(&addr), "{err}");
}

#[test]
fn default_config_is_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).arg("default-config").output().unwrap();
    let cfg = dir.path().join("sysmon-vm.json");
    std::fs::write(&cfg, &out.stdout).unwrap();
    let t = guest_tree();
    let snap = Command::new(BIN)
        .args(tree_args(&t))
        .args(["--config", cfg.to_str().unwrap(), "snapshot", "--json"])
        .output()
        .unwrap();
    assert!(snap.status.success(), "{}", String::from_utf8_lossy(&snap.stderr));
}
