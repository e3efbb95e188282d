//! The operations: everything a `sysmonvm` command does, as library functions that take a typed
//! request, send progress to an [`events::Sink`], and return a typed, `Serialize` report (what
//! `--json` prints; the shapes are documented in `docs/json.md`). `src/commands/` only parses
//! arguments, calls one of these, and renders. Nothing here prints.

pub mod cidata;
pub mod doctor;
pub mod error;
pub mod events;
pub mod host;
pub mod image;
pub mod matrix;
pub mod profile;
pub mod provision;
pub mod up;
pub mod validate;
pub mod vm;

pub use error::OpError;
pub use events::{Event, Sink};

use crate::profile::Profile;
use crate::workspace::Workspace;
use std::time::Duration;

pub type Result<T> = std::result::Result<T, OpError>;

/// The profile used when none is named: the AlmaLinux guest of the host's architecture (hvf on
/// Apple Silicon).
pub fn default_profile() -> &'static str {
    if std::env::consts::ARCH == "aarch64" { "almalinux-9-aarch64" } else { "almalinux-9-x86_64" }
}

/// A profile by name or file, with the workspace's profiles beside the built-in ones.
pub fn load_profile(ws: &Workspace, name: Option<&str>) -> Result<Profile> {
    Ok(crate::profile::load(name.unwrap_or(default_profile()), Some(&ws.profiles_dir()))?)
}

/// The named VM, or the only one in the workspace.
pub fn pick_vm(ws: &Workspace, name: Option<&str>) -> Result<String> {
    if let Some(n) = name {
        return Ok(n.to_string());
    }
    let all = crate::vm::list(ws);
    match all.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(OpError::NoVms { dir: ws.vms_dir() }),
        many => Err(OpError::SeveralVms { names: many.join(", ") }),
    }
}

/// How long a command waits for another sysmonvm process working on the same VM.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(600);

/// Takes the VM's lock, telling the sink whom it waits for. The wait never blocks the async
/// runtime (`lock::acquire_async`).
pub async fn lock_vm(ws: &Workspace, name: &str, sink: &dyn Sink) -> Result<crate::lock::Lock> {
    let vm = ws.vm(name)?;
    let what = format!("VM {name}");
    Ok(crate::lock::acquire_async(&vm.lock, &what, LOCK_PATIENCE, |who| {
        sink.emit(Event::Waiting { what: what.clone(), holder: who.to_string() })
    })
    .await?)
}

/// The sync form of [`lock_vm`], for operations that run no async code.
pub fn lock_vm_blocking(ws: &Workspace, name: &str, sink: &dyn Sink) -> Result<crate::lock::Lock> {
    let vm = ws.vm(name)?;
    Ok(crate::lock::acquire(&vm.lock, &format!("VM {name}"), LOCK_PATIENCE, |who| {
        sink.emit(Event::Waiting { what: format!("VM {name}"), holder: who.to_string() })
    })?)
}
