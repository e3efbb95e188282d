//! The guest step runner over a real sshd on 127.0.0.1 (the test's user stands in for the guest's
//! root): uploads, per-step events and outcomes, a second run that changes nothing, a failing
//! step's command/status/tail, an SSH connection dropped in the middle of a step, after which
//! a re-run continues where it stopped, marker lines a step prints itself (output, never
//! progress), and output without a final newline (the next marker still counts).

mod common;

use common::sshd::sshd;
use std::time::Duration;
use sysmonvm::guest::runner::{self, Event, RunError, Upload};
use sysmonvm::guest::steps::{Outcome, Plan, Step};

fn step(name: &str, check: Option<String>, run: String) -> Step {
    Step { name: name.into(), check, skip_if: None, skip_note: None, run, uses: vec![] }
}

/// The runner writes /var/lib/sysmonvm as the guest's root would, and the test's sshd logs in as
/// the test's own user: both must be root (CI runs as root), else the test says SKIPPED.
fn as_root() -> bool {
    let user = common::sshd::user();
    let root = sysmonvm::host::is_root() && user == "root";
    if !root {
        common::skip(&format!(
            "the guest runner tests need root (they log in over SSH as the test's user, {user}, and write /var/lib/sysmonvm as the guest's root would); run them as root"
        ));
    }
    root
}

