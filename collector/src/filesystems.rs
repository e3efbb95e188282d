//! The `filesystems` source: usage of real filesystems: mounts from /proc/mounts minus pseudo and network filesystems
//! (statvfs on a dead NFS server would hang the sample), one entry per mount point.

use crate::files::KernelFiles;
use crate::parse::mounts::{self, Mount};
use crate::roots::Roots;
use crate::snapshot::Filesystem;
use crate::warnings::Warnings;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn is_network(fstype: &str) -> bool {
    matches!(
        fstype,
        "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "ceph" | "glusterfs" | "9p" | "fuse.sshfs" | "virtiofs"
    )
}

/// Mounts worth a statvfs: real filesystems, each mount point once.
pub fn select(all: Vec<Mount>) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for m in all {
        if mounts::is_pseudo(&m.fstype) || is_network(&m.fstype) {
            continue;
        }
        if let Some(existing) = out.iter_mut().find(|e| e.mountpoint == m.mountpoint) {
            *existing = m; // the later mount hides the earlier one
        } else {
            out.push(m);
        }
    }
    out
}

/// Bytes an unprivileged user can still write on the filesystem holding `path`.
#[allow(clippy::useless_conversion)] // the fields are 32-bit on some libc targets
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let s = statvfs(path)?;
    let frsize = if s.f_frsize > 0 { u64::from(s.f_frsize) } else { u64::from(s.f_bsize) };
    Ok(u64::from(s.f_bavail).saturating_mul(frsize))
}

pub fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("path contains NUL"))?;
    let mut out = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: c is a valid NUL-terminated path and out points to writable memory of the right size.
    let rc = unsafe { libc::statvfs(c.as_ptr(), out.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    Ok(unsafe { out.assume_init() })
}

// u64::from is a no-op on Linux/64-bit but not on every libc target the crate is checked for.
#[allow(clippy::useless_conversion)]
pub fn read(roots: &Roots, files: &mut KernelFiles, warnings: &mut Warnings) -> Vec<Filesystem> {
    let path = roots.host_view("mounts");
    let Some(text) = files.or_warn(&path, warnings) else { return Vec::new() };
    let mut out = Vec::new();
    for m in select(mounts::parse(&text)) {
        let target = roots.mountpoint(&m.mountpoint);
        match statvfs(&target) {
            Ok(s) => {
                let frsize = if s.f_frsize > 0 { u64::from(s.f_frsize) } else { u64::from(s.f_bsize) };
                let total = u64::from(s.f_blocks).saturating_mul(frsize);
                let free = u64::from(s.f_bfree).saturating_mul(frsize);
                let avail = u64::from(s.f_bavail).saturating_mul(frsize);
                let used = total.saturating_sub(free);
                // df's Use%: used / (used + available), so the root reserve counts as unavailable.
                let denom = used + avail;
                out.push(Filesystem {
                    device: m.device,
                    mountpoint: m.mountpoint,
                    fstype: m.fstype,
                    total_bytes: total,
                    free_bytes: free,
                    available_bytes: avail,
                    used_bytes: used,
                    used_pct: (denom > 0).then(|| used as f64 * 100.0 / denom as f64),
                    inodes_total: u64::from(s.f_files),
                    inodes_free: u64::from(s.f_ffree),
                });
            }
            Err(e) => {
                let through_host_init = roots.host_init("root").is_some_and(|r| target.starts_with(r));
                let why = if through_host_init && e.kind() == std::io::ErrorKind::PermissionDenied {
                    ": the host's mount points are reached through its init's root, which needs the host's pid \
                     namespace and CAP_SYS_PTRACE; mount the host's / read-only and pass --rootfs there"
                } else {
                    ""
                };
                warnings.file(&target, format!("statvfs failed: {e}{why}"))
            }
        }
    }
    out
}
