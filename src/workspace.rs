//! The one place that knows the workspace layout: where images, profiles, keys and each VM's
//! files live. Defaults to the platform's data and cache directories (XDG on Linux and macOS, as
//! most CLIs do); `--workspace DIR` or `SYSMONVM_HOME` puts everything under one directory.
//! Directories holding keys and sockets are private (0700), key files 0600.
//!
//! Lock files live in `locks/` directories (`data/locks/vm-<name>.lock`,
//! `cache/locks/image-<sha256>.lock`) that nothing ever deletes: `vm destroy` removes a VM's
//! directory and `image prune` an image's, while another process may hold or wait on their lock.
//! A lock file deleted under a waiter would let a third process lock a new file of the same name
//! while the waiter locks the old one, and both would think they own the VM.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const HOME_ENV: &str = "SYSMONVM_HOME";

/// The file in a VM directory whose presence means the VM is complete (`create` writes it last).
pub const VM_STATE_FILE: &str = "state.json";

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
    /// Where `create` makes the overlay before renaming it to `disk`, so a kill never leaves a half one.
    pub disk_tmp: PathBuf,
    pub efi_vars: PathBuf,
    /// The firmware code padded to the 64 MiB pflash size (aarch64 `virt` with a smaller edk2 file).
    pub efi_code: PathBuf,
    pub seed: PathBuf,
    pub host_key: PathBuf,
    pub host_key_pub: PathBuf,
    pub known_hosts: PathBuf,
    pub pidfile: PathBuf,
    pub qmp_socket: PathBuf,
    pub qga_socket: PathBuf,
    pub serial_log: PathBuf,
    /// The VM's lock: outside `dir` (in `data/locks/`), so removing the VM never deletes it.
    pub lock: PathBuf,
    pub state: PathBuf,
    /// Where `validate` writes its report by default.
    pub validate_dir: PathBuf,
    /// `validate --matrix`'s report (matrix.json/.md/.html, cells/ID/).
    pub validate_matrix_dir: PathBuf,
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

    /// The collector built with feature `mtls` (ServiceRadar's mTLS on its gRPC endpoint).
    pub fn collector_binary_mtls(&self, target: &str) -> PathBuf {
        self.collector_dir().join(target).join("mtls").join("sysmon-collector")
    }

    pub fn vms_dir(&self) -> PathBuf {
        self.data.join("vms")
    }

    /// Lock files of VMs; never pruned or removed.
    pub fn vm_locks_dir(&self) -> PathBuf {
        self.data.join("locks")
    }

    /// Lock files of image cache entries; never pruned or removed.
    pub fn image_locks_dir(&self) -> PathBuf {
        self.cache.join("locks")
    }

    /// The lock of one image cache entry (`image fetch` and `image prune` take it).
    pub fn image_lock(&self, sha256: &str) -> PathBuf {
        self.image_locks_dir().join(image_lock_name(sha256))
    }

    /// Cached KVM self-test results, keyed by QEMU binary, host kernel and guest arch.
    pub fn accel_selftest_cache(&self) -> PathBuf {
        self.cache.join("accel-selftest.json")
    }

    pub fn vm(&self, name: &str) -> Result<VmPaths, WorkspaceError> {
        if !valid_vm_name(name) {
            return Err(WorkspaceError::BadVmName(name.to_string()));
        }
        let dir = self.vms_dir().join(name);
        let f = |n: &str| dir.join(n);
        Ok(VmPaths {
            name: name.to_string(),
            disk: f("disk.qcow2"),
            disk_tmp: f("disk.qcow2.tmp"),
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
            lock: self.vm_locks_dir().join(format!("vm-{name}.lock")),
            state: f(VM_STATE_FILE),
            validate_dir: f("validate"),
            validate_matrix_dir: f("validate-matrix"),
            dir,
        })
    }

    /// Names of the directories under `vms/` that are VM directories (valid name, a directory),
    /// complete or not, sorted. A missing `vms/` is an empty list.
    pub fn vm_dirs(&self) -> Result<Vec<String>, WorkspaceError> {
        let dir = self.vms_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(WorkspaceError::Io { path: dir, source: e }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_vm_name(&name) && entry.path().is_dir() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The complete VMs (those with a `state.json`), sorted.
    pub fn vm_names(&self) -> Result<Vec<String>, WorkspaceError> {
        Ok(self.vm_dirs()?.into_iter().filter(|n| self.vms_dir().join(n).join(VM_STATE_FILE).is_file()).collect())
    }
}

impl VmPaths {
    /// Whether `create` finished for this VM (its `state.json` is there).
    pub fn is_complete(&self) -> bool {
        self.state.is_file()
    }
}

/// The file name of an image entry's lock inside a locks directory.
pub fn image_lock_name(sha256: &str) -> String {
    format!("image-{sha256}.lock")
}

fn valid_vm_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 48 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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
    fn locks_live_outside_what_destroy_and_prune_remove() {
        let w = Workspace::at(Path::new("/tmp/ws"));
        let vm = w.vm("lab-1").unwrap();
        assert_eq!(vm.lock, Path::new("/tmp/ws/locks/vm-lab-1.lock"));
        assert!(!vm.lock.starts_with(&vm.dir), "vm destroy removes {}", vm.dir.display());
        let image_lock = w.image_lock("ab12");
        assert_eq!(image_lock, Path::new("/tmp/ws/locks/image-ab12.lock"));
        assert!(!image_lock.starts_with(w.images_dir()), "image prune removes entries under images/");
        assert_eq!(vm.efi_code, Path::new("/tmp/ws/vms/lab-1/efi-code.fd"));
        assert_eq!(w.accel_selftest_cache(), Path::new("/tmp/ws/accel-selftest.json"));
    }

    #[test]
    fn vm_listing_tells_complete_from_incomplete() {
        let d = tempfile::tempdir().unwrap();
        let w = Workspace::at(d.path());
        assert_eq!(w.vm_dirs().unwrap(), Vec::<String>::new(), "no vms/ yet");
        for n in ["b", "a", "half"] {
            std::fs::create_dir_all(w.vm(n).unwrap().dir).unwrap();
        }
        std::fs::create_dir_all(w.vms_dir().join("not a vm")).unwrap();
        std::fs::write(w.vms_dir().join("stray-file"), b"").unwrap();
        for n in ["a", "b"] {
            std::fs::write(w.vm(n).unwrap().state, b"{}").unwrap();
        }
        assert_eq!(w.vm_dirs().unwrap(), ["a", "b", "half"]);
        assert_eq!(w.vm_names().unwrap(), ["a", "b"]);
        assert!(w.vm("a").unwrap().is_complete() && !w.vm("half").unwrap().is_complete());
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
