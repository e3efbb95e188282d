//! `sysmonvm host monitor` on this Linux host: real samples of the host's /proc and cpufreq, and
//! OTLP pushed to a real receiver on 127.0.0.1 (a plain one: validate's own takes deliveries only
//! with its run's token, which the host monitor has no reason to carry).

mod common;

use common::json_doc;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// (arrival, newest reading time, metric names) per request, all in Unix seconds.
type Arrivals = Arc<Mutex<Vec<(f64, f64, Vec<String>)>>>;

/// Accepts `POST /v1/metrics`, answers 200, and records what each request carried.
fn receiver() -> (u16, Arrivals) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrivals: Arrivals = Arc::default();
    let store = arrivals.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let arrived = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok((Some(newest), names)) = sysmon_collector::export::otlp::summarize(&body) {
                store.lock().unwrap().push((arrived, newest as f64 / 1e9, names));
            }
        }
    });
    (port, arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_the_host_and_pushes_otlp() {
    if cfg!(target_os = "macos") {
        return; // powermetrics needs root; its parser is tested on captures instead
    }
    let (port, received) = receiver();
    let bin = env!("CARGO_BIN_EXE_sysmonvm");
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["--json", "host", "monitor", "--count", "3", "--interval", "200ms", "--otlp-endpoint", &endpoint])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let ncpu = std::thread::available_parallelism().unwrap().get();
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md")).unwrap();
    for l in &lines {
        // Each line is the documented `ops::host::HostSample`.
        json_doc::check(&doc, "host monitor", l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(l["service"], "linux-host-monitor");
        assert_eq!(l["cpus"].as_array().unwrap().len(), ncpu, "{l}");
    }
    let arrivals = received.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 3, "one OTLP request per sample");
    assert!(
        arrivals
            .iter()
            .all(|(arrived, taken, names)| { arrived >= taken && names.iter().any(|n| n == "system.cpu.utilization") })
    );
}
