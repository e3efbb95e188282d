//! The `containers` source: containers found in the cgroup tree, v2 (unified) and v1
//! (per-controller hierarchies), named the way Docker, Podman, containerd, CRI-O and the kubelet
//! name them, plus any cgroup the configuration names explicitly.

use crate::files::KernelFiles;
use crate::parse::{cgroup, keyvalue, single_u64};
use crate::snapshot::Container;
use crate::warnings::{Warning, Warnings};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Deeper than any runtime nests its cgroups; bounds the walk on a strange tree.
const MAX_DEPTH: usize = 10;
const MAX_DIRS: usize = 20_000;
/// v1 reports "no limit" as a page-aligned i64::MAX; anything this large is unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    pub v2_root: Option<PathBuf>,
    pub v1_cpuacct: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
    pub v1_blkio: Option<PathBuf>,
    pub v1_pids: Option<PathBuf>,
}

impl CgroupLayout {
    /// Pure v2 (`cgroup.controllers` at the root), hybrid (v2 at `unified/`) and v1 controller
    /// directories, whether mounted together (`cpu,cpuacct`) or apart.
    pub fn detect(cgroupfs: &Path) -> Self {
        let mut l = CgroupLayout::default();
        if cgroupfs.join("cgroup.controllers").exists() {
            l.v2_root = Some(cgroupfs.to_path_buf());
            return l;
        }
        if cgroupfs.join("unified/cgroup.controllers").exists() {
            l.v2_root = Some(cgroupfs.join("unified"));
        }
        if let Ok(entries) = std::fs::read_dir(cgroupfs) {
            let mut names: Vec<(String, PathBuf)> = entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect();
            names.sort();
            for (name, path) in names {
                for controller in name.split(',') {
                    let slot = match controller {
                        "cpuacct" => &mut l.v1_cpuacct,
                        "cpu" => &mut l.v1_cpu,
                        "memory" => &mut l.v1_memory,
                        "blkio" => &mut l.v1_blkio,
                        "pids" => &mut l.v1_pids,
                        _ => continue,
                    };
                    slot.get_or_insert(path.clone());
                }
            }
        }
        l
    }

