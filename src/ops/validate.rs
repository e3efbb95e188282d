//! `validate`: points the guest's collector at a host OTLP receiver and at the throttle cgroup,
//! measures the clock offset, runs each phase (load, reference loop, perf, and snapshots through
//! the forward, side by side), restores the collector, then hands the readings to the pure checks
//! (`validate::checks`) and writes the report (`validate::report`).

use super::events::{Event, Silent, Sink};
use super::provision::{InstallRequest, collector_install_locked};
use super::{OpError, Result};
use crate::guest::collector_mode::CollectorMode;
use crate::ssh::{ExecOptions, SshSession};
use crate::validate::checks::{self, HostPoint, Inputs, PhaseKind, PhaseWindow};
use crate::validate::receiver::unix_now as now;
use crate::validate::{self, perfstat, receiver, refs, report};
use crate::vm;
use crate::workspace::Workspace;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use sysmon_collector::snapshot::Snapshot;

/// What a phase's guest commands (load, reference loop, perf stat) may take beyond the phase.
const PHASE_EXEC_GRACE: Duration = Duration::from_secs(5 * 60);
/// What is kept of a phase command's output: far above what a long phase on many CPUs prints.
const PHASE_OUTPUT_CAP: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct ValidateRequest {
    pub name: Option<String>,
    pub phases: Vec<PhaseKind>,
    pub duration_per_phase: Duration,
    pub interval: Duration,
    /// Frequency: relative error in percent; usage: absolute percentage points.
    pub tolerance_pct: f64,
    pub throttle_quota_pct: f64,
    /// [default: the VM's directory, validate/].
    pub report_dir: Option<PathBuf>,
    pub require_frequency: bool,
    /// Run the collector in this mode for the run [default: the VM's]; the VM's own mode is put
    /// back afterwards.
    pub mode: Option<CollectorMode>,
}

/// The shortest phase whose readings mean anything (warm-up plus a few intervals).
pub const MIN_PHASE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    #[serde(flatten)]
    pub report: report::Report,
    /// Where report.json/.md/.html, samples.csv and rollups.csv were written.
    pub report_dir: PathBuf,
}

/// A Unix time in seconds as RFC 3339, as the reports write their times.
pub(crate) fn rfc3339(t: f64) -> String {
    sysmon_collector::host::rfc3339((t * 1e9) as u64)
}

/// A short probe's stdout (the clock, whether stress-ng is there); a cut is a warning.
async fn guest_text(
    session: &SshSession,
    vm: &str,
    cmd: &crate::guest::command::GuestCommand,
    sink: &dyn Sink,
) -> Result<String> {
    let line = cmd.render();
    let o = session.exec(&line).await.map_err(|source| OpError::Ssh {
        vm: vm.to_string(),
        command: line.clone(),
        source,
    })?;
    if let Some(w) = o.cut_warning(&format!("`{}`", crate::sanitize::line(&line)), crate::ssh::DEFAULT_MAX_OUTPUT) {
        sink.warning(w);
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Warns when a phase command's output was cut at [`PHASE_OUTPUT_CAP`]: its readings before the
/// kept tail are missing from the checks (for the reference loop, all of them: its first line
/// carries the clock every pass is timed by).
fn warn_if_cut(sink: &dyn Sink, phase: PhaseKind, what: &str, out: &crate::ssh::Output) {
    if let Some(w) = out.cut_warning(&format!("the {} phase's {what}", phase.as_str()), PHASE_OUTPUT_CAP) {
        sink.warning(format!("{w}; readings in the dropped part are missing from the checks"));
    }
}

/// Snapshots from the collector through the host forward, once per interval, until `until`.
/// A snapshot of a few hundred CPUs and containers is well under this.
const SNAPSHOT_BYTES_MAX: usize = 16 << 20;

/// The body, or None when it fails or grows past `max`.
async fn capped_body(mut r: reqwest::Response, max: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= max => body.extend_from_slice(&chunk),
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) => return Some(body),
        }
    }
}

