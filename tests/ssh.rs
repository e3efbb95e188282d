//! The SSH client against a real OpenSSH sshd on 127.0.0.1 with its own config and keys in a
//! temporary directory: exec with exit status and separate streams, upload, and a host key that
//! differs from the pinned one refused.

mod common;

use common::sshd::{sshd, user};
use std::time::Duration;
use sysmonvm::keys;
use sysmonvm::ssh::{SshError, SshSession, SshTarget};

#[tokio::test]
async fn exec_streams_status_and_upload() {
    let Some(s) = sshd() else { return };
    let t = SshTarget {
        host: "127.0.0.1".into(),
        port: s.port,
        user: user(),
        private_key: s.user_key.clone(),
        pinned_host_key: s.host_pub.clone(),
    };
    let session = common::sshd::connect(&t, Duration::from_secs(10)).await;
    let out = session.exec("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!((out.status, out.stdout.as_slice(), out.stderr.as_slice()), (3, &b"out\n"[..], &b"err\n"[..]));

    let mut chunks = Vec::new();
    let status = session
        .exec_streaming("for i in 1 2 3; do echo line$i; sleep 0.1; done", None, |_, b| chunks.push(b.to_vec()))
        .await
        .unwrap();
    assert_eq!(status, 0);
    assert!(chunks.len() >= 2, "output arrives as it is printed, not at the end: {chunks:?}");

    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("it's uploaded.bin");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    session.upload(&data, remote.to_str().unwrap(), 0o640, false).await.unwrap();
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o777, 0o640);
    session.close().await;
}

#[tokio::test]
async fn a_different_host_key_is_refused() {
    let Some(s) = sshd() else { return };
    let d = tempfile::tempdir().unwrap();
    let other = keys::ensure(&d.path().join("k"), &d.path().join("k.pub"), "other").unwrap();
    let t = SshTarget {
        host: "127.0.0.1".into(),
        port: s.port,
        user: user(),
        private_key: s.user_key.clone(),
        pinned_host_key: other.public_openssh.clone(),
    };
    let e = SshSession::connect(&t, Duration::from_secs(10)).await.err().expect("must not connect");
    match &e {
        SshError::HostKeyMismatch { pinned, offered, .. } => {
            assert_eq!(pinned.split_whitespace().nth(1), other.public_openssh.split_whitespace().nth(1));
            assert_eq!(offered.split_whitespace().nth(1), s.host_pub.split_whitespace().nth(1));
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    assert!(e.to_string().contains("NOT the one pinned"));
}

#[tokio::test]
async fn a_wrong_user_key_is_rejected_and_nothing_listening_times_out_or_refuses() {
    let Some(s) = sshd() else { return };
    let d = tempfile::tempdir().unwrap();
    let stranger = keys::ensure(&d.path().join("k"), &d.path().join("k.pub"), "stranger").unwrap();
    let t = SshTarget {
        host: "127.0.0.1".into(),
        port: s.port,
        user: user(),
        private_key: stranger.private_openssh.clone(),
        pinned_host_key: s.host_pub.clone(),
    };
    assert!(matches!(SshSession::connect(&t, Duration::from_secs(10)).await, Err(SshError::AuthRejected { .. })));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = SshTarget { port: closed, ..t };
    assert!(SshSession::connect(&t, Duration::from_secs(5)).await.is_err());
}
