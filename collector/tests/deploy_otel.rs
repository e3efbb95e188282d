//! deploy/otel/otel-collector.yaml: checked against the OpenTelemetry Collector's documented
//! configuration schema for the components it uses (the contrib binary is not installable here),
//! and against what sysmon-collector really pushes: a real `serve --otlp-endpoint` to a receiver
//! on 127.0.0.1, whose metric names must all pass the config's filter and whose resource must
//! carry the attributes the `resource` processor relies on.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use serde_yaml::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = include_str!("../../deploy/otel/otel-collector.yaml");

fn config() -> Value {
    serde_yaml::from_str(CONFIG).expect("valid YAML")
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn port_of(endpoint: &Value) -> u16 {
    let e = endpoint.as_str().expect("an endpoint string");
    e.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {e}"))
}

/// The documented schema of each component kind this config uses: required keys and allowed values.
#[test]
fn the_config_follows_the_collector_schema() {
    let c = config();
    for top in c.as_mapping().unwrap().keys() {
        let k = top.as_str().unwrap();
        assert!(
            ["receivers", "processors", "exporters", "extensions", "connectors", "service"].contains(&k),
            "unknown top-level key {k}"
        );
    }
    // otlp receiver: gRPC on 4317, HTTP on 4318 (the OTLP defaults).
    assert_eq!(port_of(s(&c, &["receivers", "otlp", "protocols", "grpc", "endpoint"])), 4317);
    assert_eq!(port_of(s(&c, &["receivers", "otlp", "protocols", "http", "endpoint"])), 4318);
    // memory_limiter: check_interval is required; limits as percentages.
    let ml = s(&c, &["processors", "memory_limiter"]);
    assert!(
        ml["check_interval"].is_string() && ml["limit_percentage"].is_u64() && ml["spike_limit_percentage"].is_u64()
    );
    // filter: metrics.include with match_type strict|regexp and metric_names.
    let inc = s(&c, &["processors", "filter/sysmon", "metrics", "include"]);
    assert!(["strict", "regexp"].contains(&inc["match_type"].as_str().unwrap()));
    assert!(
        ["ignore", "silent", "propagate"]
            .contains(&s(&c, &["processors", "filter/sysmon", "error_mode"]).as_str().unwrap())
    );
    // resource: attributes of {key, value, action}, action from the documented set.
    let attrs = s(&c, &["processors", "resource", "attributes"]).as_sequence().unwrap();
    let keys: Vec<&str> = attrs.iter().map(|a| a["key"].as_str().unwrap()).collect();
    for want in ["service.name", "deployment.environment", "cluster"] {
        assert!(keys.contains(&want), "resource processor lacks {want}");
    }
    for a in attrs {
        let action = a["action"].as_str().unwrap();
        assert!(["insert", "update", "upsert", "delete", "hash", "extract", "convert"].contains(&action), "{action}");
        if ["insert", "update", "upsert"].contains(&action) {
            assert!(!a["value"].is_null(), "{a:?} needs a value");
        }
    }
    // exporters: prometheus needs an endpoint; otlp needs an endpoint (and tls settings are a map).
    assert!(s(&c, &["exporters", "prometheus", "endpoint"]).is_string());
    assert!(s(&c, &["exporters", "otlp/backend", "endpoint"]).is_string());
    assert!(s(&c, &["exporters", "otlp/backend", "tls"]).is_mapping());
    // service: every component a pipeline names is defined, and every defined one is used.
    let p = s(&c, &["service", "pipelines", "metrics"]);
    for (kind, section) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
        let used: Vec<&str> = p[kind].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let defined: Vec<&str> = c[section].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
        for u in &used {
            assert!(defined.contains(u), "pipeline uses undefined {kind} {u}");
        }
        for d in &defined {
            assert!(used.contains(d), "{kind} {d} is defined but unused");
        }
    }
    // memory_limiter first, batch last, as the collector's docs recommend.
    let procs = p["processors"].as_sequence().unwrap();
    assert_eq!(procs.first().unwrap().as_str(), Some("memory_limiter"));
    assert_eq!(procs.last().unwrap().as_str(), Some("batch"));
}

/// One OTLP/HTTP request from a real `sysmon-collector serve`.
fn receive_one_push() -> ExportMetricsServiceRequest {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sysmon-collector"))
        .args(["--interval", "200ms", "--no-perf", "serve", "--listen", &format!("127.0.0.1:{collector_port}")])
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{port}"), "--interval-push", "500ms"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    listener.set_nonblocking(false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (stream, _) = loop {
        match listener.accept() {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
    };
    let mut r = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).unwrap();
    let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let _ = child.kill();
    let _ = child.wait();
    ExportMetricsServiceRequest::decode(&body[..]).unwrap()
}

#[test]
fn every_metric_sysmon_pushes_passes_the_filter_and_the_resource_carries_service_name() {
    let c = config();
    let prefixes: Vec<String> = s(&c, &["processors", "filter/sysmon", "metrics", "include", "metric_names"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let re = v.as_str().unwrap();
            // Each pattern is `^family\..*`: a prefix match.
            let prefix =
                re.strip_prefix('^').and_then(|r| r.strip_suffix(r"\..*")).unwrap_or_else(|| panic!("pattern {re}"));
            format!("{prefix}.")
        })
        .collect();
    let req = receive_one_push();
    let mut names = Vec::new();
    for rm in &req.resource_metrics {
        let attrs: Vec<&str> = rm.resource.as_ref().unwrap().attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(attrs.contains(&"service.name"), "{attrs:?}");
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            names.push(m.name.clone());
        }
    }
    assert!(names.len() > 10, "{names:?}");
    for n in &names {
        assert!(prefixes.iter().any(|p| n.starts_with(p)), "the filter would drop {n}");
    }
    assert!(names.iter().any(|n| n == "system.cpu.frequency"));
}
