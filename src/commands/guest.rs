//! Executors for `bootstrap` and `collector build|install|status|logs|uninstall`, and the same
//! steps as part of `up`. The plans come from `sysmonvm::guest`; this file connects, prints
//! progress and results.

use super::print_json;
use crate::{BootstrapArgs, CollectorCommand, InstallArgs};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sysmonvm::guest::runner::{self, Event, RunReport};
use sysmonvm::guest::steps::{Outcome, Plan};
use sysmonvm::guest::{bootstrap, collector};
use sysmonvm::ssh::SshSession;
use sysmonvm::vm::{self, VmState};
use sysmonvm::workspace::Workspace;

/// Prints one line per finished step (a spinner while a step runs, on a terminal).
struct StepPrinter {
    bar: ProgressBar,
    quiet: bool,
    verbose: bool,
    total: usize,
}

impl StepPrinter {
    fn new(json: bool, verbose: bool) -> StepPrinter {
        let bar = if json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("static template"));
            b.enable_steady_tick(Duration::from_millis(120));
            b
        };
        StepPrinter { bar, quiet: json, verbose, total: 0 }
    }

    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Begin { index, total, name } => {
                self.total = total;
                self.bar.set_message(format!("[{}/{total}] {name}", index + 1));
            }
            Event::Output(line) if self.verbose && !self.quiet => self.bar.suspend(|| eprintln!("      | {line}")),
            Event::Output(_) => {}
            Event::Done(r) if !self.quiet => {
                let what = match r.outcome {
                    Outcome::Changed => "done",
                    Outcome::Unchanged => "already so",
                    Outcome::Skipped => "skipped",
                };
                self.bar.suspend(|| {
                    eprintln!("  {:<22} {:<10} {:>6.1} s", r.name, what, r.seconds);
                    for n in &r.notes {
                        eprintln!("      note: {n}");
                    }
                });
            }
            Event::Done(_) => {}
        }
    }
}

impl Drop for StepPrinter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn summary(r: &RunReport) -> String {
    let changed = r.steps.iter().filter(|s| s.outcome == Outcome::Changed).count();
    if changed == 0 {
        format!("{}: nothing to do, every step was already done ({:.1} s)", r.title, r.seconds)
    } else {
        format!("{}: {changed} of {} steps changed the guest ({:.1} s)", r.title, r.steps.len(), r.seconds)
    }
}

async fn run_plan(
    session: &SshSession,
    state: &VmState,
    plan: &Plan,
    uploads: &[runner::Upload],
    json: bool,
    verbose: bool,
) -> anyhow::Result<RunReport> {
    if !json {
        eprintln!("{} ({} steps)", plan.title, plan.steps.len());
    }
    let mut printer = StepPrinter::new(json, verbose);
    let as_root = state.profile.ssh.user == "root";
    Ok(runner::run(session, plan, uploads, as_root, |e| printer.event(e)).await?)
}

/// The bootstrap of a running VM (used by `bootstrap` and `up`).
pub async fn bootstrap_vm(ws: &Workspace, name: &str, a: &BootstrapArgs, json: bool) -> anyhow::Result<RunReport> {
    let paths = ws.vm(name)?;
    let (state, session) = vm::connect(ws, &paths).await?;
    let plan = bootstrap::plan(&state.profile, &a.packages)?;
    let r = run_plan(&session, &state, &plan, &[], json, a.verbose).await;
    session.close().await;
    let r = r?;
    if !json {
        eprintln!("{}", summary(&r));
    }
    Ok(r)
}

#[derive(serde::Serialize)]
pub struct InstallReport {
    pub target: String,
    pub binary: PathBuf,
    pub binary_sha256: String,
    pub listen: String,
    /// `127.0.0.1:PORT` on the host, when the profile forwards the collector's port.
    pub forward: Option<String>,
    pub answers_via_forward: bool,
    pub run: RunReport,
}

/// The binary to install for `target`: --binary, else the staged one, else built from a checkout.
fn collector_binary(ws: &Workspace, target: &str, a: &InstallArgs, json: bool) -> anyhow::Result<PathBuf> {
    if let Some(b) = &a.binary {
        return Ok(b.clone());
    }
    let staged = ws.collector_binary(target);
    if staged.is_file() {
        return Ok(staged);
    }
    match collector::find_source(a.source.as_deref()) {
        Some(src) => build(ws, &src, target, json),
        None => bail!(
            "no collector binary for {target}: looked for {} and for a sysmonvm checkout to build one from.\n\
             Either run `sysmonvm collector build --target {target} --source DIR` with a checkout, or put a released \
             sysmon-collector-{target} binary at that path (or pass --binary FILE).",
            staged.display()
        ),
    }
}

