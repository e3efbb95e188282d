//! Runs a [`Plan`] in a guest over SSH: uploads the plan's files and its script under
//! `/var/lib/sysmonvm`, runs the script as root (through `sudo -n` unless the SSH user is root),
//! and turns its marker lines into per-step events and a report. A failing step ends the run with
//! its command, exit status, output tail and, where the output says why, a hint; a dropped
//! connection names the step it interrupted. Re-running continues: finished steps are skipped by
//! their checks.
//!
//! The guest's output is untrusted: the script has one deadline ([`RunLimits::script_deadline`]),
//! the output is split into lines in linear time, and a line longer than
//! [`RunLimits::max_line`] keeps its head (where markers are) and says how much was dropped.

use super::command::GuestCommand;
use super::steps::{self, Marker, Outcome, Plan, PlanError, ScriptFile, Wire};
use crate::ssh::{ExecDeadline, SshError, SshSession};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where plans keep their scripts and uploaded files in the guest (root-only).
pub const GUEST_DIR: &str = "/var/lib/sysmonvm";
pub const STAGE_DIR: &str = "/var/lib/sysmonvm/stage";
const TAIL_LINES: usize = 20;
/// How long a plan's script may run: package installs under TCG (aarch64 above all) take tens of
/// minutes on a loaded host, so this only ends a guest that has stalled.
pub const DEFAULT_SCRIPT_DEADLINE: Duration = Duration::from_secs(2 * 60 * 60);
/// The longest output line kept whole; the rest of a longer line is dropped and counted.
pub const DEFAULT_MAX_LINE: usize = 64 << 10;

/// How long the plan's script may run and how long a line of its output may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub script_deadline: Duration,
    pub max_line: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { script_deadline: DEFAULT_SCRIPT_DEADLINE, max_line: DEFAULT_MAX_LINE }
    }
}

/// A file to put in the guest before the plan runs.
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
    /// Where a step installs it, when a check compares that file with this one
    /// (`sysmonvm_same`): the script hashes every such file in one process before the first step.
    pub installed: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// Of `seconds`, the time its files took from the guest's request until they had arrived
    /// and matched their sha256: SSH's share, not the guest's own work.
    pub transfer_seconds: f64,
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
    /// The files the guest asked for (their staged copy differed), by stage path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<String>,
}

/// What the caller is told while the plans run.
pub enum Event<'a> {
    /// A plan begins, with this many steps.
    Plan {
        title: &'a str,
        steps: usize,
    },
    /// A plan's last step is done.
    PlanDone {
        title: &'a str,
        changed_steps: usize,
        total_steps: usize,
        seconds: f64,
    },
    /// A file the guest asked for is being sent (`bytes`: its size; `gzip`: compressed on the
    /// way, [`Wire::Gzip`]).
    Sending {
        path: &'a str,
        bytes: usize,
        gzip: bool,
    },
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
        "{title}: the SSH connection dropped{} (the guest may have finished or stopped that step; run again to continue: finished steps are skipped)",
        step.as_ref().map(|s| format!(" during step `{s}`")).unwrap_or_default()
    )]
    Interrupted {
        title: String,
        step: Option<String>,
        #[source]
        source: SshError,
    },
    #[error(
        "{title}: the guest script did not finish within {deadline:?}{}; its SSH channel was closed and the guest may still be running it. Find out why it stalls (`sysmonvm vm ssh NAME -- ps -ef`), then run again: finished steps are skipped.",
        step.as_ref().map(|s| format!(" (it was in step `{s}`)")).unwrap_or_default()
    )]
    TimedOut {
        title: String,
        step: Option<String>,
        deadline: Duration,
        #[source]
        source: SshError,
    },
    #[error(
        "{title}: the guest broke the runner's protocol{}: {message}",
        step.as_ref().map(|s| format!(" in step `{s}`")).unwrap_or_default()
    )]
    Protocol { title: String, step: Option<String>, message: String },
    #[error(
        "{title}: the guest script exited 0 but {}{}; the guest did not run the whole plan. Run again: finished steps are skipped.{}",
        if *ended { "" } else { "never printed its end marker" },
        if missing.is_empty() { String::new() } else { format!("{}reported no result for {}", if *ended { "" } else { " and " }, missing.join(", ")) },
        if tail.is_empty() { String::new() } else { format!("\n  output (last lines):\n{}", indent(tail)) }
    )]
    Incomplete { title: String, ended: bool, missing: Vec<String>, tail: String },
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

