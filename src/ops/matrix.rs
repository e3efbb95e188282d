//! `validate --matrix`: one validate per cell (`validate::matrix`), one boot per vCPU count, the
//! modes (and governors, where the guest has cpufreq) within it. A cell that fails is a row of
//! the table, never the end of the matrix; `matrix.json` is written after every cell, so an
//! interrupted matrix goes on with `--resume`. The VM is put back as it was (its vCPU count and
//! collector mode) at the end, also after a resumed run.

use super::events::{Event, Sink};
use super::validate::{ValidateRequest, check_request, settings_of, validate_locked};
use super::vm::{resolve_accel, start_locked};
use super::{OpError, Result};
use crate::guest::command::GuestCommand;
use crate::validate::matrix::{self, CellSpec, GovernorAxis, MatrixReport, Restore};
use crate::validate::receiver::unix_now as now;
use crate::vm;
use crate::workspace::Workspace;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct MatrixRequest {
    /// Every cell's validate (its `mode` and `report_dir` are the cell's; `report_dir` here is
    /// the matrix's directory [default: the VM's directory, validate-matrix/]).
    pub validate: ValidateRequest,
    /// `AXIS=V1,V2` words.
    pub axes: Vec<String>,
    /// Go on with the matrix in the report directory, keeping its finished cells.
    pub resume: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatrixOutcome {
    #[serde(flatten)]
    pub report: MatrixReport,
    /// Where matrix.json/.md/.html and cells/ were written.
    pub report_dir: PathBuf,
}

/// How long the guest gets to shut down cleanly before a vCPU change.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(90);

fn rfc3339(t: f64) -> String {
    sysmon_collector::host::rfc3339((t * 1e9) as u64)
}

/// Boots the VM again with `smp` vCPUs: a clean shutdown, the count in its state, a start that
/// waits for SSH as `vm start --wait` does.
async fn reboot_with(ws: &Workspace, name: &str, smp: u32, sink: &dyn Sink) -> Result<()> {
    let paths = ws.vm(name)?;
    sink.emit(Event::PhaseStarted { phase: "matrix boot".into(), detail: Some(format!("{name} with {smp} vCPUs")) });
    vm::stop(&paths, false, SHUTDOWN_TIMEOUT).await?;
    let mut state = vm::load_state(&paths)?;
    state.profile.smp = smp;
    vm::save_state(&paths, &state)?;
    let decision = resolve_accel(ws, state.profile.accel, &state.profile, true, sink).await?;
    start_locked(ws, name, decision.accel, true, None, sink).await?;
    Ok(())
}

/// The guest's cpufreq policies and the governors each offers, as `policyN: g1 g2` lines.
fn governors_probe() -> GuestCommand {
    GuestCommand::script(
        "for p in /sys/devices/system/cpu/cpufreq/policy*; do [ -r \"$p/scaling_available_governors\" ] && \
         echo \"${p##*/}: $(cat \"$p/scaling_available_governors\")\"; done; true",
    )
}

/// Sets every policy's governor (`governor` was checked by `matrix::parse_axes`: lower-case
/// letters, digits and `_` only) and prints the ones it replaced, to put back.
fn set_governor(governor: &str) -> GuestCommand {
    GuestCommand::script(format!(
        "for f in /sys/devices/system/cpu/cpufreq/policy*/scaling_governor; do \
         echo \"$f $(cat \"$f\")\"; echo {governor} | sudo -n tee \"$f\" >/dev/null || exit 1; done"
    ))
}

/// Puts back what [`set_governor`] printed (`PATH GOVERNOR` lines).
fn restore_governors(previous: &str) -> Option<GuestCommand> {
    let mut lines = Vec::new();
    for l in previous.lines() {
        let (path, g) = l.split_once(' ')?;
        let policy_file = path.starts_with("/sys/devices/system/cpu/cpufreq/policy")
            && path.ends_with("/scaling_governor")
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_');
        let governor_ok = !g.is_empty() && g.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !policy_file || !governor_ok {
            return None;
        }
        lines.push(format!("echo {g} | sudo -n tee {path} >/dev/null"));
    }
    (!lines.is_empty()).then(|| GuestCommand::script(lines.join("\n")))
}

async fn guest_run(ws: &Workspace, name: &str, cmd: &GuestCommand) -> Result<String> {
    let paths = ws.vm(name)?;
    let (_, session) = vm::connect(ws, &paths).await?;
    let line = cmd.render();
    let out = session.exec(&line).await;
    session.close().await;
    let out = out.map_err(|source| OpError::Ssh { vm: name.to_string(), command: line.clone(), source })?;
    if out.status != 0 {
        return Err(OpError::Failed {
            what: format!("`{}` failed ({})", crate::sanitize::line(&line), out.status),
            detail: crate::sanitize::line(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One cell: its governor set (when it has one), its validate, the governors put back.
async fn run_cell(
    ws: &Workspace,
    name: &str,
    spec: &CellSpec,
    base: &ValidateRequest,
    dir: &std::path::Path,
    axis: Option<&GovernorAxis>,
    sink: &dyn Sink,
) -> Result<crate::validate::report::Report> {
    let mut previous = None;
    if let Some(g) = &spec.governor {
        if let Some(axis) = axis.filter(|a| !a.available.iter().any(|x| x == g)) {
            return Err(OpError::Invalid(format!(
                "governor {g} is not offered by the guest's cpufreq (available: {})",
                axis.available.join(", ")
            )));
        }
        previous = Some(guest_run(ws, name, &set_governor(g)).await?);
    }
    let req = ValidateRequest {
        mode: Some(spec.mode),
        report_dir: Some(dir.join(matrix::CELLS_DIR).join(spec.id())),
        ..base.clone()
    };
    let result = validate_locked(ws, name, &req, sink).await;
    if let Some(cmd) = previous.as_deref().and_then(restore_governors) {
        let put_back = guest_run(ws, name, &cmd).await;
        if let Err(e) = put_back {
            sink.warning(format!("the guest's cpufreq governors were not put back: {}", crate::errors::chain(&e)));
        }
    }
    Ok(result?.report)
}

pub async fn validate_matrix(ws: &Workspace, req: &MatrixRequest, sink: &dyn Sink) -> Result<MatrixOutcome> {
    let name = super::pick_vm(ws, req.validate.name.as_deref())?;
    check_request(&req.validate)?;
    let paths = ws.vm(&name)?;
    let dir = req.validate.report_dir.clone().unwrap_or_else(|| paths.validate_matrix_dir.clone());
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let state = vm::load_state(&paths)?;
    if vm::running_pid(&paths).is_none() {
        // An interrupted matrix may have stopped the VM on its way to another vCPU count.
        if !req.resume {
            return Err(OpError::Invalid(format!(
                "VM {name} is not running: start it first (sysmonvm vm start {name} --wait)"
            )));
        }
        let decision = resolve_accel(ws, state.profile.accel, &state.profile, true, sink).await?;
        start_locked(ws, &name, decision.accel, true, None, sink).await?;
    }
    let previous = matrix::read(&dir).map_err(OpError::Invalid)?;
    // A matrix interrupted earlier may have left the VM at another vCPU count: what it recorded
    // is how the VM was before it, also for a fresh run over it.
    let restore = match &previous {
        Some(p) if !p.complete => p.restore,
        _ => Restore { smp: state.profile.smp, mode: state.collector_mode },
    };
    let axes = matrix::parse_axes(&req.axes, restore.smp, restore.mode).map_err(OpError::Invalid)?;
    let settings = settings_of(&req.validate);
    let mut report = match (req.resume, previous) {
        (true, None) => {
            return Err(OpError::Invalid(format!(
                "--resume: no matrix to go on with in {} (no {})",
                dir.display(),
                matrix::REPORT_FILE
            )));
        }
        (true, Some(p)) => {
            if let Some(why) = p.resume_mismatch(&axes, &settings) {
                return Err(OpError::Invalid(format!(
                    "--resume: the matrix in {} is another one: {why}; run without --resume to start over",
                    dir.display()
                )));
            }
            MatrixReport { complete: false, finished: None, ..p }
        }
        (false, _) => MatrixReport {
            schema: matrix::SCHEMA.into(),
            vm: name.clone(),
            profile: state.profile.name.clone(),
            accel: state.accel.map(|x| x.as_str().to_string()).unwrap_or_default(),
            started: rfc3339(now()),
            finished: None,
            complete: false,
            axes: axes.clone(),
            settings,
            restore,
            governor_axis: Vec::new(),
            cells: Vec::new(),
            summary: Default::default(),
        },
    };
    let write = |r: &MatrixReport| {
        matrix::write(&dir, r).map_err(OpError::io(format!("writing the matrix report to {}", dir.display())))
    };
    write(&report)?;
    let total = matrix::max_cells(&axes);
    let mut ran = 0usize;
    let mut current_smp = state.profile.smp;
    for smp in matrix::smp_order(&axes, current_smp) {
        // Cells finished before an interruption are kept; a vCPU count with all its cells kept
        // needs no boot (with governors, whether they applied is known from the kept report).
        let known_axis = report.governor_axis.iter().find(|g| g.smp == smp).cloned();
        let planned = matrix::cells_for(&axes, smp, known_axis.as_ref().is_none_or(|g| g.applicable));
        if req.resume && planned.iter().all(|c| report.finished_cell(&c.id()).is_some()) {
            ran += planned.len();
            sink.info(format!("matrix: smp={smp}: every cell was finished before, kept"));
            continue;
        }
        if current_smp != smp {
            reboot_with(ws, &name, smp, sink).await?;
            current_smp = smp;
        }
        let axis = if axes.governor.is_empty() {
            None
        } else {
            let probe = guest_run(ws, &name, &governors_probe()).await?;
            let axis = matrix::governor_axis(smp, &probe);
            report.governor_axis.retain(|g| g.smp != smp);
            report.governor_axis.push(axis.clone());
            Some(axis)
        };
        let cells = matrix::cells_for(&axes, smp, axis.as_ref().is_none_or(|a| a.applicable));
        for spec in cells {
            ran += 1;
            let id = spec.id();
            if req.resume && report.finished_cell(&id).is_some() {
                sink.info(format!("matrix: {id}: finished before, kept"));
                continue;
            }
            sink.emit(Event::PhaseStarted {
                phase: format!("matrix cell {ran}/{total}"),
                detail: Some(format!("{id} ({} vCPUs, {} mode)", spec.smp, spec.mode.as_str())),
            });
            let started = rfc3339(now());
            let cell = match run_cell(ws, &name, &spec, &req.validate, &dir, axis.as_ref(), sink).await {
                Ok(r) => matrix::cell_of(spec, &r, &started),
                Err(e) => {
                    let why = crate::errors::chain(&e);
                    sink.warning(format!("matrix: {id} did not finish: {why}"));
                    matrix::cell_failed(spec, why, &started, &rfc3339(now()))
                }
            };
            sink.info(format!("matrix: {id}: {}", cell.verdict));
            report.record(cell);
            write(&report)?;
        }
    }
    // Put the VM back: its vCPU count (a boot), its collector as it ran before.
    if current_smp != report.restore.smp {
        reboot_with(ws, &name, report.restore.smp, sink).await?;
    }
    let restore = super::provision::InstallRequest {
        name: Some(name.clone()),
        mode: Some(report.restore.mode),
        ..Default::default()
    };
    super::provision::collector_install_locked(ws, &name, &restore, &super::events::Silent).await?;
    report.complete = true;
    report.finished = Some(rfc3339(now()));
    report.summary = matrix::MatrixSummary::of(&report.cells);
    write(&report)?;
    Ok(MatrixOutcome { report, report_dir: dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governor_scripts_touch_only_policy_files_and_put_back_only_what_they_read() {
        let set = set_governor("performance").render();
        assert!(set.contains("echo performance | sudo -n tee \"$f\""), "{set}");
        let read = "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor schedutil\n\
                    /sys/devices/system/cpu/cpufreq/policy4/scaling_governor ondemand\n";
        let back = restore_governors(read).unwrap().render();
        assert!(back.contains("echo schedutil | sudo -n tee /sys/devices/system/cpu/cpufreq/policy0/scaling_governor"));
        assert!(back.contains("echo ondemand | sudo -n tee /sys/devices/system/cpu/cpufreq/policy4/scaling_governor"));
        // Guest text that is not what the script printed is not run back into the guest.
        for hostile in [
            "/etc/passwd x\n",
            "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor $(reboot)\n",
            "/sys/devices/system/cpu/cpufreq/policy0/../../../../../etc/scaling_governor x\n",
            "no-space\n",
            "",
        ] {
            assert!(restore_governors(hostile).is_none(), "{hostile:?}");
        }
    }
}
