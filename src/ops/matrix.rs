//! `validate --matrix`: one validate per cell (`validate::matrix`), one boot per vCPU count, the
//! modes (and governors, where the guest has cpufreq) within it. A cell that fails is a row of
//! the table, never the end of the matrix; `matrix.json` is written after every cell, so an
//! interrupted matrix goes on with `--resume`. How the VM was before (its vCPU count, collector
//! mode and cpufreq governors) is recorded in `matrix.json` before anything changes and put back
//! at the end, after an error that ends the matrix, and by a later run over an interrupted one.

use super::events::{Event, Silent, Sink};
use super::provision::{InstallRequest, collector_install_locked};
use super::validate::{ValidateRequest, check_request, rfc3339, settings_of, validate_locked};
use super::vm::{resolve_accel, start_locked};
use super::{OpError, Result};
use crate::guest::command::GuestCommand;
use crate::validate::matrix::{self, CellSpec, Cpufreq, GovernorAxis, MatrixReport, PolicyGovernor, Restore};
use crate::validate::receiver::unix_now as now;
use crate::vm;
use crate::workspace::Workspace;
use serde::Serialize;
use std::path::{Path, PathBuf};
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
/// What is kept of a cpufreq probe or a governor script's output: a few lines per policy.
const PROBE_OUTPUT_CAP: usize = 64 << 10;

/// Writes the matrix's files (after every cell, so an interruption keeps what was finished).
fn write_report(dir: &Path, r: &MatrixReport) -> Result<()> {
    matrix::write(dir, r).map_err(OpError::io(format!("writing the matrix report to {}", dir.display())))
}

/// Starts the VM with the accelerator it ran with (`state.json`'s), else as `vm start` would.
async fn start_as_before(ws: &Workspace, name: &str, sink: &dyn Sink) -> Result<()> {
    let state = vm::load_state(&ws.vm(name)?)?;
    let accel = match state.accel {
        Some(a) => a,
        None => resolve_accel(ws, state.profile.accel, &state.profile, true, sink).await?.accel,
    };
    start_locked(ws, name, accel, true, None, sink).await?;
    Ok(())
}

fn set_smp(ws: &Workspace, name: &str, smp: u32) -> Result<u32> {
    let paths = ws.vm(name)?;
    let mut state = vm::load_state(&paths)?;
    let before = state.profile.smp;
    state.profile.smp = smp;
    vm::save_state(&paths, &state)?;
    Ok(before)
}

/// Boots the VM again with `smp` vCPUs: a clean shutdown, the count in its state, a start that
/// waits for SSH. A count QEMU cannot start with is taken back and the VM started as it was.
async fn reboot_with(ws: &Workspace, name: &str, smp: u32, sink: &dyn Sink) -> Result<()> {
    let paths = ws.vm(name)?;
    sink.emit(Event::PhaseStarted { phase: "matrix boot".into(), detail: Some(format!("{name} with {smp} vCPUs")) });
    let stop = vm::stop(&paths, false, SHUTDOWN_TIMEOUT).await?;
    if stop.was_running && !stop.clean {
        sink.warning(format!("VM {name} did not shut down cleanly ({}) before its vCPU change", stop.how));
    }
    let before = set_smp(ws, name, smp)?;
    if let Err(e) = start_as_before(ws, name, sink).await {
        let _ = vm::stop(&paths, true, SHUTDOWN_TIMEOUT).await;
        set_smp(ws, name, before)?;
        if let Err(again) = start_as_before(ws, name, sink).await {
            sink.warning(format!(
                "VM {name} did not start again with its {before} vCPUs either: {}",
                crate::errors::chain(&again)
            ));
        }
        return Err(e);
    }
    Ok(())
}

