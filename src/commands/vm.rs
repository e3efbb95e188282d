use super::image::default_profile;
use super::print_json;
use crate::{Exit, UpArgs, VmCommand};
use anyhow::{Context, bail};
use std::io::IsTerminal;
use std::time::Duration;
use sysmonvm::image::{self, ImageSource, cache::ImageCache, download::NoProgress};
use sysmonvm::profile::{self, Accel, Profile};
use sysmonvm::qemu::accel::{self, HostFacts, SelfTest};
use sysmonvm::qemu::argv::{self, LaunchPlan, ResolvedAccel};
use sysmonvm::vm::{self, StartOptions};
use sysmonvm::workspace::Workspace;
use sysmonvm::{keys, lock};

use super::guest::runtime;

/// The flag, else SYSMONVM_ACCEL, else the profile.
fn requested_accel(flag: Option<&str>, p: &Profile) -> anyhow::Result<Accel> {
    let from_env = std::env::var("SYSMONVM_ACCEL").ok().filter(|s| !s.is_empty());
    match flag.map(str::to_string).or(from_env) {
        Some(s) => accel::parse_accel(&s).with_context(|| format!("accelerator {s:?}: use auto, hvf, kvm or tcg")),
        None => Ok(p.accel),
    }
}

/// Resolves the accelerator, running the KVM self-test when kvm is a candidate.
pub async fn resolve_accel(req: Accel, p: &Profile, quiet: bool) -> anyhow::Result<ResolvedAccel> {
    let host = HostFacts::detect();
    let test = if matches!(req, Accel::Auto | Accel::Kvm) && !(host.os == "macos" && req == Accel::Auto) {
        accel::kvm_self_test(p.arch, &host, Duration::from_secs(3)).await
    } else {
        SelfTest::NotRun("not needed".into())
    };
    let (a, warning) = accel::choose(req, p.arch, &host, &test)?;
    if let Some(w) = warning
        && !quiet
    {
        eprintln!("warning: {w}");
    }
    Ok(a)
}

/// The named VM, or the only one in the workspace.
pub fn pick(ws: &Workspace, name: Option<String>) -> anyhow::Result<String> {
    if let Some(n) = name {
        return Ok(n);
    }
    let all = vm::list(ws);
    match all.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no VMs in {} (create one with `sysmonvm up`)", ws.vms_dir().display()),
        many => bail!("several VMs ({}): name one", many.join(", ")),
    }
}

pub fn load_profile(ws: &Workspace, name: Option<&str>) -> anyhow::Result<Profile> {
    Ok(profile::load(name.unwrap_or(default_profile()), Some(&ws.profiles_dir()))?)
}

pub fn lock_vm(ws: &Workspace, name: &str) -> anyhow::Result<lock::Lock> {
    let vm = ws.vm(name)?;
    sysmonvm::workspace::private_dir(&vm.dir)?;
    Ok(lock::acquire(&vm.lock, &format!("VM {name}"), Duration::from_secs(600), |who| {
        eprintln!("waiting for {who}, which holds VM {name}")
    })?)
}

fn phase_printer(json: bool) -> impl FnMut(&str, f64) {
    move |phase, t| {
        if !json {
            eprintln!("  {phase:<10} {t:>6.1} s");
        }
    }
}

async fn fetch_and_create(ws: &Workspace, name: &str, p: &Profile, json: bool) -> anyhow::Result<vm::VmState> {
    let vm_paths = ws.vm(name)?;
    if let Ok(s) = vm::load_state(&vm_paths) {
        return Ok(s);
    }
    if !json {
        eprintln!("fetching the image of {}", p.name);
    }
    let fetched = image::fetch(&ImageSource::from_profile(p), &ImageCache::new(ws.images_dir()), &NoProgress, |who| {
        eprintln!("waiting for {who}")
    })
    .await
    .context("image fetch")?;
    Ok(vm::create(ws, name, p, &fetched)?)
}

/// The steps of `up` after the boot: bootstrap, then the collector install. Each is idempotent,
/// so `up` on a provisioned VM changes nothing, and a failed `up` continues where it stopped.
async fn provision(ws: &Workspace, name: &str, a: &UpArgs, json: bool) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::json!({});
    if a.no_wait || a.no_bootstrap {
        return Ok(out);
    }
    let b = crate::BootstrapArgs { name: Some(name.into()), packages: a.packages.clone(), verbose: a.verbose };
    out["bootstrap"] = serde_json::to_value(super::guest::bootstrap_vm(ws, name, &b, json).await?)?;
    if !a.no_collector {
        let i = crate::InstallArgs { name: Some(name.into()), verbose: a.verbose, ..Default::default() };
        out["collector"] = serde_json::to_value(super::guest::install_vm(ws, name, &i, json).await?)?;
    }
    Ok(out)
}