async fn poll_snapshots(url: &str, interval: Duration, until: Instant) -> Vec<Snapshot> {
    let client = crate::image::download::client();
    let mut out = Vec::new();
    while Instant::now() < until {
        let tick = Instant::now();
        // The timeout covers the whole request, body included; the body is capped (a guest's
        // collector answering without end cannot grow the host's memory).
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(5)).send().await
            && let Some(bytes) = capped_body(r, SNAPSHOT_BYTES_MAX).await
            && let Ok(s) = serde_json::from_slice::<Snapshot>(&bytes)
        {
            out.push(s);
        }
        tokio::time::sleep(interval.saturating_sub(tick.elapsed())).await;
    }
    out
}

pub async fn validate(ws: &Workspace, req: &ValidateRequest, sink: &dyn Sink) -> Result<ValidateReport> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    check_request(req)?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    validate_locked(ws, &name, req, sink).await
}

/// The settings a report records: the request's, with the warm-up and the OTLP latency limit
/// validate derives.
pub fn settings_of(req: &ValidateRequest) -> report::Settings {
    let interval = req.interval.as_secs_f64();
    report::Settings {
        phases: req.phases.iter().map(|p| p.as_str().to_string()).collect(),
        duration_per_phase_s: req.duration_per_phase.as_secs_f64(),
        interval_s: interval,
        // The collector's rates need a few intervals after a phase's load changes.
        warmup_s: (3.0 * interval).max(3.0),
        tolerance_pct: req.tolerance_pct,
        latency_limit_s: 15.0,
        throttle_quota_pct: req.throttle_quota_pct,
        require_frequency: req.require_frequency,
    }
}

/// What a request must hold before anything in the guest changes.
pub fn check_request(req: &ValidateRequest) -> Result<()> {
    if req.phases.is_empty() {
        return Err(OpError::Invalid("--phases names no phase".into()));
    }
    if req.duration_per_phase < MIN_PHASE {
        return Err(OpError::Invalid(format!("--duration-per-phase must be at least {}s", MIN_PHASE.as_secs())));
    }
    Ok(())
}