/// Runs a short guest script over its own session, its output capped; a cut is a warning.
async fn guest_run(ws: &Workspace, name: &str, cmd: &GuestCommand, sink: &dyn Sink) -> Result<String> {
    let paths = ws.vm(name)?;
    let (_, session) = vm::connect(ws, &paths).await?;
    let line = cmd.render();
    let what = "validate --matrix's cpufreq script";
    let out = session.exec_with(&line, crate::ssh::ExecOptions::default().max_output(PROBE_OUTPUT_CAP)).await;
    session.close().await;
    let out = out.map_err(|source| OpError::Ssh { vm: name.to_string(), command: what.into(), source })?;
    if let Some(w) = out.cut_warning(what, PROBE_OUTPUT_CAP) {
        sink.warning(w);
    }
    if out.status != 0 {
        return Err(OpError::Failed {
            what: format!("{what} failed ({})", out.status),
            detail: crate::sanitize::line(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn read_cpufreq(ws: &Workspace, name: &str, sink: &dyn Sink) -> Result<Cpufreq> {
    let probe = GuestCommand::script(crate::templates::render("matrix-cpufreq-probe.sh.j2", &())?);
    let c = matrix::parse_cpufreq(&guest_run(ws, name, &probe, sink).await?);
    if c.unreadable_lines > 0 {
        sink.warning(format!("the guest's cpufreq probe printed {} line(s) that are no policy's", c.unreadable_lines));
    }
    Ok(c)
}

async fn set_governors(ws: &Workspace, name: &str, policies: &[PolicyGovernor], sink: &dyn Sink) -> Result<()> {
    if policies.is_empty() {
        return Ok(());
    }
    // Names are checked again here: only what matrix::parse_cpufreq / parse_axes let through.
    if !policies.iter().all(|p| matrix::valid_policy(&p.policy) && matrix::valid_governor(&p.governor)) {
        return Err(OpError::Invalid("a cpufreq policy or governor name that is not one".into()));
    }
    let root = vm::load_state(&ws.vm(name)?)?.profile.ssh.is_root();
    let script = crate::templates::render("matrix-set-governors.sh.j2", &serde_json::json!({ "policies": policies }))?;
    guest_run(ws, name, &GuestCommand::script(script).as_root(root), sink).await.map(|_| ())
}

/// Puts the recorded governors back on the policies the guest has now.
async fn restore_governors(ws: &Workspace, name: &str, recorded: &[PolicyGovernor], sink: &dyn Sink) -> Result<()> {
    if recorded.is_empty() {
        return Ok(());
    }
    let now = read_cpufreq(ws, name, sink).await?;
    set_governors(ws, name, &matrix::governors_to_restore(recorded, &now.current), sink).await
}

/// What every cell of one boot shares: the validate request, the guest's cpufreq as probed after
/// the boot, the governors to put back after a governed cell.
struct BootCells<'a> {
    base: &'a ValidateRequest,
    cpufreq: &'a Cpufreq,
    governors: &'a [PolicyGovernor],
}

/// One cell: its governor set on every policy (when it has one), its validate, the recorded
/// governors put back.
async fn run_cell(
    ws: &Workspace,
    name: &str,
    spec: &CellSpec,
    cell_dir: &Path,
    boot: &BootCells<'_>,
    sink: &dyn Sink,
) -> Result<crate::validate::report::Report> {
    let BootCells { base, cpufreq, governors } = boot;
    if let Some(g) = &spec.governor {
        if !cpufreq.available.iter().any(|x| x == g) {
            return Err(OpError::Invalid(format!(
                "governor {g} is not offered by the guest's cpufreq (available: {})",
                cpufreq.available.join(", ")
            )));
        }
        let all: Vec<PolicyGovernor> =
            cpufreq.current.iter().map(|p| PolicyGovernor { policy: p.policy.clone(), governor: g.clone() }).collect();
        set_governors(ws, name, &all, sink).await?;
    }
    let req = ValidateRequest { mode: Some(spec.mode), report_dir: Some(cell_dir.to_path_buf()), ..(*base).clone() };
    let result = validate_locked(ws, name, &req, sink).await;
    if spec.governor.is_some()
        && let Err(e) = restore_governors(ws, name, governors, sink).await
    {
        sink.warning(format!("the guest's cpufreq governors were not put back: {}", crate::errors::chain(&e)));
    }
    Ok(result?.report)
}

/// Puts the VM back as `restore` says: its vCPU count (a boot, also when it was left stopped),
/// its collector mode with its own config, its governors.
async fn put_back(ws: &Workspace, name: &str, restore: &Restore, sink: &dyn Sink) -> Result<()> {
    let paths = ws.vm(name)?;
    let state = vm::load_state(&paths)?;
    if state.profile.smp != restore.smp {
        reboot_with(ws, name, restore.smp, sink).await?;
    } else if vm::running_pid(&paths).is_none() {
        start_as_before(ws, name, sink).await?;
    }
    let install = InstallRequest { name: Some(name.to_string()), mode: Some(restore.mode), ..Default::default() };
    collector_install_locked(ws, name, &install, &Silent).await?;
    restore_governors(ws, name, &restore.governors, sink).await
}

pub async fn validate_matrix(ws: &Workspace, req: &MatrixRequest, sink: &dyn Sink) -> Result<MatrixOutcome> {
    let name = super::pick_vm(ws, req.validate.name.as_deref())?;
    check_request(&req.validate)?;
    let paths = ws.vm(&name)?;
    let dir = req.validate.report_dir.clone().unwrap_or_else(|| paths.validate_matrix_dir.clone());
    let _lock = super::lock_vm(ws, &name, sink).await?;
    let state = vm::load_state(&paths)?;
    let previous = matrix::read(&dir).map_err(|e| {
        OpError::Invalid(format!("{e}: the matrix report cannot be read; remove it or give another --report"))
    })?;
    // A matrix interrupted earlier may have left this VM changed: what it recorded is how the
    // VM was before it, also for a fresh run over it. Another VM's report says nothing of this one.
    let inherited = previous.as_ref().filter(|p| !p.complete && p.is_of(&name, &state.profile.name));
    let own_smp = inherited.map_or(state.profile.smp, |p| p.restore.smp);
    let own_mode = inherited.map_or(state.collector_mode, |p| p.restore.mode);
    let axes = matrix::parse_axes(&req.axes, own_smp, own_mode).map_err(OpError::Invalid)?;
    let settings = settings_of(&req.validate);
    if req.resume {
        match &previous {
            None => {
                return Err(OpError::Invalid(format!(
                    "--resume: no matrix to go on with in {} (no {})",
                    dir.display(),
                    matrix::REPORT_FILE
                )));
            }
            Some(p) => {
                if let Some(why) = p.resume_mismatch(&name, &state.profile.name, &axes, &settings) {
                    return Err(OpError::Invalid(format!(
                        "--resume: the matrix in {} is another one: {why}; run without --resume to start over",
                        dir.display()
                    )));
                }
            }
        }
    }
    if vm::running_pid(&paths).is_none() {
        // An interrupted matrix may have stopped the VM on its way to another vCPU count.
        if inherited.is_none() {
            return Err(OpError::Invalid(format!(
                "VM {name} is not running: start it first (sysmonvm vm start {name} --wait)"
            )));
        }
        start_as_before(ws, &name, sink).await?;
    }
    let restore = match inherited {
        Some(p) => p.restore.clone(),
        None => Restore {
            smp: state.profile.smp,
            mode: state.collector_mode,
            governors: read_cpufreq(ws, &name, sink).await?.current,
        },
    };
    let mut report = match (req.resume, previous) {
        (true, Some(p)) => MatrixReport { complete: false, finished: None, ..p },
        _ => {
            // A fresh run: the cells of an earlier one go, so no old chart or report is linked.
            let cells = dir.join(matrix::CELLS_DIR);
            if cells.exists() {
                std::fs::remove_dir_all(&cells).map_err(OpError::io(format!("removing {}", cells.display())))?;
            }
            MatrixReport {
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
            }
        }
    };
    // Written before anything changes: `restore` must survive whatever comes next.
    write_report(&dir, &report)?;
    let ran = run_cells(ws, &name, req, &dir, &axes, &mut report, sink).await;
    let restore = report.restore.clone();
    let back = put_back(ws, &name, &restore, sink).await;
    match (ran, back) {
        (Ok(()), Ok(())) => {}
        (Ok(()), Err(e)) => return Err(e),
        (Err(e), back) => {
            if let Err(b) = back {
                sink.warning(format!(
                    "the VM was not put back as it was before the matrix ({} vCPUs, {} mode): {}",
                    restore.smp,
                    restore.mode.as_str(),
                    crate::errors::chain(&b)
                ));
            }
            sink.warning(format!(
                "the matrix stopped; what it finished is in {}: run the same command with --resume to go on",
                dir.display()
            ));
            return Err(e);
        }
    }
    report.complete = true;
    report.finished = Some(rfc3339(now()));
    report.summary = matrix::MatrixSummary::of(&report.cells);
    write_report(&dir, &report)?;
    Ok(MatrixOutcome { report, report_dir: dir })
}

/// Every vCPU count's cells, the report written after each. An error here (a boot that fails,
/// the report that cannot be written) ends the matrix; a cell's own failure does not.
async fn run_cells(
    ws: &Workspace,
    name: &str,
    req: &MatrixRequest,
    dir: &Path,
    axes: &matrix::Axes,
    report: &mut MatrixReport,
    sink: &dyn Sink,
) -> Result<()> {
    let mut total = matrix::max_cells(axes);
    let mut ran = 0usize;
    let paths = ws.vm(name)?;
    for smp in matrix::smp_order(axes, vm::load_state(&paths)?.profile.smp) {
        // Cells finished before an interruption are kept; a vCPU count with all its cells kept
        // needs no boot (with governors, whether they applied is known from the kept report).
        let known_axis = report.governor_axis.iter().find(|g| g.smp == smp).cloned();
        let planned = matrix::cells_for(axes, smp, known_axis.as_ref().is_none_or(|g| g.applicable));
        if req.resume && planned.iter().all(|c| report.finished_cell(&c.id()).is_some()) {
            ran += planned.len();
            sink.info(format!("matrix: smp={smp}: every cell was finished before, kept"));
            continue;
        }
        if vm::load_state(&paths)?.profile.smp != smp {
            reboot_with(ws, name, smp, sink).await?;
            // A boot resets the governors the bootstrap (or the user) set.
            restore_governors(ws, name, &report.restore.governors, sink).await?;
        }
        let cpufreq = match read_cpufreq(ws, name, sink).await {
            Ok(c) => c,
            Err(e) => {
                // This vCPU count's cells cannot know their governors: each is an error row.
                let why = format!("reading the guest's cpufreq: {}", crate::errors::chain(&e));
                for spec in planned {
                    ran += 1;
                    let at = rfc3339(now());
                    report.record(matrix::cell_failed(spec, why.clone(), &at, &at));
                }
                write_report(dir, report)?;
                continue;
            }
        };
        let axis: Option<GovernorAxis> = (!axes.governor.is_empty()).then(|| matrix::governor_axis(smp, &cpufreq));
        if let Some(a) = &axis {
            report.governor_axis.retain(|g| g.smp != smp);
            report.governor_axis.push(a.clone());
            if !a.applicable {
                // Each mode runs once here instead of once per governor.
                total -= axes.mode.len() * (axes.governor.len() - 1);
            }
        }
        for spec in matrix::cells_for(axes, smp, axis.as_ref().is_none_or(|a| a.applicable)) {
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
            let cell_dir = dir.join(matrix::CELLS_DIR).join(&id);
            if cell_dir.exists() {
                // An earlier, unfinished run of this cell: none of its files may pass for this one's.
                std::fs::remove_dir_all(&cell_dir).map_err(OpError::io(format!("removing {}", cell_dir.display())))?;
            }
            let started = rfc3339(now());
            let governors = report.restore.governors.clone();
            let boot = BootCells { base: &req.validate, cpufreq: &cpufreq, governors: &governors };
            let cell = match run_cell(ws, name, &spec, &cell_dir, &boot, sink).await {
                Ok(r) => matrix::cell_of(spec, &r, &started),
                Err(e) => {
                    let why = crate::errors::chain(&e);
                    sink.warning(format!("matrix: {id} did not finish: {why}"));
                    matrix::cell_failed(spec, why, &started, &rfc3339(now()))
                }
            };
            sink.info(format!("matrix: {id}: {}", cell.verdict));
            report.record(cell);
            write_report(dir, report)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_governor_script_quotes_what_it_writes_and_names_what_refused() {
        let pg = |p: &str, g: &str| PolicyGovernor { policy: p.into(), governor: g.into() };
        let script = crate::templates::render(
            "matrix-set-governors.sh.j2",
            &serde_json::json!({ "policies": [pg("policy0", "performance"), pg("policy4", "schedutil")] }),
        )
        .unwrap();
        assert!(
            script.contains(
                "printf '%s\\n' 'performance' > /sys/devices/system/cpu/cpufreq/'policy0'/scaling_governor 2>/dev/null \
                 || failed=\"$failed policy0=performance\""
            ),
            "{script}"
        );
        assert!(script.contains("/sys/devices/system/cpu/cpufreq/'policy4'/scaling_governor"), "{script}");
        assert!(script.contains("exit 1"), "{script}");
    }
}
