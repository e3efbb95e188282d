//! VM lifecycle operations: argv, create, start, stop, status, list, destroy, ssh, console, and
//! the accelerator policy shared with `up` and `doctor`.

use super::events::{DownloadEvents, Event, Sink};
use super::{OpError, Result};
use crate::image::{self, ImageSource, cache::ImageCache};
use crate::profile::{Accel, Profile};
use crate::qemu::accel::{self, HostFacts, HostOs, SelfTest, SelfTestSource};
use crate::qemu::argv::{self, LaunchPlan, ResolvedAccel};
use crate::vm::{self, BootPhase, StartOptions, StartReport, StopReport, VmState};
use crate::workspace::Workspace;
use serde::Serialize;
use std::time::Duration;

/// How long the KVM self-test lets the firmware run before asking QMP.
pub const SELF_TEST_SETTLE: Duration = Duration::from_secs(3);

/// The accelerator `start` uses, with what decided it.
#[derive(Debug, Clone, Serialize)]
pub struct AccelDecision {
    pub requested: Accel,
    pub accel: ResolvedAccel,
    /// The KVM self-test's result (`NotRun` when kvm was not a candidate or the test was skipped).
    pub self_test: SelfTest,
    /// Where that result came from: the host facts, the cache (per QEMU binary and kernel), a
    /// run now, or skipped.
    pub self_test_source: Option<SelfTestSource>,
    /// False when kvm was assumed without any self-test result (`vm argv --no-self-test`).
    pub verified: bool,
    pub warning: Option<String>,
}

/// Whether kvm is a candidate for `requested` on this host, so the self-test has to run.
fn kvm_candidate(requested: Accel, host: &HostFacts) -> bool {
    matches!(requested, Accel::Auto | Accel::Kvm) && !(host.os == HostOs::Macos && requested == Accel::Auto)
}

/// Resolves the accelerator the way `start` does: `auto` and `kvm` need the KVM self-test,
/// whose verdict is cached per QEMU binary and host kernel (`Workspace::accel_selftest_cache`).
/// With `allow_self_test == false` and nothing cached, kvm is assumed to work where `/dev/kvm`
/// exists for a native guest, and the decision says it is unverified.
pub async fn resolve_accel(
    ws: &Workspace,
    requested: Accel,
    p: &Profile,
    allow_self_test: bool,
    sink: &dyn Sink,
) -> Result<AccelDecision> {
    let host = HostFacts::detect();
    let (test, source) = if kvm_candidate(requested, &host) {
        let outcome = accel::kvm_self_test_cached(&accel::SelfTestRequest {
            cache_file: &ws.accel_selftest_cache(),
            guest: p.arch,
            host: &host,
            settle: SELF_TEST_SETTLE,
            allow_run: allow_self_test,
        })
        .await;
        if let Some(e) = &outcome.not_saved {
            sink.warning(format!("the KVM self-test's verdict was not cached: {}", crate::errors::chain(e)));
        }
        (outcome.result, Some(outcome.source))
    } else {
        (SelfTest::NotRun("not needed".into()), None)
    };
    let verified = source != Some(SelfTestSource::Skipped);
    let assumed = if !verified && host.kvm_device && host.native(p.arch) { SelfTest::Passed } else { test.clone() };
    let (accel, warning) = accel::choose(requested, p.arch, &host, &assumed)?;
    if let Some(w) = &warning {
        sink.warning(w.clone());
    }
    Ok(AccelDecision { requested, accel, self_test: test, self_test_source: source, verified, warning })
}

