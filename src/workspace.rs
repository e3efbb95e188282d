//! The one place that knows the workspace layout: where images, profiles, keys and each VM's
//! files live. Defaults to the platform's data and cache directories (XDG on Linux and macOS, as
//! most CLIs do); `--workspace DIR` or `SYSMONVM_HOME` puts everything under one directory.
//! Directories holding keys and sockets are private (0700), key files 0600.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const HOME_ENV: &str = "SYSMONVM_HOME";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Keys, profiles and VMs.
    pub data: PathBuf,
    /// The image cache (large, re-downloadable).
    pub cache: PathBuf,
}

/// Every file of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    pub name: String,
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub efi_vars: PathBuf,
    /// The padded firmware code copy (aarch64 `virt` needs a 64 MiB pflash).
    pub efi_code: PathBuf,
    pub seed: PathBuf,
    pub host_key: PathBuf,
    pub host_key_pub: PathBuf,
    pub known_hosts: PathBuf,
    pub pidfile: PathBuf,
    pub qmp_socket: PathBuf,
    pub qga_socket: PathBuf,
    pub serial_log: PathBuf,
    pub lock: PathBuf,
    pub state: PathBuf,
    /// Where `validate` writes its report by default.
    pub validate_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("cannot find a home directory for the default workspace; pass --workspace DIR or set {HOME_ENV}")]
    NoHome,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("VM name {0:?}: use letters, digits, '-' and '_' (at most 48)")]
    BadVmName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io { path: path.to_path_buf(), source }
}

impl Workspace {
    /// `--workspace` wins, then `SYSMONVM_HOME`, then the platform directories.
    pub fn resolve(flag: Option<&Path>) -> Result<Workspace, WorkspaceError> {
        if let Some(dir) = flag {
            return Ok(Workspace::at(dir));
        }
        if let Some(dir) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Workspace::at(Path::new(&dir)));
        }
        use etcetera::BaseStrategy;
        let base = etcetera::choose_base_strategy().map_err(|_| WorkspaceError::NoHome)?;
        Ok(Workspace { data: base.data_dir().join("sysmonvm"), cache: base.cache_dir().join("sysmonvm") })
    }

    pub fn at(dir: &Path) -> Workspace {
        Workspace { data: dir.to_path_buf(), cache: dir.to_path_buf() }
    }

    pub fn images_dir(&self) -> PathBuf {
        self.cache.join("images")
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.data.join("profiles")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data.join("keys")
    }

    pub fn user_key(&self) -> PathBuf {
        self.keys_dir().join("id_ed25519")
    }

    pub fn user_key_pub(&self) -> PathBuf {
        self.keys_dir().join("id_ed25519.pub")
    }

    /// Collector binaries staged by `sysmonvm collector build` (or copied there from a release).
    pub fn collector_dir(&self) -> PathBuf {
        self.data.join("collector")
    }

    /// The staged collector for a musl target: `collector/<target>/sysmon-collector`.
    pub fn collector_binary(&self, target: &str) -> PathBuf {
        self.collector_dir().join(target).join("sysmon-collector")
    }

    pub fn vms_dir(&self) -> PathBuf {
        self.data.join("vms")
    }

    pub fn vm(&self, name: &str) -> Result<VmPaths, WorkspaceError> {
        if name.is_empty()
            || name.len() > 48
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(WorkspaceError::BadVmName(name.to_string()));
        }
        let dir = self.vms_dir().join(name);
        let f = |n: &str| dir.join(n);
        Ok(VmPaths {
            name: name.to_string(),
            disk: f("disk.qcow2"),
            efi_vars: f("efi-vars.fd"),
            efi_code: f("efi-code.fd"),
            seed: f("cidata.iso"),
            host_key: f("ssh_host_ed25519_key"),
            host_key_pub: f("ssh_host_ed25519_key.pub"),
            known_hosts: f("known_hosts"),
            pidfile: f("qemu.pid"),
            qmp_socket: f("qmp.sock"),
            qga_socket: f("qga.sock"),
            serial_log: f("serial.log"),
            lock: f("vm.lock"),
            state: f("state.json"),
            validate_dir: f("validate"),
            dir,
        })
    }
}

/// Creates a directory (and parents) readable only by the owner.
pub fn private_dir(path: &Path) -> Result<(), WorkspaceError> {
    DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io(path))
}

/// Writes a file readable only by the owner, replacing it atomically (write to a temporary, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WorkspaceError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_env_and_layout_is_under_it() {
        let w = Workspace::resolve(Some(Path::new("/tmp/ws"))).unwrap();
        assert_eq!(w.images_dir(), Path::new("/tmp/ws/images"));
        let vm = w.vm("lab-1").unwrap();
        assert_eq!(vm.qmp_socket, Path::new("/tmp/ws/vms/lab-1/qmp.sock"));
        assert!(w.vm("../etc").is_err());
        assert!(w.vm("").is_err());
    }

    #[test]
    fn private_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let f = dir.join("key");
        write_private(&f, b"secret").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
    }
}
