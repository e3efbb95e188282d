//! What a collector running inside a container can see of the host it is meant to describe, and
//! the warnings it gives for what it cannot. The kernel's global files (`/proc/stat`,
//! `/proc/meminfo`, `/proc/diskstats`, cpufreq in sysfs) read the same in and out of a container;
//! the per-namespace ones do not: `/proc/net/dev` is the container's network namespace, the mount
//! table is the container's, and the cgroup tree at the default mount is the container's own
//! cgroup namespace. Each source whose view a container narrows says so in every sample, so a
//! reader of the metrics sees why a family is the container's and not the host's, never a quiet
//! substitute. `docs/troubleshooting.md` lists, mode by mode, what `sysmonvm collector install
//! --mode` gives.

use crate::roots::Roots;
use crate::source::Source;
use crate::warnings::Warnings;
use std::path::{Path, PathBuf};

/// Files a container runtime leaves in the container's root: Docker's and Podman's.
const MARKERS: [&str; 2] = [".dockerenv", "run/.containerenv"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// The file that says the process runs in a container (`/.dockerenv`, `/run/.containerenv`).
    pub marker: PathBuf,
    /// The process sits at the root of its own cgroup namespace (`0::/`) and reads the cgroup
    /// tree at the default mount: it sees only its own container's cgroup.
    pub own_cgroup_namespace: bool,
}

/// Whether a v2 `/proc/self/cgroup` puts the process at the root of its cgroup namespace. A
/// process on the host is always below a slice or scope (systemd puts every service in one), so
/// `0::/` means a private cgroup namespace.
pub fn at_cgroup_namespace_root(proc_self_cgroup: &str) -> bool {
    proc_self_cgroup.lines().any(|l| l.trim_end() == "0::/")
}

/// The container this process runs in, if any, judged from `own_root` (the process's own `/`)
/// and its own procfs. None when `roots.procfs` is not the live `/proc`: a fixture tree is no
/// container's view.
pub fn detect(own_root: &Path, roots: &Roots) -> Option<ContainerView> {
    if roots.procfs != Path::new("/proc") {
        return None;
    }
    let marker = MARKERS.iter().map(|m| own_root.join(m)).find(|p| p.exists())?;
    let default_cgroupfs = roots.cgroupfs == Roots::default().cgroupfs;
    let self_cgroup = crate::files::read_text(&roots.proc("self/cgroup")).unwrap_or_default();
    Some(ContainerView { marker, own_cgroup_namespace: default_cgroup_ns(default_cgroupfs, &self_cgroup) })
}

fn default_cgroup_ns(default_cgroupfs: bool, self_cgroup: &str) -> bool {
    default_cgroupfs && at_cgroup_namespace_root(self_cgroup)
}

/// The warnings `source` gives, in every sample, for what this container hides from it. A
/// source whose view is the host's (global files, or the host's procfs and cgroup tree mounted
/// and named) gives none.
pub fn warn_limits(view: &ContainerView, source: Source, roots: &Roots, w: &mut Warnings) {
    let inside = view.marker.display();
    let host_procfs = roots.host_procfs.is_some();
    match source {
        Source::Network if !host_procfs => w.file(
            &roots.host_view("net/dev"),
            format!(
                "in a container ({inside}): these are the container's own network interfaces, not the host's; \
                 mount the host's /proc read-only (e.g. at /host/proc) and pass --host-procfs /host/proc \
                 (with --network=host, --host-procfs /proc)"
            ),
        ),
        Source::Filesystems if !host_procfs => w.file(
            &roots.host_view("mounts"),
            format!(
                "in a container ({inside}): this is the container's own mount table, not the host's; \
                 mount the host's /proc and / read-only and pass --host-procfs and --rootfs there \
                 (with --privileged --pid=host, --host-procfs /proc alone)"
            ),
        ),
        Source::Containers if view.own_cgroup_namespace => w.file(
            &roots.cgroupfs,
            format!(
                "in a container ({inside}) with its own cgroup namespace: the tree shows this container only, \
                 not the containers beside it; mount the host's /sys/fs/cgroup read-only (e.g. at \
                 /host/sys/fs/cgroup) and pass --cgroupfs there, or run with --cgroupns=host"
            ),
        ),
        Source::Host if !host_procfs => w.push(
            "hostname",
            format!(
                "in a container ({inside}): the host name and os-release are the container's own unless it \
                 shares the host's UTS namespace (--uts=host) and mounts /etc/os-release; pass --host-procfs \
                 once it does"
            ),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_cgroup_namespace_is_told_from_a_host_process() {
        // Recorded on the Debian 12 test guest: a plain `docker run` and a native service.
        assert!(at_cgroup_namespace_root("0::/\n"));
        assert!(!at_cgroup_namespace_root("0::/system.slice/serviceradar-sysmon-vm.service\n"));
        // --cgroupns=host: the container's own scope, seen from the host's root.
        assert!(!at_cgroup_namespace_root(
            "0::/system.slice/docker-7683aa45be9840f5f7378637d79fbf6818d38b8d0347c03bd48aa3eb3afea70b.scope\n"
        ));
        // A v1 host: no v2 line, nothing to conclude.
        assert!(!at_cgroup_namespace_root("4:memory:/\n1:cpu:/\n"));
        assert!(!default_cgroup_ns(false, "0::/\n"), "--cgroupfs names another tree: it is the user's choice");
    }

    #[test]
    fn fixture_trees_and_hosts_are_not_containers() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path(), &Roots::under(dir.path())), None);
        assert_eq!(detect(dir.path(), &Roots::default()), None, "no marker");
        std::fs::write(dir.path().join(".dockerenv"), "").unwrap();
        let view = detect(dir.path(), &Roots::default()).expect("the marker says container");
        assert_eq!(view.marker, dir.path().join(".dockerenv"));
    }

    #[test]
    fn each_narrowed_source_says_why_and_the_host_procfs_lifts_it() {
        let view = ContainerView { marker: "/.dockerenv".into(), own_cgroup_namespace: true };
        let warned = |roots: &Roots, s| {
            let mut w = Warnings::default();
            warn_limits(&view, s, roots, &mut w);
            w.into_vec()
        };
        let plain = Roots::default();
        for s in [Source::Network, Source::Filesystems, Source::Containers, Source::Host] {
            let w = warned(&plain, s);
            assert_eq!(w.len(), 1, "{s:?}");
            assert!(w[0].message.contains("in a container (/.dockerenv)"), "{w:?}");
        }
        assert!(warned(&plain, Source::Network)[0].message.contains("--host-procfs"));
        for s in [Source::Cpu, Source::Memory, Source::Disk, Source::Frequency] {
            assert!(warned(&plain, s).is_empty(), "{s:?} reads global files");
        }
        let with_host = Roots { host_procfs: Some("/host/proc".into()), ..Roots::default() };
        for s in [Source::Network, Source::Filesystems, Source::Host] {
            assert!(warned(&with_host, s).is_empty(), "{s:?}");
        }
        let mounted = ContainerView { own_cgroup_namespace: false, ..view.clone() };
        let mut w = Warnings::default();
        warn_limits(&mounted, Source::Containers, &with_host, &mut w);
        assert!(w.is_empty());
    }
}
