//! `doctor`.

use super::render::{Terminal, block_on, print_json};
use crate::Exit;
use sysmonvm::ops::doctor::{DoctorRequest, doctor};
use sysmonvm::workspace::Workspace;

pub fn run(ws: &Workspace, profile: Option<String>, fix: bool, json: bool) -> Exit {
    let sink = Terminal::new(json, false);
    let r = block_on(doctor(ws, &DoctorRequest { profile, fix }, &sink))??;
    if json {
        print_json(&r)?;
    } else {
        for c in &r.checks {
            println!("{} {:<24} {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("     fix: {f}");
            }
        }
        if !r.installed.is_empty() {
            println!("installed: {}", r.installed.join(" "));
        }
        println!("{}", if r.ready { "ready" } else { "not ready" });
    }
    Ok(r.exit_status)
}