    /// No cgroup hierarchy found at all.
    pub fn is_empty(&self) -> bool {
        self == &CgroupLayout::default()
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Recognises a container cgroup from its path (relative to the hierarchy root). Returns
/// (runtime, id). Pure, so every runtime's naming is unit-tested.
pub fn classify(rel_path: &str) -> Option<(&'static str, String)> {
    let mut parts = rel_path.rsplit('/');
    let last = parts.next()?;
    let parent = parts.next().unwrap_or("");
    let in_kube = rel_path.contains("kubepods");
    let scoped = |prefix: &str| -> Option<String> {
        let id = last.strip_prefix(prefix)?;
        let id = id.strip_suffix(".scope").unwrap_or(id);
        is_container_id(id).then(|| id.to_string())
    };
    if let Some(id) = scoped("docker-") {
        return Some(("docker", id));
    }
    if let Some(id) = scoped("libpod-") {
        return Some(("podman", id));
    }
    if let Some(id) = scoped("cri-containerd-") {
        return Some((if in_kube { "kubernetes" } else { "containerd" }, id));
    }
    if let Some(id) = scoped("crio-") {
        return Some((if in_kube { "kubernetes" } else { "cri-o" }, id));
    }
    if is_container_id(last) {
        if parent == "docker" {
            return Some(("docker", last.to_string()));
        }
        if in_kube {
            return Some(("kubernetes", last.to_string()));
        }
    }
    None
}

/// Walks a hierarchy and returns (relative path, runtime, id) for each container cgroup. Fails
/// only when the root itself cannot be listed; a subdirectory that vanishes mid-walk (a container
/// stopping) is skipped.
pub fn discover(root: &Path) -> std::io::Result<Vec<(String, &'static str, String)>> {
    std::fs::read_dir(root)?;
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    let mut visited = 0;
    while let Some((dir, rel, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if let Some((runtime, id)) = classify(&child_rel) {
                found.push((child_rel, runtime, id));
            } else if depth + 1 < MAX_DEPTH {
                stack.push((e.path(), child_rel, depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Readings of one cgroup. `cpu_seconds` is cumulative; the sampler turns it into a rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupReading {
    pub cpu_seconds: Option<f64>,
    pub cpu_limit_cores: Option<f64>,
    pub throttled_periods: Option<u64>,
    pub throttled_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub missing: Vec<&'static str>,
}

pub fn read_v2(dir: &Path, files: &mut KernelFiles) -> CgroupReading {
    let mut r = CgroupReading::default();
    let mut read = |p: &Path| files.optional(p);
    match read(&dir.join("cpu.stat")).map(|t| keyvalue::parse(&t)) {
        Some(kv) => {
            r.cpu_seconds = kv.get("usage_usec").map(|u| u as f64 / 1e6);
            r.throttled_periods = kv.get("nr_throttled");
            r.throttled_seconds = kv.get("throttled_usec").map(|u| u as f64 / 1e6);
        }
        None => r.missing.push("cpu.stat"),
    }
    match read(&dir.join("cpu.max")).and_then(|t| cgroup::cpu_max(&t)) {
        Some((quota, period)) => r.cpu_limit_cores = quota.map(|q| q as f64 / period as f64),
        None => r.missing.push("cpu.max"),
    }
    match read(&dir.join("memory.current")).and_then(|t| single_u64(&t)) {
        Some(v) => r.memory_bytes = Some(v),
        None => r.missing.push("memory.current"),
    }
    match read(&dir.join("memory.max")).and_then(|t| cgroup::limit(&t)) {
        Some(v) => r.memory_limit_bytes = v,
        None => r.missing.push("memory.max"),
    }
    match read(&dir.join("io.stat")) {
        Some(t) => {
            let io = cgroup::io_stat(&t);
            (r.io_read_bytes, r.io_write_bytes) = (Some(io.read), Some(io.write));
        }
        None => r.missing.push("io.stat"),
    }
    match read(&dir.join("pids.current")).and_then(|t| single_u64(&t)) {
        Some(v) => r.pids = Some(v),
        None => r.missing.push("pids.current"),
    }
    r
}

pub fn read_v1(layout: &CgroupLayout, rel: &str, files: &mut KernelFiles) -> CgroupReading {
    let mut r = CgroupReading::default();
    let mut at =
        |root: &Option<PathBuf>, file: &str| root.as_ref().and_then(|p| files.optional(&p.join(rel).join(file)));
    match at(&layout.v1_cpuacct, "cpuacct.usage").and_then(|t| single_u64(&t)) {
        Some(ns) => r.cpu_seconds = Some(ns as f64 / 1e9),
        None => r.missing.push("cpuacct.usage"),
    }
    match at(&layout.v1_cpu, "cpu.stat").map(|t| keyvalue::parse(&t)) {
        Some(kv) => {
            r.throttled_periods = kv.get("nr_throttled");
            r.throttled_seconds = kv.get("throttled_time").map(|ns| ns as f64 / 1e9);
        }
        None => r.missing.push("cpu.stat"),
    }
    let quota = at(&layout.v1_cpu, "cpu.cfs_quota_us").and_then(|t| t.trim().parse::<i64>().ok());
    let period = at(&layout.v1_cpu, "cpu.cfs_period_us").and_then(|t| single_u64(&t)).filter(|p| *p > 0);
    match (quota, period) {
        (Some(q), Some(p)) => r.cpu_limit_cores = (q > 0).then(|| q as f64 / p as f64),
        _ => r.missing.push("cpu.cfs_quota_us"),
    }
    match at(&layout.v1_memory, "memory.usage_in_bytes").and_then(|t| single_u64(&t)) {
        Some(v) => r.memory_bytes = Some(v),
        None => r.missing.push("memory.usage_in_bytes"),
    }
    match at(&layout.v1_memory, "memory.limit_in_bytes").and_then(|t| single_u64(&t)) {
        Some(v) => r.memory_limit_bytes = (v < V1_UNLIMITED).then_some(v),
        None => r.missing.push("memory.limit_in_bytes"),
    }
    match at(&layout.v1_blkio, "blkio.throttle.io_service_bytes") {
        Some(t) => {
            let io = cgroup::blkio_service_bytes(&t);
            (r.io_read_bytes, r.io_write_bytes) = (Some(io.read), Some(io.write));
        }
        None => r.missing.push("blkio.throttle.io_service_bytes"),
    }
    match at(&layout.v1_pids, "pids.current").and_then(|t| single_u64(&t)) {
        Some(v) => r.pids = Some(v),
        None => r.missing.push("pids.current"),
    }
    r
}

/// A container cgroup found in the tree (or named in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub rel: String,
    pub runtime: &'static str,
    pub id: String,
    pub version: u8,
}

fn v1_root(layout: &CgroupLayout) -> Option<&PathBuf> {
    layout.v1_cpuacct.as_ref().or(layout.v1_cpu.as_ref()).or(layout.v1_memory.as_ref())
}

/// Walks the hierarchies for containers. The walk is the costly part, so the sampler repeats it
/// only every few samples and reads the found ones in between. A hierarchy root that cannot be
/// listed is a warning (its containers would otherwise silently vanish).
pub fn discover_walk(layout: &CgroupLayout, warnings: &mut Warnings) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut push = |f: Found| {
        // the same container seen in v1 and in the hybrid v2 tree counts once
        if !out.iter().any(|o| o.id == f.id && o.runtime == f.runtime) {
            out.push(f);
        }
    };
    for (root, version) in [(v1_root(layout), 1), (layout.v2_root.as_ref(), 2)] {
        let Some(root) = root else { continue };
        match discover(root) {
            Ok(found) => {
                for (rel, runtime, id) in found {
                    push(Found { rel, runtime, id, version });
                }
            }
            Err(e) => warnings.file(root, format!("cgroup hierarchy unreadable: {e}")),
        }
    }
    out
}

/// Resolves the cgroups the configuration names: a couple of `stat`s each, so the sampler does
/// it every sample and a named cgroup shows up as soon as it exists. On a hybrid host the v1
/// controllers hold the numbers (the `unified` tree usually has no controllers), so v1 wins there.
pub fn resolve_named(layout: &CgroupLayout, named: &[String], warnings: &mut Warnings) -> Vec<Found> {
    let mut out = Vec::new();
    for name in named {
        let rel = name.trim_matches('/').to_string();
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            warnings.push(format!("cgroup {name}"), "not a path below the cgroup root");
            continue;
        }
        if v1_root(layout).is_some_and(|r| r.join(&rel).is_dir()) {
            out.push(Found { rel: rel.clone(), runtime: "cgroup", id: rel, version: 1 });
        } else if layout.v2_root.as_ref().is_some_and(|r| r.join(&rel).join("cgroup.procs").exists()) {
            out.push(Found { rel: rel.clone(), runtime: "cgroup", id: rel, version: 2 });
        } else {
            warnings.push(format!("cgroup {rel}"), "named in the configuration but not found");
        }
    }
    out
}

/// Reads one found cgroup. None when its directory is gone (the container stopped).
pub fn read_found(
    layout: &CgroupLayout,
    f: &Found,
    files: &mut KernelFiles,
    warnings: &mut Warnings,
) -> Option<Container> {
    let r = match f.version {
        2 => {
            let dir = layout.v2_root.as_ref()?.join(&f.rel);
            if !dir.is_dir() {
                files.forget_under(&dir);
                return None;
            }
            read_v2(&dir, files)
        }
        _ => {
            if !v1_root(layout)?.join(&f.rel).is_dir() {
                return None;
            }
            read_v1(layout, &f.rel, files)
        }
    };
    if !r.missing.is_empty() {
        warnings.push(format!("cgroup {}", f.rel), format!("not available: {}", r.missing.join(", ")));
    }
    Some(Container {
        id: f.id.clone(),
        runtime: f.runtime.to_string(),
        cgroup_path: f.rel.clone(),
        cgroup_version: f.version,
        cpu_seconds: r.cpu_seconds,
        cpu_usage_cores: None,
        cpu_usage_pct: None,
        cpu_limit_cores: r.cpu_limit_cores,
        cpu_throttled_periods: r.throttled_periods,
        cpu_throttled_seconds: r.throttled_seconds,
        memory_bytes: r.memory_bytes,
        memory_limit_bytes: r.memory_limit_bytes,
        io_read_bytes: r.io_read_bytes,
        io_write_bytes: r.io_write_bytes,
        pids: r.pids,
    })
}

/// What the containers source keeps between samples (owned by the sampler).
#[derive(Debug, Default)]
pub struct ContainerState {
    pub layout: CgroupLayout,
    /// Containers found by the last discovery walk.
    pub found: Vec<Found>,
    /// Warnings of the last walk, repeated in every sample until the next walk.
    pub discovery_warnings: Vec<Warning>,
}

/// Walks the cgroup tree again (see [`discover_walk`]). With no hierarchy found, a cgroup root
/// that exists but cannot be listed is a warning; a missing one means no cgroups to report.
pub fn rediscover(state: &mut ContainerState, cgroupfs: &Path) {
    let mut w = Warnings::default();
    state.found = discover_walk(&state.layout, &mut w);
    if state.layout.is_empty()
        && let Err(e) = std::fs::read_dir(cgroupfs)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        w.file(cgroupfs, format!("cgroup root unreadable: {e}"));
    }
    state.discovery_warnings = w.into_vec();
}

/// The containers source's read: the containers found by the last walk plus the cgroups named in
/// the configuration, with CPU usage against `previous_cpu` (cumulative CPU seconds by cgroup
/// path from the last sample). Returns the containers and this sample's cumulative CPU seconds.
pub fn read(
    state: &ContainerState,
    named: &[String],
    files: &mut KernelFiles,
    previous_cpu: Option<&HashMap<String, f64>>,
    secs: Option<f64>,
    w: &mut Warnings,
) -> (Vec<Container>, HashMap<String, f64>) {
    w.repeat(&state.discovery_warnings);
    let named = resolve_named(&state.layout, named, w);
    let mut containers: Vec<Container> = state
        .found
        .iter()
        .filter(|f| !named.iter().any(|n| n.id == f.id && n.runtime == f.runtime))
        .chain(&named)
        .filter_map(|f| read_found(&state.layout, f, files, w))
        .collect();
    for c in &mut containers {
        let before = previous_cpu.and_then(|p| p.get(&c.cgroup_path));
        if let (Some(now), Some(b), Some(s)) = (c.cpu_seconds, before, secs)
            && now >= *b
        {
            let cores = (now - b) / s;
            c.cpu_usage_cores = Some(cores);
            c.cpu_usage_pct = Some(cores * 100.0);
        }
    }
    let cpu = containers.iter().filter_map(|c| Some((c.cgroup_path.clone(), c.cpu_seconds?))).collect();
    (containers, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b";

    #[test]
    fn runtime_naming() {
        assert_eq!(classify(&format!("system.slice/docker-{ID}.scope")), Some(("docker", ID.into())));
        assert_eq!(classify(&format!("docker/{ID}")), Some(("docker", ID.into())));
        assert_eq!(classify(&format!("machine.slice/libpod-{ID}.scope")), Some(("podman", ID.into())));
        assert_eq!(
            classify(&format!("user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope")),
            Some(("podman", ID.into()))
        );
        assert_eq!(classify(&format!("machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(
            classify(&format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope"
            )),
            Some(("kubernetes", ID.into()))
        );
        assert_eq!(classify(&format!("system.slice/cri-containerd-{ID}.scope")), Some(("containerd", ID.into())));
        assert_eq!(classify(&format!("kubepods/burstable/pod0b9e/{ID}")), Some(("kubernetes", ID.into())));
        assert_eq!(classify("system.slice/ssh.service"), None);
        assert_eq!(classify(ID), None);
    }

    #[test]
    fn v2_scope_from_the_guest_capture() {
        // fixtures/debian12-tcg-guest/cgroup-v2/.../docker-<id>.scope.t0, read by hand.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/debian12-tcg-guest/cgroup-v2/system.slice/docker-{ID}.scope.t0"));
        let r = read_v2(&dir, &mut KernelFiles::default());
        assert_eq!(r.cpu_seconds, Some(4.557704));
        assert_eq!(r.cpu_limit_cores, Some(0.5));
        assert_eq!(r.throttled_periods, Some(89));
        assert_eq!(r.memory_bytes, Some(14_143_488));
        assert_eq!(r.memory_limit_bytes, None);
        assert_eq!(r.pids, Some(2));
        assert_eq!((r.io_read_bytes, r.io_write_bytes), (Some(0), Some(0)));
        assert!(r.missing.is_empty(), "{:?}", r.missing);
    }
}
