//! The SSH client, the step runner and the boot wait's readiness probe against a guest that
//! misbehaves on purpose: a real OpenSSH sshd on 127.0.0.1 whose forced command never ends or
//! floods, one that never finishes authentication, and a TCP peer that never speaks SSH. Each
//! must end within its deadline (asserted with a generous margin, never as "fast") and keep
//! within its cap (asserted by what the code reports it kept) with an error that says what
//! happened.

mod common;

use common::sshd::{sshd, sshd_forcing, sshd_stalling_auth};
use std::time::{Duration, Instant};
use sysmonvm::guest::runner::{self, Event, RunError};
use sysmonvm::guest::steps::{Outcome, Plan, Step};
use sysmonvm::ssh::{Deadlines, ExecDeadline, ExecOptions, SshError, SshSession};
use sysmonvm::vm::{BootPhase, probe_ready};

/// What "ended within its deadline" allows on top of the deadline on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(10);

fn ended_within(started: Instant, deadline: Duration) {
    let took = started.elapsed();
    assert!(took < deadline + MARGIN, "took {took:?}, the deadline was {deadline:?}");
}

#[tokio::test]
async fn a_command_that_never_ends_stops_at_its_deadline() {
    let Some(s) = sshd_forcing("exec sleep 60") else { return };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;

    // The per-call deadline.
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let e = session.exec_with("echo hello", ExecOptions::default().within(deadline)).await.unwrap_err();
    ended_within(started, deadline);
    assert!(matches!(&e, SshError::ExecTimeout { deadline: d, .. } if *d == deadline), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("`echo hello` did not finish within 2s") && m.contains("channel was closed"), "{m}");

    // The session's default deadline applies to the streaming exec as well.
    let deadlines = Deadlines { exec: Duration::from_secs(3), ..Deadlines::new(Duration::from_secs(30)) };
    let session = SshSession::connect_with(&s.target(), deadlines).await.unwrap();
    let started = Instant::now();
    let e = session.exec_streaming("true", None, |_, _| {}).await.unwrap_err();
    ended_within(started, deadlines.exec);
    assert!(matches!(e, SshError::ExecTimeout { .. }), "{e:?}");
}

#[tokio::test]
async fn a_peer_that_never_speaks_ssh_ends_the_connect_at_its_deadline() {
    // Accepts TCP and holds the connection without a word: no banner, no key exchange.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || listener.accept().map(|(conn, _)| conn));
    let Some(s) = sshd() else { return };
    let target = sysmonvm::ssh::SshTarget { port, ..s.target() };
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let e = SshSession::connect(&target, deadline).await.err().expect("nothing speaks SSH there");
    ended_within(started, deadline);
    assert!(matches!(e, SshError::Timeout { timeout, .. } if timeout == deadline), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}: no SSH session within 2s")), "{e}");
    drop(holder.join());
}

#[tokio::test]
async fn an_sshd_that_never_finishes_authentication_ends_at_the_auth_deadline() {
    let Some(s) = sshd_stalling_auth() else { return };
    let deadlines = Deadlines { auth: Duration::from_secs(3), ..Deadlines::new(Duration::from_secs(30)) };
    let started = Instant::now();
    let e = SshSession::connect_with(&s.target(), deadlines).await.err().expect("authentication never finishes");
    ended_within(started, deadlines.connect + deadlines.auth);
    match &e {
        SshError::AuthTimeout { user, timeout, .. } => {
            assert_eq!((user.as_str(), *timeout), (s.target().user.as_str(), deadlines.auth))
        }
        other => panic!("expected the auth deadline, got {other:?}"),
    }
    assert!(e.to_string().contains("did not finish within 3s: sshd took the connection but stalled"), "{e}");
}

/// The process's peak resident set (VmHWM), where /proc has it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?.trim().parse::<u64>();
    kb.ok().map(|k| k * 1024)
}

#[tokio::test]
async fn a_gigabyte_of_output_is_capped_and_its_tail_kept() {
    const GB: u64 = 1_000_000_000;
    let Some(s) = sshd_forcing(&format!(
        "head -c {GB} /dev/zero; echo; echo the-end; head -c 300000 /dev/zero >&2; echo stderr-end >&2"
    )) else {
        return;
    };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;
    let cap = 4 << 20;
    let out =
        session.exec_with("systemctl show sysmon-collector", ExecOptions::default().max_output(cap)).await.unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout.len(), cap, "stdout keeps exactly the cap");
    assert!(out.stdout.ends_with(b"\0\nthe-end\n"), "the tail is kept");
    assert_eq!(out.stdout_dropped, GB + "\nthe-end\n".len() as u64 - cap as u64);
    // stderr was under the cap: all of it, nothing dropped.
    assert_eq!((out.stderr.len(), out.stderr_dropped), (300_000 + "stderr-end\n".len(), 0));
    assert!(out.truncated());
    // Other tests in this binary run beside this one; 1 GB held anywhere would show far above this.
    if let Some(peak) = peak_rss() {
        assert!(peak < 600 << 20, "peak RSS {} MiB", peak >> 20);
    }
    session.close().await;
}

