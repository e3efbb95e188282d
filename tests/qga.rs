//! The guest-agent client against a scripted agent on a real unix socket: stale bytes before the
//! sync marker, a stale reply before ours, an unsupported command; then a hostile guest: a sync
//! answered with the wrong id every 2 s (the reproduction: `vm status` ran on and on
//! against its 3 s timeout), a reply that never ends, a reply that comes too late for its call;
//! and mutated agent transcripts (fixed seed, iteration count printed). The reproduction also
//! runs through the real `sysmonvm vm status` binary on a VM whose QMP and agent sockets are
//! scripted peers.

mod common;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use sysmonvm::qga::{QGA_REPLY_CAP, QgaClient, QgaError};
use sysmonvm::qmp::{FrameTooLong, READ_CHUNK};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long past its deadline a call may take to end on a loaded machine: a call that ends at all
/// ends at its deadline; this bound only tells "ends" from "runs on".
const SLACK: Duration = Duration::from_secs(10);

/// The agent's side: each request line as JSON (the client's 0xFF resync byte stripped).
struct Agent {
    requests: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Agent {
    async fn accept(listener: &UnixListener) -> Agent {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, w) = stream.into_split();
        Agent { requests: BufReader::new(r), w }
    }

    async fn next(&mut self) -> Option<Value> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if self.requests.read_until(b'\n', &mut line).await.ok()? == 0 {
                return None;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{FFFD}');
            if !text.is_empty() {
                return serde_json::from_str(text).ok();
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.w.write_all(bytes).await.is_ok()
    }

    async fn reply(&mut self, v: Value) -> bool {
        self.send(format!("{v}\n").as_bytes()).await
    }

    /// Answers a `guest-sync-delimited` as qemu-ga does: 0xFF, then the id back.
    async fn answer_sync(&mut self, req: &Value) -> bool {
        assert_eq!(req["execute"], "guest-sync-delimited", "{req}");
        self.send(b"\xff").await && self.reply(json!({"return": req["arguments"]["id"]})).await
    }
}

fn socket(dir: &tempfile::TempDir) -> (std::path::PathBuf, UnixListener) {
    let path = dir.path().join("qga.sock");
    let listener = UnixListener::bind(&path).unwrap();
    (path, listener)
}

fn facts_reply(command: &str) -> Value {
    match command {
        "guest-get-osinfo" => {
            json!({"return": {"id": "debian", "pretty-name": "Debian GNU/Linux 12 (bookworm)", "new-field": 1}})
        }
        "guest-get-vcpus" => json!({"return": [{"logical-id": 0, "online": true}, {"logical-id": 1, "online": true}]}),
        "guest-get-fsinfo" => {
            json!({"error": {"class": "CommandNotFound", "desc": "Command guest-get-fsinfo has been disabled"}})
        }
        "guest-network-get-interfaces" => json!({"return": [{"name": "lo"}]}),
        "guest-ping" => json!({"return": {}}),
        other => {
            json!({"error": {"class": "CommandNotFound", "desc": format!("The command {other} has not been found")}})
        }
    }
}

#[tokio::test]
async fn stale_bytes_and_replies_before_the_sync_are_dropped_and_facts_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = socket(&dir);
    tokio::spawn(async move {
        let mut a = Agent::accept(&listener).await;
        let sync = a.next().await.unwrap();
        // What an earlier client left in the channel, a stale marker and reply, then ours.
        a.send(b"{\"return\": \"half a reply from bef").await;
        a.send(b"\xff").await;
        a.reply(json!({"return": 12345})).await;
        a.answer_sync(&sync).await;
        while let Some(req) = a.next().await {
            if !a.reply(facts_reply(req["execute"].as_str().unwrap())).await {
                return;
            }
        }
    });
    let mut c = QgaClient::connect(&path, Duration::from_secs(5)).await.unwrap();
    let f = c.facts().await.unwrap();
    assert_eq!(f.os.id.as_deref(), Some("debian"));
    assert_eq!(f.os.pretty_name.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    assert_eq!(f.vcpus.len(), 2);
    assert_eq!(f.vcpus[1].logical_id, Some(1));
    assert_eq!(f.filesystems, None, "an unsupported command leaves its part out");
    assert_eq!(f.interfaces.as_ref().unwrap()[0].name.as_deref(), Some("lo"));
    match c.execute("guest-no-such", None).await {
        Err(QgaError::Command { command, desc }) => {
            assert!(command == "guest-no-such" && desc.contains("not been found"))
        }
        other => panic!("{other:?}"),
    }
    c.ping().await.unwrap();
}

/// The reproduction: the agent answers `guest-sync` with the wrong id every 2 s. Each read
/// came well within the 3 s timeout, so the sync never ended.
#[tokio::test]
async fn a_sync_answered_with_the_wrong_id_every_two_seconds_ends_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = socket(&dir);
    tokio::spawn(async move {
        let mut a = Agent::accept(&listener).await;
        let sync = a.next().await.unwrap();
        let wrong = sync["arguments"]["id"].as_u64().unwrap() + 1;
        loop {
            if !(a.send(b"\xff").await && a.reply(json!({"return": wrong})).await) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout + SLACK, QgaClient::connect(&path, timeout))
        .await
        .expect("the sync never ended: the deadline is per read, not per call");
    let Err(e) = outcome else { panic!("synced with the wrong id") };
    let QgaError::Timeout { operation, within, skipped } = &e else { panic!("{e:?}") };
    assert_eq!((operation.as_str(), *within), ("guest-sync-delimited", timeout));
    assert!(*skipped >= 1, "the wrong-id replies are counted: {skipped}");
    assert!(started.elapsed() >= timeout, "ended before its deadline: {:?}", started.elapsed());
    let text = sysmonvm::errors::chain(&e);
    assert!(text.contains("guest-sync-delimited: no answer within 3s") && text.contains("not ours skipped"), "{text}");
}

/// The agent streams bytes without a newline in answer to `guest-get-osinfo`: `vm status`'s facts
/// call ends at the cap, having held no more than the cap and one read.
#[tokio::test]
async fn a_reply_without_an_end_is_an_error_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = socket(&dir);
    tokio::spawn(async move {
        let mut a = Agent::accept(&listener).await;
        let sync = a.next().await.unwrap();
        a.answer_sync(&sync).await;
        let _osinfo = a.next().await;
        let chunk = vec![b'A'; 64 << 10];
        while a.send(&chunk).await {}
    });
    let timeout = Duration::from_secs(30);
    let mut c = QgaClient::connect(&path, timeout).await.unwrap();
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout + SLACK, c.facts()).await.expect("facts never ended");
    let Err(e) = outcome else { panic!("facts from an endless reply") };
    let QgaError::TooLong(FrameTooLong { cap, held }) = e else { panic!("{e:?}") };
    assert_eq!(cap, QGA_REPLY_CAP);
    assert!(held > cap && held <= cap + READ_CHUNK, "held {held} bytes");
    assert!(started.elapsed() < timeout, "ended by the deadline, not the cap: {:?}", started.elapsed());
    assert!(sysmonvm::errors::chain(&e).contains("longer than 1048576 bytes without a newline"));
}