/// Splits a byte stream into lines in time linear in its length: each byte is looked at once,
/// and what is held is one line of at most `max` bytes (a longer line keeps its head; the rest is
/// dropped, counted and marked at the end of the line).
struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl LineSplitter {
    fn new(max: usize) -> LineSplitter {
        LineSplitter { partial: Vec::new(), max, dropped: 0 }
    }

    fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&str)) {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.take(&bytes[..i]);
            self.flush(emit);
            bytes = &bytes[i + 1..];
        }
        self.take(bytes);
    }

    fn take(&mut self, part: &[u8]) {
        let room = self.max.saturating_sub(self.partial.len()).min(part.len());
        self.partial.extend_from_slice(&part[..room]);
        self.dropped += (part.len() - room) as u64;
    }

    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.partial);
        let line = if self.dropped > 0 {
            format!(
                "{} [… {} more bytes of this line dropped: lines are cut at {} bytes]",
                text.trim_end(),
                self.dropped,
                self.max
            )
        } else {
            text.trim_end().to_string()
        };
        emit(&line);
        self.partial.clear();
        self.dropped = 0;
    }

    /// The last line, when the output did not end with a newline.
    fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if !self.partial.is_empty() || self.dropped > 0 {
            self.flush(emit);
        }
    }

    /// Bytes held for the current line.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.partial.len()
    }
}

