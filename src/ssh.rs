//! An async SSH client (russh, pure Rust on ring): exec with exit status and streamed output,
//! upload, keepalive and deadlines. The VM's pinned host key is required: any other key fails the
//! connection with both keys named, and is never accepted or recorded.
//!
//! The guest is untrusted, so every operation has a deadline of its own ([`Deadlines`]: connect,
//! auth, and each exec unless the call says otherwise) and what `exec` keeps is capped per stream
//! ([`ExecOptions::max_output`], the tail is kept and the cut is counted on [`Output`]). Keepalive
//! only notices a peer that went away; it does not end a live peer that stalls.

use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, decode_secret_key};
use russh::{ChannelMsg, client};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The deadline of each exec when the caller does not pass one: long enough for the slowest
/// thing run through it here (a plan's package installs under TCG go through the runner's own,
/// longer deadline), short enough that a stalled guest cannot hold a command forever.
pub const DEFAULT_EXEC_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// What `exec` keeps of each stream by default (the tail).
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;
/// What `upload` keeps of the upload script's stderr, for its error message.
const UPLOAD_STDERR_CAP: usize = 64 << 10;
/// How long closing a channel whose command overran its deadline may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// russh's errors are large (80 bytes); they are boxed so an `SshError` stays small inside the
/// errors that carry it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "SSH to {addr}: the host key is NOT the one pinned for this VM.\n  pinned:  {pinned}\n  offered: {offered}\nRefusing to connect: something else answers on that port, or the VM was rebuilt outside sysmonvm."
    )]
    HostKeyMismatch { addr: String, pinned: String, offered: String },
    #[error("SSH to {addr}: cannot connect")]
    Connect {
        addr: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error(
        "SSH to {addr}: no SSH session within {timeout:?} (TCP connect, banner and key exchange); is the guest stalled, or does something other than sshd listen there?"
    )]
    Timeout { addr: String, timeout: Duration },
    #[error(
        "SSH to {addr}: public-key authentication as {user} did not finish within {timeout:?}: sshd took the connection but stalled (a hung AuthorizedKeysCommand, PAM or user lookup in the guest?)"
    )]
    AuthTimeout { addr: String, user: String, timeout: Duration },
    #[error(
        "SSH to {addr}: `{command}` did not finish within {deadline:?}; its channel was closed (the command may still run in the guest)"
    )]
    ExecTimeout {
        addr: String,
        /// The command's first line, shortened.
        command: String,
        deadline: Duration,
    },
    #[error("SSH to {addr}: public-key authentication as {user} did not complete")]
    Auth {
        addr: String,
        user: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("SSH to {addr}: key {user}@ rejected (is the workspace key in the guest's authorized_keys?)")]
    AuthRejected { addr: String, user: String },
    #[error("SSH to {addr}: the private key for {user} is not an OpenSSH private key")]
    Key {
        addr: String,
        user: String,
        #[source]
        source: Box<russh::keys::Error>,
    },
    #[error("SSH to {addr}: {doing}")]
    Channel {
        addr: String,
        /// What the session was doing when the channel failed.
        doing: &'static str,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("SSH upload to {path}: rendering the upload script")]
    UploadScript {
        path: String,
        #[source]
        source: crate::templates::TemplateError,
    },
    /// What the guest's side said or did (a signal, a missing exit status, a failed `cat`): data, not a cause.
    #[error("SSH: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// OpenSSH private key text.
    pub private_key: String,
    /// `ssh-ed25519 AAAA…` (a comment is ignored).
    pub pinned_host_key: String,
}

impl SshTarget {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `type base64` of an OpenSSH public key line, for comparison.
fn key_id(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

struct Pinned {
    pinned: String,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let offered = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.to_openssh().unwrap_or_default(),
            PublicKeyOrCertificate::Certificate(c) => c.to_openssh().unwrap_or_default(),
        };
        let ok = key_id(&offered) == key_id(&self.pinned);
        *self.offered.lock().unwrap_or_else(|e| e.into_inner()) = Some(offered);
        Ok(ok)
    }
}

/// How long each SSH operation may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// TCP connect, the banner exchange, key exchange and the host key check.
    pub connect: Duration,
    /// Public-key authentication.
    pub auth: Duration,
    /// Each exec on the session that does not pass its own ([`ExecDeadline::SessionDefault`]).
    pub exec: Duration,
}

impl Deadlines {
    /// `connect` and `auth` each within `timeout`; execs within [`DEFAULT_EXEC_DEADLINE`].
    pub fn new(timeout: Duration) -> Deadlines {
        Deadlines { connect: timeout, auth: timeout, exec: DEFAULT_EXEC_DEADLINE }
    }

