//! `sysmonvm host monitor` on this Linux host: real samples of the host's /proc and cpufreq, and
//! OTLP pushed to a real receiver on 127.0.0.1 (validate's own receiver).

use std::process::Command;
use sysmonvm::validate::receiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_the_host_and_pushes_otlp() {
    if cfg!(target_os = "macos") {
        return; // powermetrics needs root; its parser is tested on captures instead
    }
    let recv = receiver::start().await.unwrap();
    let bin = env!("CARGO_BIN_EXE_sysmonvm");
    let endpoint = format!("http://127.0.0.1:{}", recv.port);
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
    for l in &lines {
        assert_eq!(l["service"], "linux-host-monitor");
        assert_eq!(l["cpus"].as_array().unwrap().len(), ncpu, "{l}");
    }
    let arrivals = recv.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 3, "one OTLP request per sample");
    assert!(
        arrivals
            .iter()
            .all(|(arrived, taken, names)| { arrived >= taken && names.iter().any(|n| n == "system.cpu.utilization") })
    );
}
