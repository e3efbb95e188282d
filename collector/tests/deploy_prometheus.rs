//! The deployment files against a real Prometheus on 127.0.0.1 scraping a real
//! `sysmon-collector serve`: the scrape config (pointed at this collector), the recording rules
//! evaluated, and every query of every Grafana dashboard panel returning data. The alert rules are
//! fired and resolved by `promtool test rules deploy/prometheus/tests.yml` in .ci/run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(port: u16, q: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={}", encode(q));
    match ureq::get(&url).call() {
        Ok(mut r) => serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
        Err(e) => serde_json::json!({ "status": "error", "error": e.to_string() }),
    }
}

/// A cgroup the collector reports as a container (`--cgroup`), so the container panels have data.
fn test_cgroup() -> Option<(String, Vec<Dir>)> {
    let name = format!("sysmonvm-deploy-test-{}", std::process::id());
    let root = Path::new("/sys/fs/cgroup");
    let candidates: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        ["cpu,cpuacct", "cpu", "cpuacct", "memory", "unified"]
            .iter()
            .map(|c| root.join(c))
            .filter(|p| p.is_dir())
            .collect()
    };
    let mut made = Vec::new();
    for base in candidates {
        let d = base.join(&name);
        if std::fs::create_dir(&d).is_ok() {
            made.push(Dir(d));
        }
    }
    (!made.is_empty()).then_some((name, made))
}

#[test]
fn prometheus_scrapes_the_collector_and_every_dashboard_query_has_data() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        return common::tool_missing("prometheus");
    }
    let cgroup = test_cgroup();
    if cgroup.is_none() {
        assert!(!in_ci(), "a writable cgroup hierarchy is required under CI=true");
        eprintln!("SKIPPED (containers only): cannot create a cgroup here");
    }
    let tmp = tempfile::tempdir().unwrap();
    let collector_port = free_port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sysmon-collector"));
    serve.args(["--interval", "1s", "--no-perf", "serve", "--listen", &format!("127.0.0.1:{collector_port}")]);
    if let Some((name, _)) = &cgroup {
        serve.args(["--cgroup", name]);
    }
    let _collector = Killed(serve.stderr(Stdio::null()).spawn().unwrap());

    // The shipped config and rules, pointed at this collector and made fast.
    let config = std::fs::read_to_string(format!("{DEPLOY}/prometheus/prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:9105", &format!("127.0.0.1:{collector_port}"))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("rules/", &format!("{}/rules/", tmp.path().display()));
    std::fs::create_dir(tmp.path().join("rules")).unwrap();
    for f in ["sysmon-recording.yml", "sysmon-alerts.yml"] {
        let text = std::fs::read_to_string(format!("{DEPLOY}/prometheus/rules/{f}")).unwrap();
        std::fs::write(tmp.path().join("rules").join(f), text.replace("interval: 15s", "interval: 1s")).unwrap();
    }
    std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
    let prom_port = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", tmp.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", tmp.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = query(prom_port, r#"up{job="sysmon-vm"} == 1"#);
        if up["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped the collector: {up}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A few more scrapes and rule evaluations, so rates and recording rules have data.
    std::thread::sleep(Duration::from_secs(6));

    let mut checked = 0;
    let recording = std::fs::read_to_string(format!("{DEPLOY}/prometheus/rules/sysmon-recording.yml")).unwrap();
    for record in recording.lines().filter_map(|l| l.trim().strip_prefix("- record: ")) {
        let r = query(prom_port, record);
        assert!(r["data"]["result"].as_array().is_some_and(|a| !a.is_empty()), "recording rule {record}: {r}");
        checked += 1;
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DEPLOY}/grafana/sysmonvm-guest.json")).unwrap())
            .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("");
        if title.starts_with("Containers") && cgroup.is_none() {
            continue;
        }
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().replace("$vm", ".*").replace("$__rate_interval", "10s");
            let r = query(prom_port, &expr);
            assert_eq!(r["status"], "success", "panel {title:?}: {expr}: {r}");
            assert!(
                r["data"]["result"].as_array().is_some_and(|a| !a.is_empty()),
                "panel {title:?}: {expr} returned no data"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
    drop(cgroup);
}
