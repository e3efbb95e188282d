//! `sysmonvm`: command-line front end. Parses arguments, resolves the workspace and hands each
//! command to a thin executor in `commands/`; the work itself lives in the library.

mod commands;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use std::path::PathBuf;
use sysmonvm::exit;
use sysmonvm::profile::{Accel, Arch};
use sysmonvm::validate::checks::PhaseKind;

#[derive(Parser)]
#[command(
    name = "sysmonvm",
    version,
    about = "Boot Linux guests under QEMU and validate the CPU telemetry collected inside them"
)]
pub struct Cli {
    /// Workspace directory for keys, VMs, profiles and the image cache [env: SYSMONVM_HOME;
    /// default: the platform's data and cache directories].
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text (progress bars are hidden).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// VM profiles: built in, in the workspace, or any YAML file.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// The verified image cache.
    #[command(subcommand)]
    Image(ImageCommand),
    /// VM lifecycle: argv, create, start, stop, status, ssh, console, list, destroy.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Fetch the image, create the VM if needed, start it and wait until SSH and cloud-init are ready.
    Up(UpArgs),
    /// Prepare a running guest: packages (cpupower, perf, stress-ng…), perf_event_paranoid=1, time
    /// sync, the cpufreq governor where a driver exists. Idempotent: a second run changes nothing.
    Bootstrap(BootstrapArgs),
    /// Build sysmon-collector for a guest, install it as a systemd service, and manage it.
    #[command(subcommand)]
    Collector(CollectorCommand),
    /// Load the guest with stress-ng phases and check the collector against independent references
    /// (cpufreq sysfs, /proc/cpuinfo, perf, /proc/stat), the throttle step and OTLP latency; writes
    /// report.json/.md/.html, samples.csv, rollups.csv and appends runs.jsonl. Exit 0: every
    /// comparable check passed; 1: a check failed; 3: nothing was comparable.
    Validate(ValidateArgs),
    /// The host's own CPUs while a VM runs: powermetrics on macOS, cpufreq and /proc on Linux.
    #[command(subcommand)]
    Host(HostCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), generated from these same definitions.
    Man,
    /// Stop a VM (ACPI powerdown, then quit, then kill).
    Down {
        name: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Check the host: QEMU, firmware, accelerator (with a self-test), disk space, keys.
    Doctor {
        #[arg(long)]
        profile: Option<String>,
        /// Install what is missing with the platform's package manager.
        #[arg(long)]
        fix: bool,
    },
    /// Build a cloud-init NoCloud seed ISO (volume id cidata) on its own.
    Cidata {
        #[arg(long, default_value = "almalinux-9-aarch64")]
        profile: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// VM name: hostname and the VM whose host key is used [default: the profile name].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Args, Clone)]
pub struct UpArgs {
    #[arg(long)]
    pub profile: Option<String>,
    /// VM name [default: the profile's name].
    #[arg(long)]
    pub name: Option<String>,
    /// auto | hvf | kvm | tcg [env: SYSMONVM_ACCEL; default: the profile's].
    #[arg(long, value_parser = parse_accel)]
    pub accel: Option<Accel>,
    /// How long to wait for SSH and cloud-init: a hard upper bound [default: scales with the
    /// accelerator and the guest's arch: 5m under kvm/hvf, 15m under tcg for x86_64, 25m for aarch64].
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Return once QEMU runs, without waiting for the guest (implies --no-bootstrap).
    #[arg(long)]
    pub no_wait: bool,
    /// Skip the bootstrap step (and so the collector install).
    #[arg(long)]
    pub no_bootstrap: bool,
    /// Skip the collector install.
    #[arg(long)]
    pub no_collector: bool,
    /// Extra packages for the bootstrap (repeatable).
    #[arg(long = "package", value_name = "PKG")]
    pub packages: Vec<String>,
    /// Print the output of every bootstrap and install step.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Subcommand)]
pub enum HostCommand {
    /// Sample the host every interval and print it (JSON lines with --json); with
    /// --otlp-endpoint also push OTLP (service.name macos-host-monitor / linux-host-monitor).
    Monitor {
        #[arg(long, value_name = "URL")]
        otlp_endpoint: Option<String>,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: std::time::Duration,
        /// Stop after N samples [default: run until stopped].
        #[arg(long)]
        count: Option<u64>,
    },
    /// macOS: install the monitor as a launchd daemon (root; logs in /var/log/serviceradar).
    Install {
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4318")]
        otlp_endpoint: String,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
    /// macOS: remove the launchd daemon.
    Uninstall,
}

#[derive(Args, Clone)]
pub struct ValidateArgs {
    /// VM name [default: the only VM].
    pub name: Option<String>,
    /// Phases to run, in order: idle (no load), one (a worker pinned to CPU 0), all (a worker per
    /// CPU), throttle (a worker under a CPU quota).
    #[arg(long, default_value = "idle,one,all,throttle", value_parser = parse_phases)]
    pub phases: Phases,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration_per_phase: std::time::Duration,
    /// How often readings are taken (collector snapshots and references).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Frequency: relative error; usage: absolute percentage points.
    #[arg(long, default_value = "5%", value_parser = parse_percent)]
    pub tolerance: f64,
    /// The CPU quota of the throttle phase.
    #[arg(long, default_value = "50%", value_parser = parse_percent)]
    pub throttle_quota: f64,
    /// Where the report goes [default: the VM's directory, validate/].
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Fail when no frequency check is comparable (use it on real hardware in CI).
    #[arg(long)]
    pub require_frequency: bool,
    /// Run the collector in this mode for the run (native, container, container-sys-ro,
    /// privileged) [default: the VM's]; the VM's own mode is put back afterwards.
    #[arg(long, value_parser = parse_mode, conflicts_with = "matrix")]
    pub mode: Option<sysmonvm::guest::collector_mode::CollectorMode>,
    /// Run one validate per cell of these axes and write one report over them:
    /// `smp=1,2 mode=native,container,container-sys-ro,privileged [governor=performance,…]`.
    /// An axis left out takes the VM's own value; one boot per vCPU count; the VM is put back
    /// as it was. Report in --report [default: the VM's directory, validate-matrix/].
    #[arg(long, num_args = 1.., value_name = "AXIS=V1,V2")]
    pub matrix: Vec<String>,
    /// With --matrix: go on with the interrupted matrix in the report directory, keeping its
    /// finished cells.
    #[arg(long, requires = "matrix")]
    pub resume: bool,
}

#[derive(Args, Clone, Default)]
pub struct BootstrapArgs {
    /// VM name [default: the only VM].
    pub name: Option<String>,
    /// Extra packages to install on top of the baseline and the profile's `packages` (repeatable).
    #[arg(long = "package", value_name = "PKG")]
    pub packages: Vec<String>,
    /// Print every step's output.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Args, Clone, Default)]
pub struct InstallArgs {
    /// VM name [default: the only VM].
    pub name: Option<String>,
    /// The collector binary to install [default: the one staged by `collector build`, else built
    /// from a checkout].
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Install this config file verbatim (checked by the collector's parser first) instead of the
    /// generated one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["otlp_endpoint", "cgroups"])]
    pub config: Option<PathBuf>,
    /// Also push OTLP to this endpoint (as seen from the guest: the host is 10.0.2.2).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Also report this cgroup (relative to the cgroup root) as a container (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<String>,
    /// Checkout to build the collector from [env: SYSMONVM_SOURCE].
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Install as ServiceRadar's sysmon-vm checker: print the check entry for ServiceRadar's
    /// agent (`{"name":"sysmon-vm","type":"grpc","details":"127.0.0.1:PORT"}`, PORT the host's
    /// forward of the collector's gRPC port).
    #[arg(long)]
    pub serviceradar: bool,
    /// ServiceRadar's mTLS files for the gRPC endpoint: DIR holds root.pem (the CA the agent's
    /// certificate is signed by), checkers.pem and checkers-key.pem. Installs a collector built
    /// with feature `mtls` (`collector build --mtls`).
    #[arg(long, value_name = "DIR", requires = "serviceradar", conflicts_with = "config")]
    pub certs: Option<PathBuf>,
    /// Print every step's output.
    #[arg(long, short)]
    pub verbose: bool,
    /// native (a systemd service), or the image `collector image` builds run as a container:
    /// container (plain), container-sys-ro (/sys/devices/system/cpu and the cgroup tree
    /// read-only, the host's /proc at /host/proc), privileged (--privileged --pid=host)
    /// [default: the mode of the last install, else native].
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<sysmonvm::guest::collector_mode::CollectorMode>,
}

#[derive(Subcommand)]
pub enum CollectorCommand {
    /// Cross-compile sysmon-collector (static musl, rust-lld) and stage it in the workspace.
    Build {
        /// aarch64-unknown-linux-musl or x86_64-unknown-linux-musl [default: the profile's arch].
        #[arg(long, value_parser = parse_target)]
        target: Option<Arch>,
        /// With feature `mtls` (TLS for ServiceRadar's gRPC; ring compiles C, so this needs the
        /// target's C cross compiler: musl-gcc or aarch64-linux-gnu-gcc), staged apart.
        #[arg(long)]
        mtls: bool,
        #[arg(long)]
        profile: Option<String>,
        /// The sysmonvm checkout [env: SYSMONVM_SOURCE; default: this binary's, or the current one].
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
    },
    /// Upload the binary, config and systemd unit; (re)start the service and wait until it answers.
    Install(InstallArgs),
    /// Build the collector's OCI image (FROM scratch: the static binary and a config) in the
    /// guest's Docker, from files sysmonvm sends; nothing is pulled.
    Image {
        name: Option<String>,
        /// The collector binary [default: the one staged by `collector build`, else built from a checkout].
        #[arg(long, value_name = "FILE")]
        binary: Option<PathBuf>,
        /// Checkout to build the collector from [env: SYSMONVM_SOURCE].
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        #[arg(long, short)]
        verbose: bool,
    },
    /// The service's state, version and restarts, and whether the host forward answers.
    Status { name: Option<String> },
    /// The service's journal.
    Logs {
        name: Option<String>,
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: u32,
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop and remove the service, its files and its user.
    Uninstall {
        name: Option<String>,
        #[arg(long, short)]
        verbose: bool,
    },
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    sysmon_collector::config::parse_duration(s)
}

pub fn parse_accel(s: &str) -> Result<Accel, String> {
    sysmonvm::qemu::accel::parse_accel(s).ok_or_else(|| format!("{s:?}: use auto, hvf, kvm or tcg"))
}

/// `collector install --mode`.
fn parse_mode(s: &str) -> Result<sysmonvm::guest::collector_mode::CollectorMode, String> {
    use sysmonvm::guest::collector_mode::CollectorMode;
    CollectorMode::parse(s).ok_or_else(|| {
        let all: Vec<_> = CollectorMode::ALL.iter().map(|m| m.as_str()).collect();
        format!("{s:?} is not a mode: one of {}", all.join(", "))
    })
}

/// `collector build --target`: a musl triple, as the guest arch it builds for.
pub fn parse_target(s: &str) -> Result<Arch, String> {
    sysmonvm::guest::collector::arch_of_target(s)
        .ok_or_else(|| format!("{s:?}: use aarch64-unknown-linux-musl or x86_64-unknown-linux-musl"))
}

/// `--phases`, in order.
#[derive(Debug, Clone)]
pub struct Phases(pub Vec<PhaseKind>);

pub fn parse_phases(s: &str) -> Result<Phases, String> {
    let v = sysmonvm::validate::parse_phases(s)?;
    if v.is_empty() { Err("names no phase: use idle, one, all, throttle".into()) } else { Ok(Phases(v)) }
}

pub fn parse_percent(s: &str) -> Result<f64, String> {
    sysmonvm::validate::parse_percent(s)
}

#[derive(Subcommand)]
pub enum VmCommand {
    /// Print the QEMU command line `vm start` would run, without launching the VM (`auto` is
    /// resolved as `start` does, with the short KVM self-test).
    Argv {
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = parse_accel)]
        accel: Option<Accel>,
        /// Skip the KVM self-test (the accelerator is then reported as unverified).
        #[arg(long)]
        no_self_test: bool,
    },
    /// Create the VM's files (overlay, UEFI vars, seed, keys); idempotent.
    Create {
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Start a created VM and wait for SSH unless --no-wait.
    Start {
        name: Option<String>,
        #[arg(long, value_parser = parse_accel)]
        accel: Option<Accel>,
        #[arg(long)]
        no_wait: bool,
        /// A hard upper bound for the boot [default: scales with the accelerator and the arch, as for `up`].
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Stop: ACPI powerdown and wait, then quit, then SIGKILL.
    Stop {
        name: Option<String>,
        /// Skip the powerdown.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "90s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Process, QMP state, guest-agent facts, SSH reachability, ports.
    Status { name: Option<String> },
    /// Open a shell, or run a command, over SSH with the pinned host key.
    Ssh {
        name: Option<String>,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Follow the serial console log.
    Console {
        name: Option<String>,
        /// Print what is there and exit.
        #[arg(long)]
        no_follow: bool,
    },
    /// The VMs in the workspace.
    List,
    /// Stop the VM and delete its files.
    Destroy {
        name: Option<String>,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// List the available profiles.
    List,
    /// Print a profile as loaded (NAME or FILE).
    Show { profile: String },
}

#[derive(Args, Clone, Default)]
pub struct SourceArgs {
    /// A profile whose image to fetch (NAME or FILE).
    #[arg(long, conflicts_with = "url")]
    pub profile: Option<String>,
    /// Image URL (instead of a profile).
    #[arg(long)]
    pub url: Option<String>,
    /// CHECKSUM file listing the image (GNU or BSD-tagged form).
    #[arg(long, requires = "url")]
    pub checksum_url: Option<String>,
    /// Expected SHA-256 of the image (instead of, or pinned on top of, a CHECKSUM file).
    #[arg(long, requires = "url")]
    pub sha256: Option<String>,
    /// Detached OpenPGP signature over the CHECKSUM file.
    #[arg(long, requires_all = ["url", "keyring"])]
    pub signature_url: Option<String>,
    /// Armored public key to check the signature against.
    #[arg(long, value_name = "KEY.asc", requires = "url")]
    pub keyring: Option<PathBuf>,
    /// Fingerprint the keyring's key must have.
    #[arg(long, requires = "keyring")]
    pub key_fingerprint: Option<String>,
    /// Mirror directories to try on network failure (repeatable).
    #[arg(long = "mirror", requires = "url")]
    pub mirrors: Vec<String>,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Download (resuming) and verify an image into the cache; a cached image is re-hashed.
    Fetch(SourceArgs),
    /// List cached images.
    List,
    /// Re-hash every cached image against its recorded digest.
    Verify,
    /// Delete partial downloads and images no VM uses (it says which VM keeps which image).
    Prune {
        /// Also delete images that VMs use (their disks cannot boot afterwards): names the VMs
        /// and asks first.
        #[arg(long)]
        all: bool,
        /// Confirm --all without asking.
        #[arg(long, requires = "all")]
        yes: bool,
    },
}

/// The command tree with colours off when NO_COLOR is set (https://no-color.org), whatever else
/// the environment says.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    Cli::command().color(if no_color { clap::ColorChoice::Never } else { clap::ColorChoice::Auto })
}

fn main() {
    use clap::FromArgMatches;
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`sysmonvm man | head`) instead of panicking on a broken pipe.
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are "errors" that print to stdout and succeed.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain: each operation's context, then what went wrong underneath.
            eprintln!("error: {}", commands::render::safe(&sysmonvm::errors::chain(e.as_ref())));
            exit::ERROR
        }
    };
    std::process::exit(code);
}

pub type Exit = Result<i32>;

/// The accelerator asked for: the flag, else `SYSMONVM_ACCEL` (empty means unset).
pub fn requested_accel(flag: Option<sysmonvm::profile::Accel>) -> anyhow::Result<Option<sysmonvm::profile::Accel>> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var("SYSMONVM_ACCEL").ok().filter(|s| !s.is_empty()) {
        Some(s) => Ok(Some(parse_accel(&s).map_err(|e| anyhow::anyhow!("SYSMONVM_ACCEL={e}"))?)),
        None => Ok(None),
    }
}
