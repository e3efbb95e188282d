//! SSH keys made by sysmonvm: one ed25519 user key per workspace, and per VM an ed25519 host key
//! handed to the guest through cloud-init, so its public half is pinned in the VM's known_hosts
//! before the first boot — never trusted on first use.

use crate::workspace::{self, WorkspaceError};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("{path}: {message}")]
    Key { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// OpenSSH private key text.
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA… comment`.
    pub public_openssh: String,
}

fn generate(comment: &str) -> Result<KeyPair, KeyError> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| KeyError::Key { path: "(new key)".into(), message: e.to_string() })?;
    key.set_comment(comment);
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Key { path: "(new key)".into(), message: e.to_string() })?
        .to_string();
    let public_openssh = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Key { path: "(new key)".into(), message: e.to_string() })?;
    Ok(KeyPair { private_openssh, public_openssh })
}

/// Loads the key pair at `private`/`public`, or makes and stores one (private 0600, dir 0700).
pub fn ensure(private: &Path, public: &Path, comment: &str) -> Result<KeyPair, KeyError> {
    let err = |p: &Path, m: String| KeyError::Key { path: p.display().to_string(), message: m };
    if private.exists() {
        let private_openssh = std::fs::read_to_string(private).map_err(|e| err(private, e.to_string()))?;
        let key = PrivateKey::from_openssh(&private_openssh).map_err(|e| err(private, e.to_string()))?;
        let public_openssh = key.public_key().to_openssh().map_err(|e| err(private, e.to_string()))?;
        return Ok(KeyPair { private_openssh, public_openssh });
    }
    if let Some(dir) = private.parent() {
        workspace::private_dir(dir)?;
    }
    let pair = generate(comment)?;
    workspace::write_private(private, pair.private_openssh.as_bytes())?;
    workspace::write_private(public, format!("{}\n", pair.public_openssh).as_bytes())?;
    Ok(pair)
}

/// The host-key alias sysmonvm's SSH uses for a VM, so the pinned entry does not depend on the
/// forwarded port (`ssh -o HostKeyAlias=…`).
pub fn host_alias(vm: &str) -> String {
    format!("sysmonvm-{vm}")
}

/// A known_hosts line pinning the VM's host key under its alias.
pub fn known_hosts_line(vm: &str, host_public: &str) -> String {
    let mut parts = host_public.split_whitespace();
    let (alg, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    format!("{} {alg} {key}\n", host_alias(vm))
}

/// Checks an offered host key against the pinned one.
pub fn matches_pinned(pinned_public: &str, offered: &PublicKey) -> bool {
    PublicKey::from_openssh(pinned_public.trim()).is_ok_and(|p| p.key_data() == offered.key_data())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_then_reloaded_privately() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = (d.path().join("keys/id_ed25519"), d.path().join("keys/id_ed25519.pub"));
        let a = ensure(&k, &p, "sysmonvm").unwrap();
        assert!(a.public_openssh.starts_with("ssh-ed25519 "));
        assert!(a.private_openssh.contains("BEGIN OPENSSH PRIVATE KEY"));
        let b = ensure(&k, &p, "sysmonvm").unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(d.path().join("keys")).unwrap().permissions().mode() & 0o777, 0o700);
        let offered = PublicKey::from_openssh(&a.public_openssh).unwrap();
        assert!(matches_pinned(&a.public_openssh, &offered));
        let other = generate("x").unwrap();
        assert!(!matches_pinned(&other.public_openssh, &offered));
        assert!(known_hosts_line("lab", &a.public_openssh).starts_with("sysmonvm-lab ssh-ed25519 AAAA"));
    }
}
