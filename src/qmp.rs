//! A thin async QMP client (QEMU Machine Protocol over the VM's unix socket). Events are kept as
//! a name and a JSON value, and replies are plain JSON, so events and fields newer than this code
//! pass through instead of ending the connection (the `qapi` crate's 0.15 release drops the whole
//! stream on an event it does not know; see ARCHITECTURE.md).
//!
//! What arrives on the socket is not trusted (a guest can make QEMU emit events, and the guest
//! agent in `qga` is the guest itself): every call has one deadline for the whole call, however
//! many messages arrive meanwhile, and a message is at most [`QMP_MESSAGE_CAP`] bytes.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// The longest QMP message accepted. Generous: `query-qmp-schema` is a few hundred KiB.
pub const QMP_MESSAGE_CAP: usize = 16 << 20;

/// Events kept in [`QmpClient::events`]; older ones are dropped (and counted) past this.
pub const QMP_EVENTS_KEPT: usize = 1024;

/// How much is read from the socket at a time: what a buffer may hold beyond a frame's cap.
pub const READ_CHUNK: usize = 8192;

/// A newline-ended frame longer than the cap: the peer is not speaking the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message longer than {cap} bytes without a newline (gave up after {held} bytes)")]
pub struct FrameTooLong {
    pub cap: usize,
    /// The bytes held when the frame was given up: what the buffer retained at most.
    pub held: usize,
}

/// Splits a byte stream into newline-ended frames (the framing of QMP and the guest agent).
/// Only bytes not yet scanned are searched for the newline, so buffering is linear in what
/// arrives, and an unfinished frame is given up once it is longer than the cap: the buffer
/// never holds more than the cap plus one pushed chunk. After a frame is given up, the rest of
/// it (up to the next newline) is dropped as it arrives, so the frames after it still parse.
#[derive(Debug)]
pub struct Frames {
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no newline (or, while skipping, has been dropped through).
    scanned: usize,
    cap: usize,
    /// Inside a frame that was given up: drop bytes through the next newline.
    skipping: bool,
}

impl Frames {
    pub fn new(cap: usize) -> Frames {
        Frames { buf: Vec::new(), scanned: 0, cap, skipping: false }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held (an unfinished frame, or complete frames not taken yet).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame without its newline, `None` until one has arrived, or an error
    /// once for each frame longer than the cap.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameTooLong> {
        if self.skipping {
            match find_newline(&self.buf) {
                Some(pos) => {
                    self.buf.drain(..=pos);
                    self.skipping = false;
                    self.scanned = 0;
                }
                None => {
                    self.buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
            }
        }
        match find_newline(&self.buf[self.scanned..]).map(|p| p + self.scanned) {
            Some(pos) if pos > self.cap => {
                self.buf.drain(..=pos);
                self.scanned = 0;
                Err(FrameTooLong { cap: self.cap, held: pos })
            }
            Some(pos) => {
                let mut frame: Vec<u8> = self.buf.drain(..=pos).collect();
                frame.pop();
                self.scanned = 0;
                Ok(Some(frame))
            }
            None if self.buf.len() > self.cap => {
                let held = self.buf.len();
                self.buf.clear();
                self.scanned = 0;
                self.skipping = true;
                Err(FrameTooLong { cap: self.cap, held })
            }
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    /// Drops everything up to and including the first `marker` byte (the guest agent's 0xFF
    /// resync marker); `false` (and an empty buffer) when none has arrived yet.
    pub fn skip_through(&mut self, marker: u8) -> bool {
        self.scanned = 0;
        self.skipping = false;
        match self.buf.iter().position(|b| *b == marker) {
            Some(pos) => {
                self.buf.drain(..=pos);
                true
            }
            None => {
                self.buf.clear();
                false
            }
        }
    }

    /// Reads one chunk from `from` into the buffer; `Ok(false)` at end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, from: &mut R) -> std::io::Result<bool> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = from.read(&mut chunk).await?;
        self.push(&chunk[..n]);
        Ok(n > 0)
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

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
    /// One deadline for the whole call: messages that are not the answer do not extend it.
    #[error("QMP: {operation}: no answer within {within:?}")]
    Timeout { operation: String, within: Duration },
    #[error("QMP: connection closed by QEMU")]
    Closed,
    /// What QEMU sent (cut to 200 characters): data from the peer, so it is kept as text.
    #[error("QMP: unreadable message {0:?}")]
    Garbled(String),
    /// A message that is not JSON: its start (cut to 200 characters) and the parser's reason.
    #[error("QMP: unreadable message {text:?}")]
    Unreadable {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("QMP: the peer is not speaking the protocol")]
    TooLong(#[source] FrameTooLong),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

pub struct QmpClient {
    reader: OwnedReadHalf,
    frames: Frames,
    writer: OwnedWriteHalf,
    next_id: u64,
    timeout: Duration,
    /// The events seen so far, known or not, in arrival order: the last [`QMP_EVENTS_KEPT`].
    pub events: Vec<Event>,
    /// Events dropped from the front of `events` to keep it within [`QMP_EVENTS_KEPT`].
    pub events_dropped: u64,
    pub greeting: Value,
}

/// `query-status` as far as sysmonvm needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// `running`, `paused`, `shutdown`, `internal-error`, `prelaunch`, …
    pub status: String,
    pub running: bool,
}

/// Runs `call` with one deadline for all of it.
async fn bounded<T>(
    operation: &str,
    within: Duration,
    call: impl std::future::Future<Output = Result<T, QmpError>>,
) -> Result<T, QmpError> {
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| Err(QmpError::Timeout { operation: operation.to_string(), within }))
}

impl QmpClient {
    /// Connects, reads QEMU's greeting and negotiates capabilities, all within `timeout`; every
    /// later call gets `timeout` as its own deadline too.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<QmpClient, QmpError> {
        bounded("connecting", timeout, async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|source| QmpError::Connect { path: path.display().to_string(), source })?;
            let (reader, writer) = stream.into_split();
            let mut c = QmpClient {
                reader,
                frames: Frames::new(QMP_MESSAGE_CAP),
                writer,
                next_id: 1,
                timeout,
                events: Vec::new(),
                events_dropped: 0,
                greeting: Value::Null,
            };
            c.greeting = c.read_message().await?;
            if c.greeting.get("QMP").is_none() {
                return Err(QmpError::Garbled(c.greeting.to_string().chars().take(200).collect()));
            }
            c.execute_unbounded("qmp_capabilities", None).await?;
            Ok(c)
        })
        .await
    }