/// A reply that comes after its call's deadline must not be taken as the next call's answer: the
/// call after a timeout resyncs first.
#[tokio::test]
async fn a_late_reply_is_not_the_answer_to_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = socket(&dir);
    tokio::spawn(async move {
        let mut a = Agent::accept(&listener).await;
        let sync = a.next().await.unwrap();
        a.answer_sync(&sync).await;
        let slow = a.next().await.unwrap();
        assert_eq!(slow["execute"], "guest-get-osinfo");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.reply(json!({"return": {"id": "late"}})).await;
        while let Some(req) = a.next().await {
            let ok = match req["execute"].as_str().unwrap() {
                "guest-sync-delimited" => a.answer_sync(&req).await,
                "guest-get-osinfo" => a.reply(json!({"return": {"id": "fresh"}})).await,
                other => a.reply(facts_reply(other)).await,
            };
            if !ok {
                return;
            }
        }
    });
    let mut c = QgaClient::connect(&path, Duration::from_secs(1)).await.unwrap();
    let first = c.execute("guest-get-osinfo", None).await;
    assert!(matches!(&first, Err(QgaError::Timeout { operation, .. }) if operation == "guest-get-osinfo"), "{first:?}");
    tokio::time::sleep(Duration::from_millis(800)).await; // the late reply is in the socket now
    let second = c.execute("guest-get-osinfo", None).await.unwrap();
    assert_eq!(second["id"], "fresh");
}

