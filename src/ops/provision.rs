//! Provisioning a running VM: the bootstrap plan, building and installing the collector, its
//! status, journal and removal. Plans come from `guest::{bootstrap, collector}`; the runner runs
//! them over SSH; this module connects, reports and checks the result from the host.

use super::events::{Event, Sink, from_runner};
use super::{OpError, Result};
use crate::guest::collector_mode::CollectorMode;
use crate::guest::command::{self, GuestCommand};
use crate::guest::runner::{self, RunReport, sha256_hex};
use crate::guest::steps::Plan;
use crate::guest::systemd::ActiveState;
use crate::guest::{bootstrap as bootstrap_plan, collector, collector_image};
use crate::ssh::{ExecDeadline, ExecOptions, SshSession};
use crate::vm::{self, VmState};
use crate::workspace::Workspace;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct BootstrapRequest {
    pub name: Option<String>,
    /// Extra packages on top of the baseline and the profile's.
    pub packages: Vec<String>,
}

/// The bootstrap of a running VM that the caller has locked.
pub async fn bootstrap_locked(ws: &Workspace, name: &str, packages: &[String], sink: &dyn Sink) -> Result<RunReport> {
    let what = Provisioning { bootstrap: Some(packages.to_vec()), collector: None };
    let report = provision_locked(ws, name, None, &what, sink).await?;
    Ok(report.bootstrap.expect("a bootstrap was asked for"))
}

pub async fn bootstrap(ws: &Workspace, req: &BootstrapRequest, sink: &dyn Sink) -> Result<RunReport> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    bootstrap_locked(ws, &name, &req.packages, sink).await
}

#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    pub name: Option<String>,
    /// The collector binary [default: the staged one, else built from a checkout].
    pub binary: Option<PathBuf>,
    /// A config file installed verbatim (checked by the collector's parser first).
    pub config: Option<PathBuf>,
    /// Also push OTLP here (as seen from the guest).
    pub otlp_endpoint: Option<String>,
    /// Headers the collector sends with each push (validate's per-run token).
    pub otlp_headers: std::collections::BTreeMap<String, String>,
    /// Also report these cgroups as containers.
    pub cgroups: Vec<String>,
    /// The checkout to build from.
    pub source: Option<PathBuf>,
    /// Install as ServiceRadar's sysmon-vm checker: report the agent's check entry.
    pub serviceradar: bool,
    /// ServiceRadar's mTLS files (root.pem, checkers.pem, checkers-key.pem) for the gRPC
    /// endpoint; needs a collector built with feature `mtls`.
    pub certs: Option<PathBuf>,
    /// How the collector runs; None: as the last install recorded (native at first).
    pub mode: Option<CollectorMode>,
    /// validate's install for its run: the mode is not recorded in `state.json`, so the VM's
    /// own mode is still known (and put back) after a run that was killed.
    pub temporary: bool,
}

impl InstallRequest {
    /// The mode this install leaves the VM in: the request's, else the one `state` recorded.
    fn mode_on(&self, state: &VmState) -> CollectorMode {
        self.mode.unwrap_or(state.collector_mode)
    }
}