/// Cross-builds the collector in `source` and stages it in the workspace.
fn build(ws: &Workspace, source: &Path, target: &str, json: bool) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        collector::is_source(source),
        "{} is not a sysmonvm checkout (no collector/Cargo.toml)",
        source.display()
    );
    let argv = collector::build_argv(target);
    if !json {
        eprintln!("building sysmon-collector for {target} in {}", source.display());
    }
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(source)
        .stdout(if json { std::process::Stdio::null() } else { std::process::Stdio::inherit() })
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running cargo (install Rust with rustup)")?;
    let o = out.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !json {
        eprint!("{stderr}");
    }
    if !o.status.success() {
        let hint = if stderr.contains("can't find crate for `std`") || stderr.contains("target may not be installed") {
            format!("\nhint: rustup target add {target}")
        } else {
            String::new()
        };
        bail!("`{}` failed ({}){hint}", argv.join(" "), o.status);
    }
    let cargo_target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let built = collector::built_binary(source, cargo_target.as_deref(), target);
    let staged = ws.collector_binary(target);
    std::fs::create_dir_all(staged.parent().expect("a staged path has a parent"))?;
    let tmp = staged.with_extension("tmp");
    std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, &staged)?;
    Ok(staged)
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

/// Installs (or updates) the collector in a running VM (used by `collector install` and `up`).
pub async fn install_vm(ws: &Workspace, name: &str, a: &InstallArgs, json: bool) -> anyhow::Result<InstallReport> {
    let paths = ws.vm(name)?;
    let state = vm::load_state(&paths)?;
    let target = collector::target(state.profile.arch);
    let binary = collector_binary(ws, target, a, json)?;
    let bytes = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let binary_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let (state, session) = vm::connect(ws, &paths).await?;
    let result = async {
        let probe = session.exec(collector::ADDRESS_PROBE).await?;
        let address = collector::parse_guest_address(&String::from_utf8_lossy(&probe.stdout)).with_context(|| {
            format!(
                "cannot find the guest's IPv4 address (`{}` printed {:?})",
                collector::ADDRESS_PROBE,
                String::from_utf8_lossy(&probe.stdout)
            )
        })?;
        let listen = collector::listen(&state.profile, &address);
        let config = match &a.config {
            Some(file) => {
                let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                // The collector's own parser: a file it would refuse never reaches the guest.
                sysmon_collector::config::parse(file, &text)?;
                text
            }
            None => collector::config_json(&collector::ConfigInput {
                listen: listen.clone(),
                interval: state.profile.collector.interval.clone(),
                vm_id: name.to_string(),
                otlp_endpoint: a.otlp_endpoint.clone(),
                cgroups: a.cgroups.clone(),
            }),
        };
        let (plan, uploads) = collector::install(bytes, config, &listen)?;
        let run = run_plan(&session, &state, &plan, &uploads, json, a.verbose).await?;
        anyhow::Ok((listen, run))
    }
    .await;
    session.close().await;
    let (listen, run) = result?;
    let forward = vm::forwarded(&state, state.profile.collector.port);
    let answers_via_forward = match forward {
        Some(port) => healthz(port).await,
        None => false,
    };
    if !json {
        eprintln!("{}", summary(&run));
        match forward {
            Some(p) if answers_via_forward => eprintln!("collector answers on http://127.0.0.1:{p}/metrics"),
            Some(p) => eprintln!("warning: the collector answers in the guest but not through 127.0.0.1:{p}"),
            None => eprintln!(
                "note: the profile forwards no host port to guest port {}; the collector is reachable only from inside the guest",
                state.profile.collector.port
            ),
        }
    }
    if forward.is_some() && !answers_via_forward && a.config.is_none() {
        bail!("the collector runs in the guest on {listen} but does not answer through its forward");
    }
    Ok(InstallReport {
        target: target.into(),
        binary,
        binary_sha256,
        listen,
        forward: forward.map(|p| format!("127.0.0.1:{p}")),
        answers_via_forward,
        run,
    })
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

pub fn bootstrap(ws: &Workspace, a: BootstrapArgs, json: bool) -> crate::Exit {
    let name = super::vm::pick(ws, a.name.clone())?;
    let _lock = super::vm::lock_vm(ws, &name)?;
    let r = runtime()?.block_on(bootstrap_vm(ws, &name, &a, json))?;
    if json {
        print_json(&r)?;
    }
    Ok(0)
}

pub fn run(ws: &Workspace, cmd: CollectorCommand, json: bool) -> crate::Exit {
    let rt = runtime()?;
    match cmd {
        CollectorCommand::Build { target, profile, source } => {
            let target = match target {
                Some(t) => t,
                None => {
                    let p = super::vm::load_profile(ws, profile.as_deref())?;
                    collector::target(p.arch).to_string()
                }
            };
            if !collector::TARGETS.contains(&target.as_str()) {
                bail!("target {target:?}: use one of {}", collector::TARGETS.join(", "));
            }
            let src = collector::find_source(source.as_deref()).context(
                "no sysmonvm checkout found: pass --source DIR (or set SYSMONVM_SOURCE), or use released collector binaries",
            )?;
            let staged = build(ws, &src, &target, json)?;
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&staged)?));
            if json {
                print_json(&serde_json::json!({ "target": target, "binary": staged, "sha256": sha }))?;
            } else {
                println!("staged {} (sha256 {sha})", staged.display());
            }
        }
        CollectorCommand::Install(a) => {
            let name = super::vm::pick(ws, a.name.clone())?;
            let _lock = super::vm::lock_vm(ws, &name)?;
            let r = rt.block_on(install_vm(ws, &name, &a, json))?;
            if json {
                print_json(&r)?;
            }
        }
        CollectorCommand::Status { name } => {
            let name = super::vm::pick(ws, name)?;
            let paths = ws.vm(&name)?;
            let s = rt.block_on(status(ws, &paths))?;
            if json {
                print_json(&s)?;
            } else {
                println!("{name}: {} ({})", s["active"].as_str().unwrap_or("?"), s["sub"].as_str().unwrap_or("?"));
                println!("  version      {}", s["version"].as_str().unwrap_or("not installed"));
                println!("  binary       {} {}", collector::BINARY, s["binary_sha256"].as_str().unwrap_or("-"));
                println!("  restarts     {}", s["restarts"]);
                if let Some(f) = s["forward"].as_str() {
                    let ok = s["answers_via_forward"] == true;
                    println!("  metrics      http://{f}/metrics {}", if ok { "(answers)" } else { "(not answering)" });
                }
            }
            return Ok(if s["active"] == "active" { 0 } else { 3 });
        }
        CollectorCommand::Logs { name, lines, follow } => {
            let name = super::vm::pick(ws, name)?;
            let paths = ws.vm(&name)?;
            return rt.block_on(async {
                let (state, session) = vm::connect(ws, &paths).await?;
                let sudo = if state.profile.ssh.user == "root" { "" } else { "sudo -n " };
                let cmd = format!(
                    "{sudo}journalctl -u {} -n {lines} --no-pager -o short-iso{}",
                    collector::UNIT,
                    if follow { " -f" } else { "" }
                );
                let status = session
                    .exec_streaming(&cmd, None, |is_err, b| {
                        use std::io::Write;
                        if is_err {
                            let _ = std::io::stderr().write_all(b);
                        } else {
                            let _ = std::io::stdout().write_all(b);
                            let _ = std::io::stdout().flush();
                        }
                    })
                    .await?;
                session.close().await;
                anyhow::Ok(status as i32)
            });
        }
        CollectorCommand::Uninstall { name, verbose } => {
            let name = super::vm::pick(ws, name)?;
            let _lock = super::vm::lock_vm(ws, &name)?;
            let paths = ws.vm(&name)?;
            let r = rt.block_on(async {
                let (state, session) = vm::connect(ws, &paths).await?;
                let r = run_plan(&session, &state, &collector::uninstall()?, &[], json, verbose).await;
                session.close().await;
                r
            })?;
            if json {
                print_json(&r)?;
            } else {
                eprintln!("{}", summary(&r));
            }
        }
    }
    Ok(0)
}