#[derive(Debug, Clone)]
pub struct ArgvRequest {
    pub profile: Option<String>,
    pub name: Option<String>,
    pub accel: Option<Accel>,
    pub self_test: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArgvReport {
    pub vm: String,
    pub argv: Vec<String>,
    pub accel: AccelDecision,
    pub ssh_port: u16,
    /// (host, guest) per forward.
    pub forwards: Vec<(u16, u16)>,
    /// What in `argv` is not what `start` would use, said in words: the VM does not exist yet
    /// (its ports are free ones picked now), or it runs (its ports are the ones it holds).
    pub placeholders: Vec<String>,
}

/// The command line `vm start` would run for the VM (or a new VM of the profile).
pub async fn argv(ws: &Workspace, req: &ArgvRequest, sink: &dyn Sink) -> Result<ArgvReport> {
    let p = super::load_profile(ws, req.profile.as_deref())?;
    let name = req.name.clone().unwrap_or_else(|| p.name.clone());
    let paths = ws.vm(&name)?;
    let existing = vm::load_state(&paths).ok();
    let profile = existing.as_ref().map(|s| s.profile.clone()).unwrap_or(p);
    let decision = resolve_accel(ws, req.accel.unwrap_or(profile.accel), &profile, req.self_test, sink).await?;
    let mut placeholders = Vec::new();
    let state = match existing {
        Some(s) => s,
        None => {
            placeholders.push("ports: no VM of this name exists; `start` picks free ports when it runs".to_string());
            placeholder_state(&name, &profile)
        }
    };
    // A running VM holds its ports, so choosing now would find them taken and pick others that
    // no QEMU uses: show the ones it runs with.
    let running = vm::running_pid(&paths).is_some() && state.ssh_port.is_some();
    let (ssh_port, forwards) = match state.ssh_port {
        Some(ssh) if running => (ssh, state.forwards.clone()),
        _ => vm::choose_ports(&state)?,
    };
    if running {
        placeholders.push(format!(
            "ports: VM {name} is running; these are the ports it runs with (`start` does nothing while it runs)"
        ));
    }
    let code = vm::firmware_files(&profile, &paths)?.code;
    let plan = LaunchPlan {
        accel: decision.accel,
        firmware_code: code,
        ssh_port,
        forwards: forwards.clone(),
        daemonize: true,
    };
    Ok(ArgvReport {
        vm: name,
        argv: argv::argv(&profile, &plan, &paths),
        accel: decision,
        ssh_port,
        forwards,
        placeholders,
    })
}

fn placeholder_state(name: &str, p: &Profile) -> VmState {
    VmState {
        name: name.to_string(),
        profile: p.clone(),
        profile_source: p.source.clone(),
        image_path: Default::default(),
        image_sha256: String::new(),
        instance_id: String::new(),
        created_at: String::new(),
        accel: None,
        ssh_port: None,
        forwards: Vec::new(),
        guest_address: None,
        collector_mode: Default::default(),
    }
}

/// Fetches the profile's image and creates the VM's files, unless `state.json` says it exists.
pub async fn fetch_and_create(ws: &Workspace, name: &str, p: &Profile, sink: &dyn Sink) -> Result<VmState> {
    let paths = ws.vm(name)?;
    if let Ok(s) = vm::load_state(&paths) {
        return Ok(s);
    }
    sink.emit(Event::PhaseStarted { phase: "fetch".into(), detail: Some(format!("the image of {}", p.name)) });
    let started = std::time::Instant::now();
    let fetched = image::fetch(&ImageSource::from_profile(p), &ImageCache::of(ws), &DownloadEvents(sink), |who| {
        sink.emit(Event::Waiting { what: "the image cache entry".into(), holder: who.to_string() })
    })
    .await
    .map_err(|source| OpError::Fetch { profile: p.name.clone(), source: Box::new(source) })?;
    for w in &fetched.warnings {
        sink.warning(w.clone());
    }
    sink.emit(Event::PhaseFinished { phase: "fetch".into(), seconds: started.elapsed().as_secs_f64() });
    Ok(vm::create(ws, name, p, &fetched)?)
}

/// A VM whose backing image left the cache (an old `image prune`, a cleaned cache): fetched
/// again by the digest `state.json` recorded, so the disk's overlay finds the same bytes.
pub async fn refetch_backing_image(ws: &Workspace, state: &VmState, sink: &dyn Sink) -> Result<()> {
    if vm::ensure_backing_image(state).is_ok() {
        return Ok(());
    }
    sink.warning(format!(
        "VM {}: its backing image {} is gone; fetching sha256 {} again",
        state.name,
        state.image_path.display(),
        state.image_sha256
    ));
    let mut src = ImageSource::from_profile(&state.profile);
    // Pinned: a source that now lists another digest must not become this VM's backing file.
    src.sha256 = Some(state.image_sha256.clone());
    let fetched = image::fetch(&src, &ImageCache::of(ws), &DownloadEvents(sink), |who| {
        sink.emit(Event::Waiting { what: "the image cache entry".into(), holder: who.to_string() })
    })
    .await
    .map_err(|source| OpError::BackingImageUnavailable {
        vm: state.name.clone(),
        sha256: state.image_sha256.clone(),
        profile: state.profile.name.clone(),
        source: Box::new(source),
    })?;
    for w in &fetched.warnings {
        sink.warning(w.clone());
    }
    if fetched.path != state.image_path {
        // The overlay names its backing file by path: put the bytes where it looks.
        return Err(OpError::Invalid(format!(
            "VM {}: the image was fetched to {} but the disk expects it at {}; `sysmonvm vm destroy {}` and `up` again",
            state.name,
            fetched.path.display(),
            state.image_path.display(),
            state.name
        )));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub profile: Option<String>,
    pub name: Option<String>,
}

pub async fn create(ws: &Workspace, req: &CreateRequest, sink: &dyn Sink) -> Result<VmState> {
    let p = super::load_profile(ws, req.profile.as_deref())?;
    let name = req.name.clone().unwrap_or_else(|| p.name.clone());
    let _lock = super::lock_vm(ws, &name, sink).await?;
    fetch_and_create(ws, &name, &p, sink).await
}

#[derive(Debug, Clone)]
pub struct StartRequest {
    pub name: Option<String>,
    pub accel: Option<Accel>,
    pub wait: bool,
    /// A hard upper bound for the boot; None scales with accelerator and arch.
    pub timeout: Option<Duration>,
}

/// Boot phases as events.
pub fn boot_events(sink: &dyn Sink) -> impl FnMut(BootPhase, f64) + '_ {
    move |phase, seconds| sink.emit(Event::BootPhase { phase, seconds })
}

/// Starts the VM (locked by the caller) with a resolved accelerator and waits for it.
pub async fn start_locked(
    ws: &Workspace,
    name: &str,
    accel: ResolvedAccel,
    wait: bool,
    timeout: Option<Duration>,
    sink: &dyn Sink,
) -> Result<StartReport> {
    let state = vm::load_state(&ws.vm(name)?)?;
    let timeout = timeout.unwrap_or_else(|| vm::default_boot_timeout(accel, state.profile.arch));
    let opts = StartOptions { accel, wait, timeout };
    Ok(vm::start(ws, name, &opts, boot_events(sink)).await?)
}

pub async fn start(ws: &Workspace, req: &StartRequest, sink: &dyn Sink) -> Result<StartReport> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let state = vm::load_state(&ws.vm(&name)?)?;
    let decision = resolve_accel(ws, req.accel.unwrap_or(state.profile.accel), &state.profile, true, sink).await?;
    start_locked(ws, &name, decision.accel, req.wait, req.timeout, sink).await
}