#[tokio::test]
async fn plans_run_idempotently_and_failures_say_what_failed() {
    if !as_root() {
        return;
    }
    let Some(s) = sshd() else { return };
    let d = tempfile::tempdir().unwrap();
    let p = d.path().display().to_string();
    let plan = Plan {
        title: "runner-test".into(),
        steps: vec![
            Step {
                uses: vec![STAGED.into()],
                ..step(
                    "copy",
                    Some(format!("sysmonvm_same {STAGED} {p}/installed")),
                    format!("cp {STAGED} {p}/installed && echo copied"),
                )
            },
            Step {
                skip_if: Some("true".into()),
                skip_note: Some("not on this host".into()),
                ..step("skipped", None, "exit 1".into())
            },
        ],
    };
    let _ = std::fs::remove_file(STAGED);
    // The installed copy is named, so the script hashes it before the first step.
    let uploads =
        [Upload { path: STAGED.into(), bytes: b"v1".to_vec(), mode: 0o644, installed: Some(format!("{p}/installed")) }];
    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    let mut events = Vec::new();
    let r = runner::run(&session, &plan, &uploads, true, |e| match e {
        Event::Begin { index, total, name } => events.push(format!("begin {index}/{total} {name}")),
        Event::Output(l) => events.push(format!("out {l}")),
        Event::Done(r) => events.push(format!("done {} {:?}", r.name, r.outcome)),
        Event::Sending { path, bytes, gzip } => {
            events.push(format!("send {path} {bytes}{}", if gzip { " gzip" } else { "" }))
        }
        Event::Plan { title, steps } => events.push(format!("plan {title} {steps}")),
        Event::PlanDone { title, changed_steps, .. } => events.push(format!("plan-done {title} {changed_steps}")),
    })
    .await
    .unwrap();
    assert!(r.changed);
    assert_eq!(
        events,
        [
            "plan runner-test 2",
            "begin 0/2 copy",
            &format!("send {STAGED} 2"),
            "out copied",
            "done copy Changed",
            "begin 1/2 skipped",
            "done skipped Skipped",
            "plan-done runner-test 1"
        ]
    );
    assert_eq!(r.steps[1].notes, ["not on this host"]);
    // The step that fetched a file has that transfer's time as part of its own; the other none.
    assert!(r.steps[0].transfer_seconds > 0.0 && r.steps[0].transfer_seconds <= r.steps[0].seconds, "{:?}", r.steps[0]);
    assert_eq!(r.steps[1].transfer_seconds, 0.0);
    assert_eq!(std::fs::read(d.path().join("installed")).unwrap(), b"v1");

    // Nothing differs: nothing is sent, nothing changes.
    let mut sent = 0;
    let again = runner::run(&session, &plan, &uploads, true, |e| {
        if let Event::Sending { .. } = e {
            sent += 1
        }
    })
    .await
    .unwrap();
    assert!(!again.changed);
    assert_eq!((again.steps[0].outcome, sent), (Outcome::Unchanged, 0));
    assert_eq!(again.steps[0].transfer_seconds, 0.0, "nothing was sent");

    // The installed file changed in the guest: it is sent again, once, and put back.
    std::fs::write(d.path().join("installed"), b"edited").unwrap();
    let v2 = [Upload { bytes: b"v2".to_vec(), ..uploads[0].clone() }];
    let mut sent = Vec::new();
    let repaired = runner::run(&session, &plan, &v2, true, |e| {
        if let Event::Sending { bytes, .. } = e {
            sent.push(bytes)
        }
    })
    .await
    .unwrap();
    assert_eq!((repaired.steps[0].outcome, sent), (Outcome::Changed, vec![2]));
    assert_eq!(std::fs::read(d.path().join("installed")).unwrap(), b"v2");

    // The up-front hashes serve first checks only: a step that ran before may have changed the
    // file (here it spoils it after it was hashed as the same), so the later check hashes again.
    let spoiling = Plan {
        title: "runner-test".into(),
        steps: vec![step("spoil", None, format!("echo spoiled > {p}/installed")), plan.steps[0].clone()],
    };
    let after = runner::run(&session, &spoiling, &v2, true, |_| {}).await.unwrap();
    let outcomes: Vec<_> = after.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(outcomes, [Outcome::Changed, Outcome::Changed]);
    assert_eq!(std::fs::read(d.path().join("installed")).unwrap(), b"v2");

    let failing = Plan {
        title: "runner-fail".into(),
        steps: vec![step("fetch", None, "echo 'Temporary failure resolving deb.debian.org'; exit 100".into())],
    };
    match runner::run(&session, &failing, &[], true, |_| {}).await {
        Err(e @ RunError::StepFailed { .. }) => {
            let m = e.to_string();
            assert!(m.contains("step `fetch` failed with exit status 100"), "{m}");
            assert!(m.contains("command: echo 'Temporary failure"), "{m}");
            assert!(m.contains("    Temporary failure resolving deb.debian.org"), "{m}");
            assert!(m.contains("hint: the guest cannot reach its package mirrors"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    session.close().await;
}

const STAGED: &str = "/var/lib/sysmonvm/stage/runner-test.txt";

/// Output that looks like markers (another run's nonce, the old form, a marker after text) is
/// output; a marker after output without a final newline still counts; several plans run in one
/// script and report apart.
#[tokio::test]
async fn lookalike_markers_are_output_and_a_marker_after_an_unfinished_line_counts() {
    if !as_root() {
        return;
    }
    let Some(s) = sshd() else { return };
    let first = Plan {
        title: "runner-spoof".into(),
        steps: vec![
            step(
                "spoof",
                None,
                "echo '@@sysmonvm:00112233445566778899aabbccddeeff changed spoof'; echo '@@sysmonvm end 1'; \
                 echo '@@sysmonvm failed spoof 3'; printf 'no final newline'"
                    .into(),
            ),
            step("after", None, "printf 'also none'".into()),
        ],
    };
    let second = Plan { title: "runner-second".into(), steps: vec![step("one", Some("true".into()), "false".into())] };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    let mut out = Vec::new();
    let reports = runner::run_plans(&session, &[&first, &second], &[], true, Default::default(), |e| {
        if let Event::Output(l) = e {
            out.push(l.to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(
        out,
        [
            "@@sysmonvm:00112233445566778899aabbccddeeff changed spoof",
            "@@sysmonvm end 1",
            "@@sysmonvm failed spoof 3",
            "no final newline",
            "also none"
        ]
    );
    let outcomes: Vec<Vec<_>> =
        reports.iter().map(|r| r.steps.iter().map(|s| (s.name.as_str(), s.outcome)).collect()).collect();
    assert_eq!(
        outcomes,
        [vec![("spoof", Outcome::Changed), ("after", Outcome::Changed)], vec![("one", Outcome::Unchanged)]]
    );
    assert_eq!((reports[0].title.as_str(), reports[1].title.as_str()), ("runner-spoof", "runner-second"));
    assert!(reports[0].changed && !reports[1].changed);
    session.close().await;
}

/// A file over 64 KiB travels gzipped (the guest has gzip) and arrives byte for byte; the next
/// run finds it the same and sends nothing.
#[tokio::test]
async fn a_large_file_travels_gzipped_and_arrives_whole() {
    if !as_root() {
        return;
    }
    let Some(s) = sshd() else { return };
    let d = tempfile::tempdir().unwrap();
    let installed = format!("{}/large", d.path().display());
    const LARGE: &str = "/var/lib/sysmonvm/stage/runner-test-large.bin";
    let _ = std::fs::remove_file(LARGE);
    // Half noise (xorshift), half text: like a binary, it compresses, but not to nothing.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut bytes: Vec<u8> = (0..150_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    bytes.extend(b"sysmon-collector ".iter().cycle().take(150_000));
    let plan = Plan {
        title: "runner-large".into(),
        steps: vec![Step {
            uses: vec![LARGE.into()],
            ..step("copy", Some(format!("sysmonvm_same {LARGE} {installed}")), format!("cp {LARGE} {installed}"))
        }],
    };
    let uploads =
        [Upload { path: LARGE.into(), bytes: bytes.clone(), mode: 0o644, installed: Some(installed.clone()) }];
    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    for expect in [Some(true), None] {
        let mut sent = None;
        let r = runner::run(&session, &plan, &uploads, true, |e| {
            if let Event::Sending { gzip, bytes: n, .. } = e {
                assert_eq!(n, 300_000);
                sent = Some(gzip);
            }
        })
        .await
        .unwrap();
        assert_eq!(sent, expect);
        assert_eq!(r.changed, expect.is_some());
        assert_eq!(std::fs::read(&installed).unwrap(), bytes);
    }
    session.close().await;
}

/// A guest that breaks the protocol: asks for a file the run does not have, or for one twice.
#[tokio::test]
async fn a_guest_asking_for_the_wrong_files_ends_the_run() {
    if !as_root() {
        return;
    }
    let Some(s) = sshd() else { return };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    // $M is the run's marker prefix: a step can print markers, as a hostile guest could.
    let unknown = Plan {
        title: "runner-unknown".into(),
        steps: vec![step("asks", None, r#"printf '\n%s need 7\n' "$M"; sleep 30"#.into())],
    };
    match runner::run(&session, &unknown, &[], true, |_| {}).await {
        Err(e @ RunError::Protocol { .. }) => {
            let m = e.to_string();
            assert!(m.contains("asked for file 7, which this run does not have") && m.contains("step `asks`"), "{m}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    let _ = std::fs::remove_file(STAGED);
    let twice = Plan {
        title: "runner-twice".into(),
        steps: vec![Step {
            uses: vec![STAGED.into()],
            ..step("asks", None, r#"printf '\n%s need 0\n' "$M"; sleep 30"#.into())
        }],
    };
    let uploads = [Upload { path: STAGED.into(), bytes: b"once".to_vec(), mode: 0o600, installed: None }];
    match runner::run(&session, &twice, &uploads, true, |_| {}).await {
        Err(e @ RunError::Protocol { .. }) => {
            assert!(e.to_string().contains("asked for /var/lib/sysmonvm/stage/runner-test.txt a second time"), "{e}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    session.close().await;
}

#[tokio::test]
async fn a_dropped_connection_names_the_step_and_a_rerun_continues() {
    if !as_root() {
        return;
    }
    let Some(s) = sshd() else { return };
    let d = tempfile::tempdir().unwrap();
    let p = d.path().display().to_string();
    let plan = Plan {
        title: "runner-drop".into(),
        steps: vec![
            step("first", Some(format!("test -f {p}/first")), format!("touch {p}/first")),
            // Slow the first time only: the connection is dropped while it sleeps.
            step(
                "slow",
                Some(format!("test -f {p}/slow")),
                format!("if [ -f {p}/slept ]; then touch {p}/slow; else touch {p}/slept; sleep 30; fi"),
            ),
            step("last", Some(format!("test -f {p}/last")), format!("touch {p}/last")),
        ],
    };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    let slept = d.path().join("slept");
    let dropper = async {
        while !slept.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.drop_connections();
    };
    let (result, ()) = tokio::join!(runner::run(&session, &plan, &[], true, |_| {}), dropper);
    match result {
        Err(e @ RunError::Interrupted { .. }) => {
            let m = e.to_string();
            assert!(m.contains("dropped during step `slow`") && m.contains("run again to continue"), "{m}");
        }
        other => panic!("expected an interrupted run, got {other:?}"),
    }
    assert!(!d.path().join("last").exists());

    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    let r = runner::run(&session, &plan, &[], true, |_| {}).await.unwrap();
    let outcomes: Vec<_> = r.steps.iter().map(|s| (s.name.as_str(), s.outcome)).collect();
    assert_eq!(outcomes, [("first", Outcome::Unchanged), ("slow", Outcome::Changed), ("last", Outcome::Changed)]);
    session.close().await;
}

/// A step that prints marker-looking lines (the old nonce-less form a package's script could
/// print, and a made-up nonce) cannot report results for itself or others: they are its output.
/// A step whose output does not end with a newline (short, and longer than the line cap) keeps
/// its result: the marker after it starts its own line.
#[tokio::test]
async fn step_output_cannot_spoof_markers_and_an_unterminated_last_line_keeps_the_result() {
    if !as_root() {
        return;
    }
    let Some(s) = sshd() else { return };
    let spoof = "printf '%s\\n' '@@sysmonvm failed packages 100' '@@sysmonvm end 0' \
                 '@@sysmonvm:00000000000000000000000000000000 skipped packages' '@@sysmonvm skipped after'";
    let plan = Plan {
        title: "runner-spoof".into(),
        steps: vec![
            step("packages", None, spoof.into()),
            step("nonl", None, "printf 'no newline at the end'".into()),
            step("long-nonl", None, "head -c 100000 /dev/zero | tr '\\0' z".into()),
            step("after", None, "echo done".into()),
        ],
    };
    let session = common::sshd::connect(&s.target(), Duration::from_secs(10)).await;
    let mut events = Vec::new();
    let r = runner::run(&session, &plan, &[], true, |e| match e {
        Event::Begin { name, .. } => events.push(format!("begin {name}")),
        Event::Output(l) if l.len() > 100 => events.push(format!("out {}…{}", &l[..3], &l[l.len() - 20..])),
        Event::Output(l) => events.push(format!("out {l}")),
        Event::Done(r) => events.push(format!("done {} {:?}", r.name, r.outcome)),
        _ => {}
    })
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            "begin packages",
            "out @@sysmonvm failed packages 100",
            "out @@sysmonvm end 0",
            "out @@sysmonvm:00000000000000000000000000000000 skipped packages",
            "out @@sysmonvm skipped after",
            "done packages Changed",
            "begin nonl",
            "out no newline at the end",
            "done nonl Changed",
            "begin long-nonl",
            "out zzz… cut at 65536 bytes]",
            "done long-nonl Changed",
            "begin after",
            "out done",
            "done after Changed",
        ]
    );
    assert!(r.changed);
    assert_eq!(r.steps.iter().map(|s| s.outcome).collect::<Vec<_>>(), [Outcome::Changed; 4]);
    session.close().await;
}