    /// Every deadline at most `left`: what a caller with an overall bound (the boot wait's
    /// `--timeout`) gives each operation inside it.
    pub fn at_most(self, left: Duration) -> Deadlines {
        Deadlines { connect: self.connect.min(left), auth: self.auth.min(left), exec: self.exec.min(left) }
    }
}

/// When one exec must have ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecDeadline {
    /// The session's [`Deadlines::exec`].
    #[default]
    SessionDefault,
    Within(Duration),
    /// No deadline: only for output a user follows until they stop it (`collector logs --follow`).
    Never,
}

/// Per-call limits of [`SshSession::exec_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOptions {
    pub deadline: ExecDeadline,
    /// Bytes kept of each stream; past it the oldest bytes are dropped (the tail is kept).
    pub max_output: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions { deadline: ExecDeadline::SessionDefault, max_output: DEFAULT_MAX_OUTPUT }
    }
}

impl ExecOptions {
    pub fn within(self, deadline: Duration) -> ExecOptions {
        ExecOptions { deadline: ExecDeadline::Within(deadline), ..self }
    }
    pub fn max_output(self, bytes: usize) -> ExecOptions {
        ExecOptions { max_output: bytes, ..self }
    }
}

pub struct SshSession {
    handle: client::Handle<Pinned>,
    addr: String,
    deadlines: Deadlines,
}

/// What a command printed (each stream's tail, at most [`ExecOptions::max_output`] bytes) and how
/// it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes dropped from the front of stdout to stay within the cap (0: it is all there).
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
}

impl Output {
    /// Whether either stream was cut.
    pub fn truncated(&self) -> bool {
        self.stdout_dropped > 0 || self.stderr_dropped > 0
    }

    /// What a warning says when `what`'s output was cut at `cap` bytes per stream (the tail was
    /// kept): which stream lost how much, and the cap. None when it is all there.
    pub fn cut_warning(&self, what: &str, cap: usize) -> Option<String> {
        let lost: Vec<String> = [("stdout", self.stdout_dropped), ("stderr", self.stderr_dropped)]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(stream, n)| format!("the first {n} bytes of its {stream}"))
            .collect();
        (!lost.is_empty()).then(|| {
            format!(
                "{what} printed more than the {} kept of each stream: {} were dropped, so only the end of its output was read",
                bytes(cap),
                lost.join(" and ")
            )
        })
    }
}

/// A byte count as a warning names a cap: `64 KiB`, `4 MiB`, else bytes.
fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The last `cap` bytes of a stream, and how many came before them. Linear: each byte is copied
/// in once and dropped at most once.
#[derive(Debug)]
pub struct TailBuffer {
    kept: VecDeque<u8>,
    cap: usize,
    dropped: u64,
}

impl TailBuffer {
    pub fn new(cap: usize) -> TailBuffer {
        TailBuffer { kept: VecDeque::new(), cap, dropped: 0 }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = if bytes.len() > self.cap {
            let skip = bytes.len() - self.cap;
            self.dropped += skip as u64;
            &bytes[skip..]
        } else {
            bytes
        };
        let over = (self.kept.len() + bytes.len()).saturating_sub(self.cap);
        self.kept.drain(..over);
        self.dropped += over as u64;
        self.kept.extend(bytes);
    }

    /// Bytes dropped from the front so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// (the kept tail, the count of bytes dropped before it).
    pub fn into_parts(self) -> (Vec<u8>, u64) {
        (Vec::from(self.kept), self.dropped)
    }
}

/// One exec's deadline and the errors it ends in, shared by the exec variants.
struct ExecCall<'a> {
    addr: &'a str,
    command: &'a str,
    limit: Option<Duration>,
    /// When the whole exec must be over; taken when the exec starts.
    until: Option<Instant>,
}

impl ExecCall<'_> {
    fn overran(&self) -> SshError {
        SshError::ExecTimeout {
            addr: self.addr.to_string(),
            command: brief(self.command),
            deadline: self.limit.unwrap_or_default(),
        }
    }

    fn failed(&self, doing: &'static str) -> impl Fn(russh::Error) -> SshError {
        let addr = self.addr.to_string();
        move |e: russh::Error| SshError::Channel { addr: addr.clone(), doing, source: Box::new(e) }
    }
}

/// A command as an error message names it: its first line, at most 120 characters.
fn brief(command: &str) -> String {
    let first = command.lines().next().unwrap_or("");
    let mut b: String = first.chars().take(120).collect();
    if b.len() < command.len() {
        b.push('…');
    }
    b
}

