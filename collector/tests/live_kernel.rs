//! The collector on this machine's real /proc, /sys and cgroups. Cgroup tests create real child
//! cgroups (v2 and v1, named the way Docker names them), run a busy process in them and check the
//! collector sees its CPU time rise; they clean up after themselves. They need root and a writable
//! cgroup hierarchy: without one they are skipped with a message, except under CI=true, where a
//! missing hierarchy is a failure (CI provides one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use sysmon_collector::containers::CgroupLayout;
use sysmon_collector::{FrequencySource, Roots, Sampler, SamplerOptions};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn unavailable(what: &str) {
    if in_ci() {
        panic!("{what} is required under CI=true");
    }
    eprintln!("SKIPPED: {what} not available on this machine");
}

struct Burner(Child);

impl Burner {
    fn start() -> Burner {
        Burner(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("spawn sh"))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup directory removed (deepest first) when dropped, after its processes are gone.
struct CgroupDirs(Vec<PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn random_id() -> String {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    (0..4)
        .map(|i| format!("{:016x}", seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(i * 16) ^ (i as u64)))
        .collect()
}

#[test]
fn live_snapshot_matches_the_kernel() {
    let mut s = Sampler::new(Roots::default(), SamplerOptions::default());
    let snap = s.sample_over(Duration::from_millis(300));
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu_lines = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    assert_eq!(snap.cpus.len(), cpu_lines);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(snap.memory.total_bytes, Some(total_kb * 1024));
    for c in &snap.cpus {
        assert!(c.usage.is_some(), "{} has usage over the interval", c.cpu);
        match c.frequency_source {
            FrequencySource::None => assert!(c.frequency_hz.is_none() && c.frequency_note.is_some()),
            _ => assert!(c.frequency_hz.is_some_and(|hz| hz > 1e8 && hz < 1e10), "{c:?}"),
        }
    }
    assert!(snap.filesystems.iter().any(|f| f.mountpoint == "/" || f.total_bytes > 0), "{:?}", snap.filesystems);
    assert!(snap.collector.rss_bytes.unwrap() > 0);
}

#[test]
fn a_busy_process_shows_up_in_cpu_usage() {
    let mut s = Sampler::new(Roots::default(), SamplerOptions { perf: false, cgroups: vec![] });
    s.sample();
    let _burner = Burner::start();
    std::thread::sleep(Duration::from_millis(1000));
    let snap = s.sample();
    let busiest = snap.cpus.iter().filter_map(|c| c.usage.map(|u| u.usage_pct)).fold(0.0, f64::max);
    assert!(busiest > 60.0, "one CPU should be mostly busy, got {busiest}%");
}

fn cpu_seconds_of(snap: &sysmon_collector::Snapshot, id: &str) -> Option<(String, u8, f64, Option<f64>)> {
    snap.containers
        .iter()
        .find(|c| c.id == id)
        .map(|c| (c.runtime.clone(), c.cgroup_version, c.cpu_seconds.unwrap_or(-1.0), c.cpu_usage_cores))
}

#[test]
fn real_cgroup_v2_docker_scope_sees_cpu_time_rise() {
    let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup"));
    let Some(v2) = layout.v2_root.clone() else { return unavailable("a cgroup v2 hierarchy") };
    let slice = v2.join(format!("sysmon-test-{}.slice", std::process::id()));
    let id = random_id();
    let scope = slice.join(format!("docker-{id}.scope"));
    if std::fs::create_dir_all(&scope).is_err() {
        return unavailable("a writable cgroup v2 hierarchy");
    }
    let _dirs = CgroupDirs(vec![slice.clone(), scope.clone()]);
    let burner = Burner::start();
    std::fs::write(scope.join("cgroup.procs"), burner.pid().to_string()).expect("move the burner into the scope");

    let named = format!("{}", slice.strip_prefix(&v2).unwrap().display());
    let mut s = Sampler::new(Roots::default(), SamplerOptions { perf: false, cgroups: vec![named.clone()] });
    let first = s.sample();
    let (runtime, version, before, _) = cpu_seconds_of(&first, &id).expect("the collector finds the docker scope");
    assert_eq!((runtime.as_str(), version), ("docker", 2));
    std::thread::sleep(Duration::from_millis(1000));
    let second = s.sample();
    let (_, _, after, cores) = cpu_seconds_of(&second, &id).unwrap();
    assert!(after > before + 0.5, "cpu seconds {before} → {after}");
    assert!(cores.unwrap() > 0.6, "usage {cores:?} cores");
    // The named parent cgroup is reported too, with the child's time included.
    let parent = second.containers.iter().find(|c| c.id == named).expect("named cgroup reported");
    assert_eq!(parent.runtime, "cgroup");
    assert!(parent.cpu_usage_cores.unwrap() > 0.6);
    drop(burner);
}

#[test]
fn real_cgroup_v1_docker_container_sees_cpu_time_rise() {
    let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup"));
    let Some(cpuacct) = layout.v1_cpuacct.clone() else { return unavailable("a cgroup v1 cpuacct hierarchy") };
    let id = random_id();
    let docker = cpuacct.join("docker");
    let existed = docker.exists();
    let dir = docker.join(&id);
    if std::fs::create_dir_all(&dir).is_err() {
        return unavailable("a writable cgroup v1 cpuacct hierarchy");
    }
    let mut dirs = vec![];
    if !existed {
        dirs.push(docker.clone());
    }
    dirs.push(dir.clone());
    let _dirs = CgroupDirs(dirs);
    let burner = Burner::start();
    std::fs::write(dir.join("cgroup.procs"), burner.pid().to_string()).expect("move the burner into the cgroup");

    let mut s = Sampler::new(Roots::default(), SamplerOptions { perf: false, cgroups: vec![] });
    let first = s.sample();
    let (runtime, version, before, _) = cpu_seconds_of(&first, &id).expect("the collector finds the v1 docker cgroup");
    assert_eq!((runtime.as_str(), version), ("docker", 1));
    std::thread::sleep(Duration::from_millis(1000));
    let second = s.sample();
    let (_, _, after, cores) = cpu_seconds_of(&second, &id).unwrap();
    assert!(after > before + 0.5, "cpu seconds {before} → {after}");
    assert!(cores.unwrap() > 0.6, "usage {cores:?} cores");
    drop(burner);
}

#[test]
fn perf_counters_open_or_give_a_reason_on_this_machine() {
    let mut s = Sampler::new(Roots::default(), SamplerOptions::default());
    let snap = s.sample_over(Duration::from_millis(200));
    for c in &snap.cpus {
        let note = c.frequency_note.clone().unwrap_or_default();
        match c.frequency_source {
            FrequencySource::Perf => assert!(c.frequency_hz.is_some() || note.contains("idle")),
            // No PMU (this machine: ENOENT) or not permitted: the note says which.
            _ if c.frequency_source != FrequencySource::Cpufreq => {
                let cpufreq_or_reason = note.contains("perf") || note.contains("TSC");
                assert!(cpufreq_or_reason, "{note}");
            }
            _ => {}
        }
    }
}