/// Probes until `want` is seen: each probe must end within `left` (plus the margin) and never
/// claim more than `want`; a probe on a loaded machine may see less, and the boot wait, like this
/// loop, simply probes again.
async fn probe_until(target: &sysmonvm::ssh::SshTarget, left: Duration, want: Option<BootPhase>) {
    let started = Instant::now();
    loop {
        let probe = Instant::now();
        let got = probe_ready(target, left).await;
        ended_within(probe, left);
        assert!(got <= want, "the probe claimed {got:?}, the guest only gets to {want:?}");
        if got == want {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "never saw {want:?}; the last probe saw {got:?}");
    }
}

#[tokio::test]
async fn the_boot_probe_ends_within_the_time_left_whatever_the_guest_does() {
    let left = Duration::from_secs(3);
    // sshd answers and the key logs in, but the cloud-init check never returns.
    let Some(hung_exec) = sshd_forcing("exec sleep 60") else { return };
    probe_until(&hung_exec.target(), left, Some(BootPhase::Login)).await;

    // sshd answers with its banner and never finishes authentication.
    let Some(hung_auth) = sshd_stalling_auth() else { return };
    probe_until(&hung_auth.target(), left, Some(BootPhase::Sshd)).await;

    // A guest whose cloud-init has finished (the forced command stands in for the check).
    let Some(done) = sshd_forcing("true") else { return };
    probe_until(&done.target(), Duration::from_secs(30), Some(BootPhase::CloudInit)).await;

    // Nothing listening: nothing reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    probe_until(&sysmonvm::ssh::SshTarget { port: closed, ..done.target() }, left, None).await;
}

fn step(name: &str, run: &str) -> Step {
    Step { name: name.into(), check: None, skip_if: None, skip_note: None, run: run.into(), uses: vec![] }
}

#[tokio::test]
async fn a_100_mb_line_through_the_runner_is_cut_and_the_run_goes_on() {
    if common::sshd::user() != "root" {
        return; // the runner writes /var/lib/sysmonvm as the guest's root would
    }
    let Some(s) = sshd() else { return };
    const FLOOD: u64 = 100_000_000;
    let plan = Plan {
        title: "runner-flood".into(),
        steps: vec![
            // One 100 MB line (its newline only at the very end), then a normal one.
            step("flood", &format!("head -c {FLOOD} /dev/zero | tr '\\0' x; echo; echo after-the-flood")),
            step("fails", "echo 'E: Unable to locate package nosuch'; exit 100"),
        ],
    };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;
    let mut events = Vec::new();
    let mut longest = 0;
    let e = runner::run(&session, &plan, &[], true, |e| match e {
        Event::Begin { name, .. } => events.push(format!("begin {name}")),
        Event::Output(l) => {
            longest = longest.max(l.len());
            events.push(if l.len() > 100 {
                format!("out {}…{}", &l[..3], &l[runner::DEFAULT_MAX_LINE..])
            } else {
                format!("out {l}")
            })
        }
        Event::Done(r) => events.push(format!("done {} {:?}", r.name, r.outcome)),
        _ => {}
    })
    .await
    .unwrap_err();
    let cut = format!(
        " [… {} more bytes of this line dropped: lines are cut at {} bytes]",
        FLOOD - runner::DEFAULT_MAX_LINE as u64,
        runner::DEFAULT_MAX_LINE
    );
    assert_eq!(
        events,
        [
            "begin flood".to_string(),
            format!("out xxx…{cut}"),
            "out after-the-flood".into(),
            format!("done flood {:?}", Outcome::Changed),
            "begin fails".into(),
            "out E: Unable to locate package nosuch".into(),
        ]
    );
    assert_eq!(longest, runner::DEFAULT_MAX_LINE + cut.len());
    match &e {
        RunError::StepFailed { step, status, tail, hint, .. } => {
            assert_eq!((step.as_str(), *status), ("fails", 100));
            assert_eq!(tail, "E: Unable to locate package nosuch");
            assert!(hint.as_deref().is_some_and(|h| h.contains("package name")), "{hint:?}");
        }
        other => panic!("expected the failing step, got {other:?}"),
    }

    // A flood with no newline at all: the script prints a newline before its marker, so the
    // marker starts its own line instead of landing on (and being cut with) the flood's line, and
    // the failing step is named with the cut line as its tail.
    let plan = Plan {
        title: "runner-flood-nonl".into(),
        steps: vec![step("flood", &format!("head -c {FLOOD} /dev/zero | tr '\\0' y; exit 3"))],
    };
    match runner::run(&session, &plan, &[], true, |_| {}).await {
        Err(e @ RunError::StepFailed { .. }) => {
            let RunError::StepFailed { step, status, tail, .. } = &e else { unreachable!() };
            assert_eq!((step.as_str(), *status), ("flood", 3));
            assert!(
                tail.starts_with("yyy")
                    && tail.ends_with(" more bytes of this line dropped: lines are cut at 65536 bytes]"),
                "{}",
                &tail[tail.len() - 200..]
            );
            let m = e.to_string();
            assert!(m.len() < 2 * runner::DEFAULT_MAX_LINE, "the message holds one cut line: {} bytes", m.len());
        }
        other => panic!("expected the failing step, got {other:?}"),
    }
    session.close().await;
}

