//! The host's own CPUs while a VM runs: `host monitor` (the collector's library on Linux,
//! powermetrics on macOS), optionally pushing OTLP, and the macOS launchd daemon.

use super::events::Sink;
use super::{OpError, Result};
use crate::host::{self, powermetrics};
use serde::Serialize;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sysmon_collector::export::otlp::{self, ResourceIdentity};
use sysmon_collector::metrics::Family;

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct MonitorRequest {
    pub otlp_endpoint: Option<String>,
    pub interval: Duration,
    /// Stop after N samples; None: until stopped.
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostCpu {
    pub cpu: String,
    pub frequency_hz: Option<f64>,
    pub frequency_source: String,
    pub usage_pct: Option<f64>,
}

/// One sample of a Linux host.
#[derive(Debug, Clone, Serialize)]
pub struct LinuxSample {
    pub time: String,
    pub service: String,
    pub cpus: Vec<HostCpu>,
    pub usage_pct: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub load1: Option<f64>,
}

/// What `host monitor` reports per interval (one JSON line each).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum HostSample {
    Linux(LinuxSample),
    Powermetrics(powermetrics::Sample),
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorReport {
    pub samples: u64,
    pub pushes_failed: u64,
}

/// Pushes one sample's families as OTLP; a failure is a warning and the monitor goes on.
async fn push(url: &str, families: &[Family], start: u64, sink: &dyn Sink) -> bool {
    let id = ResourceIdentity {
        service_name: host::service_name().into(),
        host_id: None,
        vm_id: None,
        host_name: std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()),
    };
    let body = otlp::encode(&otlp::request(families, &id, now_nanos(), start));
    let sent = crate::image::download::client()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            sink.warning(format!("host monitor: OTLP push to {url}: HTTP {}", r.status()));
            false
        }
        Err(e) => {
            sink.warning(format!("host monitor: OTLP push to {url}: {}", crate::errors::chain(&e)));
            false
        }
    }
}

/// Samples the host every interval, hands each sample to `on_sample`, pushes it when asked.
pub async fn monitor(
    req: &MonitorRequest,
    mut on_sample: impl FnMut(&HostSample),
    sink: &dyn Sink,
) -> Result<MonitorReport> {
    let url =
        req.otlp_endpoint.as_deref().map(sysmon_collector::push::metrics_url).transpose().map_err(OpError::Invalid)?;
    if cfg!(target_os = "macos") {
        monitor_powermetrics(req, url.as_deref(), &mut on_sample, sink).await
    } else {
        monitor_linux(req, url.as_deref(), &mut on_sample, sink).await
    }
}

/// Linux: the host's own cpufreq and /proc, through the collector's library.
async fn monitor_linux(
    req: &MonitorRequest,
    url: Option<&str>,
    on_sample: &mut impl FnMut(&HostSample),
    sink: &dyn Sink,
) -> Result<MonitorReport> {
    use sysmon_collector::sampler::{Sampler, SamplerOptions};
    let start = now_nanos();
    let mut sampler = Sampler::new(
        sysmon_collector::roots::Roots::under(std::path::Path::new("/")),
        SamplerOptions { perf: true, cgroups: vec![], container: None },
    );
    let mut report = MonitorReport { samples: 0, pushes_failed: 0 };
    while req.count.is_none_or(|c| report.samples < c) {
        let snap = if report.samples == 0 {
            sampler.sample_over(req.interval)
        } else {
            tokio::time::sleep(req.interval).await;
            sampler.sample()
        };
        report.samples += 1;
        let sample = HostSample::Linux(LinuxSample {
            time: snap.timestamp.clone(),
            service: host::service_name().into(),
            cpus: snap
                .cpus
                .iter()
                .map(|c| HostCpu {
                    cpu: c.cpu.clone(),
                    frequency_hz: c.frequency_hz,
                    frequency_source: c.frequency_source.as_str().into(),
                    usage_pct: c.usage.map(|u| u.usage_pct),
                })
                .collect(),
            usage_pct: snap.cpu_total.map(|u| u.usage_pct),
            memory_used_bytes: snap.memory.used_bytes,
            load1: snap.load.map(|l| l.load1),
        });
        on_sample(&sample);
        if let Some(u) = url
            && !push(u, &sysmon_collector::metrics::families(&snap), start, sink).await
        {
            report.pushes_failed += 1;
        }
    }
    Ok(report)
}

