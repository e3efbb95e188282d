//! A real OpenSSH sshd on 127.0.0.1 with its own config and keys in a temporary directory.

use std::process::{Child, Command};
use std::time::Duration;
use sysmonvm::keys;
use sysmonvm::ssh::SshTarget;

pub struct Sshd {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    pub host_pub: String,
    pub user_key: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sshd() -> Option<Sshd> {
    if !super::have("/usr/sbin/sshd") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host = keys::ensure(&d.join("host_ed25519"), &d.join("host_ed25519.pub"), "test-host").unwrap();
    let user = keys::ensure(&d.join("id_ed25519"), &d.join("id_ed25519.pub"), "test-user").unwrap();
    std::fs::write(d.join("authorized_keys"), format!("{}\n", user.public_openssh)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host_ed25519\nPidFile {0}/sshd.pid\nAuthorizedKeysFile {0}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n",
        d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Command::new("/usr/sbin/sshd").args(["-D", "-e", "-f"]).arg(d.join("sshd_config")).spawn().unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Sshd { child, port, host_pub: host.public_openssh, user_key: user.private_openssh, _dir: dir })
}

/// Connects to the test sshd, trying again when the TCP connection itself is reset or refused:
/// under load a freshly started sshd (or its pre-auth child) sometimes drops the first attempt.
/// Authentication and host-key errors are returned at once: those are what tests check.
pub async fn connect(t: &SshTarget, timeout: Duration) -> sysmonvm::ssh::SshSession {
    let mut last = None;
    for _ in 0..5 {
        match sysmonvm::ssh::SshSession::connect(t, timeout).await {
            Ok(s) => return s,
            Err(e @ sysmonvm::ssh::SshError::Connect { .. }) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("SSH to the test sshd: {e}"),
        }
    }
    panic!("SSH to the test sshd: {}", last.map(|e| e.to_string()).unwrap_or_default())
}

pub fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

impl Sshd {
    pub fn target(&self) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: user(),
            private_key: self.user_key.clone(),
            pinned_host_key: self.host_pub.clone(),
        }
    }

    /// Kills the per-connection sshd processes (the listener's children): every open session
    /// drops as if the network went away, and the listener keeps accepting new ones.
    pub fn drop_connections(&self) {
        let _ = Command::new("pkill").args(["-KILL", "-P", &self.child.id().to_string()]).status();
    }
}

impl Sshd {
    /// Restarts the listener on the same port with `lines` put before its config (sshd keeps the
    /// first value of a keyword, so these win): a `ForceCommand` makes the "guest" run its own
    /// command whatever the client asks, an `AuthorizedKeysCommand` runs during authentication.
    /// Sessions open before the restart keep running.
    pub fn reconfigure(&mut self, lines: &str) {
        let config = self._dir.path().join("sshd_config");
        let old = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("{lines}\n{old}")).unwrap();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Command::new("/usr/sbin/sshd").args(["-D", "-e", "-f"]).arg(&config).spawn().unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen on 127.0.0.1:{} again after the restart", self.port);
    }

    /// Empties authorized_keys: the user's key is then only found by an `AuthorizedKeysCommand`.
    pub fn clear_authorized_keys(&self) {
        std::fs::write(self._dir.path().join("authorized_keys"), "").unwrap();
    }
}

/// A real sshd whose every session runs `command` (sshd's `ForceCommand`, through the user's
/// shell) instead of what the client asked for: a guest that misbehaves on purpose.
pub fn sshd_forcing(command: &str) -> Option<Sshd> {
    let mut s = sshd()?;
    s.reconfigure(&format!("ForceCommand {command}"));
    Some(s)
}

/// A real sshd that takes the connection, does the key exchange and then never finishes
/// public-key authentication: its `AuthorizedKeysCommand` sleeps far past any test's deadline
/// (until sshd's own LoginGraceTime of 120 s ends the attempt).
pub fn sshd_stalling_auth() -> Option<Sshd> {
    let mut s = sshd()?;
    s.clear_authorized_keys();
    s.reconfigure("AuthorizedKeysCommand /bin/sleep 600\nAuthorizedKeysCommandUser nobody");
    Some(s)
}
