//! Executors for `host monitor|install|uninstall`.

use super::guest::runtime;
use crate::{Exit, HostCommand};
use anyhow::{Context, bail};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sysmon_collector::export::otlp::{self, ResourceIdentity};
use sysmon_collector::metrics::Family;
use sysmonvm::host::{self, powermetrics};
use sysmonvm::workspace::Workspace;

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Pushes one sample's families as OTLP; a failure is reported and the monitor goes on.
fn push(rt: &tokio::runtime::Runtime, url: &str, families: &[Family], start: u64) {
    let id = ResourceIdentity {
        service_name: host::service_name().into(),
        host_id: None,
        vm_id: None,
        host_name: std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()),
    };
    let body = otlp::encode(&otlp::request(families, &id, now_nanos(), start));
    let sent = rt.block_on(async {
        sysmonvm::image::download::client()
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
    });
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => eprintln!("host monitor: OTLP push to {url}: HTTP {}", r.status()),
        Err(e) => eprintln!("host monitor: OTLP push to {url}: {e}"),
    }
}

pub fn run(_ws: &Workspace, cmd: HostCommand, json: bool) -> Exit {
    match cmd {
        HostCommand::Monitor { otlp_endpoint, interval, count } => {
            let url = otlp_endpoint
                .as_deref()
                .map(sysmon_collector::push::metrics_url)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let rt = runtime()?;
            let start = now_nanos();
            if cfg!(target_os = "macos") {
                monitor_powermetrics(&rt, url.as_deref(), interval, count, json, start)
            } else {
                monitor_linux(&rt, url.as_deref(), interval, count, json, start)
            }
        }
        HostCommand::Install { otlp_endpoint, interval } => install(&otlp_endpoint, &interval),
        HostCommand::Uninstall => uninstall(),
    }
}

/// Linux: the host's own cpufreq and /proc, through the collector's library.
fn monitor_linux(
    rt: &tokio::runtime::Runtime,
    url: Option<&str>,
    interval: Duration,
    count: Option<u64>,
    json: bool,
    start: u64,
) -> Exit {
    use sysmon_collector::sampler::{Sampler, SamplerOptions};
    let mut sampler = Sampler::new(
        sysmon_collector::roots::Roots::under(std::path::Path::new("/")),
        SamplerOptions { perf: true, cgroups: vec![] },
    );
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        let snap = if n == 0 {
            sampler.sample_over(interval)
        } else {
            std::thread::sleep(interval);
            sampler.sample()
        };
        n += 1;
        if json {
            let cpus: Vec<_> = snap
                .cpus
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "cpu": c.cpu, "frequency_hz": c.frequency_hz, "frequency_source": c.frequency_source.as_str(),
                        "usage_pct": c.usage.map(|u| u.usage_pct),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "time": snap.timestamp, "service": host::service_name(), "cpus": cpus,
                    "usage_pct": snap.cpu_total.map(|u| u.usage_pct),
                    "memory_used_bytes": snap.memory.used_bytes, "load1": snap.load.map(|l| l.load1),
                })
            );
        } else {
            let freqs: Vec<String> = snap
                .cpus
                .iter()
                .map(|c| match c.frequency_hz {
                    Some(f) => format!("{} {:.2} GHz ({})", c.cpu, f / 1e9, c.frequency_source.as_str()),
                    None => format!("{} - ({})", c.cpu, c.frequency_source.as_str()),
                })
                .collect();
            println!(
                "{} usage {:.1} % | {}",
                snap.timestamp,
                snap.cpu_total.map(|u| u.usage_pct).unwrap_or(f64::NAN),
                freqs.join(", ")
            );
        }
        if let Some(u) = url {
            push(rt, u, &sysmon_collector::metrics::families(&snap), start);
        }
    }
    Ok(0)
}