/// macOS: `powermetrics` plist samples (root, or `sudo -n` with the documented sudoers rule).
async fn monitor_powermetrics(
    req: &MonitorRequest,
    url: Option<&str>,
    on_sample: &mut impl FnMut(&HostSample),
    sink: &dyn Sink,
) -> Result<MonitorReport> {
    let start = now_nanos();
    let argv = host::powermetrics_argv(req.interval.as_millis() as u64, req.count, host::is_root());
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(OpError::io(format!("running {}", argv.join(" "))))?;
    let mut out = child.stdout.take().ok_or_else(|| OpError::Invalid("powermetrics has no stdout".into()))?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 65536];
    let mut report = MonitorReport { samples: 0, pushes_failed: 0 };
    let mut docs: Vec<Vec<u8>> = Vec::new();
    loop {
        let n = out.read(&mut buf).map_err(OpError::io("reading powermetrics"))?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        // Documents are separated by NUL: everything before the last NUL is complete.
        if let Some(last) = pending.iter().rposition(|b| *b == 0) {
            let complete: Vec<u8> = pending.drain(..=last).collect();
            docs.extend(powermetrics::split_stream(&complete).into_iter().map(<[u8]>::to_vec));
        }
        for doc in docs.drain(..) {
            handle_document(&doc, url, start, on_sample, sink, &mut report).await;
        }
    }
    for doc in powermetrics::split_stream(&pending) {
        handle_document(doc, url, start, on_sample, sink, &mut report).await;
    }
    let status = child.wait().map_err(OpError::io("waiting for powermetrics"))?;
    if !status.success() {
        return Err(OpError::Tool {
            what: format!("powermetrics exited with {status}: it needs root"),
            hint: "run `sudo sysmonvm host monitor`, or allow it without a password: \
                   `echo \"$USER ALL=(root) NOPASSWD: /usr/bin/powermetrics\" | sudo tee /etc/sudoers.d/powermetrics`"
                .into(),
            source: None,
        });
    }
    Ok(report)
}

async fn handle_document(
    doc: &[u8],
    url: Option<&str>,
    start: u64,
    on_sample: &mut impl FnMut(&HostSample),
    sink: &dyn Sink,
    report: &mut MonitorReport,
) {
    match powermetrics::parse_document(doc) {
        Ok(s) => {
            report.samples += 1;
            if let Some(u) = url {
                let (used, total) = mac_memory();
                let mut families = host::families(&s);
                families.extend(host::load_memory_families(loadavg(), used, total));
                if !push(u, &families, start, sink).await {
                    report.pushes_failed += 1;
                }
            }
            on_sample(&HostSample::Powermetrics(s));
        }
        Err(e) => sink.warning(format!("host monitor: skipped a powermetrics document: {}", crate::errors::chain(&e))),
    }
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

#[derive(Debug, Clone, Serialize)]
pub struct DaemonReport {
    pub plist: String,
    pub action: DaemonAction,
    pub log_dir: String,
}

/// What `host install` / `host uninstall` did; in JSON `installed`, `removed`, `not installed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DaemonAction {
    #[serde(rename = "installed")]
    Installed,
    #[serde(rename = "removed")]
    Removed,
    #[serde(rename = "not installed")]
    NotInstalled,
}

impl std::fmt::Display for DaemonAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DaemonAction::Installed => "installed",
            DaemonAction::Removed => "removed",
            DaemonAction::NotInstalled => "not installed",
        })
    }
}