impl SshSession {
    /// Connects and authenticates, each within `timeout`; execs get [`DEFAULT_EXEC_DEADLINE`].
    pub async fn connect(t: &SshTarget, timeout: Duration) -> Result<SshSession, SshError> {
        SshSession::connect_with(t, Deadlines::new(timeout)).await
    }

    pub async fn connect_with(t: &SshTarget, deadlines: Deadlines) -> Result<SshSession, SshError> {
        let addr = t.addr();
        let timeout = deadlines.connect;
        let key = decode_secret_key(&t.private_key, None).map_err(|e| SshError::Key {
            addr: addr.clone(),
            user: t.user.clone(),
            source: Box::new(e),
        })?;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_max: 3,
            inactivity_timeout: None,
            ..Default::default()
        });
        let offered = Arc::new(Mutex::new(None));
        let handler = Pinned { pinned: t.pinned_host_key.clone(), offered: offered.clone() };
        let connect = client::connect(config, (t.host.as_str(), t.port), handler);
        let mut handle = match tokio::time::timeout(timeout, connect).await {
            Err(_) => return Err(SshError::Timeout { addr, timeout }),
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                if let Some(o) = offered.lock().unwrap_or_else(|e| e.into_inner()).clone()
                    && key_id(&o) != key_id(&t.pinned_host_key)
                {
                    return Err(SshError::HostKeyMismatch {
                        addr,
                        pinned: key_id(&t.pinned_host_key),
                        offered: key_id(&o),
                    });
                }
                return Err(SshError::Connect { addr, source: Box::new(e) });
            }
        };
        let user = t.user.clone();
        let auth = handle.authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), None));
        // On a timeout the handle is dropped, which ends russh's session task and the connection.
        let auth = match tokio::time::timeout(deadlines.auth, auth).await {
            Err(_) => return Err(SshError::AuthTimeout { addr, user, timeout: deadlines.auth }),
            Ok(r) => r.map_err(|e| SshError::Auth { addr: addr.clone(), user: user.clone(), source: Box::new(e) })?,
        };
        if !auth.success() {
            return Err(SshError::AuthRejected { addr, user });
        }
        Ok(SshSession { handle, addr, deadlines })
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    fn resolve(&self, deadline: ExecDeadline) -> Option<Duration> {
        match deadline {
            ExecDeadline::SessionDefault => Some(self.deadlines.exec),
            ExecDeadline::Within(d) => Some(d),
            ExecDeadline::Never => None,
        }
    }

    /// Runs `command` within the session's exec deadline, feeding `stdin` if given, calling
    /// `on_output(is_stderr, bytes)` as output arrives (nothing is kept here).
    pub async fn exec_streaming(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        on_output: impl FnMut(bool, &[u8]),
    ) -> Result<u32, SshError> {
        self.exec_streaming_with(command, stdin, ExecDeadline::SessionDefault, on_output).await
    }

    /// Opens the session channel an exec runs on, within the exec's deadline (which starts now).
    async fn open_exec<'a>(
        &'a self,
        command: &'a str,
        deadline: ExecDeadline,
    ) -> Result<(ExecCall<'a>, russh::Channel<client::Msg>), SshError> {
        let limit = self.resolve(deadline);
        let call = ExecCall { addr: &self.addr, command, limit, until: limit.map(|d| Instant::now() + d) };
        let Some(opened) = by(call.until, self.handle.channel_open_session()).await else {
            return Err(call.overran());
        };
        let ch = opened.map_err(call.failed("opening a session channel"))?;
        Ok((call, ch))
    }

    /// [`exec_streaming`](Self::exec_streaming) with this call's own deadline. One deadline
    /// covers the whole exec (opening the channel, input, output, exit status); when it passes
    /// the channel is closed and [`SshError::ExecTimeout`] returned.
    pub async fn exec_streaming_with(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        deadline: ExecDeadline,
        mut on_output: impl FnMut(bool, &[u8]),
    ) -> Result<u32, SshError> {
        let (call, mut ch) = self.open_exec(command, deadline).await?;
        let body = async {
            ch.exec(true, command).await.map_err(call.failed("starting the command"))?;
            if let Some(data) = stdin {
                ch.data(data).await.map_err(call.failed("sending the command's input"))?;
            }
            ch.eof().await.map_err(call.failed("closing the command's input"))?;
            let mut status = None;
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { ref data } => on_output(false, data),
                    ChannelMsg::ExtendedData { ref data, .. } => on_output(true, data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        return Err(SshError::Protocol(format!("{command:?} killed by signal {signal_name:?}")));
                    }
                    _ => {}
                }
            }
            status
                .ok_or_else(|| SshError::Protocol(format!("{command:?}: the connection closed before the exit status")))
        };
        match by(call.until, body).await {
            Some(r) => r,
            None => {
                // Tell sshd the channel is gone (so it stops sending); a peer too stalled to take
                // even that is left to the session's end.
                let _ = tokio::time::timeout(CLOSE_GRACE, ch.close()).await;
                Err(call.overran())
            }
        }
    }

    /// Runs `command` as a conversation: `input` is sent at once, and whatever `on_output` puts
    /// in its outbox is sent next, while the output keeps being read (so neither side can block
    /// the other). `on_output` returns `Break` to end the command: its channel is closed and
    /// `Ok(None)` returned. One deadline covers the whole exec, as for
    /// [`exec_streaming_with`](Self::exec_streaming_with). The input is never closed: the
    /// command reads what it asks for, no more.
    pub async fn exec_conversation(
        &self,
        command: &str,
        input: Vec<u8>,
        deadline: ExecDeadline,
        mut on_output: impl FnMut(bool, &[u8], &mut Vec<Vec<u8>>) -> std::ops::ControlFlow<()>,
    ) -> Result<Option<u32>, SshError> {
        use tokio::io::AsyncWriteExt;
        let (call, mut ch) = self.open_exec(command, deadline).await?;
        // The input goes through a task of its own: a large reply waits for the peer's window
        // while this task goes on reading the output.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let mut writer = ch.make_writer();
        let feeder = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
        });
        let body = async {
            ch.exec(true, command).await.map_err(call.failed("starting the command"))?;
            let _ = tx.send(input);
            let mut outbox = Vec::new();
            let mut status = None;
            while let Some(msg) = ch.wait().await {
                let flow = match msg {
                    ChannelMsg::Data { ref data } => on_output(false, data, &mut outbox),
                    ChannelMsg::ExtendedData { ref data, .. } => on_output(true, data, &mut outbox),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(exit_status);
                        std::ops::ControlFlow::Continue(())
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        return Err(SshError::Protocol(format!("{command:?} killed by signal {signal_name:?}")));
                    }
                    _ => std::ops::ControlFlow::Continue(()),
                };
                for chunk in outbox.drain(..) {
                    let _ = tx.send(chunk);
                }
                if flow.is_break() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, ch.close()).await;
                    return Ok(None);
                }
            }
            status
                .map(Some)
                .ok_or_else(|| SshError::Protocol(format!("{command:?}: the connection closed before the exit status")))
        };
        let result = by(call.until, body).await;
        feeder.abort();
        match result {
            Some(r) => r,
            None => {
                let _ = tokio::time::timeout(CLOSE_GRACE, ch.close()).await;
                Err(call.overran())
            }
        }
    }

    /// Runs `command` within the session's exec deadline and keeps the last
    /// [`DEFAULT_MAX_OUTPUT`] bytes of each stream.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.exec_with(command, ExecOptions::default()).await
    }

    /// Runs `command` with this call's deadline and output cap.
    pub async fn exec_with(&self, command: &str, opts: ExecOptions) -> Result<Output, SshError> {
        let (mut out, mut err) = (TailBuffer::new(opts.max_output), TailBuffer::new(opts.max_output));
        let status = self
            .exec_streaming_with(
                command,
                None,
                opts.deadline,
                |is_err, b| {
                    if is_err { err.push(b) } else { out.push(b) }
                },
            )
            .await?;
        let ((stdout, stdout_dropped), (stderr, stderr_dropped)) = (out.into_parts(), err.into_parts());
        Ok(Output { status, stdout, stderr, stdout_dropped, stderr_dropped })
    }

    /// Writes `bytes` to `remote_path` with `mode` (via `cat`, so no SFTP subsystem is needed);
    /// `sudo` writes as root.
    pub async fn upload(&self, bytes: &[u8], remote_path: &str, mode: u32, sudo: bool) -> Result<(), SshError> {
        let script = crate::templates::render(
            "upload.sh.j2",
            &serde_json::json!({
                "tmp": format!("{remote_path}.sysmonvm-upload"),
                "path": remote_path,
                "mode": format!("{mode:o}"),
            }),
        )
        .map_err(|source| SshError::UploadScript { path: remote_path.to_string(), source })?;
        let cmd = crate::guest::command::GuestCommand::script(script.trim()).sudo(sudo).render();
        let mut err = TailBuffer::new(UPLOAD_STDERR_CAP);
        let status = self
            .exec_streaming(&cmd, Some(bytes), |is_err, b| {
                if is_err {
                    err.push(b)
                }
            })
            .await?;
        if status != 0 {
            let (err, _) = err.into_parts();
            return Err(SshError::Protocol(format!(
                "upload to {remote_path} failed ({status}): {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

/// `fut`'s output, or None when `until` passed first (no deadline: it is awaited to the end).
async fn by<T>(until: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match until {
        Some(t) => tokio::time::timeout_at(t, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// Single-quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_key_ids() {
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
        assert_eq!(key_id("ssh-ed25519 AAAA comment words"), "ssh-ed25519 AAAA");
    }

    fn target(port: u16, private_key: String) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "lab".into(),
            private_key,
            pinned_host_key: "ssh-ed25519 AAAA".into(),
        }
    }

    #[test]
    fn the_tail_buffer_keeps_the_last_bytes_and_counts_the_rest() {
        let mut t = TailBuffer::new(5);
        t.push(b"abc");
        t.push(b"de");
        assert_eq!(t.dropped(), 0);
        t.push(b"fg");
        t.push(b"");
        assert_eq!(t.into_parts(), (b"cdefg".to_vec(), 2));
        let mut t = TailBuffer::new(3);
        t.push(b"a");
        t.push(b"0123456789");
        assert_eq!(t.into_parts(), (b"789".to_vec(), 8));
        let mut t = TailBuffer::new(0);
        t.push(b"xyz");
        assert_eq!(t.into_parts(), (Vec::new(), 3));
    }

    #[test]
    fn a_cut_output_says_which_stream_lost_how_much_and_the_cap() {
        let out = |o, e| Output { status: 0, stdout: vec![], stderr: vec![], stdout_dropped: o, stderr_dropped: e };
        assert_eq!(out(0, 0).cut_warning("x", 64 << 10), None);
        assert_eq!(
            out(935_000, 0).cut_warning("the collector status probe", 64 << 10).unwrap(),
            "the collector status probe printed more than the 64 KiB kept of each stream: the first 935000 bytes \
             of its stdout were dropped, so only the end of its output was read"
        );
        let both = out(1, 2).cut_warning("perf stat", 64 << 20).unwrap();
        assert!(both.contains("64 MiB") && both.contains("1 bytes of its stdout and the first 2 bytes of its stderr"));
        assert!(out(0, 5).cut_warning("p", 1000).unwrap().contains("the 1000 bytes kept"));
    }

    #[test]
    fn commands_are_named_briefly() {
        assert_eq!(brief("true"), "true");
        assert_eq!(brief("set -e\nrm -rf x"), "set -e…");
        assert_eq!(brief(&"é".repeat(200)).chars().count(), 121);
    }

    #[test]
    fn deadlines_within_an_overall_bound() {
        let d = Deadlines::new(Duration::from_secs(15));
        assert_eq!(d.exec, DEFAULT_EXEC_DEADLINE);
        let left = Duration::from_secs(4);
        assert_eq!(d.at_most(left), Deadlines { connect: left, auth: left, exec: left });
        assert_eq!(d.at_most(Duration::from_secs(3600)).connect, Duration::from_secs(15));
    }

    #[tokio::test]
    async fn causes_are_kept_as_sources() {
        let e = SshSession::connect(&target(1, "not a key".into()), Duration::from_secs(5)).await.err().unwrap();
        assert!(matches!(e, SshError::Key { .. }), "{e:?}");
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<Box<russh::keys::Error>>()), "{e:?}");

        // A port nothing listens on: the refusal is the source, not text inside the message.
        let d = tempfile::tempdir().unwrap();
        let (k, p) = (d.path().join("id"), d.path().join("id.pub"));
        let key = crate::keys::ensure(&k, &p, "t").unwrap().private_openssh;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = SshSession::connect(&target(port, key), Duration::from_secs(5)).await.err().unwrap();
        assert_eq!(e.to_string(), format!("SSH to 127.0.0.1:{port}: cannot connect"));
        let mut cause = std::error::Error::source(&e);
        let mut kinds = Vec::new();
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                kinds.push(io.kind());
            }
            if let Some(russh::Error::IO(io)) = c.downcast_ref::<Box<russh::Error>>().map(|b| &**b) {
                kinds.push(io.kind());
            }
            cause = c.source();
        }
        assert!(kinds.contains(&std::io::ErrorKind::ConnectionRefused), "{:?}", crate::errors::chain(&e));
    }
}
