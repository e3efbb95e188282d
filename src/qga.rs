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
    /// A reply that is not JSON: its start (guest data, quoted) and the parser's reason.
    #[error("guest agent: unreadable reply {text:?}")]
    Unreadable {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("guest agent: {0}")]
    TooLong(FrameTooLong),
    #[error("guest agent: the reply to {command} is not what QEMU's agent sends")]
    Reply {
        command: String,
        #[source]
        source: serde_json::Error,
    },
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
                    return serde_json::from_str(text)
                        .map_err(|source| QgaError::Unreadable { text: text.chars().take(120).collect(), source });
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
    pub async fn facts(&mut self) -> Result<GuestFacts, QgaError> {
        let within = self.begin_call();
        let outcome = tokio::time::timeout(within, self.facts_unbounded()).await;
        self.end_call("guest-get-osinfo and the other facts", within, outcome)
    }

    async fn facts_unbounded(&mut self) -> Result<GuestFacts, QgaError> {
        let os = self.typed("guest-get-osinfo").await?;
        let vcpus = self.typed("guest-get-vcpus").await?;
        // A guest may disable these two (qemu-ga's --block-rpcs): their part is then absent.
        let filesystems = optional(self.typed("guest-get-fsinfo").await)?;
        let interfaces = optional(self.typed("guest-network-get-interfaces").await)?;
        Ok(GuestFacts { os, vcpus, filesystems, interfaces })
    }

    async fn typed<T: serde::de::DeserializeOwned>(&mut self, command: &str) -> Result<T, QgaError> {
        let v = self.execute_unbounded(command, None).await?;
        serde_json::from_value(v).map_err(|source| QgaError::Reply { command: command.to_string(), source })
    }
}

fn optional<T>(r: Result<T, QgaError>) -> Result<Option<T>, QgaError> {
    match r {
        Err(QgaError::Command { .. }) => Ok(None),
        other => other.map(Some),
    }
}

/// What `vm status` asks the guest agent, typed; every field is the guest's word (guest data,
/// sanitised before a terminal) and optional, since agents differ by version and OS.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GuestFacts {
    pub os: GuestOs,
    pub vcpus: Vec<GuestVcpu>,
    /// None when the guest's agent does not offer `guest-get-fsinfo`.
    pub filesystems: Option<Vec<GuestFilesystem>>,
    /// None when the guest's agent does not offer `guest-network-get-interfaces`.
    pub interfaces: Option<Vec<GuestInterface>>,
}

/// `guest-get-osinfo`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuestOs {
    pub id: Option<String>,
    #[serde(rename(deserialize = "pretty-name"))]
    pub pretty_name: Option<String>,
    #[serde(rename(deserialize = "version-id"))]
    pub version_id: Option<String>,
    #[serde(rename(deserialize = "kernel-release"))]
    pub kernel_release: Option<String>,
    pub machine: Option<String>,
}

/// One entry of `guest-get-vcpus`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuestVcpu {
    #[serde(rename(deserialize = "logical-id"))]
    pub logical_id: Option<u64>,
    pub online: Option<bool>,
}

/// One entry of `guest-get-fsinfo`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuestFilesystem {
    pub name: Option<String>,
    pub mountpoint: Option<String>,
    #[serde(rename(deserialize = "type"))]
    pub fs_type: Option<String>,
    #[serde(rename(deserialize = "total-bytes"))]
    pub total_bytes: Option<u64>,
    #[serde(rename(deserialize = "used-bytes"))]
    pub used_bytes: Option<u64>,
}

/// One entry of `guest-network-get-interfaces`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuestInterface {
    pub name: Option<String>,
    #[serde(rename(deserialize = "hardware-address"))]
    pub hardware_address: Option<String>,
    #[serde(rename(deserialize = "ip-addresses"))]
    pub ip_addresses: Vec<GuestIpAddress>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuestIpAddress {
    #[serde(rename(deserialize = "ip-address"))]
    pub address: Option<String>,
    #[serde(rename(deserialize = "ip-address-type"))]
    pub kind: Option<String>,
    pub prefix: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_parse_the_agents_field_names_and_refuse_other_shapes() {
        // The shapes of QEMU's qga/qapi-schema.json (GuestOSInfo, GuestLogicalProcessor,
        // GuestFilesystemInfo, GuestNetworkInterface), with a field a newer agent may add.
        let os: GuestOs = serde_json::from_value(json!({
            "id": "almalinux", "pretty-name": "AlmaLinux 9.5", "version-id": "9.5",
            "kernel-release": "5.14.0-503.el9.aarch64", "machine": "aarch64", "variant": "x"
        }))
        .unwrap();
        assert_eq!(os.pretty_name.as_deref(), Some("AlmaLinux 9.5"));
        assert_eq!(os.kernel_release.as_deref(), Some("5.14.0-503.el9.aarch64"));
        let fs: Vec<GuestFilesystem> = serde_json::from_value(json!([
            {"name": "vda1", "mountpoint": "/", "type": "xfs", "total-bytes": 10, "used-bytes": 4, "disk": []}
        ]))
        .unwrap();
        assert_eq!((fs[0].fs_type.as_deref(), fs[0].used_bytes), (Some("xfs"), Some(4)));
        let net: Vec<GuestInterface> =
            serde_json::from_value(json!([{"name": "eth0", "hardware-address": "52:54:00:12:34:56",
            "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24}]}]))
            .unwrap();
        assert_eq!(net[0].ip_addresses[0].address.as_deref(), Some("10.0.2.15"));
        // Typed output: snake_case keys, not the agent's.
        let out = serde_json::to_value(&os).unwrap();
        assert_eq!(out["pretty_name"], "AlmaLinux 9.5");
        assert!(serde_json::from_value::<Vec<GuestVcpu>>(json!("not a list")).is_err());
        assert!(serde_json::from_value::<GuestOs>(json!({"pretty-name": 7})).is_err());
    }

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
