//! The QMP client against a scripted peer on a unix socket that speaks like a QEMU newer than this
//! code: an unknown event arrives before a reply, replies carry fields nobody asked for, and a
//! command fails. The connection must survive all of it.

use serde_json::json;
use std::time::Duration;
use sysmonvm::qmp::{QmpClient, QmpError};
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
    assert!(matches!(QmpClient::connect(&path, Duration::from_secs(2)).await, Err(QmpError::Garbled(_))));
    let missing = dir.path().join("missing.sock");
    assert!(matches!(QmpClient::connect(&missing, Duration::from_secs(1)).await, Err(QmpError::Connect { .. })));
}
