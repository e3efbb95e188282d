//! `profile list|show`.

use super::render::print_json;
use crate::{Exit, ProfileCommand};
use sysmonvm::exit;
use sysmonvm::ops::profile;
use sysmonvm::workspace::Workspace;

pub fn run(ws: &Workspace, cmd: ProfileCommand, json: bool) -> Exit {
    match cmd {
        ProfileCommand::List => {
            let rows = profile::list(ws);
            if json {
                print_json(&rows)?;
            } else {
                for r in &rows {
                    let desc = r.description.as_deref().or(r.error.as_deref()).unwrap_or("");
                    println!("{:<24} {:<8} {desc}", r.name, r.arch.as_deref().unwrap_or("?"));
                }
            }
        }
        ProfileCommand::Show { profile: name } => {
            let p = profile::show(ws, &name)?;
            if json {
                print_json(&p)?;
            } else {
                println!("# {}", p.source);
                print!("{}", serde_yaml::to_string(&p.profile)?);
            }
        }
    }
    Ok(exit::OK)
}
