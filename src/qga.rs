//! A thin async client for the QEMU guest agent on the VM's virtio-serial socket. The channel has
//! no framing of its own and may hold stale bytes from an earlier client, so every session starts
//! with `guest-sync-delimited`: a 0xFF byte from the agent marks where fresh replies begin.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

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
    #[error("guest agent: no answer within {0:?} (is qemu-guest-agent running in the guest?)")]
    Timeout(Duration),
    /// What the agent sent or did (an unreadable reply, a closed connection): data, kept as text.
    #[error("guest agent: {0}")]
    Protocol(String),
    #[error("guest agent command {command} failed: {desc}")]
    Command { command: String, desc: String },
}

pub struct QgaClient {
    stream: UnixStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl QgaClient {
    pub async fn connect(path: &Path, timeout: Duration) -> Result<QgaClient, QgaError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QgaError::Timeout(timeout))?
            .map_err(|source| QgaError::Connect { path: path.display().to_string(), source })?;
        let mut c = QgaClient { stream, buf: Vec::new(), timeout };
        c.sync().await?;
        Ok(c)
    }

    async fn read_more(&mut self) -> Result<(), QgaError> {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
            .await
            .map_err(|_| QgaError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(QgaError::Protocol("connection closed".into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next complete JSON object in the stream (replies end with a newline).
    async fn read_json(&mut self) -> Result<Value, QgaError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{FFFD}');
                if text.is_empty() {
                    continue;
                }
                return serde_json::from_str(text).map_err(|_| {
                    QgaError::Protocol(format!("unreadable reply {:?}", text.chars().take(120).collect::<String>()))
                });
            }
            self.read_more().await?;
        }
    }

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
        // Drop everything up to the agent's 0xFF marker, then read replies until ours.
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == 0xFF) {
                self.buf.drain(..=pos);
                break;
            }
            self.buf.clear();
            self.read_more().await?;
        }
        loop {
            let v = self.read_json().await?;
            if v.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(());
            }
        }
    }

    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QgaError> {
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

    pub async fn ping(&mut self) -> Result<(), QgaError> {
        self.execute("guest-ping", None).await.map(|_| ())
    }

    /// OS, vCPUs, filesystems and addresses: what `vm status` shows without SSH.
    pub async fn facts(&mut self) -> Result<Value, QgaError> {
        let os = self.execute("guest-get-osinfo", None).await?;
        let vcpus = self.execute("guest-get-vcpus", None).await?;
        let fs = self.execute("guest-get-fsinfo", None).await.unwrap_or(Value::Null);
        let net = self.execute("guest-network-get-interfaces", None).await.unwrap_or(Value::Null);
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