#[tokio::test]
async fn a_closed_socket_and_garbage_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = socket(&dir);
    tokio::spawn(async move {
        let mut a = Agent::accept(&listener).await;
        let sync = a.next().await.unwrap();
        a.send(b"\xffnot json at all\n").await;
        let _ = sync;
    });
    let outcome = QgaClient::connect(&path, Duration::from_secs(5)).await;
    assert!(
        matches!(&outcome, Err(QgaError::Unreadable { text, .. }) if text.contains("not json")),
        "{:?}",
        outcome.err()
    );

    let (path2, listener2) =
        (dir.path().join("closed.sock"), UnixListener::bind(dir.path().join("closed.sock")).unwrap());
    tokio::spawn(async move {
        let mut a = Agent::accept(&listener2).await;
        let _ = a.next().await;
    });
    let outcome = QgaClient::connect(&path2, Duration::from_secs(5)).await;
    assert!(matches!(&outcome, Err(QgaError::Protocol(p)) if p == "connection closed"), "{:?}", outcome.err());
}

/// A QMP peer that answers as QEMU does, for as many connections as come.
async fn qmp_peer(listener: UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            let greeting = json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}});
            if w.write_all(format!("{greeting}\r\n").as_bytes()).await.is_err() {
                return;
            }
            while let Ok(Some(line)) = lines.next_line().await {
                let req: Value = serde_json::from_str(&line).unwrap();
                let reply = match req["execute"].as_str() {
                    Some("query-status") => json!({"return": {"status": "running", "running": true}, "id": req["id"]}),
                    _ => json!({"return": {}, "id": req["id"]}),
                };
                if w.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// `vm status` on a VM whose guest agent answers the sync with the wrong id every 2 s: the
/// command ends (it ran on for as long as the agent kept talking) with the agent's error in its
/// report and the QMP state still shown.
#[tokio::test]
async fn vm_status_ends_when_the_agent_answers_the_sync_with_the_wrong_id_every_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let ws_dir = dir.path().join("ws");
    let ws = sysmonvm::workspace::Workspace::at(&ws_dir);
    let vm = ws.vm("lab").unwrap();
    std::fs::create_dir_all(&vm.dir).unwrap();
    let yaml = "name: fw\narch: x86_64\naccel: tcg\nmachine: q35\ncpu: max\nsmp: 1\nmemory_mib: 256\ndisk_gib: 1\nfirmware: auto\nimage:\n  path: /nonexistent.qcow2\n  sha256: 0000000000000000000000000000000000000000000000000000000000000000\nssh:\n  user: tester\nseed: virtio\nguest_family: apt\n";
    let profile_file = dir.path().join("profile.yaml");
    std::fs::write(&profile_file, yaml).unwrap();
    let profile = sysmonvm::profile::load(profile_file.to_str().unwrap(), None).unwrap();
    sysmonvm::vm::save_state(
        &vm,
        &sysmonvm::vm::VmState {
            name: "lab".into(),
            profile,
            profile_source: profile_file.display().to_string(),
            image_path: "/nonexistent.qcow2".into(),
            image_sha256: "0".repeat(64),
            instance_id: "lab-1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            accel: None,
            ssh_port: None,
            forwards: Vec::new(),
            guest_address: None,
            collector_mode: Default::default(),
        },
    )
    .unwrap();
    // The VM's process: it carries what identifies this VM's QEMU (`-name`, `-pidfile`, the QMP
    // chardev) as its own arguments, and lives for the test.
    let qmp_chardev =
        format!("socket,id=qmp,path={},server=on,wait=off", vm.qmp_socket.display().to_string().replace(',', ",,"));
    let pidfile = vm.pidfile.display().to_string();
    let mut fake_qemu = std::process::Command::new("sh")
        .args([
            "-c",
            "sleep 300",
            "qemu-system-x86_64",
            "-name",
            "sysmonvm-lab",
            "-chardev",
            &qmp_chardev,
            "-pidfile",
            &pidfile,
        ])
        .spawn()
        .unwrap();
    std::fs::write(&vm.pidfile, fake_qemu.id().to_string()).unwrap();
    tokio::spawn(qmp_peer(UnixListener::bind(&vm.qmp_socket).unwrap()));
    let agent_socket = UnixListener::bind(&vm.qga_socket).unwrap();
    tokio::spawn(async move {
        loop {
            let mut a = Agent::accept(&agent_socket).await;
            tokio::spawn(async move {
                let Some(sync) = a.next().await else { return };
                let wrong = sync["arguments"]["id"].as_u64().unwrap_or(0) + 1;
                while a.send(b"\xff").await && a.reply(json!({"return": wrong})).await {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
    });

    let started = Instant::now();
    let ws_arg = ws_dir.clone();
    let run = tokio::task::spawn_blocking(move || common::sysmonvm_json(&ws_arg, &["vm", "status", "lab"]));
    // QMP connect + query-status (3 s each) and the agent's connect + sync (its deadline).
    let agent = sysmonvm::vm::GUEST_AGENT_DEADLINE;
    let outcome = tokio::time::timeout(Duration::from_secs(2 * 3) + 2 * agent + SLACK, run).await;
    let _ = fake_qemu.kill();
    let _ = fake_qemu.wait();
    let (code, v, stderr) = outcome.expect("vm status never ended").unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["qmp_status"], "running", "{v}");
    assert_eq!(v["guest_agent"], Value::Null, "{v}");
    let err = v["guest_agent_error"].as_str().unwrap_or_default();
    assert!(err.contains(&format!("guest-sync-delimited: no answer within {}s", agent.as_secs())), "{v}");
    assert!(started.elapsed() >= agent, "the agent's deadline was not waited for: {v}");
}

#[path = "common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

/// An agent's replies after the sync, mutated: `facts` gives a value or an error, never a panic
/// or a hang past its deadline.
#[tokio::test]
async fn fuzz_mutated_agent_replies_from_a_real_socket() {
    let iterations: usize =
        std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse::<usize>().ok()).map(|n| n / 10).unwrap_or(150);
    let seed = 0x0a9e_4777_u64;
    eprintln!("fuzz_mutated_agent_replies_from_a_real_socket: seed {seed:#x}, {iterations} iterations");
    let mut rng = Rng(seed);
    let transcript: Vec<u8> =
        ["guest-get-osinfo", "guest-get-vcpus", "guest-get-fsinfo", "guest-network-get-interfaces"]
            .iter()
            .map(|c| format!("{}\n", facts_reply(c)))
            .collect::<String>()
            .into_bytes();
    let junk: [&[u8]; 9] = [b"\n", b"\xff", b"{", b"}", b"\"", b"\0", b"\"return\"", b"\"error\"", b"\r\n"];
    let dir = tempfile::tempdir().unwrap();
    for i in 0..iterations {
        let mut bytes = transcript.clone();
        for _ in 0..=rng.below(4) {
            match rng.below(3) {
                0 if !bytes.is_empty() => {
                    let at = rng.below(bytes.len());
                    bytes.remove(at);
                }
                1 => {
                    let at = rng.below(bytes.len() + 1);
                    let j = junk[rng.below(junk.len())];
                    bytes.splice(at..at, j.iter().copied());
                }
                _ => bytes.truncate(rng.below(bytes.len() + 1)),
            }
        }
        let path = dir.path().join(format!("{i}.sock"));
        let listener = UnixListener::bind(&path).unwrap();
        let agent = tokio::spawn(async move {
            let mut a = Agent::accept(&listener).await;
            let sync = a.next().await.unwrap();
            a.answer_sync(&sync).await;
            let _ = a.send(&bytes).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        let timeout = Duration::from_millis(500);
        let run = async {
            let mut c = QgaClient::connect(&path, timeout).await?;
            c.facts().await
        };
        let outcome = tokio::time::timeout(timeout * 2 + SLACK, run).await.expect("a call never ended");
        if let Err(e) = outcome {
            let _ = sysmonvm::errors::chain(&e);
        }
        agent.abort();
    }
}
