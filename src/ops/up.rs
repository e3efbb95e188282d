//! `up`: make it so. Fetch and create when the VM does not exist, re-fetch a backing image that
//! left the cache, start (or wait for a VM that already runs), then bootstrap and install the
//! collector. Every step checks first, so `up` on a provisioned VM changes nothing and a failed
//! `up` continues where it stopped.

use super::Result;
use super::events::{Event, Sink};
use super::provision::{self, InstallRequest, ProvisionReport, Provisioning};
use super::vm::{AccelDecision, fetch_and_create, refetch_backing_image, resolve_accel, start_locked};
use crate::profile::Accel;
use crate::vm::{self, StartReport};
use crate::workspace::Workspace;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct UpRequest {
    pub profile: Option<String>,
    /// VM name [default: the profile's name].
    pub name: Option<String>,
    /// None: the profile's.
    pub accel: Option<Accel>,
    /// A hard upper bound for the boot; None scales with accelerator and arch.
    pub timeout: Option<Duration>,
    /// Return once QEMU runs (implies no provisioning).
    pub no_wait: bool,
    pub no_bootstrap: bool,
    pub no_collector: bool,
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub name: String,
    pub already_running: bool,
    /// How the accelerator was chosen; None when the VM already ran (it keeps its own).
    pub accel_decision: Option<AccelDecision>,
    pub start: StartReport,
    pub provision: ProvisionReport,
    pub seconds: f64,
}

pub async fn up(ws: &Workspace, req: &UpRequest, sink: &dyn Sink) -> Result<UpReport> {
    let started = Instant::now();
    let p = super::load_profile(ws, req.profile.as_deref())?;
    let name = req.name.clone().unwrap_or_else(|| p.name.clone());
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let paths = ws.vm(&name)?;
    let wait = !req.no_wait;
    let provisioning = (wait && !req.no_bootstrap).then(|| Provisioning {
        bootstrap: Some(req.packages.clone()),
        collector: (!req.no_collector).then(|| InstallRequest { name: Some(name.clone()), ..Default::default() }),
    });
    let mut session = None;
    let (already_running, accel_decision, start) = if vm::running_pid(&paths).is_some() {
        let state = vm::load_state(&paths)?;
        let accel = state.accel.unwrap_or(crate::qemu::argv::ResolvedAccel::Tcg);
        // A VM that runs and lets us log in needs no boot wait before provisioning: the
        // bootstrap's first step waits for cloud-init itself. That one login is then the whole
        // `up` (on a ready VM: one SSH connection, one script). Otherwise wait as a start would.
        if provisioning.is_some()
            && let Ok(open) = vm::connect_with(ws, &paths, vm::QUICK_LOGIN).await
        {
            session = Some(open);
            (true, None, start_locked(ws, &name, accel, false, req.timeout, sink).await?)
        } else {
            (true, None, start_locked(ws, &name, accel, wait, req.timeout, sink).await?)
        }
    } else {
        // The firmware and QEMU must be there before anything is downloaded.
        crate::qemu::firmware::find(p.arch, |f| f.exists())?;
        let state = fetch_and_create(ws, &name, &p, sink).await?;
        refetch_backing_image(ws, &state, sink).await?;
        let decision = resolve_accel(ws, req.accel.unwrap_or(state.profile.accel), &state.profile, true, sink).await?;
        sink.emit(Event::PhaseStarted {
            phase: "boot".into(),
            detail: Some(format!(
                "{name} ({}, {} vCPUs, {} MiB) with {}",
                state.profile.name,
                state.profile.smp,
                state.profile.memory_mib,
                decision.accel.as_str()
            )),
        });
        let accel = decision.accel;
        (false, Some(decision), start_locked(ws, &name, accel, wait, req.timeout, sink).await?)
    };
    let provision = match &provisioning {
        Some(what) => provision::provision_locked(ws, &name, session, what, sink).await?,
        None => ProvisionReport::default(),
    };
    Ok(UpReport { name, already_running, accel_decision, start, provision, seconds: started.elapsed().as_secs_f64() })
}