/// Runs `plan` in the guest with `uploads` on hand, with the default [`RunLimits`].
/// `as_root`: the SSH user is root (no sudo).
pub async fn run(
    session: &SshSession,
    plan: &Plan,
    uploads: &[Upload],
    as_root: bool,
    on_event: impl FnMut(Event<'_>),
) -> Result<RunReport, RunError> {
    run_with(session, plan, uploads, as_root, RunLimits::default(), on_event).await
}

/// [`run`] with these limits on the script's time and its output lines.
pub async fn run_with(
    session: &SshSession,
    plan: &Plan,
    uploads: &[Upload],
    as_root: bool,
    limits: RunLimits,
    on_event: impl FnMut(Event<'_>),
) -> Result<RunReport, RunError> {
    let mut reports = run_plans(session, &[plan], uploads, as_root, limits, on_event).await?;
    Ok(reports.remove(0))
}

/// The sha256 of `bytes` in hex, as the script's `sha256sum` prints it: how files (and the
/// collector image's content) are compared.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// The files of a run as the script knows them: stage path, sha256, size, id (the index), mode,
/// and the installed path to hash up front (only a plain absolute path: sha256sum escapes other
/// names in its output, and such a file is then hashed by its own check).
pub fn script_files(uploads: &[Upload]) -> Vec<ScriptFile> {
    let plain = |p: &&String| {
        p.starts_with('/') && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
    };
    uploads
        .iter()
        .enumerate()
        .map(|(id, u)| ScriptFile {
            path: u.path.clone(),
            sha256: sha256_hex(&u.bytes),
            size: u.bytes.len(),
            id,
            mode: format!("{:o}", u.mode),
            installed: u.installed.as_ref().filter(plain).cloned(),
        })
        .collect()
}

/// The command that starts a run: it reads the script (`size` bytes, checked against `sha256`)
/// from the channel into `path`, then runs it with the channel still on its stdin.
pub fn launch_command(path: &str, size: usize, sha256: &str, as_root: bool) -> Result<String, PlanError> {
    let script = crate::templates::render(
        "runner-launch.sh.j2",
        &serde_json::json!({"dir": GUEST_DIR, "stage": STAGE_DIR, "path": path, "size": size, "sha256": sha256}),
    )?;
    Ok(GuestCommand::script(script.trim()).as_root(as_root).render())
}

/// What the host knows of one plan while the script runs.
struct PlanProgress {
    title: String,
    started: Instant,
    steps: Vec<StepReport>,
    sent: Vec<String>,
}

/// Runs `plans` in order in one script over one SSH channel: the script itself, every check,
/// run and re-check, and the files in `uploads` the script asks for (each sent at most once,
/// and only when the guest's staged copy differs) all go over it. Returns one report per plan.
pub async fn run_plans(
    session: &SshSession,
    plans: &[&Plan],
    uploads: &[Upload],
    as_root: bool,
    limits: RunLimits,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Vec<RunReport>, RunError> {
    let title = plans.iter().map(|p| p.title.as_str()).collect::<Vec<_>>().join("+");
    let started = Instant::now();
    let nonce = steps::new_nonce().map_err(PlanError::Nonce)?;
    let script = steps::script(plans, &script_files(uploads), &nonce)?.into_bytes();
    let script_path = format!("{GUEST_DIR}/{title}.sh");
    let sha = sha256_hex(&script);
    let command = launch_command(&script_path, script.len(), &sha, as_root)?;

    let mut done: Vec<PlanProgress> = Vec::new();
    let mut current: Option<(String, Instant, Vec<String>)> = None;
    let mut failed: Option<(String, i32)> = None;
    let mut ended = false;
    let mut protocol: Option<String> = None;
    let mut sent = vec![false; uploads.len()];
    // When the guest asked for each file sent, until it says the file arrived; the sum per step.
    let mut asked: std::collections::HashMap<usize, Instant> = std::collections::HashMap::new();
    let mut transfer = 0.0_f64;
    let mut tail = Tail(VecDeque::new());
    let mut lines = LineSplitter::new(limits.max_line);
    // Every marker is printed after a newline, so that one after output without a final newline
    // still starts its own line; the empty line that newline makes otherwise is not output.
    let mut held_empty = false;
    let mut handle_line = |line: &str, outbox: &mut Vec<Vec<u8>>| -> std::ops::ControlFlow<()> {
        let marker = steps::parse_marker(line, &nonce);
        if held_empty && marker.is_none() {
            tail.push("");
            on_event(Event::Output(""));
        }
        held_empty = false;
        match marker {
            Some(Marker::Plan(name)) => {
                let Some(plan) = plans.get(done.len()).filter(|p| p.title == name) else {
                    protocol = Some(format!("the guest announced plan `{name}`, which is not the next one"));
                    return std::ops::ControlFlow::Break(());
                };
                if let Some(previous) = done.last() {
                    plan_done(previous, &mut on_event);
                }
                on_event(Event::Plan { title: &plan.title, steps: plan.steps.len() });
                done.push(PlanProgress { title: name, started: Instant::now(), steps: Vec::new(), sent: Vec::new() });
            }
            Some(Marker::Begin(name)) => {
                let plan = done.len().checked_sub(1).and_then(|i| plans.get(i));
                let index = plan.and_then(|p| p.steps.iter().position(|s| s.name == name));
                let total = plan.map_or(0, |p| p.steps.len());
                let index = index.unwrap_or_else(|| done.last().map_or(0, |p| p.steps.len()));
                on_event(Event::Begin { index, total, name: &name });
                tail.0.clear();
                current = Some((name, Instant::now(), Vec::new()));
                transfer = 0.0;
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
                let r = StepReport { name, outcome, seconds, transfer_seconds: transfer, notes };
                on_event(Event::Done(&r));
                if let Some(p) = done.last_mut() {
                    p.steps.push(r);
                }
            }
            Some(Marker::Failed(name, status)) => failed = Some((name, status)),
            Some(Marker::Need(id, wire)) => match (uploads.get(id), sent.get(id).copied()) {
                (Some(u), Some(false)) => {
                    sent[id] = true;
                    asked.insert(id, Instant::now());
                    on_event(Event::Sending { path: &u.path, bytes: u.bytes.len(), gzip: wire == Wire::Gzip });
                    if let Some(p) = done.last_mut() {
                        p.sent.push(u.path.clone());
                    }
                    outbox.push(on_the_wire(&u.bytes, wire));
                }
                (Some(u), _) => {
                    protocol = Some(format!("the guest asked for {} a second time", u.path));
                    return std::ops::ControlFlow::Break(());
                }
                (None, _) => {
                    protocol = Some(format!("the guest asked for file {id}, which this run does not have"));
                    return std::ops::ControlFlow::Break(());
                }
            },
            Some(Marker::Got(id)) => {
                if let Some(at) = asked.remove(&id) {
                    transfer += at.elapsed().as_secs_f64();
                }
            }
            Some(Marker::End(_)) => {
                ended = true;
                if let Some(last) = done.last() {
                    plan_done(last, &mut on_event);
                }
            }
            None if line.is_empty() => held_empty = true,
            None => {
                tail.push(line);
                on_event(Event::Output(line));
            }
        }
        std::ops::ControlFlow::Continue(())
    };
    let deadline = ExecDeadline::Within(limits.script_deadline);
    let result = {
        let mut flow = std::ops::ControlFlow::Continue(());
        let result = session
            .exec_conversation(&command, script, deadline, |_, bytes, outbox| {
                if flow.is_continue() {
                    lines.feed(bytes, &mut |line| {
                        if flow.is_continue() {
                            flow = handle_line(line, outbox);
                        }
                    });
                }
                flow
            })
            .await;
        if flow.is_continue() {
            lines.finish(&mut |line| {
                let _ = handle_line(line, &mut Vec::new());
            });
        }
        result
    };
    let step = current.as_ref().map(|c| c.0.clone());
    if let Some(message) = protocol {
        return Err(RunError::Protocol { title, step, message });
    }
    let status = match result {
        Ok(Some(s)) => s,
        Ok(None) => return Err(RunError::Protocol { title, step, message: "the run was stopped".into() }),
        Err(source @ SshError::ExecTimeout { .. }) => {
            return Err(RunError::TimedOut { title, step, deadline: limits.script_deadline, source });
        }
        Err(source) => return Err(RunError::Interrupted { title, step, source }),
    };
    let tail = tail.text();
    if let Some((step, status)) = failed {
        let command = plans.iter().find_map(|p| p.step(&step)).map(|s| s.run.clone()).unwrap_or_default();
        let hint = hint(&tail).map(str::to_string);
        return Err(RunError::StepFailed { title, step, command, status, tail, hint });
    }
    if status != 0 {
        return Err(RunError::Script { title, status, tail });
    }
    // Exit 0 is not enough: a guest that printed nothing (or stopped early and still exited 0)
    // has not done the plan.
    let missing = missing_results(plans, &done);
    if !ended || !missing.is_empty() {
        return Err(RunError::Incomplete { title, ended, missing, tail });
    }
    // A plan's time runs from its marker to the next plan's (the first from the launch).
    let finished = Instant::now();
    let starts: Vec<Instant> = done.iter().map(|p| p.started).collect();
    Ok(done
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let from = if i == 0 { started } else { p.started };
            let to = starts.get(i + 1).copied().unwrap_or(finished);
            RunReport {
                changed: p.steps.iter().any(|s| s.outcome == Outcome::Changed),
                title: p.title,
                steps: p.steps,
                seconds: to.saturating_duration_since(from).as_secs_f64(),
                sent: p.sent,
            }
        })
        .collect())
}

/// The level the runner compresses at: gzip -3 takes the 2.7 MB collector binary to 46 % in a
/// twentieth of a second, about what -9 gives in a fifth of the time.
const GZIP_LEVEL: u32 = 3;

/// A file's bytes as the script asked for them ([`Wire`]).
pub fn on_the_wire(bytes: &[u8], wire: Wire) -> Vec<u8> {
    match wire {
        Wire::Plain => bytes.to_vec(),
        Wire::Gzip => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            gz.write_all(bytes).expect("writing to memory");
            let gz = gz.finish().expect("writing to memory");
            let mut out = format!("{}\n", gz.len()).into_bytes();
            out.extend_from_slice(&gz);
            out
        }
    }
}