/// The collector's config for VM `name` listening on `listen`, with the request's OTLP push and
/// named cgroups (mTLS with `--certs`).
fn config_for(state: &VmState, name: &str, listen: String, req: &InstallRequest) -> String {
    collector::config_json(&collector::ConfigInput {
        listen,
        grpc_listen: collector::grpc_listen(&state.profile),
        mtls: req.certs.is_some(),
        interval: state.profile.collector.interval.clone(),
        vm_id: name.to_string(),
        otlp_endpoint: req.otlp_endpoint.clone(),
        otlp_headers: req.otlp_headers.clone(),
        cgroups: req.cgroups.clone(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// How the collector runs: `native`, `container`, `container-sys-ro` or `privileged`.
    pub mode: CollectorMode,
    pub target: String,
    pub binary: PathBuf,
    pub binary_sha256: String,
    pub listen: String,
    /// `127.0.0.1:PORT` on the host, when the profile forwards the collector's port.
    pub forward: Option<String>,
    pub answers_via_forward: bool,
    /// The gRPC checker address in the guest (`listen_addr`).
    pub grpc_listen: String,
    /// `127.0.0.1:PORT` on the host forwarding the gRPC port; null when the running QEMU was
    /// started without it (then `restart_needed`).
    pub grpc_forward: Option<String>,
    /// `none` or `mtls`.
    pub grpc_security: String,
    /// The QEMU process predates the gRPC forward: `sysmonvm down` and `up` add it.
    pub restart_needed: bool,
    /// With `--serviceradar`: the entry for ServiceRadar's agent (`{"name","type","details"}`).
    pub serviceradar_check: Option<collector::CheckEntry>,
    pub run: RunReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub target: String,
    pub binary: PathBuf,
    pub sha256: String,
}

/// The binary to install for `target`: the request's, else the staged one, else built.
fn collector_binary(ws: &Workspace, target: &str, req: &InstallRequest, sink: &dyn Sink) -> Result<PathBuf> {
    if let Some(b) = &req.binary {
        return Ok(b.clone());
    }
    let mtls = req.certs.is_some();
    let staged = if mtls { ws.collector_binary_mtls(target) } else { ws.collector_binary(target) };
    if staged.is_file() {
        return Ok(staged);
    }
    match collector::find_source(req.source.as_deref()) {
        Some(src) => build_in(ws, &src, target, mtls, sink),
        None => Err(OpError::Tool {
            what: format!(
                "no collector binary for {target}: looked for {} and for a sysmonvm checkout to build one from",
                staged.display()
            ),
            hint: format!(
                "run `sysmonvm collector build --target {target} --source DIR` with a checkout, or put a released \
                 sysmon-collector-{target} binary at that path (or pass --binary FILE)"
            ),
            source: None,
        }),
    }
}

#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The arch to build the static musl binary for; None: the profile's.
    pub target: Option<crate::profile::Arch>,
    pub profile: Option<String>,
    pub source: Option<PathBuf>,
    /// Build with feature `mtls` (needs the target's C cross compiler) and stage it apart.
    pub mtls: bool,
}

pub fn collector_build(ws: &Workspace, req: &BuildRequest, sink: &dyn Sink) -> Result<BuildReport> {
    let arch = match req.target {
        Some(a) => a,
        None => super::load_profile(ws, req.profile.as_deref())?.arch,
    };
    let target = collector::target(arch).to_string();
    let src = collector::find_source(req.source.as_deref()).ok_or_else(|| OpError::Tool {
        what: "no sysmonvm checkout found to build the collector from".into(),
        hint: "pass --source DIR (or set SYSMONVM_SOURCE), or use released collector binaries".into(),
        source: None,
    })?;
    let staged = build_in(ws, &src, &target, req.mtls, sink)?;
    let bytes = std::fs::read(&staged).map_err(OpError::io(staged.display()))?;
    Ok(BuildReport { target, sha256: sha256_hex(&bytes), binary: staged })
}

/// Cross-builds the collector in `source` (cargo's output as events) and stages it.
fn build_in(ws: &Workspace, source: &Path, target: &str, mtls: bool, sink: &dyn Sink) -> Result<PathBuf> {
    use std::io::BufRead;
    if !collector::is_source(source) {
        return Err(OpError::Invalid(format!(
            "{} is not a sysmonvm checkout (no collector/Cargo.toml)",
            source.display()
        )));
    }
    let argv = if mtls { collector::build_argv_mtls(target) } else { collector::build_argv(target) };
    sink.emit(Event::PhaseStarted {
        phase: "build".into(),
        detail: Some(format!(
            "sysmon-collector{} for {target} in {}",
            if mtls { " (feature mtls)" } else { "" },
            source.display()
        )),
    });
    let mut command = std::process::Command::new(&argv[0]);
    // ring's C for the target: Debian's cross compiler unless the caller chose one.
    if mtls
        && let Some((var, cc)) = collector::cross_cc(target)
        && std::env::var_os(&var).is_none()
    {
        command.env(var, cc);
    }
    let mut child = command
        .args(&argv[1..])
        .current_dir(source)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| OpError::Tool {
            what: "cannot run cargo".into(),
            hint: "install Rust with rustup".into(),
            source: Some(e),
        })?;
    let mut stderr = String::new();
    if let Some(err) = child.stderr.take() {
        for line in std::io::BufReader::new(err).lines().map_while(std::result::Result::ok) {
            sink.emit(Event::ToolOutput { tool: "cargo".into(), line: line.clone() });
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    let status = child.wait().map_err(OpError::io("waiting for cargo"))?;
    if !status.success() {
        let hint = if stderr.contains("can't find crate for `std`") || stderr.contains("target may not be installed") {
            format!("rustup target add {target}")
        } else if mtls && stderr.contains("ring") {
            let cc = collector::cross_cc(target).map_or("a C cross compiler", |c| c.1);
            format!("the mtls build compiles ring's C for {target} with {cc}: `cargo xtask deps --install` installs it")
        } else {
            "see cargo's output above".to_string()
        };
        return Err(OpError::Tool { what: format!("`{}` failed ({status})", argv.join(" ")), hint, source: None });
    }
    let cargo_target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let built = collector::built_binary(source, cargo_target.as_deref(), target);
    let staged = if mtls { ws.collector_binary_mtls(target) } else { ws.collector_binary(target) };
    let dir = staged.parent().expect("a staged path has a parent");
    std::fs::create_dir_all(dir).map_err(OpError::io(dir.display()))?;
    let tmp = staged.with_extension("tmp");
    std::fs::copy(&built, &tmp).map_err(OpError::io(format!("copying {}", built.display())))?;
    std::fs::rename(&tmp, &staged).map_err(OpError::io(staged.display()))?;
    Ok(staged)
}

/// One GET of the collector's `/healthz` through the forward.
async fn healthz_once(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/healthz");
    crate::image::download::client()
        .get(&url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Whether the collector answers through the forward, retrying for up to about 10 s.
async fn healthz(port: u16) -> bool {
    for _ in 0..20 {
        if healthz_once(port).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Installs (or updates) the collector in a running VM the caller has locked.
pub async fn collector_install_locked(
    ws: &Workspace,
    name: &str,
    req: &InstallRequest,
    sink: &dyn Sink,
) -> Result<InstallReport> {
    let what = Provisioning { bootstrap: None, collector: Some(req.clone()) };
    let report = provision_locked(ws, name, None, &what, sink).await?;
    Ok(report.collector.expect("a collector install was asked for"))
}

/// What one provisioning run does: the bootstrap (with these extra packages), the collector
/// install, or both — in one script over one SSH connection.
#[derive(Debug, Clone, Default)]
pub struct Provisioning {
    pub bootstrap: Option<Vec<String>>,
    pub collector: Option<InstallRequest>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProvisionReport {
    pub bootstrap: Option<RunReport>,
    pub collector: Option<InstallReport>,
    /// The whole provisioning: login, the script, the files sent, the health check.
    pub seconds: f64,
}

/// The collector's side of a run, prepared on the host before anything is sent.
struct CollectorInputs {
    target: &'static str,
    binary: PathBuf,
    bytes: Vec<u8>,
    binary_sha256: String,
    config_file: Option<String>,
    certs: Option<collector::Certs>,
}

fn collector_inputs(ws: &Workspace, state: &VmState, req: &InstallRequest, sink: &dyn Sink) -> Result<CollectorInputs> {
    let target = collector::target(state.profile.arch);
    let binary = collector_binary(ws, target, req, sink)?;
    let bytes = std::fs::read(&binary).map_err(OpError::io(format!("reading {}", binary.display())))?;
    let binary_sha256 = sha256_hex(&bytes);
    let config_file = match &req.config {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(OpError::io(format!("reading {}", file.display())))?;
            // The collector's own parser: a file it would refuse never reaches the guest.
            sysmon_collector::config::parse(file, &text).map_err(OpError::CollectorConfig)?;
            Some(text)
        }
        None => None,
    };
    let certs = match &req.certs {
        Some(dir) => Some(read_certs(dir)?),
        None => None,
    };
    Ok(CollectorInputs { target, binary, bytes, binary_sha256, config_file, certs })
}

/// The guest's address, as the collector's config and its health check need it.
async fn guest_address(session: &SshSession, name: &str, sink: &dyn Sink) -> Result<std::net::Ipv4Addr> {
    let probe = session.exec(collector::ADDRESS_PROBE).await.map_err(|source| OpError::Ssh {
        vm: name.to_string(),
        command: collector::ADDRESS_PROBE.into(),
        source,
    })?;
    if let Some(w) = probe.cut_warning("the guest address probe", crate::ssh::DEFAULT_MAX_OUTPUT) {
        sink.warning(w);
    }
    let printed = String::from_utf8_lossy(&probe.stdout);
    collector::parse_guest_address(&printed).and_then(|a| a.parse().ok()).ok_or_else(|| OpError::Failed {
        what: "cannot find the guest's IPv4 address".into(),
        detail: format!("`{}` printed {:?}", collector::ADDRESS_PROBE, crate::sanitize::line(&printed)),
    })
}

/// Provisions a running VM the caller has locked, over `session` when one is open already (`up`
/// reuses the one that found the VM ready), else over a new one: every plan's checks, runs and
/// files go through that one connection.
pub async fn provision_locked(
    ws: &Workspace,
    name: &str,
    session: Option<(VmState, SshSession)>,
    what: &Provisioning,
    sink: &dyn Sink,
) -> Result<ProvisionReport> {
    let started = std::time::Instant::now();
    let paths = ws.vm(name)?;
    let state = vm::load_state(&paths)?;
    let inputs = match &what.collector {
        Some(req) => Some((req, collector_inputs(ws, &state, req, sink)?)),
        None => None,
    };
    let (state, session) = match session {
        Some(open) => open,
        None => vm::connect(ws, &paths).await?,
    };
    let result = async {
        // The address the last install recorded saves the probe's exec; the plan's first step
        // checks the guest still has it, and if not, it is probed and the run made again.
        let mut address = match (&inputs, state.guest_address) {
            (None, _) => None,
            (Some(_), Some(recorded)) => Some((recorded, true)),
            (Some(_), None) => Some((guest_address(&session, name, sink).await?, false)),
        };
        let step = match (what.bootstrap.is_some(), inputs.is_some()) {
            (true, true) => "provisioning",
            (true, false) => "bootstrap",
            _ => "collector install",
        };
        let as_root = state.profile.ssh.is_root();
        loop {
            let (plans, uploads, listen) = plans_for(&state, name, what, inputs.as_ref(), address.map(|a| a.0))?;
            let refs: Vec<&Plan> = plans.iter().collect();
            let run = runner::run_plans(&session, &refs, &uploads, as_root, runner::RunLimits::default(), |e| {
                sink.emit(from_runner(e))
            })
            .await;
            match (run, address) {
                (Err(runner::RunError::StepFailed { step: failed, .. }), Some((recorded, true)))
                    if failed == collector::ADDRESS_STEP =>
                {
                    sink.info(format!("VM {name}: the guest no longer has {recorded}; finding its address again"));
                    address = Some((guest_address(&session, name, sink).await?, false));
                }
                (run, _) => {
                    let reports =
                        run.map_err(|source| OpError::Guest { vm: name.to_string(), step, source: Box::new(source) })?;
                    return Ok::<_, OpError>((reports, listen, address.map(|a| a.0)));
                }
            }
        }
    }
    .await;
    session.close().await;
    let (reports, listen, address) = result?;
    let mode = what.collector.as_ref().filter(|req| !req.temporary).map(|req| req.mode_on(&state));
    if (address.is_some() && address != state.guest_address) || mode.is_some_and(|m| m != state.collector_mode) {
        // Under the caller's lock; a fresh read, so nothing else recorded meanwhile is lost.
        let mut fresh = vm::load_state(&paths)?;
        fresh.guest_address = address.or(fresh.guest_address);
        fresh.collector_mode = mode.unwrap_or(fresh.collector_mode);
        vm::save_state(&paths, &fresh)?;
    }
    let mut reports = reports.into_iter();
    let mut report = ProvisionReport::default();
    if what.bootstrap.is_some() {
        report.bootstrap = reports.next();
    }
    if let (Some((req, inputs)), Some(listen)) = (inputs, listen) {
        let run = reports.next().expect("one report per plan");
        report.collector = Some(installed(&state, req, inputs, listen, run, sink).await?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The plans of one provisioning run (bootstrap, then the collector's with the config for
/// `address`), the files they may ask for, and the collector's listen address.
fn plans_for(
    state: &VmState,
    name: &str,
    what: &Provisioning,
    collector_inputs: Option<&(&InstallRequest, CollectorInputs)>,
    address: Option<std::net::Ipv4Addr>,
) -> Result<(Vec<Plan>, Vec<runner::Upload>, Option<String>)> {
    let mut plans = Vec::new();
    let mut uploads = Vec::new();
    if let Some(packages) = &what.bootstrap {
        plans.push(bootstrap_plan::plan(&state.profile, packages)?);
    }
    let mut listen = None;
    if let (Some((req, inputs)), Some(address)) = (collector_inputs, address) {
        let mode = req.mode_on(state);
        let l = collector::listen(&state.profile, &address.to_string());
        // In a container the collector listens on the container's every address; the unit
        // publishes the port on the guest's.
        let inside = if mode.is_container() { collector::container_listen(&state.profile) } else { l.clone() };
        let config = inputs.config_file.clone().unwrap_or_else(|| config_for(state, name, inside, req));
        let (plan, files) = collector::install(collector::InstallInputs {
            binary: inputs.bytes.clone(),
            config_text: config,
            address,
            listen: l.clone(),
            certs: inputs.certs.clone(),
            health_via_forward: vm::forwarded(state, state.profile.collector.port).is_some(),
            mode,
            grpc_port: state.profile.collector.grpc_port,
        })?;
        plans.push(plan);
        uploads.extend(files);
        listen = Some(l);
    }
    Ok((plans, uploads, listen))
}

/// After the install: does the collector answer through its forward?
async fn installed(
    state: &VmState,
    req: &InstallRequest,
    inputs: CollectorInputs,
    listen: String,
    run: RunReport,
    sink: &dyn Sink,
) -> Result<InstallReport> {
    let forward = vm::forwarded(state, state.profile.collector.port);
    let answers_via_forward = match forward {
        Some(port) => healthz(port).await,
        None => false,
    };
    match forward {
        Some(p) if answers_via_forward => sink.info(format!("collector answers on http://127.0.0.1:{p}/metrics")),
        Some(p) => sink.warning(format!("the collector answers in the guest but not through 127.0.0.1:{p}")),
        None => sink.info(format!(
            "the profile forwards no host port to guest port {}; the collector is reachable only from inside the guest",
            state.profile.collector.port
        )),
    }
    if forward.is_some() && !answers_via_forward && req.config.is_none() {
        return Err(OpError::Failed {
            what: format!("the collector runs in the guest on {listen}"),
            detail: "it does not answer through its forward".into(),
        });
    }
    let grpc_port = state.profile.collector.grpc_port;
    let grpc_forward = vm::forwarded(state, grpc_port);
    let restart_needed = grpc_forward.is_none();
    if restart_needed {
        sink.warning(format!(
            "this VM's QEMU was started without a forward for the gRPC port {grpc_port}: `sysmonvm down` and \
             `sysmonvm up` add it (vm start always forwards the collector's gRPC port)"
        ));
    }
    let serviceradar_check = match grpc_forward {
        Some(port) if req.serviceradar => Some(collector::check_entry(port)),
        _ => None,
    };
    if let Some(c) = &serviceradar_check {
        sink.info(format!("ServiceRadar agent check: {}", serde_json::to_string(c).unwrap_or_default()));
    }
    Ok(InstallReport {
        mode: req.mode_on(state),
        target: inputs.target.into(),
        binary: inputs.binary,
        binary_sha256: inputs.binary_sha256,
        listen,
        forward: forward.map(|p| format!("127.0.0.1:{p}")),
        answers_via_forward,
        grpc_listen: collector::grpc_listen(&state.profile),
        grpc_forward: grpc_forward.map(|p| format!("127.0.0.1:{p}")),
        grpc_security: if req.certs.is_some() { "mtls" } else { "none" }.into(),
        restart_needed,
        serviceradar_check,
        run,
    })
}

/// ServiceRadar's three mTLS files from `--certs DIR`, each checked to hold PEM.
fn read_certs(dir: &Path) -> Result<collector::Certs> {
    let read = |name: &str| -> Result<Vec<u8>> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(OpError::io(format!(
            "reading {} (--certs needs {})",
            path.display(),
            collector::CERT_FILES.join(", ")
        )))?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
            return Err(OpError::Invalid(format!("{}: not a PEM file", path.display())));
        }
        Ok(bytes)
    };
    Ok(collector::Certs {
        root: read(collector::CERT_FILES[0])?,
        cert: read(collector::CERT_FILES[1])?,
        key: read(collector::CERT_FILES[2])?,
    })
}

pub async fn collector_install(ws: &Workspace, req: &InstallRequest, sink: &dyn Sink) -> Result<InstallReport> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    collector_install_locked(ws, &name, req, sink).await
}

/// The collector service in the guest, typed.
#[derive(Debug, Clone, Serialize)]
pub struct CollectorStatus {
    pub vm: String,
    pub unit: String,
    /// systemd's ActiveState (`active`, `inactive`, `failed`, …); None when systemd said nothing
    /// or something it does not document (a warning then quotes it).
    pub active: Option<ActiveState>,
    pub sub: Option<String>,
    pub main_pid: Option<u64>,
    pub restarts: Option<u64>,
    pub started_at: Option<String>,
    /// How the collector runs (`state.json`'s record of the last install).
    pub mode: CollectorMode,
    /// The binary's path in the guest (in a container mode, in the image).
    pub binary: String,
    /// In a container mode, of the staged binary the image was built from.
    pub binary_sha256: Option<String>,
    pub version: Option<String>,
    /// A container mode: the running container's image content label (`collector image`'s
    /// `content_sha256`); None natively or with no container running.
    pub image_content_sha256: Option<String>,
    pub forward: Option<String>,
    pub answers_via_forward: bool,
    /// What could not be read whole (the probe's output cut at its cap); also sent as warnings.
    pub warnings: Vec<String>,
    /// `exit::OK` when the unit is active, else `exit::NOT_READY`.
    pub exit_status: i32,
}

impl CollectorStatus {
    pub fn is_active(&self) -> bool {
        self.active == Some(ActiveState::Active)
    }
}

/// What the status probe keeps of each stream: its properties, checksum and version are a few
/// hundred bytes.
pub const STATUS_OUTPUT_CAP: usize = 64 << 10;

/// What the status probe printed, over an open session.
#[derive(Debug, Clone, Default)]
pub struct StatusProbe {
    /// `KEY=value` lines (systemd's properties, `sha256`, `version`).
    pub properties: std::collections::BTreeMap<String, String>,
    /// What was cut (also sent to the sink as warnings).
    pub warnings: Vec<String>,
}

/// Runs the collector status probe on `session` and parses what it printed. Its output is
/// capped at [`STATUS_OUTPUT_CAP`] per stream (the tail is kept, where the properties of a probe
/// that printed junk first still are); a cut says so as a warning.
pub async fn read_status_probe(
    session: &SshSession,
    vm: &str,
    mode: CollectorMode,
    ssh_user_is_root: bool,
    sink: &dyn Sink,
) -> Result<StatusProbe> {
    let probe = collector::status_probe(mode, ssh_user_is_root)?.render();
    let out = session
        .exec_with(&probe, ExecOptions::default().max_output(STATUS_OUTPUT_CAP))
        .await
        .map_err(|source| OpError::Ssh { vm: vm.to_string(), command: "the collector status probe".into(), source })?;
    let warnings: Vec<String> = out.cut_warning("the collector status probe", STATUS_OUTPUT_CAP).into_iter().collect();
    for w in &warnings {
        sink.warning(w.clone());
    }
    Ok(StatusProbe { properties: collector::parse_properties(&String::from_utf8_lossy(&out.stdout)), warnings })
}

/// `collector status`: which VM (None: the only one).
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    pub name: Option<String>,
}

pub async fn collector_status(ws: &Workspace, req: &StatusRequest, sink: &dyn Sink) -> Result<CollectorStatus> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let paths = ws.vm(&name)?;
    let (state, session) = vm::connect(ws, &paths).await?;
    let probe = read_status_probe(&session, &name, state.collector_mode, state.profile.ssh.is_root(), sink).await;
    session.close().await;
    let StatusProbe { properties: kv, mut warnings } = probe?;
    let get = |k: &str| kv.get(k).filter(|v| !v.is_empty()).cloned();
    let active_text = get("ActiveState");
    let active = active_text.as_deref().and_then(ActiveState::parse);
    if let (Some(text), None) = (&active_text, active) {
        let w = format!("systemd reported ActiveState={:?}, not a state it documents", crate::sanitize::line(text));
        sink.warning(w.clone());
        warnings.push(w);
    }
    let forward = vm::forwarded(&state, state.profile.collector.port);
    let answers_via_forward = match forward {
        Some(p) => healthz_once(p).await,
        None => false,
    };
    let mut s = CollectorStatus {
        vm: name,
        unit: collector::UNIT.into(),
        active,
        sub: get("SubState"),
        main_pid: get("MainPID").and_then(|p| p.parse().ok()),
        restarts: get("NRestarts").and_then(|p| p.parse().ok()),
        started_at: get("ExecMainStartTimestamp"),
        mode: state.collector_mode,
        binary: collector::BINARY.into(),
        binary_sha256: get("sha256"),
        version: get("version"),
        image_content_sha256: get("image_content_sha256"),
        forward: forward.map(|p| format!("127.0.0.1:{p}")),
        answers_via_forward,
        warnings,
        exit_status: crate::exit::OK,
    };
    if !s.is_active() {
        s.exit_status = crate::exit::NOT_READY;
    }
    Ok(s)
}

#[derive(Debug, Clone)]
pub struct LogsRequest {
    pub name: Option<String>,
    pub lines: u32,
    pub follow: bool,
}

/// The collector's journal, streamed to `out(is_stderr, bytes)`; returns journalctl's status.
pub async fn collector_logs(ws: &Workspace, req: &LogsRequest, mut out: impl FnMut(bool, &[u8]) + Send) -> Result<i32> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let paths = ws.vm(&name)?;
    let (state, session) = vm::connect(ws, &paths).await?;
    let cmd: GuestCommand = command::journal(collector::UNIT, req.lines, req.follow, state.profile.ssh.is_root());
    let line = cmd.render();
    // Following runs until the user stops it; a bounded view has the session's exec deadline.
    let deadline = if req.follow { ExecDeadline::Never } else { ExecDeadline::SessionDefault };
    let status = session.exec_streaming_with(&line, None, deadline, |is_err, b| out(is_err, b)).await;
    session.close().await;
    let status = status.map_err(|source| OpError::Ssh { vm: name, command: line, source })?;
    Ok(status as i32)
}

/// `collector uninstall`: which VM (None: the only one).
#[derive(Debug, Clone, Default)]
pub struct UninstallRequest {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImageRequest {
    pub name: Option<String>,
    /// The collector binary [default: the staged one, else built from a checkout].
    pub binary: Option<PathBuf>,
    /// The checkout to build from.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub vm: String,
    /// The image's name in the guest's Docker.
    pub image: String,
    /// The label the image carries: the hash of the binary, config and Containerfile.
    pub content_sha256: String,
    pub binary: PathBuf,
    pub binary_sha256: String,
    /// The config baked into the image.
    pub config: serde_json::Value,
    /// Whether the image was built (false: the guest had it with this content already).
    pub built: bool,
    pub run: RunReport,
}

/// Builds the collector's OCI image in a running VM's Docker (`FROM scratch`, the static binary
/// and a config listening on the container's every address), with no registry.
pub async fn collector_image(ws: &Workspace, req: &ImageRequest, sink: &dyn Sink) -> Result<ImageReport> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let paths = ws.vm(&name)?;
    let state = vm::load_state(&paths)?;
    let target = collector::target(state.profile.arch);
    let install = InstallRequest { binary: req.binary.clone(), source: req.source.clone(), ..Default::default() };
    let binary = collector_binary(ws, target, &install, sink)?;
    let bytes = std::fs::read(&binary).map_err(OpError::io(format!("reading {}", binary.display())))?;
    let binary_sha256 = sha256_hex(&bytes);
    let config_text = config_for(&state, &name, collector::container_listen(&state.profile), &install);
    let config = serde_json::from_str(&config_text).expect("config_json writes JSON");
    let (plan, uploads, content_sha256) =
        collector_image::plan(collector_image::ImageInputs { binary: bytes, config_text })?;
    let (state, session) = vm::connect(ws, &paths).await?;
    let r = runner::run(&session, &plan, &uploads, state.profile.ssh.is_root(), |e| sink.emit(from_runner(e))).await;
    session.close().await;
    let run =
        r.map_err(|source| OpError::Guest { vm: name.clone(), step: "collector image", source: Box::new(source) })?;
    let built = run.steps.iter().any(|s| s.name == "image" && s.outcome == crate::guest::steps::Outcome::Changed);
    sink.info(format!(
        "{} in VM {name}: {}",
        collector_image::IMAGE,
        if built { "built" } else { "already built from these files" }
    ));
    Ok(ImageReport {
        vm: name,
        image: collector_image::IMAGE.into(),
        content_sha256,
        binary,
        binary_sha256,
        config,
        built,
        run,
    })
}

pub async fn collector_uninstall(ws: &Workspace, req: &UninstallRequest, sink: &dyn Sink) -> Result<RunReport> {
    let name = super::pick_vm(ws, req.name.as_deref())?;
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let paths = ws.vm(&name)?;
    let (state, session) = vm::connect(ws, &paths).await?;
    let as_root = state.profile.ssh.is_root();
    let plan = collector::uninstall()?;
    let r = runner::run(&session, &plan, &[], as_root, |e| sink.emit(from_runner(e))).await;
    session.close().await;
    r.map_err(|source| OpError::Guest { vm: name, step: "collector uninstall", source: Box::new(source) })
}
