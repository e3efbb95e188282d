//! `up`, `down` and `vm argv|create|start|stop|status|ssh|console|list|destroy`.

use super::render::{Terminal, block_on, confirm, print_json, safe, safe_line};
use crate::{Exit, UpArgs, VmCommand};
use std::io::Write;
use sysmonvm::exit;
use sysmonvm::ops::{self, up::UpRequest};
use sysmonvm::workspace::Workspace;

pub fn up(ws: &Workspace, a: UpArgs, json: bool) -> Exit {
    let req = UpRequest {
        profile: a.profile,
        name: a.name,
        accel: crate::requested_accel(a.accel)?,
        timeout: a.timeout,
        no_wait: a.no_wait,
        no_bootstrap: a.no_bootstrap,
        no_collector: a.no_collector,
        packages: a.packages,
    };
    let sink = Terminal::new(json, a.verbose);
    let r = block_on(ops::up::up(ws, &req, &sink))??;
    drop(sink);
    if json {
        print_json(&r)?;
    } else if r.already_running {
        println!("VM {} is already running (ssh port {})", r.name, r.start.ssh_port);
    } else {
        println!("VM {} is up: ssh port {} (sysmonvm vm ssh {})", r.name, r.start.ssh_port, r.name);
    }
    Ok(exit::OK)
}

pub fn run(ws: &Workspace, cmd: VmCommand, json: bool) -> Exit {
    let sink = Terminal::new(json, false);
    match cmd {
        VmCommand::Argv { profile, name, accel, no_self_test } => {
            let req =
                ops::vm::ArgvRequest { profile, name, accel: crate::requested_accel(accel)?, self_test: !no_self_test };
            let r = block_on(ops::vm::argv(ws, &req, &sink))??;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "{}",
                    r.argv
                        .iter()
                        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() })
                        .collect::<Vec<_>>()
                        .join(" \\\n  ")
                );
                if !r.accel.verified {
                    eprintln!("note: accelerator {} is unverified (--no-self-test)", r.accel.accel.as_str());
                }
                for p in &r.placeholders {
                    eprintln!("note: {p}");
                }
            }
        }
        VmCommand::Create { profile, name } => {
            let state = block_on(ops::vm::create(ws, &ops::vm::CreateRequest { profile, name }, &sink))??;
            if json {
                print_json(&state)?;
            } else {
                println!("VM {} created in {}", state.name, ws.vm(&state.name)?.dir.display());
            }
        }
        VmCommand::Start { name, accel, no_wait, timeout } => {
            let req = ops::vm::StartRequest { name, accel: crate::requested_accel(accel)?, wait: !no_wait, timeout };
            let r = block_on(ops::vm::start(ws, &req, &sink))??;
            if json {
                print_json(&r)?;
            } else if r.already_running {
                println!("VM is already running (ssh port {})", r.ssh_port);
            } else {
                println!("VM started with {} (ssh port {})", r.accel.as_str(), r.ssh_port);
            }
        }
        VmCommand::Stop { name, force, timeout } => {
            let r = block_on(ops::vm::stop(ws, &ops::vm::StopRequest { name, force, timeout }, &sink))??;
            if json {
                print_json(&r)?;
            } else {
                println!("VM {}: {}", r.vm, r.stop.how);
            }
        }
        VmCommand::Status { name } => {
            let r = block_on(ops::vm::status(ws, name.as_deref()))??;
            if json {
                print_json(&r)?;
            } else {
                print_status(&r);
            }
        }
        VmCommand::Ssh { name, command } => return Ok(ops::vm::ssh(ws, name.as_deref(), &command)?),
        VmCommand::Console { name, no_follow } => {
            ops::vm::console(ws, name.as_deref(), !no_follow, |bytes| {
                let mut out = std::io::stdout();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            })?;
        }
        VmCommand::List => {
            let rows = block_on(ops::vm::list(ws))??;
            if json {
                print_json(&rows)?;
            } else {
                for r in rows {
                    let s = &r.status;
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
            let name = ops::pick_vm(ws, name.as_deref())?;
            if !yes && !confirm(&format!("delete VM {name} and its disk?")) {
                anyhow::bail!("VM {name} is kept: destroy deletes its disk; pass --yes to confirm");
            }
            let r = block_on(ops::vm::destroy(ws, &name, &sink))??;
            if json {
                print_json(&r)?;
            } else {
                println!("VM {} destroyed", r.destroyed);
            }
        }
    }
    Ok(exit::OK)
}

fn print_status(r: &ops::vm::StatusReport) {
    let s = &r.status;
    println!(
        "{}: {}{}",
        s.name,
        s.state,
        s.qmp_status.as_ref().map(|q| format!(" (QMP: {})", safe_line(q))).unwrap_or_default()
    );
    if let Some(a) = s.accel {
        println!("  accelerator  {}", a.as_str());
    }
    if let Some(p) = s.ssh_port {
        println!("  ssh          127.0.0.1:{p} {}", if s.ssh_reachable { "(answers)" } else { "(not answering)" });
    }
    for (h, g) in &s.forwards {
        println!("  forward      127.0.0.1:{h} -> guest {g}");
    }
    match (&r.guest, &s.guest_agent_error) {
        (Some(g), _) => {
            println!("  guest        {} ({} vCPUs)", safe_line(g.os.as_deref().unwrap_or("?")), g.vcpus)
        }
        (None, Some(e)) if s.pid.is_some() => println!("  guest agent  {}", safe(e)),
        _ => {}
    }
    if s.reconciled {
        println!("  (removed the pidfile and sockets of a QEMU that was gone)");
    }
}
