//! OpenPGP material made by the real gpg in a private GNUPGHOME.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Gpg {
    pub home: tempfile::TempDir,
    /// Primary key fingerprint (upper-case hex).
    pub fingerprint: String,
}

fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .output()
        .expect("gpg runs");
    assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // gpg started an agent for this home; stop it with the home.
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "all"]).output();
    }
}

impl Gpg {
    /// A new key: `algo` is a gpg algorithm name such as `ed25519` or `rsa2048`.
    pub fn new(uid: &str, algo: &str) -> Gpg {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        gpg(home.path(), &["--quick-gen-key", uid, algo, "sign,cert", "never"]);
        let fingerprint = Self::fingerprints(home.path())[0].clone();
        Gpg { home, fingerprint }
    }

    fn fingerprints(home: &Path) -> Vec<String> {
        let out = gpg(home, &["--with-colons", "--list-keys"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).unwrap().to_string())
            .collect()
    }

    /// Adds a signing subkey and returns its fingerprint.
    pub fn add_signing_subkey(&self) -> String {
        gpg(self.home.path(), &["--quick-add-key", &self.fingerprint, "ed25519", "sign", "never"]);
        Self::fingerprints(self.home.path()).last().unwrap().clone()
    }

    pub fn public_key_armored(&self) -> String {
        String::from_utf8(gpg(self.home.path(), &["--armor", "--export", &self.fingerprint]).stdout).unwrap()
    }

    pub fn write_public_key(&self, dir: &Path) -> PathBuf {
        let p = dir.join("key.asc");
        std::fs::write(&p, self.public_key_armored()).unwrap();
        p
    }

    /// Detached armored signature; `signer` picks a (sub)key fingerprint, default the primary.
    pub fn detach_sign(&self, data: &[u8], signer: Option<&str>) -> Vec<u8> {
        let f = self.home.path().join("to-sign");
        std::fs::write(&f, data).unwrap();
        let who = format!("{}!", signer.unwrap_or(&self.fingerprint));
        gpg(self.home.path(), &["--local-user", &who, "--armor", "--detach-sign", "--output", "-", f.to_str().unwrap()])
            .stdout
    }

    pub fn clearsign(&self, text: &str) -> String {
        let f = self.home.path().join("to-clearsign");
        std::fs::write(&f, text).unwrap();
        String::from_utf8(
            gpg(
                self.home.path(),
                &[
                    "--local-user",
                    &format!("{}!", self.fingerprint),
                    "--clearsign",
                    "--output",
                    "-",
                    f.to_str().unwrap(),
                ],
            )
            .stdout,
        )
        .unwrap()
    }
}
