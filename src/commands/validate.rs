//! `validate`.

use super::render::{Terminal, block_on, print_json, safe};
use crate::{Exit, ValidateArgs};
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
    };
    let sink = Terminal::new(json, false);
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