/// `host install`: where the daemon pushes and how often it samples.
#[derive(Debug, Clone)]
pub struct DaemonRequest {
    pub otlp_endpoint: String,
    pub interval: Duration,
}

/// macOS: installs the monitor as a launchd daemon (root). Untested here: no macOS in CI.
pub fn install_daemon(req: &DaemonRequest) -> Result<DaemonReport> {
    let (endpoint, interval) = (req.otlp_endpoint.as_str(), req.interval);
    if !cfg!(target_os = "macos") {
        return Err(OpError::Invalid(
            "`host install` manages a launchd daemon and exists on macOS only; on Linux run `sysmonvm host monitor` \
             under your service manager (see README, \"Host monitor\")"
                .into(),
        ));
    }
    if !host::is_root() {
        return Err(OpError::Invalid("installing a launchd daemon needs root: sudo sysmonvm host install …".into()));
    }
    sysmon_collector::push::metrics_url(endpoint).map_err(OpError::Invalid)?;
    let exe = std::env::current_exe().map_err(OpError::io("finding this executable"))?.display().to_string();
    let interval = format!("{}ms", interval.as_millis());
    for step in host::daemon_install_plan(&exe, endpoint, &interval)? {
        run_daemon_step(&step)?;
    }
    Ok(DaemonReport {
        plist: host::LAUNCHD_PLIST.into(),
        action: DaemonAction::Installed,
        log_dir: host::LOG_DIR.into(),
    })
}

/// Runs one step of the daemon plan as root (macOS; not run in CI: no macOS there).
fn run_daemon_step(step: &host::DaemonStep) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root_owned = |path: &str, mode: u32| -> Result<()> {
        std::os::unix::fs::chown(path, Some(0), Some(0)).map_err(OpError::io(format!("chown root:wheel {path}")))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(OpError::io(path))
    };
    match step {
        host::DaemonStep::RootDir(dir) => {
            std::fs::create_dir_all(dir).map_err(OpError::io(*dir))?;
            root_owned(dir, 0o755)
        }
        host::DaemonStep::RootCopy { from, to } => {
            let tmp = format!("{to}.new");
            std::fs::copy(from, &tmp).map_err(OpError::io(format!("copying {from} to {tmp}")))?;
            root_owned(&tmp, 0o755)?;
            std::fs::rename(&tmp, to).map_err(OpError::io(*to))
        }
        host::DaemonStep::Plist { path, contents } => {
            std::fs::write(path, contents).map_err(OpError::io(*path))?;
            root_owned(path, 0o644)
        }
        host::DaemonStep::Reload => {
            let _ = std::process::Command::new("launchctl")
                .args(["bootout", &format!("system/{}", host::LAUNCHD_LABEL)])
                .status();
            let st = std::process::Command::new("launchctl")
                .args(["bootstrap", "system", host::LAUNCHD_PLIST])
                .status()
                .map_err(OpError::io("running launchctl"))?;
            if st.success() {
                Ok(())
            } else {
                Err(OpError::Failed {
                    what: format!("launchctl bootstrap system {}", host::LAUNCHD_PLIST),
                    detail: st.to_string(),
                })
            }
        }
    }
}

/// macOS: removes the launchd daemon.
pub fn uninstall_daemon() -> Result<DaemonReport> {
    if !cfg!(target_os = "macos") {
        return Err(OpError::Invalid(
            "`host uninstall` removes the macOS launchd daemon; there is none on this OS".into(),
        ));
    }
    let _ =
        std::process::Command::new("launchctl").args(["bootout", &format!("system/{}", host::LAUNCHD_LABEL)]).status();
    let action = match std::fs::remove_file(host::LAUNCHD_PLIST) {
        Ok(()) => DaemonAction::Removed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DaemonAction::NotInstalled,
        Err(e) => return Err(OpError::io(host::LAUNCHD_PLIST)(e)),
    };
    Ok(DaemonReport { plist: host::LAUNCHD_PLIST.into(), action, log_dir: host::LOG_DIR.into() })
}
