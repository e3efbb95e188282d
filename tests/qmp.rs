//! The QMP client against a scripted peer on a unix socket that speaks like a QEMU newer than this
//! code: an unknown event arrives before a reply, replies carry fields nobody asked for, and a
//! command fails. The connection must survive all of it. Then a hostile peer: events that never
//! stop and never answer, a greeting that drips, a message without an end, an event flood; and
//! the framing fuzzed (fixed seeds, iteration counts printed).

use serde_json::json;
use std::time::{Duration, Instant};
use sysmonvm::qmp::{FrameTooLong, Frames, QMP_EVENTS_KEPT, QMP_MESSAGE_CAP, QmpClient, QmpError, READ_CHUNK};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

async fn peer(listener: UnixListener) {
    let (stream, _) = listener.accept().await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let send = |v: serde_json::Value| format!("{v}\r\n");
    w.write_all(send(json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 12}, "package": ""}, "capabilities": ["oob"], "future-field": true}})).as_bytes()).await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        let req: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = req["id"].clone();
        let reply = match req["execute"].as_str().unwrap() {
            "qmp_capabilities" => json!({"return": {}, "id": id}),
            "query-status" => {
                w.write_all(send(json!({"event": "VFIO_MIGRATION_FROM_QEMU_12", "data": {"device": "x", "new-thing": [1, 2]}, "timestamp": {"seconds": 1, "microseconds": 2}})).as_bytes()).await.unwrap();
                w.write_all(send(json!({"event": "RTC_CHANGE", "data": {"offset": 0}, "timestamp": {"seconds": 1, "microseconds": 3}})).as_bytes()).await.unwrap();
                json!({"return": {"status": "running", "running": true, "singlestep": false, "added-in-qemu-12": "x"}, "id": id})
            }
            "system_powerdown" => {
                w.write_all(send(json!({"return": {}, "id": id})).as_bytes()).await.unwrap();
                json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 2, "microseconds": 0}})
            }
            "no-such-command" => {
                json!({"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}, "id": id})
            }
            _ => json!({"return": {}, "id": id}),
        };
        w.write_all(send(reply).as_bytes()).await.unwrap();
    }
}

#[tokio::test]
async fn unknown_events_and_fields_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(peer(listener));
    let mut c = QmpClient::connect(&path, Duration::from_secs(5)).await.unwrap();
    assert_eq!(c.greeting["QMP"]["version"]["qemu"]["major"], 12);
    let s = c.query_status().await.unwrap();
    assert_eq!((s.status.as_str(), s.running), ("running", true));
    let names: Vec<&str> = c.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["VFIO_MIGRATION_FROM_QEMU_12", "RTC_CHANGE"]);
    assert_eq!(c.events[0].data["new-thing"], json!([1, 2]));
    // Still usable after the unknown event: an error reply, then a powerdown and its event.
    match c.execute("no-such-command", None).await {
        Err(QmpError::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
        other => panic!("{other:?}"),
    }
    c.system_powerdown().await.unwrap();
    let e = c.wait_event("SHUTDOWN", Duration::from_secs(2)).await.unwrap();
    assert_eq!(e.data["guest"], true);
}

#[tokio::test]
async fn garbage_and_a_closed_socket_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"this is not json\r\n").await.unwrap();
    });
    let e = QmpClient::connect(&path, Duration::from_secs(2)).await;
    assert!(matches!(&e, Err(QmpError::Unreadable { text, .. }) if text == "this is not json"), "{:?}", e.err());
    let missing = dir.path().join("missing.sock");
    assert!(matches!(QmpClient::connect(&missing, Duration::from_secs(1)).await, Err(QmpError::Connect { .. })));
}

/// How long past its deadline a call may take to end on a loaded machine: a call that ends at all
/// ends at its deadline; this bound only tells "ends" from "runs on".
const SLACK: Duration = Duration::from_secs(10);

const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

/// A socket for a scripted peer.
fn listen(dir: &tempfile::TempDir) -> (std::path::PathBuf, UnixListener) {
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    (path, listener)
}

/// Greets and answers `qmp_capabilities`; returns the lines reader and the writer.
async fn greet(
    listener: &UnixListener,
) -> (tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>, tokio::net::unix::OwnedWriteHalf) {
    let (stream, _) = listener.accept().await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(GREETING.as_bytes()).await.unwrap();
    let caps: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    w.write_all(format!("{}\r\n", json!({"return": {}, "id": caps["id"]})).as_bytes()).await.unwrap();
    (lines, w)
}

