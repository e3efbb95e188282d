//! SSH keys made by sysmonvm: one ed25519 user key per workspace, and per VM an ed25519 host key
//! handed to the guest through cloud-init, so its public half is pinned in the VM's known_hosts
//! before the first boot — never trusted on first use.

use crate::workspace::{self, WorkspaceError};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("generating an ed25519 key")]
    Generate(#[source] ssh_key::Error),
    #[error("cannot read the SSH key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not an OpenSSH private key (sysmonvm made it: was the file edited or replaced? VMs made with it trust only that key)"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: ssh_key::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// OpenSSH private key text.
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA… comment`.
    pub public_openssh: String,
}

fn generate(comment: &str) -> Result<KeyPair, KeyError> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
    key.set_comment(comment);
    let private_openssh = key.to_openssh(LineEnding::LF).map_err(KeyError::Generate)?.to_string();
    let public_openssh = key.public_key().to_openssh().map_err(KeyError::Generate)?;
    Ok(KeyPair { private_openssh, public_openssh })
}

/// Loads the key pair at `private`/`public`, or makes and stores one (private 0600, dir 0700).
pub fn ensure(private: &Path, public: &Path, comment: &str) -> Result<KeyPair, KeyError> {
    if private.exists() {
        let private_openssh = std::fs::read_to_string(private)
            .map_err(|source| KeyError::Read { path: private.to_path_buf(), source })?;
        let parse = |source| KeyError::Parse { path: private.to_path_buf(), source };
        let key = PrivateKey::from_openssh(&private_openssh).map_err(parse)?;
        let public_openssh = key.public_key().to_openssh().map_err(parse)?;
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

    #[test]
    fn unreadable_and_garbled_keys_keep_their_cause() {
        let d = tempfile::tempdir().unwrap();
        // Exists but cannot be read as text: a directory in the key's place.
        let dir_in_place = d.path().join("id_ed25519");
        std::fs::create_dir(&dir_in_place).unwrap();
        let e = ensure(&dir_in_place, &d.path().join("id_ed25519.pub"), "x").unwrap_err();
        assert_eq!(e.to_string(), format!("cannot read the SSH key {}", dir_in_place.display()));
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("an io::Error source");
        assert_eq!(io.kind(), std::io::ErrorKind::IsADirectory);

        let garbled = d.path().join("garbled");
        std::fs::write(&garbled, "-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64\n").unwrap();
        let e = ensure(&garbled, &d.path().join("garbled.pub"), "x").unwrap_err();
        assert!(matches!(&e, KeyError::Parse { path, .. } if *path == garbled), "{e:?}");
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<ssh_key::Error>()));
    }
}
