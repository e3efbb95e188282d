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
}

impl Default for Roots {
    fn default() -> Self {
        Roots { procfs: "/proc".into(), sysfs: "/sys".into(), cgroupfs: "/sys/fs/cgroup".into(), rootfs: "/".into() }
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
        }
    }

    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    pub fn cpu_dir(&self) -> PathBuf {
        self.sysfs.join("devices/system/cpu")
    }

    /// Where a mount point from /proc/mounts is reachable from this process.
    pub fn mountpoint(&self, mountpoint: &str) -> PathBuf {
        self.rootfs.join(mountpoint.trim_start_matches('/'))
    }
}