#[tokio::test]
async fn events_that_never_stop_do_not_extend_a_call_past_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = listen(&dir);
    tokio::spawn(async move {
        let (mut lines, mut w) = greet(&listener).await;
        let _query = lines.next_line().await;
        // An event every 500 ms and never the reply: each read succeeds well inside the timeout.
        loop {
            let e =
                json!({"event": "RTC_CHANGE", "data": {"offset": 1}, "timestamp": {"seconds": 1, "microseconds": 0}});
            if w.write_all(format!("{e}\r\n").as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let timeout = Duration::from_secs(2);
    let mut c = QmpClient::connect(&path, timeout).await.unwrap();
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout + SLACK, c.query_status()).await.expect("query-status never ended");
    match outcome {
        Err(QmpError::Timeout { operation, within }) => {
            assert_eq!((operation.as_str(), within), ("query-status", timeout));
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= timeout, "ended before its deadline: {:?}", started.elapsed());
    assert!(!c.events.is_empty(), "the events that arrived meanwhile are kept");
    let text = sysmonvm::errors::chain(&c.query_status().await.unwrap_err());
    assert!(text.contains("query-status") && text.contains("no answer within 2s"), "{text}");
}

#[tokio::test]
async fn a_greeting_that_drips_ends_at_the_connect_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = listen(&dir);
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        for b in GREETING.as_bytes().iter().cycle().filter(|b| **b != b'\n') {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let timeout = Duration::from_secs(2);
    let outcome =
        tokio::time::timeout(timeout + SLACK, QmpClient::connect(&path, timeout)).await.expect("connect never ended");
    assert!(
        matches!(&outcome, Err(QmpError::Timeout { operation, .. }) if operation == "connecting"),
        "{:?}",
        outcome.err()
    );
}

#[tokio::test]
async fn a_message_without_an_end_is_an_error_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = listen(&dir);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let (mut lines, mut w) = greet(&listener).await;
        let _query = lines.next_line().await;
        let chunk = vec![b'x'; 64 << 10];
        while w.write_all(&chunk).await.is_ok() {
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let timeout = Duration::from_secs(30);
    let mut c = QmpClient::connect(&path, timeout).await.unwrap();
    let outcome = tokio::time::timeout(timeout + SLACK, c.query_status()).await.expect("query-status never ended");
    let Err(QmpError::TooLong(FrameTooLong { cap, held })) = outcome else { panic!("{outcome:?}") };
    assert_eq!(cap, QMP_MESSAGE_CAP);
    // What the client retained: the cap plus at most one read.
    assert!(held > cap && held <= cap + READ_CHUNK, "held {held} bytes");
    let text = sysmonvm::errors::chain(&QmpError::TooLong(FrameTooLong { cap, held }));
    assert!(text.contains("longer than 16777216 bytes without a newline"), "{text}");
    drop(c);
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) >= cap, "the peer sent less than the cap");
}

#[tokio::test]
async fn an_event_flood_keeps_the_newest_events_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = listen(&dir);
    let flood = 3 * QMP_EVENTS_KEPT;
    tokio::spawn(async move {
        let (mut lines, mut w) = greet(&listener).await;
        let req: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let mut burst = String::new();
        for i in 0..flood {
            burst.push_str(&format!("{}\r\n", json!({"event": "RTC_CHANGE", "data": {"offset": i}})));
        }
        burst.push_str(&format!("{}\r\n", json!({"return": {"status": "running", "running": true}, "id": req["id"]})));
        w.write_all(burst.as_bytes()).await.unwrap();
        let _ = lines.next_line().await;
    });
    let mut c = QmpClient::connect(&path, Duration::from_secs(30)).await.unwrap();
    assert!(c.query_status().await.unwrap().running);
    assert_eq!(c.events.len(), QMP_EVENTS_KEPT);
    assert_eq!(c.events_dropped, (flood - QMP_EVENTS_KEPT) as u64);
    assert_eq!(c.events.last().unwrap().data["offset"], flood - 1);
}

