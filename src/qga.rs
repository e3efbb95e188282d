//! A thin async client for the QEMU guest agent on the VM's virtio-serial socket. The channel has
//! no framing of its own and may hold stale bytes from an earlier client, so every session starts
//! with `guest-sync-delimited`: a 0xFF byte from the agent marks where fresh replies begin.
//!
//! The agent is the guest, and the guest is untrusted: every call (connect with its sync, each
//! command, `facts`) has one deadline for the whole call, however many stale or foreign replies
//! arrive meanwhile, and a reply is at most [`QGA_REPLY_CAP`] bytes. A call that fails midway
//! leaves unread replies behind, so the next call resyncs first.

use crate::qmp::{FrameTooLong, Frames};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// The longest reply accepted from the agent (`guest-get-fsinfo` on a big guest is a few KiB).
pub const QGA_REPLY_CAP: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum QgaError {
    #[error("guest agent socket {path}: cannot connect")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("guest agent: reading or writing the socket")]
    Io(#[from] std::io::Error),
    #[error("guest agent: encoding the {command} command")]
    Encode {
        command: String,
        #[source]
        source: serde_json::Error,
    },
    /// One deadline for the whole call; `skipped` counts the replies that were not the answer.
    #[error(
        "guest agent: {operation}: no answer within {within:?}{} (is qemu-guest-agent running in the guest?)",
        if *skipped > 0 { format!(" ({skipped} replies that were not ours skipped)") } else { String::new() }
    )]
    Timeout { operation: String, within: Duration, skipped: u64 },
    /// What the agent sent or did (an unreadable reply, a closed connection): data, kept as text.
    #[error("guest agent: {0}")]
    Protocol(String),
    #[error("guest agent: {0}")]
    TooLong(FrameTooLong),
    #[error("guest agent command {command} failed: {desc}")]
    Command { command: String, desc: String },
}

pub struct QgaClient {
    stream: UnixStream,
    frames: Frames,
    timeout: Duration,
    /// Replies read and dropped in the current call (stale, or to a sync id not ours).
    skipped: u64,
    /// A call failed midway: replies may be left unread, so the next call resyncs first.
    needs_sync: bool,
}