    /// The next message; no deadline of its own (the caller's call has one).
    async fn read_message(&mut self) -> Result<Value, QmpError> {
        loop {
            match self.frames.next_frame() {
                Ok(Some(frame)) => {
                    let text = String::from_utf8_lossy(&frame);
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return serde_json::from_str(text)
                        .map_err(|source| QmpError::Unreadable { text: text.chars().take(200).collect(), source });
                }
                Ok(None) => {}
                Err(too_long) => return Err(QmpError::TooLong(too_long)),
            }
            if !self.frames.fill(&mut self.reader).await? {
                return Err(QmpError::Closed);
            }
        }
    }

    fn record_event(&mut self, name: &str, message: &Value) {
        if self.events.len() >= QMP_EVENTS_KEPT {
            self.events.remove(0);
            self.events_dropped += 1;
        }
        self.events.push(Event { name: name.to_string(), data: message.get("data").cloned().unwrap_or(Value::Null) });
    }

    /// Runs a command and returns its `return` value, all within the client's timeout. Events
    /// that arrive meanwhile are recorded.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let within = self.timeout;
        bounded(command, within, self.execute_unbounded(command, arguments)).await
    }

    async fn execute_unbounded(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
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
                self.record_event(name, &m);
                continue;
            }
            if m.get("id").and_then(Value::as_u64).is_some_and(|i| i != id) {
                continue; // a reply to something else (a call that timed out earlier)
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

    /// Waits until an event called `name` has been seen (already, or within `within`: one
    /// deadline however many other messages arrive).
    pub async fn wait_event(&mut self, name: &str, within: Duration) -> Result<Event, QmpError> {
        if let Some(e) = self.events.iter().find(|e| e.name == name) {
            return Ok(e.clone());
        }
        let operation = format!("waiting for the {name} event");
        bounded(&operation, within, async {
            loop {
                let m = self.read_message().await?;
                if let Some(n) = m.get("event").and_then(Value::as_str) {
                    self.record_event(n, &m);
                    if n == name {
                        return Ok(self.events[self.events.len() - 1].clone());
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_at_the_cap_passes_one_over_it_is_refused_and_the_next_one_still_parses() {
        let mut f = Frames::new(4);
        f.push(b"abcd\nabcde\nok\n");
        assert_eq!(f.next_frame(), Ok(Some(b"abcd".to_vec())));
        assert_eq!(f.next_frame(), Err(FrameTooLong { cap: 4, held: 5 }));
        assert_eq!(f.next_frame(), Ok(Some(b"ok".to_vec())));
        assert_eq!(f.next_frame(), Ok(None));
        // Unfinished and over the cap: refused at once, the rest of it dropped as it arrives.
        f.push(b"0123456");
        assert_eq!(f.next_frame(), Err(FrameTooLong { cap: 4, held: 7 }));
        assert_eq!(f.held(), 0);
        f.push(b"789");
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.held(), 0);
        f.push(b"9\nnext\n");
        assert_eq!(f.next_frame(), Ok(Some(b"next".to_vec())));
    }

    #[test]
    fn skipping_through_the_marker_drops_what_came_before() {
        let mut f = Frames::new(64);
        f.push(b"stale\n{\"half");
        assert!(!f.skip_through(0xFF));
        assert_eq!(f.held(), 0);
        f.push(b"old\xff{\"return\": 1}\n");
        assert!(f.skip_through(0xFF));
        assert_eq!(f.next_frame(), Ok(Some(b"{\"return\": 1}".to_vec())));
    }

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