/// macOS: `powermetrics` plist samples (root, or `sudo -n` with the documented sudoers rule).
fn monitor_powermetrics(
    rt: &tokio::runtime::Runtime,
    url: Option<&str>,
    interval: Duration,
    count: Option<u64>,
    json: bool,
    start: u64,
) -> Exit {
    let argv = host::powermetrics_argv(interval.as_millis() as u64, count, host::is_root());
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    let mut out = child.stdout.take().context("powermetrics stdout")?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 65536];
    let handle = |doc: &[u8]| match powermetrics::parse_document(doc) {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
            } else {
                let parts: Vec<String> = s
                    .clusters
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {} active {}",
                            c.name,
                            c.freq_hz.map(|f| format!("{:.2} GHz", f / 1e9)).unwrap_or_else(|| "-".into()),
                            c.active_ratio.map(|a| format!("{:.0} %", a * 100.0)).unwrap_or_else(|| "-".into())
                        )
                    })
                    .collect();
                println!(
                    "{} | {} | CPU {:.2} W",
                    s.timestamp.as_deref().unwrap_or("-"),
                    parts.join(", "),
                    s.cpu_power_mw.unwrap_or(f64::NAN) / 1000.0
                );
            }
            if let Some(u) = url {
                let (used, total) = mac_memory();
                let mut families = host::families(&s);
                families.extend(host::load_memory_families(loadavg(), used, total));
                push(rt, u, &families, start);
            }
        }
        Err(e) => eprintln!("host monitor: skipped a powermetrics document: {e}"),
    };
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        // Documents are separated by NUL: everything before the last NUL is complete.
        if let Some(last) = pending.iter().rposition(|b| *b == 0) {
            let complete: Vec<u8> = pending.drain(..=last).collect();
            for doc in powermetrics::split_stream(&complete) {
                handle(doc);
            }
        }
    }
    for doc in powermetrics::split_stream(&pending) {
        handle(doc);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "powermetrics exited with {status}: it needs root. Run `sudo sysmonvm host monitor`, or allow it without a \
             password: `echo \"$USER ALL=(root) NOPASSWD: /usr/bin/powermetrics\" | sudo tee /etc/sudoers.d/powermetrics`"
        );
    }
    Ok(0)
}

/// The 1, 5 and 15 minute load averages (getloadavg: macOS and Linux alike).
fn loadavg() -> Option<[f64; 3]> {
    let mut l = [0f64; 3];
    // SAFETY: the buffer holds the 3 values asked for.
    let n = unsafe { libc::getloadavg(l.as_mut_ptr(), 3) };
    (n == 3).then_some(l)
}

/// macOS: (used, installed) bytes from `vm_stat` and `hw.memsize`.
#[cfg(target_os = "macos")]
fn mac_memory() -> (Option<u64>, Option<u64>) {
    let used = std::process::Command::new("vm_stat")
        .output()
        .ok()
        .and_then(|o| host::parse_vm_stat(&String::from_utf8_lossy(&o.stdout)))
        .and_then(|(ps, c)| host::vm_stat_used_bytes(ps, &c));
    let mut total: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: the name is NUL-terminated and the buffer is a u64 with its size in `len`.
    let rc = unsafe {
        libc::sysctlbyname(c"hw.memsize".as_ptr(), (&mut total as *mut u64).cast(), &mut len, std::ptr::null_mut(), 0)
    };
    (used, (rc == 0).then_some(total))
}

#[cfg(not(target_os = "macos"))]
fn mac_memory() -> (Option<u64>, Option<u64>) {
    (None, None)
}

fn install(endpoint: &str, interval: &str) -> Exit {
    if !cfg!(target_os = "macos") {
        bail!(
            "`host install` manages a launchd daemon and exists on macOS only; on Linux run `sysmonvm host monitor` \
             under your service manager (see README, \"Host monitor\")"
        );
    }
    anyhow::ensure!(host::is_root(), "installing a launchd daemon needs root: sudo sysmonvm host install …");
    sysmon_collector::push::metrics_url(endpoint).map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe()?.display().to_string();
    let plist = host::launchd_plist(&exe, endpoint, interval)?;
    std::fs::create_dir_all(host::LOG_DIR)?;
    std::fs::write(host::LAUNCHD_PLIST, plist)?;
    let _ =
        std::process::Command::new("launchctl").args(["bootout", &format!("system/{}", host::LAUNCHD_LABEL)]).status();
    let st = std::process::Command::new("launchctl").args(["bootstrap", "system", host::LAUNCHD_PLIST]).status()?;
    anyhow::ensure!(st.success(), "launchctl bootstrap system {} failed ({st})", host::LAUNCHD_PLIST);
    println!("installed {} (logs in {}/host-monitor.log)", host::LAUNCHD_PLIST, host::LOG_DIR);
    Ok(0)
}

fn uninstall() -> Exit {
    if !cfg!(target_os = "macos") {
        bail!("`host uninstall` removes the macOS launchd daemon; there is none on this OS");
    }
    let _ =
        std::process::Command::new("launchctl").args(["bootout", &format!("system/{}", host::LAUNCHD_LABEL)]).status();
    match std::fs::remove_file(host::LAUNCHD_PLIST) {
        Ok(()) => println!("removed {}", host::LAUNCHD_PLIST),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("{} was not installed", host::LAUNCHD_PLIST),
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}