impl QgaClient {
    /// Connects and syncs within `timeout`; every later call gets `timeout` as its own deadline.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<QgaClient, QgaError> {
        let connected = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QgaError::Timeout { operation: "connecting".into(), within: timeout, skipped: 0 })?
            .map_err(|source| QgaError::Connect { path: path.display().to_string(), source })?;
        let mut c =
            QgaClient { stream: connected, frames: Frames::new(QGA_REPLY_CAP), timeout, skipped: 0, needs_sync: true };
        let within = c.begin_call();
        let outcome = tokio::time::timeout(within, c.sync()).await;
        c.end_call("guest-sync-delimited", within, outcome)?;
        Ok(c)
    }

    /// Starts a call: the client's timeout is its one deadline (`tokio::time::timeout` around
    /// the whole call), and [`Self::end_call`] turns what it gave into the call's result.
    fn begin_call(&mut self) -> Duration {
        self.skipped = 0;
        self.timeout
    }

    /// Names a call that ran out of time, and marks the stream for a resync when the call
    /// failed midway (a failed command is a complete reply: no resync needed).
    fn end_call<T>(
        &mut self,
        operation: &str,
        within: Duration,
        outcome: Result<Result<T, QgaError>, tokio::time::error::Elapsed>,
    ) -> Result<T, QgaError> {
        let result = outcome.unwrap_or_else(|_| {
            Err(QgaError::Timeout { operation: operation.to_string(), within, skipped: self.skipped })
        });
        if let Err(e) = &result
            && !matches!(e, QgaError::Command { .. })
        {
            self.needs_sync = true;
        }
        result
    }

    async fn read_more(&mut self) -> Result<(), QgaError> {
        if self.frames.fill(&mut self.stream).await? {
            Ok(())
        } else {
            Err(QgaError::Protocol("connection closed".into()))
        }
    }

    /// The next complete JSON object in the stream (replies end with a newline).
    async fn read_json(&mut self) -> Result<Value, QgaError> {
        loop {
            match self.frames.next_frame() {
                Ok(Some(line)) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{FFFD}');
                    if text.is_empty() {
                        continue;
                    }
                    return serde_json::from_str(text).map_err(|_| {
                        QgaError::Protocol(format!("unreadable reply {:?}", text.chars().take(120).collect::<String>()))
                    });
                }
                Ok(None) => self.read_more().await?,
                Err(too_long) => return Err(QgaError::TooLong(too_long)),
            }
        }
    }

    /// `guest-sync-delimited` with a fresh id: drops everything before the agent's 0xFF marker,
    /// then every reply until the one that carries our id. No deadline of its own.
    async fn sync(&mut self) -> Result<(), QgaError> {
        let id: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 & 0x7fff_ffff)
            .unwrap_or(42);
        let mut msg = vec![0xFF];
        msg.extend(
            serde_json::to_vec(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))
                .unwrap_or_default(),
        );
        msg.push(b'\n');
        self.stream.write_all(&msg).await?;
        while !self.frames.skip_through(0xFF) {
            self.read_more().await?;
        }
        loop {
            let v = self.read_json().await?;
            if v.get("return").and_then(Value::as_u64) == Some(id) {
                self.needs_sync = false;
                return Ok(());
            }
            self.skipped += 1;
        }
    }

    async fn execute_unbounded(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QgaError> {
        if self.needs_sync {
            self.sync().await?;
        }
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut bytes =
            serde_json::to_vec(&msg).map_err(|source| QgaError::Encode { command: command.to_string(), source })?;
        bytes.push(b'\n');
        self.stream.write_all(&bytes).await?;
        let v = self.read_json().await?;
        if let Some(r) = v.get("return") {
            return Ok(r.clone());
        }
        let desc = v.pointer("/error/desc").and_then(Value::as_str).unwrap_or("unknown error").to_string();
        Err(QgaError::Command { command: command.to_string(), desc })
    }

    /// Runs a command and returns its `return` value, within the client's timeout.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QgaError> {
        let within = self.begin_call();
        let outcome = tokio::time::timeout(within, self.execute_unbounded(command, arguments)).await;
        self.end_call(command, within, outcome)
    }

    pub async fn ping(&mut self) -> Result<(), QgaError> {
        self.execute("guest-ping", None).await.map(|_| ())
    }

    /// OS, vCPUs, filesystems and addresses: what `vm status` shows without SSH. One call: the
    /// four commands share one deadline (the client's timeout). An agent that does not support
    /// the filesystem or address query leaves that part null.
    pub async fn facts(&mut self) -> Result<Value, QgaError> {
        let within = self.begin_call();
        let outcome = tokio::time::timeout(within, self.facts_unbounded()).await;
        self.end_call("guest-get-osinfo and the other facts", within, outcome)
    }

    async fn facts_unbounded(&mut self) -> Result<Value, QgaError> {
        let optional = |r: Result<Value, QgaError>| match r {
            Err(QgaError::Command { .. }) => Ok(Value::Null),
            other => other,
        };
        let os = self.execute_unbounded("guest-get-osinfo", None).await?;
        let vcpus = self.execute_unbounded("guest-get-vcpus", None).await?;
        let fs = optional(self.execute_unbounded("guest-get-fsinfo", None).await)?;
        let net = optional(self.execute_unbounded("guest-network-get-interfaces", None).await)?;
        Ok(json!({ "os": os, "vcpus": vcpus, "filesystems": fs, "interfaces": net }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_named_and_its_io_error_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("missing.sock");
        let Err(e) = QgaClient::connect(&path, Duration::from_secs(2)).await else { panic!("connected to nothing") };
        assert!(matches!(&e, QgaError::Connect { path: p, .. } if *p == path.display().to_string()), "{e:?}");
        let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()).expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(!e.to_string().contains(&io.to_string()), "the cause is said once, by the chain: {e}");
    }
}
