//! `validate --matrix`: the axes (`smp=1,2 mode=native,container governor=performance`), the
//! cells they make, what each cell's validate report is summed up to, the matrix report over all
//! cells (`matrix.json`, `matrix.md`, `matrix.html`, each cell's own report in `cells/ID/`), and
//! its exit status. Pure: `ops::matrix` boots, installs and runs the cells.

use super::checks::Verdict;
use super::report::{self, CollectorSeen, Report, Settings};
use crate::guest::collector_mode::CollectorMode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const SCHEMA: &str = "sysmonvm-validate-matrix/1";
/// The matrix report's file in its directory; `--resume` reads it back.
pub const REPORT_FILE: &str = "matrix.json";
/// Where each cell's own report goes, below the matrix's directory.
pub const CELLS_DIR: &str = "cells";
/// The most values an axis takes: a matrix is run cell by cell, each a whole validate.
pub const MAX_VALUES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axes {
    /// vCPU counts: one boot each.
    pub smp: Vec<u32>,
    pub mode: Vec<CollectorMode>,
    /// cpufreq governors; empty: the axis is not asked for.
    pub governor: Vec<String>,
}

/// A governor's name as cpufreq spells them (`performance`, `schedutil`, `conservative`): it is
/// written to sysfs by a guest script, so nothing else passes.
pub fn valid_governor(g: &str) -> bool {
    !g.is_empty() && g.len() <= 32 && g.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses `AXIS=V1,V2` words. An axis left out takes the VM's own value (`smp`, `mode`) or is
/// not varied (`governor`).
pub fn parse_axes(words: &[String], own_smp: u32, own_mode: CollectorMode) -> Result<Axes, String> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for w in words {
        let (axis, values) =
            w.split_once('=').ok_or_else(|| format!("{w:?}: write AXIS=V1,V2 (axes: smp, mode, governor)"))?;
        if !["smp", "mode", "governor"].contains(&axis) {
            return Err(format!("{axis:?} is not an axis: smp, mode or governor"));
        }
        let values: Vec<&str> = values.split(',').map(str::trim).collect();
        if values.iter().any(|v| v.is_empty()) {
            return Err(format!("{w:?}: an empty value"));
        }
        if values.len() > MAX_VALUES {
            return Err(format!("{axis}: {} values, at most {MAX_VALUES}", values.len()));
        }
        let mut unique = values.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != values.len() {
            return Err(format!("{w:?}: a value given twice"));
        }
        if seen.insert(axis, values).is_some() {
            return Err(format!("axis {axis} given twice: give its values once, comma-separated"));
        }
    }
    let smp: Vec<u32> = match seen.get("smp") {
        None => vec![own_smp],
        Some(v) => v
            .iter()
            .map(|s| match s.parse::<u32>() {
                Ok(n) if (1..=512).contains(&n) => Ok(n),
                _ => Err(format!("smp={s}: a vCPU count is a number from 1 to 512")),
            })
            .collect::<Result<Vec<u32>, _>>()?,
    };
    // `02` and `2` are one count: checked again as numbers.
    if (1..smp.len()).any(|i| smp[..i].contains(&smp[i])) {
        return Err("smp: a vCPU count given twice".into());
    }
    let mode = match seen.get("mode") {
        None => vec![own_mode],
        Some(v) => v
            .iter()
            .map(|s| {
                CollectorMode::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = CollectorMode::ALL.iter().map(|m| m.as_str()).collect();
                    format!("mode={s}: one of {}", all.join(", "))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let governor = match seen.get("governor") {
        None => Vec::new(),
        Some(v) => v
            .iter()
            .map(|g| {
                if valid_governor(g) {
                    Ok(g.to_string())
                } else {
                    Err(format!("governor={g}: a cpufreq governor's name (lower-case letters, digits, _)"))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Axes { smp, mode, governor })
}

/// The vCPU counts in the order they are booted: the VM's own count first (no boot for it),
/// then the others as given.
pub fn smp_order(axes: &Axes, own_smp: u32) -> Vec<u32> {
    let mut v: Vec<u32> = axes.smp.iter().copied().filter(|n| *n == own_smp).collect();
    v.extend(axes.smp.iter().copied().filter(|n| *n != own_smp));
    v
}

/// One cell: a vCPU count, a collector mode and, where the guest has cpufreq and the axis was
/// asked for, a governor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpec {
    pub smp: u32,
    pub mode: CollectorMode,
    pub governor: Option<String>,
}

impl CellSpec {
    /// The cell's name and its report's directory under [`CELLS_DIR`]: `smp2-container-sys-ro`,
    /// `smp2-native-performance`.
    pub fn id(&self) -> String {
        let mut id = format!("smp{}-{}", self.smp, self.mode.as_str());
        if let Some(g) = &self.governor {
            id = format!("{id}-{g}");
        }
        id
    }
}

/// Whether the governor axis applies to the guest booted with `smp` vCPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernorAxis {
    pub smp: u32,
    pub applicable: bool,
    /// The governors the guest's cpufreq offers (its policies' `scaling_available_governors`).
    pub available: Vec<String>,
    /// Why not, when not applicable.
    pub why: Option<String>,
}

/// One cpufreq policy's governor, as the guest's probe printed it (`policy0`, `schedutil`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyGovernor {
    pub policy: String,
    pub governor: String,
}

/// A policy directory's name as the kernel makes them: `policy` and a number.
pub fn valid_policy(p: &str) -> bool {
    p.strip_prefix("policy").is_some_and(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The guest's cpufreq as its probe printed it (`policyN CURRENT: AVAILABLE…` lines, guest text):
/// each policy's current governor, and what the policies offer. Lines that are not that shape
/// are left out (a warning then says how many).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpufreq {
    pub current: Vec<PolicyGovernor>,
    pub available: Vec<String>,
    pub unreadable_lines: usize,
}

pub fn parse_cpufreq(probe: &str) -> Cpufreq {
    let mut c = Cpufreq::default();
    for line in probe.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line.split_once(':').and_then(|(head, governors)| {
            let (policy, current) = head.trim().split_once(' ')?;
            (valid_policy(policy) && valid_governor(current)).then_some((policy, current, governors))
        });
        let Some((policy, current, governors)) = parsed else {
            c.unreadable_lines += 1;
            continue;
        };
        c.current.push(PolicyGovernor { policy: policy.into(), governor: current.into() });
        for g in governors.split_whitespace().filter(|g| valid_governor(g)) {
            if !c.available.iter().any(|a| a == g) {
                c.available.push(g.to_string());
            }
        }
    }
    c
}

/// Whether the governor axis applies to the guest booted with `smp` vCPUs: with no policy, it
/// does not and each mode runs once, ungoverned.
pub fn governor_axis(smp: u32, cpufreq: &Cpufreq) -> GovernorAxis {
    let applicable = !cpufreq.current.is_empty();
    let why = (!applicable).then(|| {
        "no cpufreq driver in the guest (no /sys/devices/system/cpu/cpufreq/policy*): the governor axis is not \
         applicable, each mode ran once"
            .to_string()
    });
    GovernorAxis { smp, applicable, available: cpufreq.available.clone(), why }
}

/// What to write to put the VM's governors back (`recorded`, read before the matrix changed
/// anything) on the policies it has now (`now`): each policy its recorded governor, a policy
/// that was not there then (more vCPUs now) the first recorded one.
pub fn governors_to_restore(recorded: &[PolicyGovernor], now: &[PolicyGovernor]) -> Vec<PolicyGovernor> {
    let Some(first) = recorded.first() else { return Vec::new() };
    now.iter()
        .map(|p| {
            let want = recorded.iter().find(|r| r.policy == p.policy).unwrap_or(first);
            PolicyGovernor { policy: p.policy.clone(), governor: want.governor.clone() }
        })
        .filter(|want| !now.contains(want))
        .collect()
}

/// The cells of one vCPU count, modes in the order given, governors inside each mode (none when
/// the axis was not asked for or does not apply).
pub fn cells_for(axes: &Axes, smp: u32, governors_apply: bool) -> Vec<CellSpec> {
    let governors: Vec<Option<String>> = if axes.governor.is_empty() || !governors_apply {
        vec![None]
    } else {
        axes.governor.iter().cloned().map(Some).collect()
    };
    axes.mode
        .iter()
        .flat_map(|m| governors.iter().map(move |g| CellSpec { smp, mode: *m, governor: g.clone() }))
        .collect()
}

/// How many validate runs a matrix can take at most (for progress): governors counted as applying.
pub fn max_cells(axes: &Axes) -> usize {
    axes.smp.len() * axes.mode.len() * axes.governor.len().max(1)
}

/// A check name's verdicts in one cell, over its phases and CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub pass: usize,
    pub fail: usize,
    pub not_comparable: usize,
    pub info: usize,
}

impl Tally {
    /// `FAIL 1/6`, `pass 6/6`, `n/c`, `info` — the worst verdict first.
    pub fn word(&self) -> String {
        let judged = self.pass + self.fail;
        if self.fail > 0 {
            format!("FAIL {}/{judged}", self.fail)
        } else if self.pass > 0 {
            format!("pass {}/{judged}", self.pass)
        } else if self.not_comparable > 0 {
            "n/c".into()
        } else {
            "info".into()
        }
    }
}

/// One cell's outcome, as the matrix's table shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub id: String,
    #[serde(flatten)]
    pub spec: CellSpec,
    /// `pass`, `fail`, `nothing comparable` (validate's verdict) or `error` (the run did not finish).
    pub verdict: String,
    /// validate's exit status for this cell; 1 for an error.
    pub exit_status: i32,
    /// Why the run did not finish (the error's chain), when it did not.
    pub error: Option<String>,
    /// Every frequency source the collector named.
    pub frequency_sources: Vec<String>,
    /// The collector's failing sources: the metric families it could not read, with why.
    pub missing: Vec<report::FailedSource>,
    /// The largest p95 error of the usage-vs-/proc/stat checks (percentage points).
    pub usage_error_p95: Option<f64>,
    /// Per check name, its verdicts over phases and CPUs.
    pub checks: BTreeMap<String, Tally>,
    pub snapshots: usize,
    /// The cell's own report, relative to the matrix's directory.
    pub report_dir: String,
    pub started: String,
    pub finished: String,
}

/// A cell's row from its finished validate report.
pub fn cell_of(spec: CellSpec, r: &Report, started: &str) -> Cell {
    let mut checks: BTreeMap<String, Tally> = BTreeMap::new();
    for c in &r.checks {
        let t = checks.entry(c.name.clone()).or_default();
        match c.verdict {
            Verdict::Pass => t.pass += 1,
            Verdict::Fail => t.fail += 1,
            Verdict::NotComparable => t.not_comparable += 1,
            Verdict::Info => t.info += 1,
        }
    }
    let usage_error_p95 = r
        .checks
        .iter()
        .filter(|c| c.name == "usage-vs-proc-stat")
        .filter_map(|c| c.error.as_ref().map(|e| e.p95))
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let CollectorSeen { frequency_sources, sources_failed, snapshots, .. } = r.collector.clone();
    Cell {
        id: spec.id(),
        report_dir: format!("{CELLS_DIR}/{}", spec.id()),
        spec,
        verdict: r.summary.verdict.clone(),
        exit_status: r.summary.exit_status,
        error: None,
        frequency_sources,
        missing: sources_failed,
        usage_error_p95,
        checks,
        snapshots,
        started: started.to_string(),
        finished: r.finished.clone(),
    }
}

/// A cell whose run did not finish: its error is its row.
pub fn cell_failed(spec: CellSpec, error: String, started: &str, finished: &str) -> Cell {
    Cell {
        id: spec.id(),
        report_dir: format!("{CELLS_DIR}/{}", spec.id()),
        spec,
        verdict: "error".into(),
        exit_status: crate::exit::ERROR,
        error: Some(error),
        frequency_sources: Vec::new(),
        missing: Vec::new(),
        usage_error_p95: None,
        checks: BTreeMap::new(),
        snapshots: 0,
        started: started.to_string(),
        finished: finished.to_string(),
    }
}

/// How the VM was before the matrix, put back at its end (kept across `--resume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub smp: u32,
    pub mode: CollectorMode,
    /// Each cpufreq policy's governor before the matrix (empty without cpufreq); put back after
    /// every boot (a boot resets what the bootstrap set) and at the end.
    #[serde(default)]
    pub governors: Vec<PolicyGovernor>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixSummary {
    pub cells: usize,
    pub pass: usize,
    pub fail: usize,
    pub nothing_comparable: usize,
    pub errors: usize,
    /// Over all cells, as for validate: 1 when a cell failed or did not finish, else 3 when no
    /// cell passed, else 0.
    pub exit_status: i32,
    pub verdict: String,
}

impl MatrixSummary {
    pub fn of(cells: &[Cell]) -> MatrixSummary {
        let n = |v: &str| cells.iter().filter(|c| c.verdict == v).count();
        let (pass, fail, nothing_comparable, errors) = (n("pass"), n("fail"), n("nothing comparable"), n("error"));
        let exit_status = if fail + errors > 0 {
            crate::exit::ERROR
        } else if pass == 0 {
            crate::exit::NOT_READY
        } else {
            crate::exit::OK
        };
        let verdict = match exit_status {
            0 => "pass",
            1 => "fail",
            _ => "nothing comparable",
        };
        MatrixSummary {
            cells: cells.len(),
            pass,
            fail,
            nothing_comparable,
            errors,
            exit_status,
            verdict: verdict.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    pub schema: String,
    pub vm: String,
    pub profile: String,
    pub accel: String,
    pub started: String,
    pub finished: Option<String>,
    /// False while cells are still to run (an interrupted matrix; `--resume` goes on).
    pub complete: bool,
    pub axes: Axes,
    pub settings: Settings,
    pub restore: Restore,
    /// Per vCPU count booted, whether the governor axis applied (present when it was asked for).
    pub governor_axis: Vec<GovernorAxis>,
    pub cells: Vec<Cell>,
    pub summary: MatrixSummary,
}

impl MatrixReport {
    /// A finished cell of a resumed matrix (one with a verdict; cells that ended in an error run again).
    pub fn finished_cell(&self, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.id == id && c.error.is_none())
    }

    /// Puts `cell` in, in the order cells ran: an earlier run of it (one that ended in an error,
    /// run again by `--resume`) goes.
    pub fn record(&mut self, cell: Cell) {
        self.cells.retain(|c| c.id != cell.id);
        self.cells.push(cell);
        self.summary = MatrixSummary::of(&self.cells);
    }

    /// Whether this (unfinished) report is of VM `vm` with profile `profile`: only then is its
    /// `restore` how that VM was before, and only then can `--resume` go on with it.
    pub fn is_of(&self, vm: &str, profile: &str) -> bool {
        self.vm == vm && self.profile == profile
    }

    /// Why `--resume` cannot go on with this report under `axes` and `settings`, if it cannot.
    pub fn resume_mismatch(&self, vm: &str, profile: &str, axes: &Axes, settings: &Settings) -> Option<String> {
        if self.schema != SCHEMA {
            return Some(format!("it is a {} report, not {SCHEMA}", crate::sanitize::line(&self.schema)));
        }
        if !self.is_of(vm, profile) {
            return Some(format!(
                "it is of VM {} ({}), not {vm} ({profile})",
                crate::sanitize::line(&self.vm),
                crate::sanitize::line(&self.profile)
            ));
        }
        if &self.axes != axes {
            return Some(format!("its axes were {} and these are {}", axes_text(&self.axes), axes_text(axes)));
        }
        let mine = serde_json::to_value(settings).ok();
        if serde_json::to_value(&self.settings).ok() != mine {
            return Some(
                "its phases, durations, interval, tolerance or quota differ from this run's: give the same flags"
                    .into(),
            );
        }
        None
    }
}

pub fn axes_text(a: &Axes) -> String {
    let smp: Vec<String> = a.smp.iter().map(|n| n.to_string()).collect();
    let mode: Vec<&str> = a.mode.iter().map(|m| m.as_str()).collect();
    let mut s = format!("smp={} mode={}", smp.join(","), mode.join(","));
    if !a.governor.is_empty() {
        s += &format!(" governor={}", a.governor.join(","));
    }
    s
}

/// The failing sources, `network (12/40), host (40/40)`; their names are guest text: each one
/// goes through `escape` (Markdown's, HTML's or the terminal's).
pub fn missing_text(c: &Cell, escape: &dyn Fn(&str) -> String) -> String {
    if c.error.is_some() {
        return "-".into();
    }
    if c.missing.is_empty() {
        return "none".into();
    }
    c.missing
        .iter()
        .map(|m| format!("{} ({}/{})", escape(&m.source), m.failed, c.snapshots))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_names(r: &MatrixReport) -> Vec<String> {
    let mut names: Vec<String> = r.cells.iter().flat_map(|c| c.checks.keys().cloned()).collect();
    names.sort();
    names.dedup();
    names
}

/// Guest text in matrix.md: one inert line, at most 400 characters.
fn md_cell(s: &str) -> String {
    crate::sanitize::markdown(s, 400)
}

pub fn markdown(r: &MatrixReport) -> String {
    let mut s = format!(
        "# sysmonvm validate --matrix: {}\n\nVM `{}` ({}, accelerator {}), {} → {}. Axes: {}. Each cell: phases {}, {:.0} s each, readings every {:.1} s, tolerance ±{} %.\n\n**{} cells: {} pass, {} fail, {} nothing comparable, {} did not finish.** Exit status {}.{}\n\n",
        r.summary.verdict.to_uppercase(),
        r.vm,
        r.profile,
        r.accel,
        r.started,
        r.finished.as_deref().unwrap_or("(not finished: run again with --resume)"),
        axes_text(&r.axes),
        r.settings.phases.join(", "),
        r.settings.duration_per_phase_s,
        r.settings.interval_s,
        r.settings.tolerance_pct,
        r.summary.cells,
        r.summary.pass,
        r.summary.fail,
        r.summary.nothing_comparable,
        r.summary.errors,
        r.summary.exit_status,
        if r.complete { "" } else { " **Incomplete**: cells are still to run." }
    );
    for g in &r.governor_axis {
        match &g.why {
            Some(why) => s += &format!("- governor axis at smp={}: not applicable: {why}\n", g.smp),
            None => {
                s += &format!("- governor axis at smp={}: applies (available: {})\n", g.smp, g.available.join(", "))
            }
        }
    }
    if !r.governor_axis.is_empty() {
        s += "\n";
    }
    let names = check_names(r);
    s += "| cell | smp | mode | governor | verdict | frequency source | metric families missing | usage error p95 |";
    for n in &names {
        s += &format!(" {n} |");
    }
    s += "\n|---|---|---|---|---|---|---|---|";
    s += &"---|".repeat(names.len());
    s += "\n";
    for c in &r.cells {
        s += &format!(
            "| [{}]({}/report.md) | {} | {} | {} | {} | {} | {} | {} |",
            c.id,
            c.report_dir,
            c.spec.smp,
            c.spec.mode.as_str(),
            c.spec.governor.as_deref().unwrap_or("-"),
            if c.verdict == "error" { "ERROR".to_string() } else { c.verdict.clone() },
            if c.frequency_sources.is_empty() { "-".into() } else { c.frequency_sources.join(", ") },
            missing_text(c, &md_cell),
            c.usage_error_p95.map(|e| format!("{e:.2} pp")).unwrap_or_else(|| "-".into()),
        );
        for n in &names {
            s += &format!(" {} |", c.checks.get(n).map(Tally::word).unwrap_or_else(|| "-".into()));
        }
        s += "\n";
    }
    let notes: Vec<String> = r
        .cells
        .iter()
        .flat_map(|c| {
            let err = c.error.iter().map(move |e| format!("- **{}** did not finish: {}", c.id, md_cell(e)));
            let why = c.missing.iter().map(move |m| format!("- {}: {}: {}", c.id, md_cell(&m.source), md_cell(&m.why)));
            err.chain(why)
        })
        .collect();
    if !notes.is_empty() {
        s += "\nWhy, per cell (the first warning of each failing source, as the collector wrote it):\n\n";
        s += &notes.join("\n");
        s += "\n";
    }
    s += "\nEach cell's own report (JSON, Markdown, HTML with its charts) is in `cells/ID/`. Verdicts as in `sysmonvm validate`; a cell that did not finish is an error and does not stop the others.\n";
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The matrix as HTML: the table, then each cell's charts (its own SVG files, as its report
/// wrote them; `charts` maps a cell id to them).
pub fn html(r: &MatrixReport, charts: &BTreeMap<String, Vec<String>>) -> String {
    let names = check_names(r);
    let mut table = String::from(
        "<table><tr><th>cell</th><th>smp</th><th>mode</th><th>governor</th><th>verdict</th><th>frequency source</th><th>metric families missing</th><th>usage error p95</th>",
    );
    for n in &names {
        table += &format!("<th>{}</th>", esc(n));
    }
    table += "</tr>\n";
    for c in &r.cells {
        let class = match c.verdict.as_str() {
            "pass" => "pass",
            "fail" | "error" => "fail",
            _ => "nc",
        };
        table += &format!(
            "<tr class=\"{class}\"><td><a href=\"{}/report.html\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"v\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&c.report_dir),
            esc(&c.id),
            c.spec.smp,
            c.spec.mode.as_str(),
            esc(c.spec.governor.as_deref().unwrap_or("-")),
            esc(&c.verdict),
            esc(&if c.frequency_sources.is_empty() { "-".into() } else { c.frequency_sources.join(", ") }),
            missing_text(c, &|x| esc(&crate::sanitize::line(x))),
            c.usage_error_p95.map(|e| format!("{e:.2} pp")).unwrap_or_else(|| "-".into()),
        );
        for n in &names {
            table += &format!("<td>{}</td>", esc(&c.checks.get(n).map(Tally::word).unwrap_or_else(|| "-".into())));
        }
        table += "</tr>\n";
    }
    table += "</table>\n";
    let md = markdown(r);
    let head = md.split("| cell").next().unwrap_or("");
    let notes = md.split("Why, per cell").nth(1).map(|n| format!("Why, per cell{n}")).unwrap_or_default();
    let mut figures = String::new();
    for c in &r.cells {
        figures += &format!("<h2 id=\"{0}\">{0}: {1}</h2>\n", esc(&c.id), esc(&c.verdict));
        if let Some(e) = &c.error {
            figures += &format!("<p>did not finish: {}</p>\n", esc(&crate::sanitize::line(e)));
        }
        for svg in charts.get(&c.id).into_iter().flatten() {
            figures += &format!("<figure>{svg}</figure>\n");
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sysmonvm validate --matrix {}</title><style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}tr.pass td.v{{color:#070}}tr.fail td.v{{color:#b00;font-weight:bold}}tr.nc td.v{{color:#777}}</style></head><body>\n<pre style=\"white-space:pre-wrap\">{}</pre>\n{}<pre style=\"white-space:pre-wrap\">{}</pre>\n{}</body></html>\n",
        esc(&r.vm),
        esc(head.trim()),
        table,
        esc(notes.trim()),
        figures
    )
}

/// The chart files a cell's report wrote beside it (`report::charts`' names), read back.
pub fn cell_charts(dir: &Path) -> Vec<String> {
    ["frequency.svg", "usage.svg", "throttle.svg"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .filter(|svg| svg.starts_with("<svg"))
        .collect()
}

/// Writes `matrix.json`, `matrix.md` and `matrix.html` into `dir` (after every cell, so an
/// interrupted matrix leaves what it finished).
pub fn write(dir: &Path, r: &MatrixReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let charts: BTreeMap<String, Vec<String>> =
        r.cells.iter().map(|c| (c.id.clone(), cell_charts(&dir.join(&c.report_dir)))).collect();
    let json = serde_json::to_string_pretty(r)? + "\n";
    // Written whole then renamed: an interruption mid-write must not lose the finished cells.
    let tmp = dir.join(format!("{REPORT_FILE}.tmp"));
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, dir.join(REPORT_FILE))?;
    std::fs::write(dir.join("matrix.md"), markdown(r))?;
    std::fs::write(dir.join("matrix.html"), html(r, &charts))
}

/// Reads a matrix report back (`--resume`); None when there is none.
pub fn read(dir: &Path) -> Result<Option<MatrixReport>, String> {
    let path = dir.join(REPORT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| format!("{}: line {}: {e}", path.display(), e.line()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn axes_parse_with_the_vms_own_values_for_what_is_left_out() {
        let a = parse_axes(&words("smp=1,2 mode=native,container-sys-ro"), 2, CollectorMode::Native).unwrap();
        assert_eq!(a.smp, [1, 2]);
        assert_eq!(a.mode, [CollectorMode::Native, CollectorMode::ContainerSysRo]);
        assert!(a.governor.is_empty());
        let own = parse_axes(&words("governor=performance,schedutil"), 4, CollectorMode::Container).unwrap();
        assert_eq!((own.smp, own.mode), (vec![4], vec![CollectorMode::Container]));
        for (bad, says) in [
            ("smp=2,02", "a vCPU count given twice"),
            ("smp=0", "from 1 to 512"),
            ("smp=two", "from 1 to 512"),
            ("mode=sys-ro", "one of native, container, container-sys-ro, privileged"),
            ("cpus=2", "not an axis"),
            ("smp", "AXIS=V1,V2"),
            ("smp=1,,2", "empty value"),
            ("smp=1,1", "given twice"),
            ("smp=1 smp=2", "axis smp given twice"),
            ("governor=perf;reboot", "a cpufreq governor's name"),
            ("governor=$(id)", "a cpufreq governor's name"),
        ] {
            let e = parse_axes(&words(bad), 2, CollectorMode::Native).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_vms_own_vcpu_count_runs_first_and_cells_nest_governors_in_modes() {
        let a = parse_axes(
            &words("smp=1,2,4 mode=native,container governor=performance,powersave"),
            2,
            CollectorMode::Native,
        )
        .unwrap();
        assert_eq!(smp_order(&a, 2), [2, 1, 4]);
        assert_eq!(smp_order(&a, 8), [1, 2, 4]);
        let ids: Vec<String> = cells_for(&a, 1, true).iter().map(CellSpec::id).collect();
        assert_eq!(
            ids,
            [
                "smp1-native-performance",
                "smp1-native-powersave",
                "smp1-container-performance",
                "smp1-container-powersave"
            ]
        );
        let ids: Vec<String> = cells_for(&a, 1, false).iter().map(CellSpec::id).collect();
        assert_eq!(ids, ["smp1-native", "smp1-container"], "no cpufreq: each mode once");
        assert_eq!(max_cells(&a), 12);
    }

    #[test]
    fn the_governor_axis_applies_only_with_cpufreq_policies() {
        // The x86_64 tcg test guest: no policy directories, the probe prints nothing.
        let none = governor_axis(2, &parse_cpufreq(""));
        assert!(!none.applicable && none.why.as_deref().is_some_and(|w| w.contains("no cpufreq driver")));
        let probe = "policy0 schedutil: performance schedutil\npolicy1 performance: performance schedutil\n";
        let c = parse_cpufreq(probe);
        let some = governor_axis(2, &c);
        assert!(some.applicable && some.why.is_none());
        assert_eq!(some.available, ["performance", "schedutil"]);
        assert_eq!(c.current[1], PolicyGovernor { policy: "policy1".into(), governor: "performance".into() });
        // Guest text that is not a policy line is left out and counted, never run back.
        let hostile =
            parse_cpufreq("policy0 $(reboot): x\n../../etc schedutil: a\npolicy0\npolicy2 ondemand: ondemand\n");
        assert_eq!(hostile.unreadable_lines, 3);
        assert_eq!(hostile.current, [PolicyGovernor { policy: "policy2".into(), governor: "ondemand".into() }]);
    }

    #[test]
    fn governors_are_put_back_as_recorded_and_new_policies_take_the_first() {
        let pg = |p: &str, g: &str| PolicyGovernor { policy: p.into(), governor: g.into() };
        let recorded = [pg("policy0", "schedutil"), pg("policy1", "schedutil")];
        let now = [pg("policy0", "performance"), pg("policy1", "schedutil"), pg("policy2", "powersave")];
        assert_eq!(governors_to_restore(&recorded, &now), [pg("policy0", "schedutil"), pg("policy2", "schedutil")]);
        assert!(governors_to_restore(&[], &now).is_empty(), "no cpufreq before: nothing to put back");
        assert!(governors_to_restore(&recorded, &recorded).is_empty());
    }

    fn cell(id: &str, verdict: &str) -> Cell {
        let spec = CellSpec { smp: 1, mode: CollectorMode::Native, governor: None };
        let mut c = cell_failed(spec, "x".into(), "a", "b");
        c.id = id.into();
        c.verdict = verdict.into();
        if verdict != "error" {
            c.error = None;
        }
        c
    }

    #[test]
    fn the_exit_status_over_cells_is_validates() {
        assert_eq!(MatrixSummary::of(&[cell("a", "pass"), cell("b", "nothing comparable")]).exit_status, 0);
        assert_eq!(MatrixSummary::of(&[cell("a", "pass"), cell("b", "fail")]).exit_status, 1);
        let s = MatrixSummary::of(&[cell("a", "pass"), cell("b", "error")]);
        assert_eq!((s.exit_status, s.errors, s.verdict.as_str()), (1, 1, "fail"));
        assert_eq!(MatrixSummary::of(&[cell("a", "nothing comparable")]).exit_status, 3);
    }
}
