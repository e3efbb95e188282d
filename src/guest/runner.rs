//! Runs a [`Plan`] in a guest over SSH: uploads the plan's files and its script under
//! `/var/lib/sysmonvm`, runs the script as root (through `sudo -n` unless the SSH user is root),
//! and turns its marker lines into per-step events and a report. A failing step ends the run with
//! its command, exit status, output tail and, where the output says why, a hint; a dropped
//! connection names the step it interrupted. Re-running continues: finished steps are skipped by
//! their checks.

use super::command::GuestCommand;
use super::steps::{Marker, Outcome, Plan, PlanError, parse_marker};
use crate::ssh::{SshError, SshSession};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Instant;

/// Where plans keep their scripts and uploaded files in the guest (root-only).
pub const GUEST_DIR: &str = "/var/lib/sysmonvm";
pub const STAGE_DIR: &str = "/var/lib/sysmonvm/stage";
const TAIL_LINES: usize = 20;

/// A file to put in the guest before the plan runs.
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub title: String,
    pub steps: Vec<StepReport>,
    /// Whether any step changed the guest.
    pub changed: bool,
    pub seconds: f64,
}

/// What the caller is told while the plan runs.
pub enum Event<'a> {
    Begin {
        index: usize,
        total: usize,
        name: &'a str,
    },
    /// One line of a step's own output.
    Output(&'a str),
    Done(&'a StepReport),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{title} step `{step}` failed with exit status {status}\n  command: {}\n  output (last lines):\n{}{}\nThe VM is still usable; fix the cause and run again: finished steps are skipped.",
        command.replace('\n', "\n           "),
        indent(tail),
        hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default()
    )]
    StepFailed { title: String, step: String, command: String, status: i32, tail: String, hint: Option<String> },
    #[error("{title}: the guest script failed before any step (exit status {status}):\n{}", indent(tail))]
    Script { title: String, status: u32, tail: String },
    #[error(
        "{title}: the SSH connection dropped{} ({message}); the guest may have finished or stopped that step. Run again to continue: finished steps are skipped.",
        step.as_ref().map(|s| format!(" during step `{s}`")).unwrap_or_default()
    )]
    Interrupted { title: String, step: Option<String>, message: String },
    #[error("{title}: cannot upload {path}")]
    Upload { title: String, path: String, source: SshError },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// What a failing step's output most likely means, for the cases users hit.
pub fn hint(output: &str) -> Option<&'static str> {
    let o = output.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| o.contains(n));
    if any(&[
        "temporary failure resolving",
        "could not resolve",
        "network is unreachable",
        "failed to download metadata",
        "cannot download repomd",
        "curl error (6)",
        "connection timed out",
        "no route to host",
    ]) {
        Some(
            "the guest cannot reach its package mirrors: check its network (`sysmonvm vm ssh NAME -- ip route`) and DNS, or use a profile whose image already has the packages",
        )
    } else if any(&["unable to locate package", "no match for argument", "has no installation candidate"]) {
        Some("a package name is not in the guest's repositories: check the profile's `packages` and --package")
    } else if any(&["could not get lock", "waiting for cache lock"]) {
        Some("another package manager holds the lock (cloud-init or unattended-upgrades): wait and run again")
    } else if any(&["address in use", "address already in use"]) {
        Some(
            "another program listens on that port in the guest: find it with `sudo ss -ltnp` and stop it, or set another collector port in the profile",
        )
    } else if any(&["sudo: a password is required", "sudo: a terminal is required"]) {
        Some("the SSH user needs passwordless sudo (cloud-init's `sudo: ALL=(ALL) NOPASSWD:ALL`)")
    } else {
        None
    }
}

struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_string());
    }
    fn text(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Runs `plan` in the guest after placing `uploads`. `as_root`: the SSH user is root (no sudo).
pub async fn run(
    session: &SshSession,
    plan: &Plan,
    uploads: &[Upload],
    as_root: bool,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<RunReport, RunError> {
    let title = plan.title.clone();
    let started = Instant::now();
    let prepare =
        GuestCommand::new("install").args(["-d", "-m", "0700", GUEST_DIR, STAGE_DIR]).as_root(as_root).render();
    let interrupted = |step: Option<String>, e: SshError| RunError::Interrupted {
        title: title.clone(),
        step,
        message: crate::errors::chain(&e),
    };
    let out = session.exec(&prepare).await.map_err(|e| interrupted(None, e))?;
    if out.status != 0 {
        let tail = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).trim().to_string();
        return Err(RunError::Script { title, status: out.status, tail });
    }
    let script_path = format!("{GUEST_DIR}/{}.sh", plan.title);
    let script = Upload { path: script_path.clone(), bytes: plan.script()?.into_bytes(), mode: 0o700 };
    for u in uploads.iter().chain([&script]) {
        session.upload(&u.bytes, &u.path, u.mode, !as_root).await.map_err(|source| RunError::Upload {
            title: title.clone(),
            path: u.path.clone(),
            source,
        })?;
    }

    let total = plan.steps.len();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut current: Option<(String, Instant, Vec<String>)> = None;
    let mut failed: Option<(String, i32)> = None;
    let mut tail = Tail(VecDeque::new());
    let mut pending = String::new();
    let mut changed = false;
    let mut handle_line = |line: &str,
                           steps: &mut Vec<StepReport>,
                           current: &mut Option<(String, Instant, Vec<String>)>,
                           failed: &mut Option<(String, i32)>| {
        match parse_marker(line) {
            Some(Marker::Begin(name)) => {
                let index = plan.steps.iter().position(|s| s.name == name).unwrap_or(steps.len());
                on_event(Event::Begin { index, total, name: &name });
                tail.0.clear();
                *current = Some((name, Instant::now(), Vec::new()));
            }
            Some(Marker::Note(n)) => {
                if let Some(c) = current.as_mut() {
                    c.2.push(n);
                }
            }
            Some(Marker::Done(name, outcome)) => {
                let (seconds, notes) = match current.take() {
                    Some((_, t, notes)) => (t.elapsed().as_secs_f64(), notes),
                    None => (0.0, Vec::new()),
                };
                let r = StepReport { name, outcome, seconds, notes };
                on_event(Event::Done(&r));
                steps.push(r);
            }
            Some(Marker::Failed(name, status)) => *failed = Some((name, status)),
            Some(Marker::End(c)) => changed = c,
            None => {
                tail.push(line);
                on_event(Event::Output(line));
            }
        }
    };
    let command = GuestCommand::new("sh").arg(&script_path).as_root(as_root).stdin_null().render();
    let result = session
        .exec_streaming(&command, None, |_, bytes| {
            pending.push_str(&String::from_utf8_lossy(bytes));
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                handle_line(line.trim_end(), &mut steps, &mut current, &mut failed);
            }
        })
        .await;
    if !pending.is_empty() {
        let line = std::mem::take(&mut pending);
        handle_line(line.trim_end(), &mut steps, &mut current, &mut failed);
    }
    let status = match result {
        Ok(s) => s,
        Err(e) => return Err(interrupted(current.map(|c| c.0), e)),
    };
    let tail = tail.text();
    if let Some((step, status)) = failed {
        let command = plan.step(&step).map(|s| s.run.clone()).unwrap_or_default();
        let hint = hint(&tail).map(str::to_string);
        return Err(RunError::StepFailed { title, step, command, status, tail, hint });
    }
    if status != 0 {
        return Err(RunError::Script { title, status, tail });
    }
    Ok(RunReport { title, changed, seconds: started.elapsed().as_secs_f64(), steps })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hints_name_the_usual_causes() {
        assert!(
            super::hint(
                "Err:1 http://deb.debian.org bookworm InRelease\n  Temporary failure resolving 'deb.debian.org'"
            )
            .unwrap()
            .contains("network")
        );
        assert!(super::hint("E: Unable to locate package nosuch").unwrap().contains("package name"));
        assert!(
            super::hint("Error: Unable to find a match: x\nNo match for argument: x").unwrap().contains("package name")
        );
        assert!(
            super::hint("Caused by:\n    Address in use (os error 98)").unwrap().contains("another program listens")
        );
        assert_eq!(super::hint("segfault"), None);
    }
}
