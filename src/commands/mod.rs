//! Thin executors: each parses what clap could not, calls one `sysmonvm::ops` operation, renders
//! its report (text or `--json`) and returns the exit status. No logic of their own, and no
//! processes, sockets, HTTP or SSH/QMP/QGA clients here (ARCHITECTURE.md, "Architecture
//! invariant"; `tests/architecture.rs` checks it).

mod cidata;
mod doctor;
mod guest;
mod host;
mod image;
mod profile;
pub mod render;
mod validate;
mod vm;

use crate::{Cli, Command, Exit};
use sysmonvm::exit;
use sysmonvm::workspace::Workspace;

pub fn run(cli: Cli) -> Exit {
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut crate::command(), "sysmonvm", &mut std::io::stdout());
            return Ok(exit::OK);
        }
        Command::Man => {
            clap_mangen::Man::new(crate::command()).render(&mut std::io::stdout())?;
            return Ok(exit::OK);
        }
        _ => {}
    }
    let ws = Workspace::resolve(cli.workspace.as_deref())?;
    match cli.command {
        Command::Profile(c) => profile::run(&ws, c, cli.json),
        Command::Image(c) => image::run(&ws, c, cli.json),
        Command::Cidata { profile, out, name } => cidata::run(&ws, &profile, &out, name.as_deref(), cli.json),
        Command::Vm(c) => vm::run(&ws, c, cli.json),
        Command::Up(a) => vm::up(&ws, a, cli.json),
        Command::Bootstrap(a) => guest::bootstrap(&ws, a, cli.json),
        Command::Collector(c) => guest::run(&ws, c, cli.json),
        Command::Validate(a) => validate::run(&ws, a, cli.json),
        Command::Host(c) => host::run(c, cli.json),
        Command::Down { name, force } => {
            vm::run(&ws, crate::VmCommand::Stop { name, force, timeout: std::time::Duration::from_secs(90) }, cli.json)
        }
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
        Command::Doctor { profile, fix } => doctor::run(&ws, profile, fix, cli.json),
    }
}
