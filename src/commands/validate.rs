//! `validate` and `validate --matrix`.

use super::render::{Terminal, block_on, print_json, safe};
use crate::{Exit, ValidateArgs};
use sysmonvm::ops::matrix::{MatrixRequest, validate_matrix};
use sysmonvm::ops::validate::{ValidateRequest, validate};
use sysmonvm::validate::checks::Verdict;
use sysmonvm::workspace::Workspace;

pub fn run(ws: &Workspace, a: ValidateArgs, json: bool) -> Exit {
    let req = ValidateRequest {
        name: a.name,
        phases: a.phases.0,
        duration_per_phase: a.duration_per_phase,
        interval: a.interval,
        tolerance_pct: a.tolerance,
        throttle_quota_pct: a.throttle_quota,
        report_dir: a.report,
        require_frequency: a.require_frequency,
        mode: a.mode,
    };
    let sink = Terminal::new(json, false);
    if !a.matrix.is_empty() {
        let req = MatrixRequest { validate: req, axes: a.matrix, resume: a.resume };
        let out = block_on(validate_matrix(ws, &req, &sink))??;
        let r = &out.report;
        if json {
            print_json(&out)?;
        } else {
            println!(
                "{:<34} {:<18} {:<14} {:<30} usage p95",
                "cell", "verdict", "frequency", "metric families missing"
            );
            for c in &r.cells {
                println!(
                    "{:<34} {:<18} {:<14} {:<30} {}",
                    c.id,
                    c.verdict,
                    c.frequency_sources.join(","),
                    sysmonvm::validate::matrix::missing_text(c, &|x| safe(x)),
                    c.usage_error_p95.map(|e| format!("{e:.2} pp")).unwrap_or_else(|| "-".into())
                );
                if let Some(e) = &c.error {
                    println!("  did not finish: {}", safe(e));
                }
            }
            for g in r.governor_axis.iter().filter(|g| !g.applicable) {
                println!("governor axis at smp={}: not applicable: {}", g.smp, safe(g.why.as_deref().unwrap_or("")));
            }
            println!(
                "validate --matrix: {} — {} cells: {} pass, {} fail, {} nothing comparable, {} did not finish; report in {}",
                r.summary.verdict,
                r.summary.cells,
                r.summary.pass,
                r.summary.fail,
                r.summary.nothing_comparable,
                r.summary.errors,
                out.report_dir.display()
            );
        }
        return Ok(r.summary.exit_status);
    }
    let out = block_on(validate(ws, &req, &sink))??;
    let r = &out.report;
    if json {
        print_json(&out)?;
    } else {
        for c in &r.checks {
            let v = match c.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::NotComparable => "n/c",
                Verdict::Info => "info",
            };
            let err =
                c.error.as_ref().map(|e| format!("p95 {:.2} max {:.2} {}", e.p95, e.max, c.unit)).unwrap_or_default();
            println!(
                "{v:<5} {:<18} {:<9} {:<42} {:<26} {}",
                c.name,
                c.phase.as_deref().unwrap_or("all"),
                format!("{} vs {}", c.cpu.as_deref().unwrap_or("-"), c.reference),
                err,
                safe(c.reason.as_deref().unwrap_or(""))
            );
        }
        if r.collector.snapshots > 0 {
            println!("{}", safe(&sysmonvm::validate::report::collector_line(&r.collector)));
        }
        println!(
            "validate: {} — {} pass, {} fail, {} not comparable; report in {}",
            r.summary.verdict,
            r.summary.pass,
            r.summary.fail,
            r.summary.not_comparable,
            out.report_dir.display()
        );
    }
    Ok(r.summary.exit_status)
}
