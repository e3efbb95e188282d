//! `sysmon-collector`: command-line front end. Settings come from defaults, then `--config`,
//! then flags; everything else lives in the library.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use sysmon_collector::config::{self, FileConfig, GrpcSecurity};
use sysmon_collector::export::otlp::ResourceIdentity;
use sysmon_collector::server::{Latest, Published};
use sysmon_collector::{Roots, Sampler, SamplerOptions, grpc, metrics, push, server};

#[derive(Parser)]
#[command(
    name = "sysmon-collector",
    version,
    about = "Per-core CPU frequency with honest sources, system and container metrics: JSON, Prometheus, OTLP"
)]
struct Cli {
    /// Config file, JSON or YAML (flags override it). Example: `sysmon-collector default-config`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// procfs mount point (a fixture tree works too).
    #[arg(long, global = true, value_name = "DIR")]
    procfs: Option<PathBuf>,
    /// sysfs mount point.
    #[arg(long, global = true, value_name = "DIR")]
    sysfs: Option<PathBuf>,
    /// cgroup mount point (v2 unified, v1 controller directories, or hybrid).
    #[arg(long, global = true, value_name = "DIR")]
    cgroupfs: Option<PathBuf>,
    /// Prefix under which the mount points of /proc/mounts are reachable (for statvfs).
    #[arg(long, global = true, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// The host's procfs, when the collector runs in a container with it mounted (`/host/proc`;
    /// `/proc` with --pid=host): network, mounts and os-release are read from its pid 1.
    #[arg(long, global = true, value_name = "DIR")]
    host_procfs: Option<PathBuf>,
    /// Sampling interval: the window for usage, rates and cycle counts [snapshot: 250ms, serve: 1s].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_interval)]
    interval: Option<Duration>,
    /// Do not open hardware cycle counters.
    #[arg(long, global = true)]
    no_perf: bool,
    /// Also report this cgroup (path below the cgroup root) as a container; repeatable.
    #[arg(long = "cgroup", global = true, value_name = "PATH")]
    cgroups: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Prometheus,
}

#[derive(Subcommand)]
enum Command {
    /// Take one sample over --interval and print it.
    Snapshot {
        /// Print JSON (the same document as GET /v1/snapshot).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Sample every --interval in the background and serve /metrics, /v1/snapshot and /healthz.
    Serve {
        /// HTTP address (/metrics, /v1/snapshot, /healthz) [default: the config's
        /// http_listen_addr, else 127.0.0.1:9105].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// gRPC address of ServiceRadar's monitoring.AgentService [default: the config's
        /// listen_addr (0.0.0.0:50110 when a ServiceRadar-form config leaves it out); none
        /// without a config].
        #[arg(long, value_name = "ADDR")]
        grpc_listen: Option<String>,
        /// Push OTLP/HTTP protobuf to this endpoint (base URL or .../v1/metrics).
        #[arg(long, value_name = "URL")]
        otlp_endpoint: Option<String>,
        /// How often to push OTLP [default: 10s].
        #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
        interval_push: Option<Duration>,
        /// Resource attribute service.name [default: sysmon-collector].
        #[arg(long)]
        service_name: Option<String>,
        /// Resource attribute host.id [default: /etc/machine-id].
        #[arg(long)]
        host_id: Option<String>,
        /// Resource attribute vm.id.
        #[arg(long)]
        vm_id: Option<String>,
    },
    /// Print a config file with every default, for /etc/serviceradar/checkers/sysmon-vm.json.
    DefaultConfig,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).and_then(config::check_interval)
}

fn roots(cli: &Cli, file: &FileConfig) -> Roots {
    let d = Roots::default();
    let p = file.paths.clone().unwrap_or_default();
    Roots {
        procfs: cli.procfs.clone().or(p.procfs).unwrap_or(d.procfs),
        sysfs: cli.sysfs.clone().or(p.sysfs).unwrap_or(d.sysfs),
        cgroupfs: cli.cgroupfs.clone().or(p.cgroupfs).unwrap_or(d.cgroupfs),
        rootfs: cli.rootfs.clone().or(p.rootfs).unwrap_or(d.rootfs),
        host_procfs: cli.host_procfs.clone().or(p.host_procfs),
    }
}

