//! How the collector runs in the guest, in one place: as a native systemd service, or as a
//! container of the image `collector image` builds, under the same unit name, in one of three
//! privilege modes. Each mode's docker flags (what the container may see and do) and the
//! collector flags that point at what it mounts are here and nowhere else.
//!
//! | mode | docker run flags | the collector's flags | the collector sees |
//! |---|---|---|---|
//! | `native` | (a systemd service, no container) | | everything the service user may read, CAP_PERFMON |
//! | `container` | none: what a plain `docker run` gives | | the host's global /proc and sysfs files (CPU, memory, disks, cpufreq); the container's own network, mount table, cgroup namespace and host name (each source warns); the runtime's default capabilities and seccomp profile (no perf) |
//! | `container-sys-ro` | `/sys/devices/system/cpu` ro; `/sys/fs/cgroup` ro at `/host/sys/fs/cgroup`; the host's `/proc` ro at `/host/proc`; `/etc/os-release` ro; `--uts=host` | `--cgroupfs /host/sys/fs/cgroup --host-procfs /host/proc` | the host's cgroup tree, network (its init's `net/dev`), mount table and host name; not the host's mount points (statvfs needs its init's root: the filesystems source warns); no perf |
//! | `privileged` | `--privileged --pid=host --uts=host --cgroupns=host` | `--host-procfs /proc` | every device and capability, the host's processes, network, mounts, cgroup tree and host name; perf |

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollectorMode {
    #[default]
    Native,
    Container,
    ContainerSysRo,
    Privileged,
}

/// The container's name in the guest's Docker.
pub const CONTAINER: &str = "sysmon-collector";

impl CollectorMode {
    pub const ALL: [CollectorMode; 4] =
        [CollectorMode::Native, CollectorMode::Container, CollectorMode::ContainerSysRo, CollectorMode::Privileged];

    pub fn as_str(self) -> &'static str {
        match self {
            CollectorMode::Native => "native",
            CollectorMode::Container => "container",
            CollectorMode::ContainerSysRo => "container-sys-ro",
            CollectorMode::Privileged => "privileged",
        }
    }

    pub fn parse(s: &str) -> Option<CollectorMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn is_container(self) -> bool {
        self != CollectorMode::Native
    }

    /// What the container may see and do, beyond a plain `docker run`.
    pub fn docker_flags(self) -> &'static [&'static str] {
        match self {
            CollectorMode::Native | CollectorMode::Container => &[],
            CollectorMode::ContainerSysRo => &[
                "--volume",
                "/sys/devices/system/cpu:/sys/devices/system/cpu:ro",
                "--volume",
                "/sys/fs/cgroup:/host/sys/fs/cgroup:ro",
                "--volume",
                "/proc:/host/proc:ro",
                "--volume",
                "/etc/os-release:/etc/os-release:ro",
                "--uts=host",
            ],
            CollectorMode::Privileged => &["--privileged", "--pid=host", "--uts=host", "--cgroupns=host"],
        }
    }

    /// The collector's own flags for where the mounts put what it reads.
    pub fn collector_flags(self) -> &'static [&'static str] {
        match self {
            CollectorMode::ContainerSysRo => &["--cgroupfs", "/host/sys/fs/cgroup", "--host-procfs", "/host/proc"],
            // The host's pid namespace: its init is pid 1 of the container's own /proc.
            CollectorMode::Privileged => &["--host-procfs", "/proc"],
            _ => &[],
        }
    }

    /// The unit's `docker run` arguments: the container named [`CONTAINER`], removed when it
    /// stops, its ports published on the guest's address (`listen`, `ADDRESS:PORT`) and every
    /// address for gRPC (`grpc_port`), this mode's flags, the image, then the collector's
    /// arguments.
    pub fn docker_run_args(self, image: &str, listen: &str, grpc_port: u16, config: &str) -> Vec<String> {
        let port = listen.rsplit(':').next().unwrap_or(listen);
        let mut v: Vec<String> = ["--rm", "--name", CONTAINER].map(String::from).to_vec();
        v.extend(["--publish".into(), format!("{listen}:{port}")]);
        v.extend(["--publish".into(), format!("{grpc_port}:{grpc_port}")]);
        v.extend(self.docker_flags().iter().map(|s| s.to_string()));
        v.push(image.to_string());
        v.extend(["--config".to_string(), config.to_string(), "serve".to_string()]);
        v.extend(self.collector_flags().iter().map(|s| s.to_string()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_round_trips_and_says_what_it_mounts() {
        for m in CollectorMode::ALL {
            assert_eq!(CollectorMode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(CollectorMode::parse("sys-ro"), None);
        let args = CollectorMode::ContainerSysRo.docker_run_args("img:latest", "10.0.2.15:9105", 50110, "/etc/c.json");
        assert_eq!(
            args.join(" "),
            "--rm --name sysmon-collector --publish 10.0.2.15:9105:9105 --publish 50110:50110 \
             --volume /sys/devices/system/cpu:/sys/devices/system/cpu:ro --volume /sys/fs/cgroup:/host/sys/fs/cgroup:ro \
             --volume /proc:/host/proc:ro --volume /etc/os-release:/etc/os-release:ro --uts=host \
             img:latest --config /etc/c.json serve --cgroupfs /host/sys/fs/cgroup --host-procfs /host/proc"
        );
        let plain = CollectorMode::Container.docker_run_args("i", "a:1", 2, "c");
        assert!(!plain.iter().any(|a| a.starts_with("--volume") || a.starts_with("--privileged")), "{plain:?}");
        assert!(CollectorMode::Privileged.docker_flags().contains(&"--pid=host"));
        assert!(!CollectorMode::Native.is_container());
    }
}