#[derive(Debug, Clone)]
pub struct StopRequest {
    pub name: Option<String>,
    pub force: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct StopOutcome {
    pub vm: String,
    #[serde(flatten)]
    pub stop: StopReport,
}

pub async fn stop(ws: &Workspace, req: &StopRequest, sink: &dyn Sink) -> Result<StopOutcome> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let stop = vm::stop(&ws.vm(&name)?, req.force, req.timeout).await?;
    Ok(StopOutcome { vm: name, stop })
}

/// What the guest agent says about the guest, the parts people read.
#[derive(Debug, Clone, Serialize)]
pub struct GuestSummary {
    pub os: Option<String>,
    pub vcpus: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub status: vm::Status,
    pub guest: Option<GuestSummary>,
}

pub async fn status_of(ws: &Workspace, name: &str) -> Result<StatusReport> {
    let status = vm::status(&ws.vm(name)?).await?;
    let guest =
        status.guest_agent.as_ref().map(|f| GuestSummary { os: f.os.pretty_name.clone(), vcpus: f.vcpus.len() });
    Ok(StatusReport { status, guest })
}

pub async fn status(ws: &Workspace, name: Option<&str>) -> Result<StatusReport> {
    let name = super::pick_vm(ws, name)?;
    status_of(ws, &name).await
}

pub async fn list(ws: &Workspace) -> Result<Vec<StatusReport>> {
    let mut rows = Vec::new();
    for n in vm::list(ws) {
        rows.push(status_of(ws, &n).await?);
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct DestroyReport {
    pub destroyed: String,
    pub was_running: bool,
}

/// Stops the VM and deletes its directory. The caller has confirmed.
pub async fn destroy(ws: &Workspace, name: &str, sink: &dyn Sink) -> Result<DestroyReport> {
    let paths = ws.vm(name)?;
    let was_running = vm::running_pid(&paths).is_some();
    let _lock = super::lock_vm(ws, name, sink).await?;
    vm::destroy(&paths).await?;
    Ok(DestroyReport { destroyed: name.to_string(), was_running })
}

/// `vm ssh`: the system OpenSSH with the VM's pinned host key, interactive (its stdio is the
/// caller's). Returns ssh's exit status.
pub fn ssh(ws: &Workspace, name: Option<&str>, command: &[String]) -> Result<i32> {
    let name = super::pick_vm(ws, name)?;
    let paths = ws.vm(&name)?;
    let state = vm::load_state(&paths)?;
    let port = state
        .ssh_port
        .filter(|_| vm::running_pid(&paths).is_some())
        .ok_or_else(|| OpError::Vm(vm::VmError::NotRunning(name.clone())))?;
    let argv = vm::openssh_argv(ws, &paths, &state, port, command);
    let status = std::process::Command::new(&argv[0]).args(&argv[1..]).status().map_err(|e| OpError::Tool {
        what: "cannot run ssh".into(),
        hint: "install openssh-client".into(),
        source: Some(e),
    })?;
    Ok(status.code().unwrap_or(crate::exit::ERROR))
}

/// `vm console`: the serial log, and (when following) what is appended to it, to `out`.
pub fn console(ws: &Workspace, name: Option<&str>, follow: bool, mut out: impl FnMut(&[u8])) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let name = super::pick_vm(ws, name)?;
    let paths = ws.vm(&name)?;
    let mut pos = 0u64;
    loop {
        if let Ok(mut f) = std::fs::File::open(&paths.serial_log) {
            let len = f.metadata().map_err(OpError::io(paths.serial_log.display()))?.len();
            if len < pos {
                pos = 0; // a new boot started a new log
            }
            f.seek(SeekFrom::Start(pos)).map_err(OpError::io(paths.serial_log.display()))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(OpError::io(paths.serial_log.display()))?;
            pos += buf.len() as u64;
            out(&buf);
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