pub fn up(ws: &Workspace, a: UpArgs, json: bool) -> Exit {
    let p = load_profile(ws, a.profile.as_deref())?;
    let name = a.name.clone().unwrap_or_else(|| p.name.clone());
    let _lock = lock_vm(ws, &name)?;
    let rt = runtime()?;
    rt.block_on(async {
        let paths = ws.vm(&name)?;
        if vm::running_pid(&paths).is_some() {
            let state = vm::load_state(&paths)?;
            let accel = state.accel.unwrap_or(ResolvedAccel::Tcg);
            let timeout = a.timeout.unwrap_or_else(|| vm::default_boot_timeout(accel, state.profile.arch));
            let opts = StartOptions { accel, wait: !a.no_wait, timeout };
            let report = vm::start(ws, &name, &opts, phase_printer(json)).await?;
            let provisioned = provision(ws, &name, &a, json).await?;
            if json {
                print_json(&serde_json::json!({ "name": name, "already_running": true, "start": report, "provision": provisioned }))?;
            } else {
                println!("VM {name} is already running (ssh port {})", report.ssh_port);
            }
            return Ok(0);
        }
        // The firmware and QEMU must be there before anything is downloaded.
        sysmonvm::qemu::firmware::find(p.arch, |f| f.exists()).map_err(|e| anyhow::anyhow!(e))?;
        let state = fetch_and_create(ws, &name, &p, json).await?;
        let accel = resolve_accel(requested_accel(a.accel.as_deref(), &state.profile)?, &state.profile, json).await?;
        if !json {
            eprintln!(
                "starting {name} ({}, {} vCPUs, {} MiB) with {}",
                state.profile.name,
                state.profile.smp,
                state.profile.memory_mib,
                accel.as_str()
            );
        }
        let timeout = a.timeout.unwrap_or_else(|| vm::default_boot_timeout(accel, state.profile.arch));
        let opts = StartOptions { accel, wait: !a.no_wait, timeout };
        let report = vm::start(ws, &name, &opts, phase_printer(json)).await?;
        let provisioned = provision(ws, &name, &a, json).await?;
        if json {
            print_json(&serde_json::json!({ "name": name, "already_running": false, "start": report, "provision": provisioned }))?;
        } else {
            println!("VM {name} is up: ssh port {} (sysmonvm vm ssh {name})", report.ssh_port);
        }
        Ok(0)
    })
}