#[tokio::test]
async fn wait_event_has_one_deadline_however_many_other_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (path, listener) = listen(&dir);
    tokio::spawn(async move {
        let (_lines, mut w) = greet(&listener).await;
        loop {
            let e = json!({"event": "RTC_CHANGE", "data": {}});
            if w.write_all(format!("{e}\r\n").as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut c = QmpClient::connect(&path, Duration::from_secs(5)).await.unwrap();
    let within = Duration::from_secs(2);
    let outcome = tokio::time::timeout(within + SLACK, c.wait_event("SHUTDOWN", within)).await.expect("never ended");
    assert!(
        matches!(&outcome, Err(QmpError::Timeout { operation, .. }) if operation.contains("SHUTDOWN")),
        "{outcome:?}"
    );
}

#[path = "common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

/// What [`Frames`] must give for `stream` with `cap`: each newline-ended piece, or an error for a
/// piece longer than the cap (a trailing unfinished piece is an error only once over the cap).
fn reference_frames(stream: &[u8], cap: usize) -> Vec<Result<Vec<u8>, ()>> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    let unfinished = pieces.pop().unwrap_or_default();
    for p in pieces {
        out.push(if p.len() > cap { Err(()) } else { Ok(p.to_vec()) });
    }
    if unfinished.len() > cap {
        out.push(Err(()));
    }
    out
}

#[test]
fn fuzz_the_framing_against_a_plain_split() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let seed = 0x5eed_f4a3_u64;
    eprintln!("fuzz_the_framing_against_a_plain_split: seed {seed:#x}, {iterations} iterations");
    let mut rng = Rng(seed);
    let alphabet = [b'\n', b'\r', b'{', b'}', b'"', b'x', 0xFF, 0];
    for _ in 0..iterations {
        let cap = 1 + rng.below(40);
        let len = rng.below(400);
        let stream: Vec<u8> = (0..len)
            .map(|_| if rng.below(4) == 0 { alphabet[rng.below(alphabet.len())] } else { b'a' + rng.below(3) as u8 })
            .collect();
        let mut frames = Frames::new(cap);
        let mut got = Vec::new();
        let mut max_held = 0;
        let mut at = 0;
        while at < stream.len() {
            let n = 1 + rng.below(60);
            let chunk = &stream[at..(at + n).min(stream.len())];
            at += chunk.len();
            frames.push(chunk);
            max_held = max_held.max(frames.held());
            loop {
                match frames.next_frame() {
                    Ok(Some(f)) => got.push(Ok(f)),
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(e.cap, cap);
                        assert!(e.held > cap, "{e:?}");
                        got.push(Err(()));
                    }
                }
            }
            assert!(frames.held() <= cap, "held {} with cap {cap} between chunks", frames.held());
        }
        assert_eq!(got, reference_frames(&stream, cap), "stream {:?} cap {cap}", String::from_utf8_lossy(&stream));
        assert!(max_held <= cap + 60, "held {max_held} with cap {cap} and chunks of at most 60");
    }
}

/// Real QEMU 7.2 messages, mutated, from a peer: every outcome is a value or an error, never a
/// panic or a hang past the deadline.
#[tokio::test]
async fn fuzz_mutated_qemu_messages_from_a_real_socket() {
    let iterations: usize =
        std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse::<usize>().ok()).map(|n| n / 10).unwrap_or(150);
    let seed = 0x0e47_1234_u64;
    eprintln!("fuzz_mutated_qemu_messages_from_a_real_socket: seed {seed:#x}, {iterations} iterations");
    let mut rng = Rng(seed);
    let script = [
        GREETING.to_string(),
        "{\"return\": {}, \"id\": 1}\r\n".to_string(),
        "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, \"event\": \"RTC_CHANGE\", \"data\": {\"offset\": -1}}\r\n".to_string(),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": 2}\r\n".to_string(),
    ]
    .concat()
    .into_bytes();
    let junk: [&[u8]; 9] = [b"\r\n", b"\n", b"{", b"}", b"\"", b"\xff", b"\0", b"\"id\": 2", b"\"event\""];
    let dir = tempfile::tempdir().unwrap();
    for i in 0..iterations {
        let mut bytes = script.clone();
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
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(&bytes).await;
            // Keep the socket open for a moment, then close: both a stall and an end are met.
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        let timeout = Duration::from_millis(500);
        let run = async {
            let mut c = QmpClient::connect(&path, timeout).await?;
            c.query_status().await
        };
        let outcome = tokio::time::timeout(timeout * 2 + SLACK, run).await.expect("a call never ended");
        if let Err(e) = outcome {
            let _ = sysmonvm::errors::chain(&e);
        }
        peer.abort();
    }
}