/// [`validate`] with the VM's lock held by the caller (the matrix holds it across its cells).
pub async fn validate_locked(
    ws: &Workspace,
    name: &str,
    req: &ValidateRequest,
    sink: &dyn Sink,
) -> Result<ValidateReport> {
    check_request(req)?;
    let name = name.to_string();
    let paths = ws.vm(&name)?;
    let report_dir = req.report_dir.clone().unwrap_or_else(|| paths.validate_dir.clone());
    let state = vm::load_state(&paths)?;
    let own_mode = state.collector_mode;
    let mode = req.mode.unwrap_or(own_mode);
    let fwd = vm::forwarded(&state, state.profile.collector.port).ok_or_else(|| {
        OpError::Invalid(format!(
            "the profile forwards no host port to the collector's port {}: validate reads it through that forward",
            state.profile.collector.port
        ))
    })?;
    let started = now();

    // The collector pushes OTLP to us and also reports the throttle cgroup while we run.
    let recv = receiver::start().await.map_err(OpError::io("starting the OTLP receiver on 127.0.0.1"))?;
    sink.info(format!(
        "validate: OTLP receiver on 127.0.0.1:{} (the guest sends to 10.0.2.2:{})",
        recv.port, recv.port
    ));
    // Any process that can reach the host's 127.0.0.1 (every user-networked VM, as 10.0.2.2) could
    // post arrivals; only this run's collector holds the token the receiver counts.
    let configure = InstallRequest {
        name: Some(name.clone()),
        otlp_endpoint: Some(format!("http://10.0.2.2:{}", recv.port)),
        otlp_headers: [("Authorization".to_string(), recv.authorization())].into(),
        cgroups: vec![validate::THROTTLE_CGROUP.into()],
        mode: Some(mode),
        temporary: true,
        ..Default::default()
    };
    collector_install_locked(ws, &name, &configure, &Silent).await?;

    let result = measure(ws, &paths, req, fwd, sink).await;

    // Put the collector back as `up` installs it, in the VM's own mode, whatever happened.
    let restore = collector_install_locked(
        ws,
        &name,
        &InstallRequest { name: Some(name.clone()), mode: Some(own_mode), ..Default::default() },
        &Silent,
    )
    .await;
    let Measured { windows, snapshots, refs: ref_samples, perf, perf_missing, offset, host: host_points, host_missing } =
        result?;
    restore?;

    let otlp: Vec<(f64, f64)> =
        recv.arrivals().iter().map(|a| (a.arrived_unix, a.newest_reading_unix - offset.0)).collect();
    let unauthorized = recv.counts().unauthorized;
    if unauthorized > 0 {
        sink.warning(format!(
            "the OTLP receiver refused {unauthorized} request(s) without this run's token (another process on this \
             machine or in a VM posted to 127.0.0.1:{}); they are not counted",
            recv.port
        ));
    }
    let interval = req.interval.as_secs_f64();
    let settings = settings_of(req);
    let inputs = Inputs {
        phases: &windows,
        collector: &snapshots,
        refs: &ref_samples,
        perf: &perf,
        perf_missing,
        interval,
        warmup: settings.warmup_s,
        tolerance: req.tolerance_pct,
        throttle_cgroup: validate::THROTTLE_CGROUP,
        throttle_quota_pct: req.throttle_quota_pct,
        otlp: &otlp,
        latency_limit: settings.latency_limit_s,
        host: &host_points,
        host_missing,
    };
    let mut all = checks::all(&inputs);
    let status = checks::exit_status(&mut all, req.require_frequency);
    let rows = report::rows(&inputs);
    let finished = now();
    let r = report::Report {
        schema: report::SCHEMA.into(),
        run_id: format!("{}-{}", name, rfc3339(started).replace([':', '.'], "")),
        started: rfc3339(started),
        finished: rfc3339(finished),
        vm: name.clone(),
        profile: state.profile.name.clone(),
        accel: state.accel.map(|x| x.as_str().to_string()).unwrap_or_default(),
        settings,
        phases: windows.clone(),
        clock_offset_s: offset.0,
        clock_offset_uncertainty_s: offset.1,
        summary: report::Summary::of(&all, status),
        rollups: report::rollups(&rows),
        checks: all,
        collector: report::CollectorSeen::of(mode.as_str(), &snapshots, validate::THROTTLE_CGROUP),
    };
    report::write(&report_dir, &r, &rows)
        .map_err(OpError::io(format!("writing the report to {}", report_dir.display())))?;
    Ok(ValidateReport { report: r, report_dir })
}

struct Measured {
    windows: Vec<PhaseWindow>,
    snapshots: Vec<Snapshot>,
    refs: Vec<refs::RefSample>,
    perf: Vec<perfstat::PerfInterval>,
    perf_missing: Option<String>,
    /// Guest minus host clock, and its uncertainty.
    offset: (f64, f64),
    host: Vec<HostPoint>,
    host_missing: Option<String>,
}

/// The host's own CPUs over `d`: the collector's library on Linux, powermetrics on macOS (root,
/// or `sudo -n` with the sudoers rule in the README). Times are on the host's clock.
fn sample_host(d: Duration, iv: Duration) -> std::result::Result<Vec<HostPoint>, HostSampleError> {
    if cfg!(target_os = "macos") {
        let n = (d.as_secs_f64() / iv.as_secs_f64()).floor().max(1.0) as u64;
        let argv = crate::host::powermetrics_argv(iv.as_millis() as u64, Some(n), crate::host::is_root());
        let started = now();
        let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().map_err(HostSampleError::Spawn)?;
        if !out.status.success() {
            return Err(HostSampleError::NeedsRoot(out.status));
        }
        let (samples, _) = crate::host::powermetrics::parse_stream(&out.stdout);
        let mut points = Vec::new();
        for (k, s) in samples.iter().enumerate() {
            let t = started + (k + 1) as f64 * iv.as_secs_f64();
            for c in &s.clusters {
                if let Some(hz) = c.freq_hz {
                    points.push(HostPoint { time: t, name: c.name.clone(), source: "host powermetrics".into(), hz });
                }
            }
        }
        return Ok(points);
    }
    use sysmon_collector::sampler::{Sampler, SamplerOptions};
    let mut sampler = Sampler::new(
        sysmon_collector::roots::Roots::under(std::path::Path::new("/")),
        SamplerOptions { perf: false, cgroups: vec![], container: None },
    );
    let until = Instant::now() + d;
    let mut points = Vec::new();
    let mut first = true;
    while Instant::now() + iv <= until {
        let snap = if first {
            sampler.sample_over(iv)
        } else {
            std::thread::sleep(iv);
            sampler.sample()
        };
        first = false;
        for c in &snap.cpus {
            if let Some(hz) = c.frequency_hz {
                points.push(HostPoint {
                    time: checks::snapshot_time(&snap),
                    name: c.cpu.clone(),
                    source: format!("host {}", c.frequency_source.as_str()),
                    hz,
                });
            }
        }
    }
    if points.is_empty() { Err(HostSampleError::NoFrequency) } else { Ok(points) }
}

