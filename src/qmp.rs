//! A thin async QMP client (QEMU Machine Protocol over the VM's unix socket). Events are kept as
//! a name and a JSON value, and replies are plain JSON, so events and fields newer than this code
//! pass through instead of ending the connection (the `qapi` crate's 0.15 release drops the whole
//! stream on an event it does not know; see ARCHITECTURE.md).

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: cannot connect")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP: reading or writing the socket")]
    Io(#[from] std::io::Error),
    #[error("QMP: encoding the {command} command")]
    Encode {
        command: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("QMP: no answer within {0:?}")]
    Timeout(Duration),
    #[error("QMP: connection closed by QEMU")]
    Closed,
    /// What QEMU sent (cut to 200 characters): data from the peer, so it is kept as text.
    #[error("QMP: unreadable message {0:?}")]
    Garbled(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    timeout: Duration,
    /// Every event seen so far, known or not, in arrival order.
    pub events: Vec<Event>,
    pub greeting: Value,
}

/// `query-status` as far as sysmonvm needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// `running`, `paused`, `shutdown`, `internal-error`, `prelaunch`, …
    pub status: String,
    pub running: bool,
}

impl QmpClient {
    pub async fn connect(path: &Path, timeout: Duration) -> Result<QmpClient, QmpError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout(timeout))?
            .map_err(|source| QmpError::Connect { path: path.display().to_string(), source })?;
        let (r, w) = stream.into_split();
        let mut c = QmpClient {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            timeout,
            events: Vec::new(),
            greeting: Value::Null,
        };
        c.greeting = c.read_message().await?;
        if c.greeting.get("QMP").is_none() {
            return Err(QmpError::Garbled(c.greeting.to_string()));
        }
        c.execute("qmp_capabilities", None).await?;
        Ok(c)
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = tokio::time::timeout(self.timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(line.trim()).map_err(|_| QmpError::Garbled(line.trim().chars().take(200).collect()))
    }

    /// Runs a command and returns its `return` value. Events that arrive meanwhile are recorded.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut bytes =
            serde_json::to_vec(&msg).map_err(|source| QmpError::Encode { command: command.to_string(), source })?;
        bytes.extend_from_slice(b"\r\n");
        self.writer.write_all(&bytes).await?;
        loop {
            let m = self.read_message().await?;
            if let Some(name) = m.get("event").and_then(Value::as_str) {
                self.events.push(Event { name: name.to_string(), data: m.get("data").cloned().unwrap_or(Value::Null) });
                continue;
            }
            if m.get("id").and_then(Value::as_u64).is_some_and(|i| i != id) {
                continue; // a reply to something else
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: e.get("class").and_then(Value::as_str).unwrap_or("?").to_string(),
                    desc: e.get("desc").and_then(Value::as_str).unwrap_or("?").to_string(),
                });
            }
        }
    }

    pub async fn query_status(&mut self) -> Result<Status, QmpError> {
        let r = self.execute("query-status", None).await?;
        Ok(Status {
            status: r.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string(),
            running: r.get("running").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(|_| ())
    }

    /// Asks QEMU to exit; the connection usually closes before or right after the reply.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// vCPU count and per-vCPU thread ids (`query-cpus-fast`).
    pub async fn query_cpus_fast(&mut self) -> Result<Vec<Value>, QmpError> {
        Ok(self.execute("query-cpus-fast", None).await?.as_array().cloned().unwrap_or_default())
    }

    /// Waits until an event called `name` has been seen (already or within `within`).
    pub async fn wait_event(&mut self, name: &str, within: Duration) -> Result<Event, QmpError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.events.iter().find(|e| e.name == name) {
                return Ok(e.clone());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout(within));
            }
            let saved = self.timeout;
            self.timeout = left;
            let m = self.read_message().await;
            self.timeout = saved;
            let m = m?;
            if let Some(n) = m.get("event").and_then(Value::as_str) {
                self.events.push(Event { name: n.to_string(), data: m.get("data").cloned().unwrap_or(Value::Null) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_named_and_its_io_error_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("missing.sock");
        let Err(e) = QmpClient::connect(&path, Duration::from_secs(2)).await else { panic!("connected to nothing") };
        assert!(matches!(&e, QmpError::Connect { path: p, .. } if *p == path.display().to_string()), "{e:?}");
        let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()).expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(!e.to_string().contains(&io.to_string()), "the cause is said once, by the chain: {e}");
    }
}