/// A "guest" whose every command is `true`: the preparation, the uploads and the script all
/// "succeed" with no output. A run that printed no end marker and no step results is an error,
/// never a plan that ran.
#[tokio::test]
async fn a_script_that_exits_0_without_its_markers_is_no_success() {
    let Some(s) = sshd_forcing("true") else { return };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;
    let plan = Plan { title: "runner-silent".into(), steps: vec![step("one", "true"), step("two", "true")] };
    let e = runner::run(&session, &plan, &[], true, |_| {}).await.unwrap_err();
    assert!(matches!(e, RunError::Incomplete { ended: false, .. }), "{e:?}");
    assert!(
        e.to_string().contains(
            "runner-silent: the guest script exited 0 but never printed its end marker and reported no result for runner-silent/one, runner-silent/two"
        ),
        "{e}"
    );
    session.close().await;
}

#[tokio::test]
async fn the_runner_script_has_a_deadline() {
    if common::sshd::user() != "root" {
        return;
    }
    let Some(s) = sshd() else { return };
    let plan = Plan { title: "runner-stall".into(), steps: vec![step("stalls", "echo waiting; exec sleep 60")] };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;
    let limits = runner::RunLimits { script_deadline: Duration::from_secs(3), ..Default::default() };
    let started = Instant::now();
    let e = runner::run_with(&session, &plan, &[], true, limits, |_| {}).await.unwrap_err();
    ended_within(started, limits.script_deadline + Duration::from_secs(5));
    match &e {
        RunError::TimedOut { step, deadline, .. } => {
            assert_eq!((step.as_deref(), *deadline), (Some("stalls"), limits.script_deadline))
        }
        other => panic!("expected the script deadline, got {other:?}"),
    }
    let m = e.to_string();
    assert!(m.contains("did not finish within 3s (it was in step `stalls`)") && m.contains("run again"), "{m}");
    assert!(std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("did not finish within 3s")));
    // The session outlives a command that overran: the next exec works.
    let out = session
        .exec_with(
            "echo still-here",
            ExecOptions { deadline: ExecDeadline::Within(Duration::from_secs(30)), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"still-here\n");
    session.close().await;
}

/// `collector status` against a guest whose status probe prints a megabyte of junk before the
/// properties: what is read is the capped tail (the properties still parse), and the cut is a
/// warning, in the sink and in the report's list, naming the probe, the bytes dropped and the cap.
#[tokio::test]
async fn a_status_probe_cut_at_its_cap_says_so() {
    use sysmonvm::ops::events::{Collected, Event};
    use sysmonvm::ops::provision::{STATUS_OUTPUT_CAP, read_status_probe};
    let Some(s) = sshd_forcing(
        "head -c 1000000 /dev/zero | tr '\\0' j; echo; echo ActiveState=active; echo 'version=sysmon-collector 0.1.0'",
    ) else {
        return;
    };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;
    let sink = Collected::default();
    let probe = read_status_probe(&session, "lab", Default::default(), false, &sink).await.unwrap();
    assert_eq!(probe.properties.get("ActiveState").map(String::as_str), Some("active"));
    assert_eq!(probe.properties.get("version").map(String::as_str), Some("sysmon-collector 0.1.0"));
    let kept = STATUS_OUTPUT_CAP as u64;
    let printed = 1_000_000 + 1 + "ActiveState=active\n".len() as u64 + "version=sysmon-collector 0.1.0\n".len() as u64;
    let want = format!(
        "the collector status probe printed more than the 64 KiB kept of each stream: the first {} bytes of its \
         stdout were dropped, so only the end of its output was read",
        printed - kept
    );
    assert_eq!(probe.warnings, std::slice::from_ref(&want));
    assert_eq!(sink.events(), [Event::Warning { message: want }]);

    // A probe that prints only its properties: nothing to warn about.
    drop(session);
    let mut s = s;
    s.reconfigure("ForceCommand echo ActiveState=inactive");
    let session = common::sshd::connect(&s.target(), Duration::from_secs(30)).await;
    let sink = Collected::default();
    let probe = read_status_probe(&session, "lab", Default::default(), false, &sink).await.unwrap();
    assert_eq!(probe.properties.get("ActiveState").map(String::as_str), Some("inactive"));
    assert!(probe.warnings.is_empty() && sink.events().is_empty());
    session.close().await;
}