pub fn run(ws: &Workspace, cmd: VmCommand, json: bool) -> Exit {
    let rt = runtime()?;
    match cmd {
        VmCommand::Argv { profile, name, accel: flag } => {
            let p = load_profile(ws, profile.as_deref())?;
            let name = name.unwrap_or_else(|| p.name.clone());
            let paths = ws.vm(&name)?;
            let host = HostFacts::detect();
            // No self-test here (it launches QEMU): kvm when /dev/kvm exists for a native guest.
            let assumed = if host.kvm_device && host.native(p.arch) {
                SelfTest::Passed
            } else {
                SelfTest::NotRun("no usable /dev/kvm".into())
            };
            let (accel, _) = accel::choose(requested_accel(flag.as_deref(), &p)?, p.arch, &host, &assumed)?;
            let fw = sysmonvm::qemu::firmware::find(p.arch, |f| f.exists())?;
            let size = std::fs::metadata(&fw.code).map(|m| m.len()).unwrap_or(0);
            let code = if sysmonvm::qemu::firmware::needs_padding(p.arch, size) {
                paths.dir.join("efi-code.fd")
            } else {
                fw.code
            };
            let state = vm::load_state(&paths).ok();
            let ssh_port = state.as_ref().and_then(|s| s.ssh_port).unwrap_or(2222);
            let forwards =
                p.forwards.iter().map(|f| (f.host.filter(|h| *h != 0).unwrap_or(f.guest + 10000), f.guest)).collect();
            let args =
                argv::argv(&p, &LaunchPlan { accel, firmware_code: code, ssh_port, forwards, daemonize: true }, &paths);
            if json {
                print_json(&args)?;
            } else {
                println!(
                    "{}",
                    args.iter()
                        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() })
                        .collect::<Vec<_>>()
                        .join(" \\\n  ")
                );
            }
        }
        VmCommand::Create { profile, name } => {
            let p = load_profile(ws, profile.as_deref())?;
            let name = name.unwrap_or_else(|| p.name.clone());
            let _lock = lock_vm(ws, &name)?;
            let state = rt.block_on(fetch_and_create(ws, &name, &p, json))?;
            if json {
                print_json(&state)?;
            } else {
                println!("VM {name} created in {}", ws.vm(&name)?.dir.display());
            }
        }
        VmCommand::Start { name, accel: flag, no_wait, timeout } => {
            let name = pick(ws, name)?;
            let _lock = lock_vm(ws, &name)?;
            let paths = ws.vm(&name)?;
            let state = vm::load_state(&paths)?;
            let report = rt.block_on(async {
                let accel =
                    resolve_accel(requested_accel(flag.as_deref(), &state.profile)?, &state.profile, json).await?;
                let timeout = timeout.unwrap_or_else(|| vm::default_boot_timeout(accel, state.profile.arch));
                anyhow::Ok(
                    vm::start(ws, &name, &StartOptions { accel, wait: !no_wait, timeout }, phase_printer(json)).await?,
                )
            })?;
            if json {
                print_json(&report)?;
            } else if report.already_running {
                println!("VM {name} is already running");
            } else {
                println!("VM {name} started with {} (ssh port {})", report.accel.as_str(), report.ssh_port);
            }
        }
        VmCommand::Stop { name, force, timeout } => {
            let name = pick(ws, name)?;
            let _lock = lock_vm(ws, &name)?;
            let r = rt.block_on(vm::stop(&ws.vm(&name)?, force, timeout))?;
            if json {
                print_json(&r)?;
            } else {
                println!("VM {name}: {}", r.how);
            }
        }
        VmCommand::Status { name } => {
            let name = pick(ws, name)?;
            let s = rt.block_on(vm::status(&ws.vm(&name)?))?;
            if json {
                print_json(&s)?;
            } else {
                println!(
                    "{}: {}{}",
                    s.name,
                    s.state,
                    s.qmp_status.as_ref().map(|q| format!(" (QMP: {q})")).unwrap_or_default()
                );
                if let Some(a) = s.accel {
                    println!("  accelerator  {}", a.as_str());
                }
                if let Some(p) = s.ssh_port {
                    println!(
                        "  ssh          127.0.0.1:{p} {}",
                        if s.ssh_reachable { "(answers)" } else { "(not answering)" }
                    );
                }
                for (h, g) in &s.forwards {
                    println!("  forward      127.0.0.1:{h} -> guest {g}");
                }
                match (&s.guest_agent, &s.guest_agent_error) {
                    (Some(f), _) => println!(
                        "  guest        {} ({} vCPUs)",
                        f.pointer("/os/pretty-name").and_then(|v| v.as_str()).unwrap_or("?"),
                        f["vcpus"].as_array().map(|v| v.len()).unwrap_or(0)
                    ),
                    (None, Some(e)) if s.pid.is_some() => println!("  guest agent  {e}"),
                    _ => {}
                }
                if s.reconciled {
                    println!("  (removed the pidfile and sockets of a QEMU that was gone)");
                }
            }
        }
        VmCommand::Ssh { name, command } => {
            let name = pick(ws, name)?;
            let paths = ws.vm(&name)?;
            let state = vm::load_state(&paths)?;
            let port = state
                .ssh_port
                .filter(|_| vm::running_pid(&paths).is_some())
                .with_context(|| format!("VM {name} is not running"))?;
            let mut c = std::process::Command::new("ssh");
            c.args(["-i", &ws.user_key().display().to_string(), "-p", &port.to_string()])
                .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"])
                .args(["-o", &format!("UserKnownHostsFile={}", paths.known_hosts.display())])
                .args(["-o", &format!("HostKeyAlias={}", keys::host_alias(&name))])
                .arg(format!("{}@127.0.0.1", state.profile.ssh.user));
            if !command.is_empty() {
                c.arg("--").args(&command);
            }
            let status = c.status().context("running ssh (install openssh-client)")?;
            return Ok(status.code().unwrap_or(1));
        }
        VmCommand::Console { name, no_follow } => {
            let name = pick(ws, name)?;
            let paths = ws.vm(&name)?;
            follow(&paths, !no_follow)?;
        }
        VmCommand::List => {
            let mut rows = Vec::new();
            for n in vm::list(ws) {
                let s = rt.block_on(vm::status(&ws.vm(&n)?))?;
                rows.push(s);
            }
            if json {
                print_json(&rows)?;
            } else {
                for s in rows {
                    println!(
                        "{:<24} {:<8} {}",
                        s.name,
                        s.state,
                        s.ssh_port.map(|p| format!("ssh 127.0.0.1:{p}")).unwrap_or_default()
                    );
                }
            }
        }
        VmCommand::Destroy { name, yes } => {
            let name = pick(ws, name)?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    bail!("destroy deletes VM {name}'s disk; pass --yes to confirm");
                }
                eprint!("delete VM {name} and its disk? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !answer.trim().eq_ignore_ascii_case("y") {
                    return Ok(1);
                }
            }
            let paths = ws.vm(&name)?;
            {
                let _lock = lock_vm(ws, &name)?;
                rt.block_on(vm::destroy(&paths))?;
            }
            let _ = std::fs::remove_dir_all(&paths.dir);
            if json {
                print_json(&serde_json::json!({ "destroyed": name }))?;
            } else {
                println!("VM {name} destroyed");
            }
        }
    }
    Ok(0)
}

/// Prints the serial log and, when following, what is appended to it.
fn follow(paths: &sysmonvm::workspace::VmPaths, keep: bool) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut pos = 0u64;
    loop {
        if let Ok(mut f) = std::fs::File::open(&paths.serial_log) {
            let len = f.metadata()?.len();
            if len < pos {
                pos = 0; // a new boot started a new log
            }
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            pos += buf.len() as u64;
            std::io::stdout().write_all(&buf)?;
            std::io::stdout().flush()?;
        }
        if !keep {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
