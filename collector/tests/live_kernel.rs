//! The collector on this machine's real /proc, /sys and cgroups. Cgroup tests create real child
//! cgroups (v2 and v1, named the way Docker names them), run a busy process in them and check the
//! collector's CPU seconds for that cgroup agree with the process's own account of its CPU time
//! (`/proc/PID/stat`, utime + stime) over the same interval. No wall-clock threshold: a starved
//! burner only makes the interval longer (bounded), never the test red. They clean up after themselves. They need root and a writable
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
            // No source, or a cycle counter that is not (yet) shown to be a clock: no value, a note.
            FrequencySource::None | FrequencySource::PerfSynthetic | FrequencySource::PerfUnverified => {
                assert!(c.frequency_hz.is_none() && c.frequency_note.is_some(), "{c:?}")
            }
            _ => assert!(c.frequency_hz.is_some_and(|hz| hz > 1e8 && hz < 1e10), "{c:?}"),
        }
    }
    assert!(snap.filesystems.iter().any(|f| f.mountpoint == "/" || f.total_bytes > 0), "{:?}", snap.filesystems);
    assert!(snap.collector.rss_bytes.unwrap() > 0);
}

/// The process's own account of its CPU time, utime + stime from `/proc/PID/stat`, in seconds.
/// Independent of the cgroup files and of /proc/stat, which the collector reads.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the burner's /proc/PID/stat");
    // The command name (field 2) may hold spaces; fields after the closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f[11].parse().unwrap(), f[12].parse().unwrap());
    (utime + stime) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// The reference's bracket around one sample: the burner's CPU time read just before and just
/// after the collector's sample, so the collector's reading lies between them whatever the
/// scheduler did in between.
struct Bracketed {
    snap: sysmon_collector::Snapshot,
    before: f64,
    after: f64,
}

fn bracketed_sample(s: &mut Sampler, pid: u32) -> Bracketed {
    let before = process_cpu_seconds(pid);
    let snap = s.sample();
    let after = process_cpu_seconds(pid);
    Bracketed { snap, before, after }
}

/// The least CPU time the burner must have had before a comparison counts, so that a starved
/// burner cannot pass as 0 ≈ 0; and the longest we wait for it (a starved machine only waits).
const MIN_REFERENCE_CPU_SECONDS: f64 = 0.2;
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A first bracketed sample, then more until the burner has had `MIN_REFERENCE_CPU_SECONDS`.
fn sample_until_burned(s: &mut Sampler, pid: u32) -> (Bracketed, Bracketed) {
    let first = bracketed_sample(s, pid);
    let deadline = std::time::Instant::now() + MAX_WAIT;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let last = bracketed_sample(s, pid);
        if last.before - first.after >= MIN_REFERENCE_CPU_SECONDS {
            return (first, last);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the burner had only {:.3} s of CPU in {MAX_WAIT:?}",
            last.before - first.after
        );
    }
}

/// The collector's delta must lie in the reference's bracket, widened by 2 clock ticks (utime and
/// stime are each rounded to a tick) and 5 %.
fn assert_agrees(what: &str, collector_delta: f64, first: &Bracketed, last: &Bracketed) {
    let low = last.before - first.after;
    let high = last.after - first.before;
    let slack = 2.0 / clock_ticks() + 0.05 * high;
    assert!(
        collector_delta >= low - slack && collector_delta <= high + slack,
        "{what}: collector {collector_delta:.3} s, the burner's own /proc/PID/stat {low:.3}..{high:.3} s (± {slack:.3})"
    );
    eprintln!("{what}: collector {collector_delta:.3} s, reference {low:.3}..{high:.3} s");
}

fn busy_seconds(snap: &sysmon_collector::Snapshot) -> f64 {
    let t = &snap.cpu_total.as_ref().expect("cpu_total").seconds;
    t.user + t.nice + t.system + t.irq + t.softirq + t.steal
}

#[test]
fn a_busy_process_shows_up_in_cpu_usage() {
    let mut s = Sampler::new(Roots::default(), SamplerOptions { perf: false, cgroups: vec![], container: None });
    // CPU totals come with an interval: from the second sample on, once /proc/stat has moved by a
    // tick (wall time, so 100 ms is enough however busy the machine is).
    s.sample();
    std::thread::sleep(Duration::from_millis(100));
    let burner = Burner::start();
    let (first, last) = sample_until_burned(&mut s, burner.pid());
    // /proc/stat counts every process, so the burner's own time is a lower bound of the busy time.
    let busy = busy_seconds(&last.snap) - busy_seconds(&first.snap);
    let low = last.before - first.after;
    assert!(
        busy >= low - 2.0 / clock_ticks() - 0.05 * low,
        "busy CPU seconds {busy:.3} < the burner's own {low:.3} s over the same interval"
    );
    assert!(last.snap.cpus.iter().any(|c| c.usage.is_some_and(|u| u.usage_pct > 0.0)));
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
    let mut s = Sampler::new(
        Roots::default(),
        SamplerOptions { perf: false, cgroups: vec![named.clone()], ..Default::default() },
    );
    let (first, last) = sample_until_burned(&mut s, burner.pid());
    let (runtime, version, before, _) = cpu_seconds_of(&first.snap, &id).expect("the collector finds the docker scope");
    assert_eq!((runtime.as_str(), version), ("docker", 2));
    let (_, _, after, cores) = cpu_seconds_of(&last.snap, &id).unwrap();
    assert_agrees("docker scope", after - before, &first, &last);
    assert!(cores.is_some_and(|c| c > 0.0), "usage {cores:?} cores");
    // The named parent cgroup is reported too, with the child's time included (it holds only the burner).
    let parent_seconds = |snap: &sysmon_collector::Snapshot| {
        let p = snap.containers.iter().find(|c| c.id == named).expect("named cgroup reported");
        assert_eq!(p.runtime, "cgroup");
        p.cpu_seconds.expect("parent cpu seconds")
    };
    assert_agrees("named parent", parent_seconds(&last.snap) - parent_seconds(&first.snap), &first, &last);
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

    let mut s = Sampler::new(Roots::default(), SamplerOptions { perf: false, cgroups: vec![], container: None });
    let (first, last) = sample_until_burned(&mut s, burner.pid());
    let (runtime, version, before, _) =
        cpu_seconds_of(&first.snap, &id).expect("the collector finds the v1 docker cgroup");
    assert_eq!((runtime.as_str(), version), ("docker", 1));
    let (_, _, after, cores) = cpu_seconds_of(&last.snap, &id).unwrap();
    assert_agrees("v1 docker cgroup", after - before, &first, &last);
    assert!(cores.is_some_and(|c| c > 0.0), "usage {cores:?} cores");
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
            // A counter not shown to be a clock after one interval: no value, the note says why.
            FrequencySource::PerfUnverified | FrequencySource::PerfSynthetic => {
                assert!(c.frequency_hz.is_none() && note.contains("cycle counter"), "{note}");
                assert!(c.counter_rate_hz.is_some() || note.contains("no interval"), "{c:?}");
            }
            // No PMU (this machine: ENOENT) or not permitted: the note says which.
            _ if c.frequency_source != FrequencySource::Cpufreq => {
                let cpufreq_or_reason = note.contains("perf") || note.contains("TSC");
                assert!(cpufreq_or_reason, "{note}");
            }
            _ => {}
        }
    }
}