fn render_text(s: &sysmon_collector::Snapshot) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}  {} ({}, {}, {} CPUs)",
        s.timestamp,
        s.host.hostname.as_deref().unwrap_or("?"),
        s.host.arch,
        s.host.virtualization.as_deref().unwrap_or("bare metal"),
        s.host.cpu_count
    );
    for c in &s.cpus {
        let f = c.frequency_hz.map_or("      null".into(), |hz| format!("{:>6.0} MHz", hz / 1e6));
        let u = c.usage.map_or("   -".into(), |u| format!("{:>5.1}%", u.usage_pct));
        let _ = writeln!(
            o,
            "  {:<6} {f}  {:<15} busy {u}  {}",
            c.cpu,
            c.frequency_source.as_str(),
            c.frequency_note.as_deref().unwrap_or("")
        );
    }
    if let (Some(t), Some(a)) = (s.memory.total_bytes, s.memory.available_bytes) {
        let _ =
            writeln!(o, "  memory {:.0} MiB total, {:.0} MiB available", t as f64 / 1048576.0, a as f64 / 1048576.0);
    }
    if let Some(l) = s.load {
        let _ = writeln!(o, "  load   {:.2} {:.2} {:.2}", l.load1, l.load5, l.load15);
    }
    for c in &s.containers {
        let _ = writeln!(
            o,
            "  container {} {:.12} cpu {}",
            c.runtime,
            c.id,
            c.cpu_usage_pct.map_or("-".into(), |p| format!("{p:.1}%"))
        );
    }
    let failed: Vec<&str> = s.sources.iter().filter(|st| !st.success).map(|st| st.source.as_str()).collect();
    if !failed.is_empty() {
        let _ = writeln!(o, "  failed sources: {} (warnings below)", failed.join(", "));
    }
    for w in &s.warnings {
        let subsystem = w.subsystem.as_deref().map_or(String::new(), |s| format!("[{s}] "));
        let _ = writeln!(o, "  warning: {subsystem}{}: {}", w.source, w.message);
    }
    o
}

