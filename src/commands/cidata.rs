//! `cidata`.

use super::render::print_json;
use crate::Exit;
use std::path::Path;
use sysmonvm::exit;
use sysmonvm::workspace::Workspace;

pub fn run(ws: &Workspace, profile: &str, out: &Path, name: Option<&str>, json: bool) -> Exit {
    let r = sysmonvm::ops::cidata::build(ws, profile, out, name)?;
    if json {
        print_json(&r)?;
    } else {
        println!("{}", r.path.display());
    }
    Ok(exit::OK)
}