/// Why the host's own frequencies are missing from a report (its `host_missing`, as a chain).
#[derive(Debug, thiserror::Error)]
enum HostSampleError {
    #[error("cannot run powermetrics")]
    Spawn(#[source] std::io::Error),
    #[error("powermetrics exited with {0}: it needs root (see README, \"Host monitor\", for the sudoers rule)")]
    NeedsRoot(std::process::ExitStatus),
    #[error("the host reports no CPU frequency")]
    NoFrequency,
    #[error("the host sampling task failed")]
    Task(#[source] tokio::task::JoinError),
}

async fn measure(
    ws: &Workspace,
    paths: &crate::workspace::VmPaths,
    req: &ValidateRequest,
    fwd: u16,
    sink: &dyn Sink,
) -> Result<Measured> {
    let vm_name = paths.name.as_str();
    let quota = req.throttle_quota_pct;
    let (_, session) = vm::connect(ws, paths).await?;
    // Guest clock minus host clock, from the probe with the shortest round trip.
    let mut probes = Vec::new();
    for _ in 0..5 {
        let before = now();
        let g = guest_text(&session, vm_name, &validate::clock_probe(), sink).await?;
        let after = now();
        if let Ok(t) = g.trim().parse::<f64>() {
            probes.push((before, t, after));
        }
    }
    let offset = validate::clock_offset(&probes)
        .ok_or_else(|| OpError::Invalid("could not read the guest's clock (`date +%s.%N` printed no time)".into()))?;
    sink.info(format!("validate: guest clock {:+.3} s from the host (±{:.3} s)", offset.0, offset.1));
    if guest_text(&session, vm_name, &validate::stress_ng_probe()?, sink).await?.trim() == "missing" {
        return Err(OpError::Tool {
            what: "stress-ng is not installed in the guest".into(),
            hint: "run `sysmonvm bootstrap` first".into(),
            source: None,
        });
    }
    let url = format!("http://127.0.0.1:{fwd}/v1/snapshot");
    let (d, iv) = (req.duration_per_phase, req.interval);
    let mut windows = Vec::new();
    let mut snapshots: Vec<Snapshot> = Vec::new();
    let mut ref_samples = Vec::new();
    let mut perf = Vec::new();
    let mut perf_missing: Option<String> = None;
    let mut host: Vec<HostPoint> = Vec::new();
    let mut host_missing: Option<String> = None;
    for kind in &req.phases {
        sink.emit(Event::PhaseStarted {
            phase: format!("validate {}", kind.as_str()),
            detail: Some(format!("{} s", d.as_secs())),
        });
        let start = now() + offset.0;
        let until = Instant::now() + d;
        // The phase's commands run for the whole phase: their deadline and output cap follow it.
        let phase_exec = ExecOptions::default().within(d + PHASE_EXEC_GRACE).max_output(PHASE_OUTPUT_CAP);
        let load = async {
            match validate::load_command(*kind, d, quota) {
                Some(cmd) => session.exec_with(&cmd.render(), phase_exec).await.map(Some),
                None => {
                    tokio::time::sleep(d).await;
                    Ok(None)
                }
            }
        };
        let refs_cmd = validate::refs_command(d, iv)?.render();
        let perf_cmd = validate::perf_command(d, iv)?.render();
        let (load, refs_out, perf_out, snaps, host_out) = tokio::join!(
            load,
            session.exec_with(&refs_cmd, phase_exec),
            session.exec_with(&perf_cmd, phase_exec),
            poll_snapshots(&url, iv, until),
            tokio::task::spawn_blocking(move || sample_host(d, iv))
        );
        match host_out.map_err(HostSampleError::Task).and_then(|r| r) {
            // On the guest's clock, like every other reading.
            Ok(points) => host.extend(points.into_iter().map(|mut p| {
                p.time += offset.0;
                p
            })),
            Err(why) => host_missing = Some(crate::errors::chain(&why)),
        }
        // The phase is the load's own span: readings after stress-ng's timeout (the reference loop
        // and the polling run a little longer) belong to no phase.
        let end = start + d.as_secs_f64();
        let ssh_err = |what: &str| {
            let what = what.to_string();
            move |source| OpError::Ssh { vm: vm_name.to_string(), command: what, source }
        };
        if let Some(o) = load.map_err(ssh_err("the phase's load"))? {
            warn_if_cut(sink, *kind, "load", &o);
            if o.status != 0 {
                return Err(OpError::Failed {
                    what: format!("the {} phase's load failed ({})", kind.as_str(), o.status),
                    detail: String::from_utf8_lossy(&o.stderr).trim().to_string(),
                });
            }
        }
        windows.push(PhaseWindow { kind: *kind, start, end });
        let refs_out = refs_out.map_err(ssh_err("the reference loop"))?;
        warn_if_cut(sink, *kind, "reference loop", &refs_out);
        ref_samples.extend(refs::parse(&String::from_utf8_lossy(&refs_out.stdout)));
        let perf_out = perf_out.map_err(ssh_err("perf stat"))?;
        warn_if_cut(sink, *kind, "perf stat", &perf_out);
        let perf_text = String::from_utf8_lossy(&perf_out.stdout).into_owned();
        let parsed = perfstat::parse(&perf_text);
        if parsed.intervals.is_empty() {
            perf_missing = Some(if parsed.unsupported {
                "no PMU in the guest: perf stat reports cycles <not supported>".into()
            } else if perf_text.contains("@@perf-missing") || perf_text.contains("not found") {
                format!("perf stat did not run in the guest: {}", perf_text.lines().next().unwrap_or("").trim())
            } else {
                "perf stat counted no cycles".into()
            });
        }
        perf.extend(parsed.intervals.into_iter().map(|mut p| {
            p.t += start;
            p
        }));
        for s in snaps {
            if !snapshots.iter().any(|x| x.timestamp_unix_nano == s.timestamp_unix_nano) {
                snapshots.push(s);
            }
        }
    }
    session.close().await;
    snapshots.sort_by_key(|s| s.timestamp_unix_nano);
    Ok(Measured { windows, snapshots, refs: ref_samples, perf, perf_missing, offset, host, host_missing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::events::Collected;

    #[test]
    fn a_phase_output_cut_at_the_cap_is_a_warning_naming_it() {
        let out = |dropped| crate::ssh::Output {
            status: 0,
            stdout: b"@@t 1.0\n".to_vec(),
            stderr: vec![],
            stdout_dropped: dropped,
            stderr_dropped: 0,
        };
        let sink = Collected::default();
        warn_if_cut(&sink, PhaseKind::All, "reference loop", &out(0));
        assert!(sink.events().is_empty());
        warn_if_cut(&sink, PhaseKind::All, "reference loop", &out(1234));
        match sink.events().as_slice() {
            [Event::Warning { message }] => assert_eq!(
                message,
                "the all phase's reference loop printed more than the 64 MiB kept of each stream: the first 1234 \
                 bytes of its stdout were dropped, so only the end of its output was read; readings in the dropped \
                 part are missing from the checks"
            ),
            other => panic!("{other:?}"),
        }
    }
}