/// Prints, treating a closed pipe (`| head`) as the reader's choice rather than an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The gRPC endpoint's transport from the config's `security`; mTLS needs the `mtls` feature,
/// and every file is read now, so a missing or bad one stops the start naming it.
fn grpc_security(s: &GrpcSecurity) -> Result<grpc::Security> {
    match s {
        GrpcSecurity::None => Ok(grpc::Security::Plaintext),
        #[cfg(feature = "mtls")]
        GrpcSecurity::Mtls(files) => {
            let config = grpc::tls::server_config(&files.cert, &files.key, &files.client_ca)
                .context("security.mode mtls: the gRPC endpoint's certificates")?;
            Ok(grpc::Security::Mtls(config))
        }
        #[cfg(not(feature = "mtls"))]
        GrpcSecurity::Mtls(_) => bail!(
            "security.mode is \"mtls\", but this sysmon-collector was built without the `mtls` feature \
             (the default build has no TLS, so it needs no C compiler): build it with \
             `cargo build --release -p sysmon-collector --features mtls`, or set security.mode to \"none\""
        ),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(path) => config::load(path)?,
        None => FileConfig::default(),
    };
    let roots = roots(&cli, &file);
    let mut cgroups = file.cgroups.clone().unwrap_or_default();
    cgroups.extend(cli.cgroups.iter().cloned());
    let container = sysmon_collector::container_view::detect(std::path::Path::new("/"), &roots);
    let options = SamplerOptions { perf: !cli.no_perf && file.perf.unwrap_or(true), cgroups, container };

    match &cli.command {
        Command::DefaultConfig => write_stdout(&(config::example_json() + "\n"))?,
        Command::Snapshot { json, format } => {
            let interval = cli.interval.unwrap_or(config::DEFAULT_SNAPSHOT_INTERVAL);
            let mut sampler = Sampler::new(roots, options);
            let snap = sampler.sample_over(interval);
            let text = match (json, format) {
                (true, _) | (_, Format::Json) => serde_json::to_string_pretty(&snap)? + "\n",
                (_, Format::Prometheus) => sysmon_collector::export::prometheus::render(&metrics::families(&snap)),
                (_, Format::Text) => render_text(&snap),
            };
            write_stdout(&text)?;
        }
        Command::Serve { listen, grpc_listen, otlp_endpoint, interval_push, service_name, host_id, vm_id } => {
            let interval = cli.interval.or(file.sample_interval).unwrap_or(config::DEFAULT_SERVE_INTERVAL);
            let endpoints = match &cli.config {
                Some(path) => file.endpoints(path)?,
                None => config::Endpoints { http: None, grpc: None, security: GrpcSecurity::None, warnings: vec![] },
            };
            for w in &endpoints.warnings {
                eprintln!("sysmon-collector: warning: {w}");
            }
            let addr = listen.clone().or(endpoints.http.clone()).unwrap_or_else(|| config::DEFAULT_LISTEN.into());
            let listener = TcpListener::bind(&addr).with_context(|| {
                format!(
                    "cannot listen on {addr} (is another collector or exporter using the port? pick one with --listen)"
                )
            })?;
            let grpc = match grpc_listen.clone().or(endpoints.grpc.clone()) {
                None => None,
                Some(grpc_addr) => {
                    let security = grpc_security(&endpoints.security)?;
                    let l = TcpListener::bind(&grpc_addr).with_context(|| {
                        format!("cannot listen on {grpc_addr} for gRPC (listen_addr in the config, or --grpc-listen)")
                    })?;
                    Some((l, security))
                }
            };
            let otlp = file.otlp.clone().unwrap_or_default();
            let push_settings = match otlp_endpoint.clone().or(otlp.endpoint.clone()) {
                None => None,
                Some(endpoint) => {
                    let url = push::metrics_url(&endpoint).map_err(anyhow::Error::msg)?;
                    Some(push::PushSettings {
                        url,
                        interval: interval_push.or(otlp.push_interval).unwrap_or(config::DEFAULT_PUSH_INTERVAL),
                        identity: ResourceIdentity {
                            service_name: service_name
                                .clone()
                                .or(otlp.service_name.clone())
                                .unwrap_or_else(|| "sysmon-collector".into()),
                            host_id: host_id
                                .clone()
                                .or(otlp.host_id.clone())
                                .or_else(|| sysmon_collector::host::machine_id(&roots)),
                            vm_id: vm_id.clone().or(otlp.vm_id.clone()),
                            host_name: None,
                        },
                        queue_batches: otlp.queue_batches.unwrap_or(config::DEFAULT_QUEUE_BATCHES),
                        headers: otlp.headers.clone().unwrap_or_default().into_iter().collect(),
                    })
                }
            };
            if push_settings.is_none() && (interval_push.is_some() || service_name.is_some() || vm_id.is_some()) {
                bail!(
                    "--interval-push, --service-name and --vm-id need --otlp-endpoint (or otlp.endpoint in the config)"
                );
            }
            let latest = Arc::new(Latest::default());
            let start_unix_nano = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
            let mut sampler = Sampler::new(roots, options);
            latest.set(Published::new(sampler.sample()));
            {
                let latest = latest.clone();
                std::thread::Builder::new().name("sampler".into()).stack_size(256 * 1024).spawn(move || {
                    let mut next = Instant::now() + interval;
                    loop {
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                        next += interval;
                        if next < Instant::now() {
                            next = Instant::now() + interval; // fell behind (suspend): do not burst
                        }
                        latest.set(Published::new(sampler.sample()));
                    }
                })?;
            }
            if let Some(mut settings) = push_settings {
                let latest = latest.clone();
                if let Some(p) = latest.get() {
                    settings.identity.host_name = p.snapshot.host.hostname.clone();
                }
                eprintln!("sysmon-collector: pushing OTLP to {} every {:?}", settings.url, settings.interval);
                std::thread::Builder::new()
                    .name("otlp".into())
                    .stack_size(256 * 1024)
                    .spawn(move || push::run(settings, latest, start_unix_nano))?;
            }
            if let Some((l, security)) = grpc {
                let kind = match &security {
                    grpc::Security::Plaintext => "plaintext",
                    #[cfg(feature = "mtls")]
                    grpc::Security::Mtls(_) => "mtls",
                };
                eprintln!("sysmon-collector: serving grpc://{} ({kind}, monitoring.AgentService)", l.local_addr()?);
                let latest = latest.clone();
                std::thread::Builder::new().name("grpc".into()).stack_size(256 * 1024).spawn(move || {
                    if let Err(e) = grpc::run(l, latest, security) {
                        eprintln!("sysmon-collector: gRPC endpoint stopped: {e}");
                        std::process::exit(1);
                    }
                })?;
            }
            eprintln!("sysmon-collector: serving http://{} (sampling every {interval:?})", listener.local_addr()?);
            server::run(listener, latest)?;
        }
    }
    Ok(())
}
