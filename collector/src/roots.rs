//! The one place that knows where the kernel's files live. Every reader takes its paths from
//! [`Roots`], so the whole collector runs against a fixture tree as easily as against the live
//! system (the same idea as node_exporter's `--path.procfs`/`--path.sysfs`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub cgroupfs: PathBuf,
    /// Prefix for mount points read from /proc/mounts when calling statvfs (`/` on the live system;
    /// a host path such as `/host` when the collector runs in a container with the root bind-mounted).
    pub rootfs: PathBuf,
    /// The host's procfs when the collector runs in a container and the host's `/proc` is mounted
    /// in it (`--host-procfs /host/proc`; `/proc` itself with the host's pid namespace): the
    /// network family is read from its pid 1 (the host's network namespace), and so are the
    /// mount table and os-release. None: the collector's own `/proc` is the host's.
    pub host_procfs: Option<PathBuf>,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            cgroupfs: "/sys/fs/cgroup".into(),
            rootfs: "/".into(),
            host_procfs: None,
        }
    }
}

impl Roots {
    /// A fixture tree laid out as `DIR/proc`, `DIR/sys`, `DIR/sys/fs/cgroup`.
    pub fn under(dir: &Path) -> Self {
        Roots {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            cgroupfs: dir.join("sys/fs/cgroup"),
            rootfs: dir.to_path_buf(),
            host_procfs: None,
        }
    }

    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    /// A file of the host's init process (`1/net/dev`, `1/mounts`) under the host's procfs.
    pub fn host_init(&self, rel: &str) -> Option<PathBuf> {
        self.host_procfs.as_ref().map(|p| p.join("1").join(rel))
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    pub fn cpu_dir(&self) -> PathBuf {
        self.sysfs.join("devices/system/cpu")
    }

    /// A per-process procfs file (`net/dev`, `mounts`) as the host sees it: its init's under the
    /// host's procfs when one is given, else this process's own.
    pub fn host_view(&self, rel: &str) -> PathBuf {
        self.host_init(rel).unwrap_or_else(|| self.proc(rel))
    }

    /// Where a mount point from the mount table is reachable from this process: under `rootfs`;
    /// with the host's procfs and no `rootfs` of its own, through the host init's root (which
    /// needs the host's pid namespace and CAP_SYS_PTRACE, as a privileged container has).
    pub fn mountpoint(&self, mountpoint: &str) -> PathBuf {
        let base = match self.host_init("root") {
            Some(host_root) if self.rootfs == Path::new("/") => host_root,
            _ => self.rootfs.clone(),
        };
        base.join(mountpoint.trim_start_matches('/'))
    }
}
