//! Test support: fixture trees built in temporary directories from the real captures in
//! tests/fixtures (see each folder's SOURCES.md).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use sysmon_collector::Roots;

/// The project's one list of system packages (the sysmonvm crate's module, included by path because
/// this crate cannot depend on that one), so a test can name the package that brings a missing tool.
#[path = "../../../src/system_packages.rs"]
pub mod system_packages;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says that `tool` is missing and which package brings it: a failure under CI=true, else SKIPPED.
pub fn tool_missing(tool: &str) {
    let why = system_packages::missing_tool_message(tool);
    assert!(!in_ci(), "{why}; it is required under CI=true (.ci/run installs it)");
    eprintln!("SKIPPED: {why}");
}

/// A test that cannot run here says so: `SKIPPED: why` on stderr, or under CI=true, a failure.
pub fn skip(why: &str) {
    assert!(!in_ci(), "{why}; it is required under CI=true (.ci/run installs it)");
    eprintln!("SKIPPED: {why}");
}

/// Whether a command is on PATH; a missing one is SKIPPED (a failure under CI=true) naming its package.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        tool_missing(tool);
    }
    found
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// A directory laid out as `proc/`, `sys/`, `sys/fs/cgroup/`.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        let t = Tree { dir: tempfile::tempdir().expect("tempdir") };
        for d in ["proc", "sys/devices/system/cpu", "sys/fs/cgroup", "sys/class"] {
            std::fs::create_dir_all(t.dir.path().join(d)).unwrap();
        }
        t
    }

    pub fn roots(&self) -> Roots {
        Roots::under(self.dir.path())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn copy_fixture(&self, fixture_rel: &str, rel: &str) -> &Self {
        self.write(rel, &fixture(fixture_rel))
    }

    /// Copies a fixture directory recursively.
    pub fn copy_dir(&self, fixture_rel: &str, rel: &str) -> &Self {
        fn walk(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap().flatten() {
                let target = to.join(e.file_name());
                if e.path().is_dir() {
                    walk(&e.path(), &target);
                } else {
                    std::fs::copy(e.path(), target).unwrap();
                }
            }
        }
        walk(&fixtures().join(fixture_rel), &self.path(rel));
        self
    }

    /// Unpacks a `.flat` sysfs dump (tests/fixtures/sysfs-cpufreq/SOURCES.md describes the format):
    /// `path = value`, `path -> target` (symlink), and `path =<<` followed by 4-space-indented
    /// lines up to an (indented) `<<`.
    pub fn unflatten(&self, fixture_rel: &str) -> &Self {
        let text = fixture(fixture_rel);
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(path) = line.strip_suffix(" =<<") {
                let mut body = String::new();
                for l in lines.by_ref() {
                    if l.trim() == "<<" {
                        break;
                    }
                    body.push_str(l.strip_prefix("    ").unwrap_or(l));
                    body.push('\n');
                }
                self.write(path, &body);
            } else if let Some((path, target)) = line.split_once(" -> ") {
                let p = self.path(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, p).unwrap();
            } else if let Some((path, value)) = line.split_once(" = ") {
                self.write(path, &format!("{value}\n"));
            } else if let Some(path) = line.strip_suffix(" =") {
                self.write(path, "\n");
            }
        }
        self
    }

    /// A /proc/stat with `n` CPUs whose tick counts grow by `busy` busy and `idle` idle ticks per step.
    pub fn synthetic_stat(&self, n: u32, step: u64, busy: u64, idle: u64) -> &Self {
        let mut s = String::new();
        let total_busy = busy * step * n as u64;
        let total_idle = idle * step * n as u64;
        s.push_str(&format!("cpu  {total_busy} 0 0 {total_idle} 0 0 0 0 0 0\n"));
        for i in 0..n {
            s.push_str(&format!("cpu{i} {} 0 0 {} 0 0 0 0 0 0\n", busy * step, idle * step));
        }
        s.push_str("intr 0\nctxt 0\nbtime 1700000000\n");
        self.write("proc/stat", &s)
    }
}

/// A machine with `n` CPUs for benchmarks: per-CPU cpufreq policies (intel_pstate layout),
/// x86 /proc/cpuinfo, the Debian guest's other /proc files, and one Docker scope on cgroup v2.
pub fn synthetic_machine(n: u32) -> Tree {
    let t = Tree::new();
    t.copy_dir("debian12-tcg-guest/proc", "proc");
    t.write("proc/mounts", "/dev/vda2 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n");
    t.synthetic_stat(n, 1, 30, 70);
    let block = fixture("debian12-tcg-guest/proc/cpuinfo");
    let first = block.split("\n\n").next().unwrap_or("");
    let mut cpuinfo = String::new();
    for i in 0..n {
        cpuinfo.push_str(&first.replacen("processor\t: 0", &format!("processor\t: {i}"), 1));
        cpuinfo.push_str("\n\n");
    }
    t.write("proc/cpuinfo", &cpuinfo);
    for i in 0..n {
        let p = format!("sys/devices/system/cpu/cpufreq/policy{i}");
        t.write(&format!("{p}/scaling_cur_freq"), &format!("{}\n", 1_800_000 + i * 1000));
        t.write(&format!("{p}/cpuinfo_min_freq"), "400000\n");
        t.write(&format!("{p}/cpuinfo_max_freq"), "4700000\n");
        t.write(&format!("{p}/scaling_governor"), "powersave\n");
        t.write(&format!("{p}/scaling_driver"), "intel_pstate\n");
        t.write(&format!("{p}/related_cpus"), &format!("{i}\n"));
        std::fs::create_dir_all(t.path(&format!("sys/devices/system/cpu/cpu{i}"))).unwrap();
        std::os::unix::fs::symlink(
            format!("../cpufreq/policy{i}"),
            t.path(&format!("sys/devices/system/cpu/cpu{i}/cpufreq")),
        )
        .unwrap();
    }
    t.write("sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    t.copy_dir(
        "debian12-tcg-guest/cgroup-v2/system.slice/docker-532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b.scope.t0",
        "sys/fs/cgroup/system.slice/docker-532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b.scope",
    );
    t
}
