//! An async SSH client (russh, pure Rust on ring): exec with exit status and streamed output,
//! upload, keepalive and timeouts. The VM's pinned host key is required: any other key fails the
//! connection with both keys named, and is never accepted or recorded.

use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, decode_secret_key};
use russh::{ChannelMsg, client};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    #[error("SSH to {addr}: no connection within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
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

pub struct SshSession {
    handle: client::Handle<Pinned>,
    addr: String,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl SshSession {
    pub async fn connect(t: &SshTarget, timeout: Duration) -> Result<SshSession, SshError> {
        let addr = t.addr();
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
        let auth = handle
            .authenticate_publickey(t.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .map_err(|e| SshError::Auth { addr: addr.clone(), user: t.user.clone(), source: Box::new(e) })?;
        if !auth.success() {
            return Err(SshError::AuthRejected { addr, user: t.user.clone() });
        }
        Ok(SshSession { handle, addr })
    }

    /// Runs `command`, feeding `stdin` if given, calling `on_output(is_stderr, bytes)` as output arrives.
    pub async fn exec_streaming(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        mut on_output: impl FnMut(bool, &[u8]),
    ) -> Result<u32, SshError> {
        let failed = |doing: &'static str| {
            move |e: russh::Error| SshError::Channel { addr: self.addr.clone(), doing, source: Box::new(e) }
        };
        let mut ch = self.handle.channel_open_session().await.map_err(failed("opening a session channel"))?;
        ch.exec(true, command).await.map_err(failed("starting the command"))?;
        if let Some(data) = stdin {
            ch.data(data).await.map_err(failed("sending the command's input"))?;
        }
        ch.eof().await.map_err(failed("closing the command's input"))?;
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
        status.ok_or_else(|| SshError::Protocol(format!("{command:?}: the connection closed before the exit status")))
    }

    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status =
            self.exec_streaming(command, None, |is_err, b| {
                if is_err { err.extend_from_slice(b) } else { out.extend_from_slice(b) }
            })
            .await?;
        Ok(Output { status, stdout: out, stderr: err })
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
        let mut err = Vec::new();
        let status = self
            .exec_streaming(&cmd, Some(bytes), |is_err, b| {
                if is_err {
                    err.extend_from_slice(b)
                }
            })
            .await?;
        if status != 0 {
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
