//! The VM lifecycle: create (overlay, vars, seed, keys), start (launch and wait through the boot
//! phases), stop (powerdown, wait, quit, kill), status (process, QMP, guest agent, SSH) and
//! destroy. Stale pidfiles and sockets are reconciled on every look, so a VM is never left in a
//! half state: it is running (QEMU answers) or stopped.

use crate::image::FetchedImage;
use crate::keys;
use crate::profile::{Arch, Profile};
use crate::qemu::argv::{self, LaunchPlan, ResolvedAccel};
use crate::qemu::firmware;
use crate::qga::QgaClient;
use crate::qmp::QmpClient;
use crate::seed;
use crate::ssh::{SshSession, SshTarget};
use crate::workspace::{self, VmPaths, Workspace};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("VM {0} does not exist (create it with `sysmonvm vm create` or `sysmonvm up`)")]
    NotFound(String),
    #[error("VM {0} is not running (start it with `sysmonvm up`)")]
    NotRunning(String),
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    #[error("making the SSH keys")]
    Keys(#[source] crate::keys::KeyError),
    #[error("rendering the cloud-init seed")]
    Seed(#[source] crate::seed::SeedError),
    #[error("building the seed ISO")]
    SeedIso(#[source] crate::seed::iso::IsoError),
    #[error(transparent)]
    FirmwareNotFound(#[from] firmware::FirmwareNotFound),
    #[error("firmware code {path} (from the profile) not found ({hint})")]
    FirmwareMissing { path: PathBuf, hint: &'static str },
    #[error("cannot run {program} ({hint})")]
    Spawn {
        program: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("qemu-img create failed: {stderr}")]
    QemuImg { stderr: String },
    #[error(transparent)]
    BackingImage(#[from] crate::image::cache::BackingImageError),
    #[error("SSH to VM {vm}")]
    Ssh {
        vm: String,
        #[source]
        source: crate::ssh::SshError,
    },
    #[error("QEMU exited during start ({status}):\n{stderr}{}", serial_hint(.serial_tail))]
    QemuExited { status: String, stderr: String, serial_tail: String },
    #[error("the boot is stuck at phase `{phase}` after {waited:?}.\nlast lines of {serial}:\n{tail}\nhint: {hint}")]
    Stuck { phase: BootPhase, waited: Duration, serial: String, tail: String, hint: String },
    #[error(
        "host port {port} on 127.0.0.1 is already in use (forward to guest port {guest}); free it or set another `host:` port in the profile"
    )]
    PortInUse { port: u16, guest: u16 },
    #[error("{path} is not a VM state file sysmonvm can read")]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn serial_hint(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!("\nlast serial output:\n{tail}") }
}

/// What `create` decided, kept in `state.json` so later commands need no profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmState {
    pub name: String,
    pub profile: Profile,
    pub profile_source: String,
    pub image_path: PathBuf,
    pub image_sha256: String,
    pub instance_id: String,
    pub created_at: String,
    /// The accelerator of the last start.
    #[serde(default)]
    pub accel: Option<ResolvedAccel>,
    /// Host ports of the last start: SSH first, then (host, guest) per forward.
    #[serde(default)]
    pub ssh_port: Option<u16>,
    #[serde(default)]
    pub forwards: Vec<(u16, u16)>,
    /// The guest's IPv4 address as the last collector install probed it: the next install
    /// configures it without probing, and its plan's first step checks the guest still has it.
    #[serde(default)]
    pub guest_address: Option<std::net::Ipv4Addr>,
    /// How the last collector install runs the collector; the next install keeps it unless told.
    #[serde(default)]
    pub collector_mode: crate::guest::collector_mode::CollectorMode,
}

pub fn load_state(vm: &VmPaths) -> Result<VmState, VmError> {
    let bytes = std::fs::read(&vm.state).map_err(|_| VmError::NotFound(vm.name.clone()))?;
    serde_json::from_slice(&bytes).map_err(|source| VmError::BadState { path: vm.state.clone(), source })
}

pub fn save_state(vm: &VmPaths, s: &VmState) -> Result<(), VmError> {
    let json = serde_json::to_vec_pretty(s).map_err(|source| VmError::BadState { path: vm.state.clone(), source })?;
    Ok(workspace::write_private(&vm.state, &json)?)
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> VmError {
    move |source| VmError::Io { what: what.to_string(), source }
}

/// Where the firmware comes from, and the code file QEMU reads: the installed one, or (aarch64
/// `virt`, whose pflash must be exactly 64 MiB) a padded copy in the VM dir. Pure but for looking.
pub struct FirmwareFiles {
    pub installed_code: PathBuf,
    pub vars_template: PathBuf,
    /// The file on QEMU's command line.
    pub code: PathBuf,
}

pub fn firmware_files(p: &Profile, vm: &VmPaths) -> Result<FirmwareFiles, VmError> {
    let pair = match &p.firmware {
        crate::profile::Firmware::Paths(fp) => {
            firmware::FirmwarePair { code: fp.code.clone(), vars_template: fp.vars.clone(), origin: "profile" }
        }
        crate::profile::Firmware::Auto(_) => firmware::find(p.arch, |f| f.exists())?,
    };
    if !pair.code.exists() {
        return Err(VmError::FirmwareMissing { path: pair.code.clone(), hint: firmware::install_hint(p.arch) });
    }
    let size = std::fs::metadata(&pair.code).map(|m| m.len()).unwrap_or(0);
    let code = if firmware::needs_padding(p.arch, size) { vm.efi_code.clone() } else { pair.code.clone() };
    Ok(FirmwareFiles { installed_code: pair.code, vars_template: pair.vars_template, code })
}

/// The firmware code file QEMU reads (padding it into the VM dir first where needed), and the
/// vars template.
fn firmware_code(p: &Profile, vm: &VmPaths) -> Result<(PathBuf, PathBuf), VmError> {
    let f = firmware_files(p, vm)?;
    if f.code != f.installed_code && !f.code.exists() {
        firmware::copy_padded(Some(&f.installed_code), &f.code, Some(firmware::VIRT_PFLASH_SIZE))
            .map_err(io(f.code.display()))?;
    }
    Ok((f.code, f.vars_template))
}

/// The system OpenSSH command line for an interactive `vm ssh`: the workspace key, the VM's
/// pinned host key under its alias, never trust-on-first-use. The user goes in `-l` and the host
/// after `--`, so no profile value can be read as an option.
pub fn openssh_argv(ws: &Workspace, vm: &VmPaths, state: &VmState, port: u16, command: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec!["ssh".into(), "-i".into(), ws.user_key().display().to_string()];
    argv.extend(["-p".into(), port.to_string()]);
    for o in [
        "IdentitiesOnly=yes".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        "LogLevel=ERROR".to_string(),
        format!("UserKnownHostsFile={}", vm.known_hosts.display()),
        format!("HostKeyAlias={}", keys::host_alias(&vm.name)),
    ] {
        argv.extend(["-o".into(), o]);
    }
    argv.extend(["-l".into(), state.profile.ssh.user.clone(), "--".into(), "127.0.0.1".into()]);
    argv.extend(command.iter().cloned());
    argv
}

/// Makes everything a VM needs on disk. Idempotent: what exists is kept.
pub fn create(ws: &Workspace, name: &str, p: &Profile, image: &FetchedImage) -> Result<VmState, VmError> {
    let vm = ws.vm(name)?;
    if let Ok(s) = load_state(&vm) {
        return Ok(s);
    }
    workspace::private_dir(&vm.dir)?;
    let user = keys::ensure(&ws.user_key(), &ws.user_key_pub(), "sysmonvm").map_err(VmError::Keys)?;
    let host = keys::ensure(&vm.host_key, &vm.host_key_pub, name).map_err(VmError::Keys)?;
    workspace::write_private(&vm.known_hosts, keys::known_hosts_line(name, &host.public_openssh).as_bytes())?;
    let instance_id = seed::instance_id(name, &host.public_openssh);
    let docs = seed::render(&seed::SeedInput {
        hostname: name.to_string(),
        instance_id: instance_id.clone(),
        user: p.ssh.user.clone(),
        user_public_key: user.public_openssh.clone(),
        host_key_private: host.private_openssh.clone(),
        host_key_public: host.public_openssh.clone(),
    })
    .map_err(VmError::Seed)?;
    let iso = seed::iso::build(&docs).map_err(VmError::SeedIso)?;
    // The seed carries the VM's SSH host private key: readable by the owner only.
    workspace::write_private(&vm.seed, &iso)?;

    let (_, vars_template) = firmware_code(p, &vm)?;
    if !vm.efi_vars.exists() {
        let size = (p.arch == Arch::Aarch64).then_some(firmware::VIRT_PFLASH_SIZE);
        firmware::copy_padded(Some(&vars_template), &vm.efi_vars, size).map_err(io(vm.efi_vars.display()))?;
    }
    if !vm.disk.exists() {
        // Made under a temporary name and renamed, so a kill mid-way never leaves a half overlay.
        let tmp = &vm.disk_tmp;
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", &image_format(&image.path), "-b"])
            .arg(&image.path)
            .arg(tmp)
            .arg(format!("{}G", p.disk_gib))
            .output()
            .map_err(|source| VmError::Spawn {
                program: "qemu-img".into(),
                hint: "install qemu-utils (Debian) or qemu (Homebrew)",
                source,
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_file(tmp);
            return Err(VmError::QemuImg { stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
        }
        std::fs::rename(tmp, &vm.disk).map_err(io(vm.disk.display()))?;
    }
    let state = VmState {
        name: name.to_string(),
        profile: p.clone(),
        profile_source: p.source.clone(),
        image_path: image.path.clone(),
        image_sha256: image.sha256.clone(),
        instance_id,
        created_at: sysmon_collector::host::now_rfc3339(),
        accel: None,
        ssh_port: None,
        forwards: Vec::new(),
        guest_address: None,
        collector_mode: Default::default(),
    };
    // state.json last: its presence means the VM is complete.
    save_state(&vm, &state)?;
    Ok(state)
}

/// The VM's disk is an overlay on the cached image: without it QEMU cannot open the disk.
pub fn ensure_backing_image(state: &VmState) -> Result<(), VmError> {
    Ok(crate::image::cache::check_backing_image(&state.name, &state.image_path, &state.image_sha256)?)
}

/// `qcow2` or `raw`, from the file's magic.
fn image_format(path: &Path) -> String {
    let mut magic = [0u8; 4];
    let is_qcow = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == b"QFI\xfb";
    if is_qcow { "qcow2".into() } else { "raw".into() }
}

/// The QEMU process of this VM, if it runs: the pidfile names a live process whose command line
/// is this VM's (so a recycled pid, or another VM whose name merely contains this one, is not
/// mistaken for it).
pub fn running_pid(vm: &VmPaths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(&vm.pidfile).ok()?.trim().parse().ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return None;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => is_vm_process(&cmd, vm).then_some(pid),
        Err(_) => Some(pid), // no /proc (macOS): trust the live pid
    }
}

/// Pure: whether a NUL-separated command line is the QEMU of `vm`: `-name sysmonvm-NAME` exactly,
/// its own `-pidfile`, and a QMP chardev on its own socket.
pub fn is_vm_process(cmdline: &[u8], vm: &VmPaths) -> bool {
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let value_of = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].as_str());
    let qmp = format!("socket,id=qmp,path={},", argv::option_value(&vm.qmp_socket.display().to_string()));
    value_of("-name") == Some(format!("sysmonvm-{}", vm.name).as_str())
        && value_of("-pidfile") == Some(vm.pidfile.display().to_string().as_str())
        && args.iter().any(|a| a.starts_with(&qmp))
}

/// Removes the leftovers of a QEMU that is gone (killed, crashed, host rebooted).
pub fn reconcile(vm: &VmPaths) -> bool {
    if running_pid(vm).is_some() {
        return false;
    }
    let mut cleaned = false;
    for f in [&vm.pidfile, &vm.qmp_socket, &vm.qga_socket] {
        cleaned |= std::fs::remove_file(f).is_ok();
    }
    cleaned
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16, VmError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("choosing a free port"))
}

/// Host ports for this start: the ones used last time if still free, else new free ones;
/// a port the profile fixes must be free.
pub fn choose_ports(state: &VmState) -> Result<(u16, Vec<(u16, u16)>), VmError> {
    let ssh = match state.ssh_port {
        Some(p) if port_free(p) => p,
        _ => free_port()?,
    };
    let mut forwards = Vec::new();
    for f in &state.profile.forwards {
        let host = match f.host.filter(|h| *h != 0) {
            Some(h) if port_free(h) => h,
            Some(h) => return Err(VmError::PortInUse { port: h, guest: f.guest }),
            None => match state.forwards.iter().find(|(_, g)| *g == f.guest) {
                Some((h, _)) if port_free(*h) => *h,
                _ => free_port()?,
            },
        };
        forwards.push((host, f.guest));
    }
    // The collector's gRPC (ServiceRadar checker) port is forwarded even when the profile's
    // forwards leave it out, so a VM created before it existed gets it at its next start.
    let grpc = state.profile.collector.grpc_port;
    if !forwards.iter().any(|(_, g)| *g == grpc) {
        let host = match state.forwards.iter().find(|(_, g)| *g == grpc) {
            Some((h, _)) if port_free(*h) => *h,
            _ => free_port()?,
        };
        forwards.push((host, grpc));
    }
    Ok((ssh, forwards))
}

pub fn serial_tail(vm: &VmPaths, lines: usize) -> String {
    let text = crate::sanitize::terminal(
        &std::fs::read(&vm.serial_log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
    );
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The boot phases `start` waits through, in order (the order is the derive's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootPhase {
    /// QEMU answers on QMP and the guest runs.
    Qemu,
    /// The firmware writes to the serial port.
    Firmware,
    /// The kernel has started (serial output says so).
    Kernel,
    /// sshd answers with its banner on the forward.
    Sshd,
    /// The workspace key logs in.
    Login,
    /// cloud-init has finished.
    CloudInit,
}

impl BootPhase {
    pub const ALL: [BootPhase; 6] = [
        BootPhase::Qemu,
        BootPhase::Firmware,
        BootPhase::Kernel,
        BootPhase::Sshd,
        BootPhase::Login,
        BootPhase::CloudInit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BootPhase::Qemu => "qemu",
            BootPhase::Firmware => "firmware",
            BootPhase::Kernel => "kernel",
            BootPhase::Sshd => "sshd",
            BootPhase::Login => "login",
            BootPhase::CloudInit => "cloud-init",
        }
    }

    fn next(self) -> Option<BootPhase> {
        BootPhase::ALL.iter().copied().find(|p| *p > self)
    }

    /// What to look at when the boot is stuck here.
    fn hint(self, accel: ResolvedAccel) -> &'static str {
        match self {
            BootPhase::Qemu => "QEMU did not answer on its QMP socket; check `sysmonvm doctor`",
            BootPhase::Firmware => {
                "no output from the firmware on the serial port: wrong or corrupt edk2 files? see firmware-notes/"
            }
            BootPhase::Kernel => {
                "the firmware ran but no kernel started: does the image boot under UEFI (shim/edk2 versions, see firmware-notes/)?"
            }
            BootPhase::Sshd if accel == ResolvedAccel::Tcg => {
                "under tcg a boot takes minutes; raise --timeout, or check the network config in the serial log"
            }
            BootPhase::Sshd => {
                "the kernel booted but sshd does not answer: look for cloud-init or network errors in the serial log"
            }
            BootPhase::Login => {
                "sshd answers but refuses the workspace key: the seed (cloud-init) did not create the user"
            }
            BootPhase::CloudInit => {
                "cloud-init has not finished: run `sysmonvm vm ssh -- sudo cloud-init status --long`"
            }
        }
    }
}

impl std::fmt::Display for BootPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pure: which phase the serial output proves was reached.
pub fn serial_phase(serial: &str) -> BootPhase {
    if serial.contains("Linux version") || serial.contains("Booting Linux") || serial.contains("EFI stub") {
        BootPhase::Kernel
    } else if !serial.trim().is_empty() {
        BootPhase::Firmware
    } else {
        BootPhase::Qemu
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StartReport {
    pub accel: ResolvedAccel,
    pub ssh_port: u16,
    pub forwards: Vec<(u16, u16)>,
    pub already_running: bool,
    /// Seconds from launch at which each phase was reached.
    pub phases: Vec<(BootPhase, f64)>,
    pub argv: Vec<String>,
}

/// The boot wait when no `--timeout` is given. Boots under TCG take minutes (x86_64 about 1 min to
/// cloud-init here, aarch64 2–2.5 min, both slower on a loaded host), so a slow emulated boot is
/// not a stuck one; an explicit `--timeout` is always a hard upper bound instead.
pub fn default_boot_timeout(accel: ResolvedAccel, arch: crate::profile::Arch) -> Duration {
    match (accel, arch) {
        (ResolvedAccel::Tcg, crate::profile::Arch::Aarch64) => Duration::from_secs(25 * 60),
        (ResolvedAccel::Tcg, crate::profile::Arch::X86_64) => Duration::from_secs(15 * 60),
        _ => Duration::from_secs(5 * 60),
    }
}

pub struct StartOptions {
    pub accel: ResolvedAccel,
    pub wait: bool,
    pub timeout: Duration,
}

pub fn ssh_target(ws: &Workspace, vm: &VmPaths, state: &VmState) -> Result<SshTarget, VmError> {
    let private_key = std::fs::read_to_string(ws.user_key()).map_err(io(ws.user_key().display()))?;
    let pinned = std::fs::read_to_string(&vm.host_key_pub).map_err(io(vm.host_key_pub.display()))?;
    Ok(SshTarget {
        host: "127.0.0.1".into(),
        port: state.ssh_port.unwrap_or(0),
        user: state.profile.ssh.user.clone(),
        private_key,
        pinned_host_key: pinned,
    })
}

/// An SSH session to a running VM, with its pinned host key.
pub async fn connect(ws: &Workspace, vm: &VmPaths) -> Result<(VmState, SshSession), VmError> {
    connect_with(ws, vm, crate::ssh::Deadlines::new(Duration::from_secs(30))).await
}

/// The login `up` tries on a VM that already runs before it decides whether to wait for the
/// boot: long enough for a loaded TCG guest that is up, short enough that one still booting
/// goes on to the boot wait soon.
pub const QUICK_LOGIN: crate::ssh::Deadlines = crate::ssh::Deadlines {
    connect: Duration::from_secs(10),
    auth: Duration::from_secs(20),
    exec: crate::ssh::DEFAULT_EXEC_DEADLINE,
};

/// [`connect`] with these deadlines.
pub async fn connect_with(
    ws: &Workspace,
    vm: &VmPaths,
    deadlines: crate::ssh::Deadlines,
) -> Result<(VmState, SshSession), VmError> {
    let state = load_state(vm)?;
    if running_pid(vm).is_none() {
        return Err(VmError::NotRunning(vm.name.clone()));
    }
    let target = ssh_target(ws, vm, &state)?;
    let session = SshSession::connect_with(&target, deadlines)
        .await
        .map_err(|source| VmError::Ssh { vm: vm.name.clone(), source })?;
    Ok((state, session))
}

/// The host port on 127.0.0.1 forwarded to `guest_port`, when the VM runs with one.
pub fn forwarded(state: &VmState, guest_port: u16) -> Option<u16> {
    state.forwards.iter().find(|(_, g)| *g == guest_port).map(|(h, _)| *h)
}

/// Does the TCP port answer with an SSH banner?
pub async fn sshd_answers(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await
    else {
        return false;
    };
    let mut buf = [0u8; 4];
    matches!(tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf == b"SSH-")
}

/// Does the TCP port answer with an SSH banner within `limit` (connect and banner together)?
async fn banner_within(port: u16, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let banner = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    matches!(tokio::time::timeout(limit, banner).await, Ok(Ok(buf)) if &buf == b"SSH-")
}

pub async fn start(
    ws: &Workspace,
    name: &str,
    opts: &StartOptions,
    mut on_phase: impl FnMut(BootPhase, f64),
) -> Result<StartReport, VmError> {
    let vm = ws.vm(name)?;
    let mut state = load_state(&vm)?;
    if running_pid(&vm).is_some() {
        // Already running (perhaps an earlier start was interrupted while it waited): launch
        // nothing, but wait for readiness like a start would, so both end in the same state.
        let mut phases = Vec::new();
        let running = StartOptions { accel: state.accel.unwrap_or(opts.accel), wait: opts.wait, timeout: opts.timeout };
        if opts.wait {
            wait_ready(ws, &vm, &state, Instant::now(), &running, &mut phases, &mut on_phase).await?;
        }
        return Ok(StartReport {
            accel: running.accel,
            ssh_port: state.ssh_port.unwrap_or(0),
            forwards: state.forwards.clone(),
            already_running: true,
            phases,
            argv: vec![],
        });
    }
    reconcile(&vm);
    ensure_backing_image(&state)?;
    let (code, _) = firmware_code(&state.profile, &vm)?;
    let (ssh_port, forwards) = choose_ports(&state)?;
    let plan =
        LaunchPlan { accel: opts.accel, firmware_code: code, ssh_port, forwards: forwards.clone(), daemonize: true };
    let args = argv::argv(&state.profile, &plan, &vm);
    // A fresh serial log per boot, so phases and tails speak of this boot only.
    let _ = std::fs::remove_file(&vm.serial_log);
    let launched = Instant::now();
    let out = tokio::process::Command::new(&args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| VmError::Spawn {
            program: args[0].clone(),
            hint: crate::qemu::firmware::install_hint(state.profile.arch),
            source,
        })?;
    if !out.status.success() {
        return Err(VmError::QemuExited {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            serial_tail: serial_tail(&vm, 20),
        });
    }
    state.accel = Some(opts.accel);
    state.ssh_port = Some(ssh_port);
    state.forwards = forwards.clone();
    save_state(&vm, &state)?;

    let mut phases = Vec::new();
    let mut reached = |phase: BootPhase, phases: &mut Vec<(BootPhase, f64)>| {
        let t = launched.elapsed().as_secs_f64();
        phases.push((phase, t));
        on_phase(phase, t);
    };
    // QEMU up: QMP answers and the guest runs (an accelerator failure shows here as internal-error).
    let mut qmp = QmpClient::connect(&vm.qmp_socket, Duration::from_secs(10))
        .await
        .map_err(|e| stuck(BootPhase::Qemu, launched, &vm, opts.accel, &crate::errors::chain(&e)))?;
    let st = qmp
        .query_status()
        .await
        .map_err(|e| stuck(BootPhase::Qemu, launched, &vm, opts.accel, &crate::errors::chain(&e)))?;
    if !st.running && st.status != "prelaunch" {
        return Err(stuck(
            BootPhase::Qemu,
            launched,
            &vm,
            opts.accel,
            &format!("QMP says the guest is `{}`", st.status),
        ));
    }
    reached(BootPhase::Qemu, &mut phases);
    drop(qmp);
    if !opts.wait {
        return Ok(StartReport { accel: opts.accel, ssh_port, forwards, already_running: false, phases, argv: args });
    }
    wait_ready(ws, &vm, &state, launched, opts, &mut phases, &mut on_phase).await?;
    Ok(StartReport { accel: opts.accel, ssh_port, forwards, already_running: false, phases, argv: args })
}

/// Waits through the boot phases after `qemu` until SSH logs in and cloud-init has finished.
/// Used after a launch, and by `up` on a VM that already runs (an earlier `up` may have been
/// interrupted while waiting), so both end in the same state.
pub async fn wait_ready(
    ws: &Workspace,
    vm: &VmPaths,
    state: &VmState,
    launched: Instant,
    opts: &StartOptions,
    phases: &mut Vec<(BootPhase, f64)>,
    on_phase: &mut impl FnMut(BootPhase, f64),
) -> Result<(), VmError> {
    let mut reached = |phase: BootPhase, phases: &mut Vec<(BootPhase, f64)>| {
        let t = launched.elapsed().as_secs_f64();
        phases.push((phase, t));
        on_phase(phase, t);
    };
    let deadline = launched + opts.timeout;
    // The next phase to report: `qemu` was reported by the launch.
    let mut next = BootPhase::Firmware;
    let target = ssh_target(ws, vm, state)?;
    // Reports every phase up to and including `upto` not reported yet.
    let mut reach_upto = |upto: BootPhase, next: &mut BootPhase, phases: &mut Vec<(BootPhase, f64)>| {
        while *next <= upto {
            reached(*next, phases);
            match next.next() {
                Some(n) => *next = n,
                None => break,
            }
        }
    };
    loop {
        if running_pid(vm).is_none() {
            return Err(VmError::QemuExited {
                status: "exited".into(),
                stderr: String::new(),
                serial_tail: serial_tail(vm, 20),
            });
        }
        // The serial log only speaks of the phases up to the kernel; past those it is not read.
        if next <= BootPhase::Kernel {
            let by_serial = serial_phase(&serial_head(&vm.serial_log));
            if by_serial >= BootPhase::Firmware {
                reach_upto(by_serial, &mut next, phases);
            }
        }
        let Some(left) = time_left(deadline, Instant::now()) else {
            return Err(stuck(next, launched, vm, opts.accel, "timed out"));
        };
        // Some images print nothing on the serial port: after a few seconds, probe sshd anyway.
        let probe_ssh = next > BootPhase::Kernel || Instant::now() > launched + Duration::from_secs(5);
        if probe_ssh && let Some(reached) = probe_ready(&target, left).await {
            reach_upto(reached, &mut next, phases);
            if reached == BootPhase::CloudInit {
                return Ok(());
            }
        }
        let Some(left) = time_left(deadline, Instant::now()) else {
            // A probe may have waited out the rest of the time while the firmware or the kernel
            // wrote its first lines (a loaded host under tcg): the phase named is what the serial
            // log proves now.
            if next <= BootPhase::Kernel {
                let by_serial = serial_phase(&serial_head(&vm.serial_log));
                if by_serial >= BootPhase::Firmware {
                    reach_upto(by_serial, &mut next, phases);
                }
            }
            return Err(stuck(next, launched, vm, opts.accel, "timed out"));
        };
        tokio::time::sleep(Duration::from_millis(500).min(left)).await;
    }
}

/// What of the serial log the boot wait reads: its first 4 MiB (the firmware's and the kernel's
/// first lines are in there; a guest that floods the port cannot make the host read more).
fn serial_head(path: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(4 << 20).read_to_end(&mut head);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Pure: the time left before `deadline`, None once it has passed.
pub fn time_left(deadline: Instant, now: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(now)).filter(|d| !d.is_zero())
}

/// Each SSH operation of one readiness probe: a stalled guest answers the next probe, not this
/// one. Within the boot wait every one is further bounded by the time left ([`probe_deadlines`]).
const PROBE_DEADLINES: crate::ssh::Deadlines = crate::ssh::Deadlines {
    connect: Duration::from_secs(15),
    auth: Duration::from_secs(15),
    exec: Duration::from_secs(30),
};

/// Pure: the deadlines of a readiness probe with `left` of the boot wait remaining.
pub fn probe_deadlines(left: Duration) -> crate::ssh::Deadlines {
    PROBE_DEADLINES.at_most(left)
}

/// One readiness probe of the boot wait, ended within `left` whatever the guest does: the last
/// phase it saw reached (`sshd`: the banner; `login`: the key logged in; `cloud-init`: it has
/// finished), None when nothing answered.
pub async fn probe_ready(target: &SshTarget, left: Duration) -> Option<BootPhase> {
    let until = tokio::time::Instant::now() + left;
    let within = |limit: Duration| limit.min(until.saturating_duration_since(tokio::time::Instant::now()));
    let deadlines = probe_deadlines(left);
    if !banner_within(target.port, deadlines.connect).await {
        return None;
    }
    let deadlines = probe_deadlines(within(left));
    // connect and auth have a deadline each; the outer bound keeps their sum within `left` too.
    let Ok(Ok(session)) = tokio::time::timeout_at(until, SshSession::connect_with(target, deadlines)).await else {
        return Some(BootPhase::Sshd);
    };
    let opts = crate::ssh::ExecOptions::default().within(within(deadlines.exec)).max_output(4096);
    // The outer bound also cuts short the channel close that follows an overrun exec.
    let done = tokio::time::timeout_at(until, session.exec_with(CLOUD_INIT_DONE, opts))
        .await
        .is_ok_and(|r| r.is_ok_and(|o| o.status == 0));
    let _ = tokio::time::timeout(within(Duration::from_secs(1)), session.close()).await;
    Some(if done { BootPhase::CloudInit } else { BootPhase::Login })
}

/// Exit status 0 once cloud-init has finished in the guest.
const CLOUD_INIT_DONE: &str =
    "test -f /var/lib/cloud/instance/boot-finished || cloud-init status 2>/dev/null | grep -q 'status: done'";

fn stuck(phase: BootPhase, launched: Instant, vm: &VmPaths, accel: ResolvedAccel, why: &str) -> VmError {
    VmError::Stuck {
        phase,
        waited: launched.elapsed(),
        serial: vm.serial_log.display().to_string(),
        tail: serial_tail(vm, 25),
        hint: format!("{} ({why})", phase.hint(accel)),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    pub was_running: bool,
    /// The guest shut itself down after the ACPI powerdown (QMP SHUTDOWN with guest = true).
    pub clean: bool,
    pub how: String,
}

pub async fn stop(vm: &VmPaths, force: bool, timeout: Duration) -> Result<StopReport, VmError> {
    let Some(pid) = running_pid(vm) else {
        reconcile(vm);
        return Ok(StopReport { was_running: false, clean: true, how: "not running".into() });
    };
    let mut clean = false;
    let mut how = String::new();
    if let Ok(mut qmp) = QmpClient::connect(&vm.qmp_socket, Duration::from_secs(5)).await {
        if !force && qmp.system_powerdown().await.is_ok() {
            match qmp.wait_event("SHUTDOWN", timeout).await {
                Ok(e) => {
                    clean = e.data.get("guest").and_then(|g| g.as_bool()).unwrap_or(false);
                    how = if clean { "guest shut down after ACPI powerdown".into() } else { "QEMU shut down".into() };
                }
                Err(_) => how = format!("no shutdown within {timeout:?} of the ACPI powerdown; "),
            }
        }
        let _ = qmp.quit().await;
        if how.is_empty() || !clean {
            how.push_str("QEMU told to quit");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_pid(vm).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if running_pid(vm).is_some() {
        // SAFETY: sending SIGKILL to the pid the VM's own pidfile names (checked above).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        how.push_str("; killed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reconcile(vm);
    Ok(StopReport { was_running: true, clean, how })
}

/// Whether the VM's QEMU runs (its pidfile names a live QEMU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Stopped,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so the table's `{:<8}` still lines up.
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub state: RunState,
    pub pid: Option<i32>,
    pub qmp_status: Option<String>,
    pub accel: Option<ResolvedAccel>,
    pub ssh_port: Option<u16>,
    pub ssh_reachable: bool,
    pub forwards: Vec<(u16, u16)>,
    pub guest_agent: Option<crate::qga::GuestFacts>,
    pub guest_agent_error: Option<String>,
    pub reconciled: bool,
    pub dir: PathBuf,
}

/// How long `vm status` gives the guest agent per call.
pub const GUEST_AGENT_DEADLINE: Duration = Duration::from_secs(5);

pub async fn status(vm: &VmPaths) -> Result<Status, VmError> {
    let state = load_state(vm)?;
    let reconciled = reconcile(vm);
    let pid = running_pid(vm);
    let mut s = Status {
        name: vm.name.clone(),
        state: if pid.is_some() { RunState::Running } else { RunState::Stopped },
        pid,
        qmp_status: None,
        accel: state.accel,
        ssh_port: state.ssh_port,
        ssh_reachable: false,
        forwards: state.forwards.clone(),
        guest_agent: None,
        guest_agent_error: None,
        reconciled,
        dir: vm.dir.clone(),
    };
    if pid.is_none() {
        return Ok(s);
    }
    // QEMU, the guest agent and sshd are asked at once: `vm status` takes as long as the
    // slowest of them, not their sum (no SSH login: the banner is enough).
    let qmp = async {
        let mut q = QmpClient::connect(&vm.qmp_socket, Duration::from_secs(3)).await.ok()?;
        q.query_status().await.ok().map(|st| st.status)
    };
    // One deadline per agent call (connect + sync, then the four fact queries together): a
    // hostile agent cannot hold `vm status` longer, and an emulated aarch64 guest under TCG
    // still answers its four queries within it.
    let agent = async {
        match QgaClient::connect(&vm.qga_socket, GUEST_AGENT_DEADLINE).await {
            Ok(mut g) => g.facts().await.map_err(|e| crate::errors::chain(&e)),
            Err(e) => Err(crate::errors::chain(&e)),
        }
    };
    let sshd = async {
        match state.ssh_port {
            Some(p) => sshd_answers(p).await,
            None => false,
        }
    };
    let (qmp_status, facts, ssh_reachable) = tokio::join!(qmp, agent, sshd);
    s.qmp_status = qmp_status;
    match facts {
        Ok(f) => s.guest_agent = Some(f),
        Err(e) => s.guest_agent_error = Some(e),
    }
    s.ssh_reachable = ssh_reachable;
    Ok(s)
}

/// The complete VMs (those with a `state.json`), sorted; an unreadable `vms/` lists none.
pub fn list(ws: &Workspace) -> Vec<String> {
    ws.vm_names().unwrap_or_default()
}

pub async fn destroy(vm: &VmPaths) -> Result<(), VmError> {
    stop(vm, true, Duration::ZERO).await?;
    if vm.dir.exists() {
        std::fs::remove_dir_all(&vm.dir).map_err(io(vm.dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_probe_of_the_boot_wait_fits_in_the_time_left() {
        let now = Instant::now();
        assert_eq!(time_left(now + Duration::from_secs(10), now), Some(Duration::from_secs(10)));
        assert_eq!(time_left(now, now), None);
        assert_eq!(time_left(now, now + Duration::from_secs(1)), None);
        let left = Duration::from_millis(2500);
        let d = probe_deadlines(left);
        assert_eq!((d.connect, d.auth, d.exec), (left, left, left));
        // With plenty left, each operation keeps its own short deadline.
        let d = probe_deadlines(Duration::from_secs(600));
        assert_eq!(
            (d.connect, d.auth, d.exec),
            (Duration::from_secs(15), Duration::from_secs(15), Duration::from_secs(30))
        );
    }

    #[test]
    fn the_default_boot_wait_scales_with_accelerator_and_arch() {
        use crate::profile::Arch;
        let t = |a, arch| default_boot_timeout(a, arch).as_secs() / 60;
        assert_eq!(t(ResolvedAccel::Kvm, Arch::X86_64), 5);
        assert_eq!(t(ResolvedAccel::Hvf, Arch::Aarch64), 5);
        assert_eq!(t(ResolvedAccel::Tcg, Arch::X86_64), 15);
        assert_eq!(t(ResolvedAccel::Tcg, Arch::Aarch64), 25);
    }

    use super::*;

    #[test]
    fn a_vm_is_recognised_by_its_exact_name_pidfile_and_qmp_socket() {
        let ws = Workspace::at(Path::new("/ws"));
        let lab = ws.vm("sysmonvm-lab").unwrap();
        let lab2 = ws.vm("sysmonvm-lab2").unwrap();
        let p = crate::profile::load("almalinux-9-x86_64", None).unwrap();
        let plan = LaunchPlan {
            accel: ResolvedAccel::Tcg,
            firmware_code: "/fw.fd".into(),
            ssh_port: 1,
            forwards: vec![],
            daemonize: true,
        };
        let cmdline = |vm: &VmPaths| argv::argv(&p, &plan, vm).join("\0").into_bytes();
        assert!(is_vm_process(&cmdline(&lab), &lab));
        assert!(is_vm_process(&cmdline(&lab2), &lab2));
        // `sysmonvm-lab` is a substring of `sysmonvm-lab2`'s name: not the same VM.
        assert!(!is_vm_process(&cmdline(&lab2), &lab));
        assert!(!is_vm_process(&cmdline(&lab), &lab2));
        assert!(!is_vm_process(b"sleep\0x600", &lab));
    }

    #[test]
    fn openssh_gets_the_user_as_an_option_value_and_the_host_after_double_dash() {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::at(d.path());
        let vm = ws.vm("lab").unwrap();
        let mut p = crate::profile::load("almalinux-9-x86_64", None).unwrap();
        p.ssh.user = "alma".into();
        let state = VmState {
            name: "lab".into(),
            profile: p,
            profile_source: String::new(),
            image_path: PathBuf::new(),
            image_sha256: String::new(),
            instance_id: String::new(),
            created_at: String::new(),
            accel: None,
            ssh_port: Some(2200),
            forwards: vec![],
            guest_address: None,
            collector_mode: Default::default(),
        };
        let a = openssh_argv(&ws, &vm, &state, 2200, &["uname".into(), "-a".into()]);
        let l = a.iter().position(|x| x == "-l").unwrap();
        assert_eq!(a[l + 1..], ["alma", "--", "127.0.0.1", "uname", "-a"]);
        assert!(!a.iter().any(|x| x.contains('@')), "{a:?}");
    }

    #[test]
    fn phases_from_serial_output() {
        assert_eq!(serial_phase(""), BootPhase::Qemu);
        assert_eq!(serial_phase("BdsDxe: loading Boot0001"), BootPhase::Firmware);
        assert_eq!(
            serial_phase("EFI stub: Booting Linux Kernel...\n[    0.000000] Linux version 6.1.0"),
            BootPhase::Kernel
        );
        assert_eq!(BootPhase::CloudInit.as_str(), "cloud-init");
        assert_eq!(serde_json::to_string(&BootPhase::CloudInit).unwrap(), "\"cloud-init\"");
    }
}