fn plan_done(p: &PlanProgress, on_event: &mut impl FnMut(Event<'_>)) {
    on_event(Event::PlanDone {
        title: &p.title,
        changed_steps: p.steps.iter().filter(|s| s.outcome == Outcome::Changed).count(),
        total_steps: p.steps.len(),
        seconds: p.started.elapsed().as_secs_f64(),
    });
}

/// Pure: the steps (as `plan/step`) the guest reported no result for.
fn missing_results(plans: &[&Plan], done: &[PlanProgress]) -> Vec<String> {
    let mut missing = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let reported = done.get(i).filter(|d| d.title == plan.title);
        for s in &plan.steps {
            if !reported.is_some_and(|d| d.steps.iter().any(|r| r.name == s.name)) {
                missing.push(format!("{}/{}", plan.title, s.name));
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::LineSplitter;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |l: &str| out.push(l.to_string());
        for c in chunks {
            s.feed(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    #[test]
    fn lines_split_across_chunks_and_long_lines_keep_their_head() {
        assert_eq!(split(64, &[b"a\nb", b"c\n", b"\nlast"]), ["a", "bc", "", "last"]);
        assert_eq!(split(64, &[b"crlf\r\n", b"trailing  \n"]), ["crlf", "trailing"]);
        // A UTF-8 character split between two chunks stays whole.
        let e = "é".as_bytes();
        assert_eq!(split(64, &[&[b'x', e[0]], &[e[1], b'\n']]), ["xé"]);
        let cut = split(4, &[b"::sysmonvm::begin", b" step\nok\n"]);
        assert_eq!(cut, ["::sy [… 18 more bytes of this line dropped: lines are cut at 4 bytes]", "ok"]);
        assert_eq!(split(4, &[b"abcdefgh"]), ["abcd [… 4 more bytes of this line dropped: lines are cut at 4 bytes]"]);
    }

    #[test]
    fn an_endless_line_holds_at_most_the_cap() {
        let mut s = LineSplitter::new(1000);
        let mut n = 0;
        let chunk = vec![b'x'; 32 << 10];
        for _ in 0..1024 {
            s.feed(&chunk, &mut |_| n += 1);
            assert!(s.held() <= 1000);
        }
        assert_eq!(n, 0);
        let mut last = String::new();
        s.finish(&mut |l| last = l.to_string());
        assert!(
            last.ends_with(&format!(
                "[… {} more bytes of this line dropped: lines are cut at 1000 bytes]",
                (32u64 << 20) - 1000
            )),
            "{}",
            &last[1000..]
        );
    }

    /// xorshift64*: a fixed seed, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            if n == 0 { 0 } else { (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize }
        }
    }

    /// What the splitter must emit for one line of the input, written the obvious way.
    fn expected(line: &[u8], max: usize) -> String {
        let kept = String::from_utf8_lossy(&line[..line.len().min(max)]).trim_end().to_string();
        if line.len() > max {
            format!("{kept} [… {} more bytes of this line dropped: lines are cut at {max} bytes]", line.len() - max)
        } else {
            kept
        }
    }

    /// Mutations of real runner output (markers, step output, CRs, invalid UTF-8, long runs
    /// without a newline), fed in random chunks with random line caps, against the oracle above.
    #[test]
    fn fuzz_the_line_splitter_against_a_plain_split() {
        let seed = 0x5eed_0000_0014_0001;
        let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
        let mut rng = Rng(seed);
        let base: &[u8] = b"@@sysmonvm begin copy\ncopied\r\n@@sysmonvm note n\n\xc3\xa9t\xe9\n@@sysmonvm changed copy\n@@sysmonvm end 1\n";
        let junk: [&[u8]; 6] = [b"\n", b"\r", b"\xff\xc3", b"@@sysmonvm failed x 3", b"  ", &[b'z'; 300]];
        for _ in 0..iterations {
            let mut input = base.to_vec();
            for _ in 0..=rng.below(6) {
                let at = rng.below(input.len() + 1);
                match rng.below(3) {
                    0 => input.splice(at..at, junk[rng.below(junk.len())].iter().copied()).for_each(drop),
                    1 => input.truncate(at),
                    _ if !input.is_empty() => {
                        let i = at.min(input.len() - 1);
                        input[i] = rng.below(256) as u8
                    }
                    _ => {}
                }
            }
            let max = [0, 1, 3, 16, 64, 4096][rng.below(6)];
            let mut splitter = LineSplitter::new(max);
            let mut got = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(40)).min(rest.len());
                splitter.feed(&rest[..n], &mut |l| got.push(l.to_string()));
                assert!(splitter.held() <= max);
                rest = &rest[n..];
            }
            splitter.finish(&mut |l| got.push(l.to_string()));
            let mut want: Vec<String> = input.split(|&b| b == b'\n').map(|l| expected(l, max)).collect();
            // The text after the last newline is a line only when there is some.
            if input.last().is_none_or(|&b| b == b'\n') {
                want.pop();
            }
            assert_eq!(got, want, "input {:?} max {max}", String::from_utf8_lossy(&input));
        }
        println!("line splitter: {iterations} mutated inputs, seed {seed:#x}");
    }

    #[test]
    fn a_gzipped_file_is_its_length_line_and_a_gzip_stream_of_it() {
        use super::{Wire, on_the_wire};
        use std::io::Read;
        let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(on_the_wire(&file, Wire::Plain), file);
        let wire = on_the_wire(&file, Wire::Gzip);
        let newline = wire.iter().position(|&b| b == b'\n').unwrap();
        let len: usize = std::str::from_utf8(&wire[..newline]).unwrap().parse().unwrap();
        assert_eq!(len, wire.len() - newline - 1);
        assert!(len < file.len() / 10, "{len}");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&wire[newline + 1..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, file);
    }

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