/// The service's state in the guest, the installed binary, and whether the forward answers.
async fn status(ws: &Workspace, paths: &sysmonvm::workspace::VmPaths) -> anyhow::Result<serde_json::Value> {
    let (state, session) = vm::connect(ws, paths).await?;
    let cmd = format!(
        "systemctl show -p ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestamp {unit}; \
         echo sha256=$(sha256sum {bin} 2>/dev/null | cut -d' ' -f1); echo version=$({bin} --version 2>/dev/null)",
        unit = collector::UNIT,
        bin = collector::BINARY
    );
    let out = session.exec(&cmd).await;
    session.close().await;
    let text = String::from_utf8_lossy(&out?.stdout).into_owned();
    let kv = collector::parse_properties(&text);
    let get = |k: &str| kv.get(k).filter(|v| !v.is_empty()).cloned();
    let forward = vm::forwarded(&state, state.profile.collector.port);
    let answers = match forward {
        Some(p) => healthz_once(p).await,
        None => false,
    };
    Ok(serde_json::json!({
        "unit": collector::UNIT,
        "active": get("ActiveState"),
        "sub": get("SubState"),
        "main_pid": get("MainPID").and_then(|p| p.parse::<u64>().ok()),
        "restarts": get("NRestarts").and_then(|p| p.parse::<u64>().ok()),
        "started_at": get("ExecMainStartTimestamp"),
        "binary_sha256": get("sha256"),
        "version": get("version"),
        "forward": forward.map(|p| format!("127.0.0.1:{p}")),
        "answers_via_forward": answers,
    }))
}

async fn healthz_once(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/healthz");
    sysmonvm::image::download::client()
        .get(&url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
