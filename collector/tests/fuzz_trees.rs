//! The sampler over garbled trees: real fixture trees (the Debian guest's /proc with cgroup v2
//! scopes and the Snapdragon big.LITTLE cpufreq dump; the Firecracker host's /proc with a cgroup v1
//! Docker container and the EPYC cpufreq dump; thermal zones and hwmon laid out as sysfs does) are
//! copied to a temporary directory and garbled between samples: contents mutated, files truncated,
//! removed, replaced by directories, symlink loops, endless devices, FIFOs and huge files,
//! directories replaced by files or looped, cgroups nested deeper and wider than any runtime. The
//! frequency, thermal and container discovery must carry on: no panic, no hang, a sample every
//! time, every failure a warning naming its source, and a document the host can parse.
//!
//! Fixed seed; rounds and garblings are printed. `FUZZ_ITERATIONS=N` sets the number of rounds.

mod common;

use common::Tree;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sysmon_collector::{Sampler, SamplerOptions, Snapshot, Source};

const DOCKER_ID: &str = "532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b";
const V1_ID: &str = "b29faf21b7eff959f64b4192c34d5d67a707fe8561e9eaa608cb27693fba4242";

#[path = "../../tests/common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

/// An empty tree as `Tree::new` makes it, in /dev/shm when there is one: the fuzzer creates and
/// deletes tens of thousands of files, which a tmpfs does in memory rather than on a busy disk.
fn empty_tree() -> Tree {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    let t = Tree { dir: dir.expect("tempdir") };
    for d in ["proc", "sys/devices/system/cpu", "sys/fs/cgroup", "sys/class"] {
        std::fs::create_dir_all(t.path(d)).unwrap();
    }
    t
}

/// Thermal zones and hwmon chips as sysfs lays them out: `class/*/X` are symlinks into `devices/`.
fn sensors(t: &Tree) {
    for (zone, kind, temp) in [(0, "x86_pkg_temp", "45000"), (1, "acpitz", "27800"), (2, "iwlwifi_1", "-274000")] {
        t.write(&format!("sys/devices/virtual/thermal/thermal_zone{zone}/type"), &format!("{kind}\n"));
        t.write(&format!("sys/devices/virtual/thermal/thermal_zone{zone}/temp"), &format!("{temp}\n"));
        link(
            t,
            &format!("../../devices/virtual/thermal/thermal_zone{zone}"),
            &format!("sys/class/thermal/thermal_zone{zone}"),
        );
    }
    let chip = "sys/devices/platform/coretemp.0/hwmon/hwmon1";
    t.write(&format!("{chip}/name"), "coretemp\n");
    for (k, label, temp) in [(1, "Package id 0", "52000"), (2, "Core 0", "51500"), (3, "Core 1", "49000")] {
        t.write(&format!("{chip}/temp{k}_input"), &format!("{temp}\n"));
        t.write(&format!("{chip}/temp{k}_label"), &format!("{label}\n"));
        t.write(&format!("{chip}/temp{k}_crit"), "100000\n");
    }
    link(t, "../../devices/platform/coretemp.0/hwmon/hwmon1", "sys/class/hwmon/hwmon1");
}

fn link(t: &Tree, target: &str, rel: &str) {
    let p = t.path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn host_facts(t: &Tree) {
    t.write("proc/sys/kernel/hostname", "guest-under-test\n");
    t.write("proc/sys/kernel/osrelease", "6.1.0-27-amd64\n");
    t.write("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n");
}

/// The Debian guest's /proc (8 CPUs in /proc/stat to match the dump), cgroup v2 with a Docker
/// scope, a Podman scope and a kubelet pod, the Snapdragon three-policy cpufreq dump, sensors.
fn v2_big_little() -> (Tree, Vec<String>) {
    let t = empty_tree();
    t.copy_dir("debian12-tcg-guest/proc", "proc");
    t.synthetic_stat(8, 1, 30, 70);
    t.unflatten("sysfs-cpufreq/arm64-snapdragon-a510-a710-a715-x3-three-policies.flat");
    t.copy_fixture("debian12-tcg-guest/cgroup-v2/cgroup.controllers", "sys/fs/cgroup/cgroup.controllers");
    let scope = format!("debian12-tcg-guest/cgroup-v2/system.slice/docker-{DOCKER_ID}.scope.t0");
    t.copy_dir(&scope, &format!("sys/fs/cgroup/system.slice/docker-{DOCKER_ID}.scope"));
    t.copy_dir(&scope, &format!("sys/fs/cgroup/machine.slice/libpod-{DOCKER_ID}.scope"));
    t.copy_dir(
        &scope,
        &format!("sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{}.scope", "f".repeat(64)),
    );
    t.copy_dir(&scope, "sys/fs/cgroup/system.slice/throttle.service");
    sensors(&t);
    host_facts(&t);
    (t, vec!["system.slice/throttle.service".into()])
}

/// The Firecracker host's /proc, a cgroup v1 Docker container (the Elastic capture) with its
/// controllers mounted apart and together, the EPYC cpufreq dump, one thermal zone.
fn v1_epyc() -> (Tree, Vec<String>) {
    let t = empty_tree();
    t.copy_dir("firecracker-x86_64-host/proc", "proc");
    t.synthetic_stat(4, 1, 60, 40);
    t.unflatten("sysfs-cpufreq/x86_64-amd-epyc-7451-acpi-cpufreq-boost-cpu0-3.flat");
    let v1 = |controller: &str, file: &str| {
        t.copy_fixture(
            &format!("cgroup-v1/docker-container.{file}"),
            &format!("sys/fs/cgroup/{controller}/docker/{V1_ID}/{file}"),
        );
    };
    for f in ["cpuacct.usage", "cpuacct.stat", "cpu.stat", "cpu.cfs_quota_us", "cpu.cfs_period_us"] {
        v1("cpu,cpuacct", f);
    }
    for f in ["memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat"] {
        v1("memory", f);
    }
    v1("blkio", "blkio.throttle.io_service_bytes");
    t.write(&format!("sys/fs/cgroup/pids/docker/{V1_ID}/pids.current"), "7\n");
    t.write("sys/fs/cgroup/unified/cgroup.controllers", "\n");
    t.write("sys/class/thermal/thermal_zone0/type", "k10temp\n");
    t.write("sys/class/thermal/thermal_zone0/temp", "38250\n");
    host_facts(&t);
    (t, vec![format!("docker/{V1_ID}")])
}

/// Every entry below the tree's `sys/` and `proc/` (symlinks not followed), weighted towards
/// what the frequency, thermal and container sources discover.
fn entries(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("sys"), root.join("proc"), root.join("etc")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) && out.len() < 5000 {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if !v.is_empty() => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let chunk = v[a.min(b)..a.max(b)].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            3 => {
                let at = rng.below(v.len() + 1);
                let junk: &[&[u8]] = &[
                    b"\n",
                    b" ",
                    b"-1",
                    b"0",
                    b"18446744073709551616",
                    b"9223372036854775807",
                    b"0-16383,",
                    b"\0",
                    b":",
                    b"=",
                    b"\xff\xfe",
                    b"max",
                    b"<unknown>",
                    b"\x1b]0;title\x07",
                ];
                v.splice(at..at, junk[rng.below(junk.len())].iter().copied());
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = b"0123456789 \n:-,"[rng.below(15)];
            }
            _ => {}
        }
    }
    v
}

fn remove(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// One garbling of one entry; returns what it did, for the failure message.
fn garble(rng: &mut Rng, root: &Path, p: &Path) -> String {
    let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    // Only regular files are read or truncated here: a FIFO or /dev/zero would hang the test itself.
    let is_file = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
    let what = match rng.below(13) {
        0..=2 if is_file => {
            // in place, so a sampler holding the file open sees the new content as it would a
            // kernel file's
            let before = std::fs::read(p).unwrap_or_default();
            let _ = std::fs::write(p, mutate_bytes(rng, &before));
            "mutated"
        }
        3 if is_file => {
            let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::OpenOptions::new().write(true).open(p).and_then(|f| f.set_len(len / 2));
            "truncated"
        }
        4 => {
            remove(p);
            "removed"
        }
        5 => {
            remove(p);
            let _ = std::fs::create_dir_all(p.join(&name));
            let _ = std::fs::write(p.join(&name).join("x"), "1\n");
            "replaced by a directory"
        }
        6 => {
            remove(p);
            let _ = std::os::unix::fs::symlink(&name, p);
            "replaced by a symlink to itself"
        }
        7 => {
            // two links pointing at each other
            let other = p.with_file_name(format!("{name}.loop"));
            remove(p);
            remove(&other);
            let _ = std::os::unix::fs::symlink(format!("{name}.loop"), p);
            let _ = std::os::unix::fs::symlink(&name, &other);
            "replaced by a symlink cycle"
        }
        8 => {
            remove(p);
            let device = ["/dev/zero", "/dev/urandom", "/dev/null"][rng.below(3)];
            let _ = std::os::unix::fs::symlink(device, p);
            if device == "/dev/null" { "replaced by /dev/null" } else { "replaced by an endless device" }
        }
        9 => {
            remove(p);
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
            "replaced by a FIFO with no writer"
        }
        10 => {
            remove(p);
            // 1 MiB (below the readers' cap, so the parsers get it): digits without a newline,
            // or a line repeated (a kernel-shaped huge file)
            let huge = match rng.below(3) {
                0 => vec![b'9'; 1 << 20],
                1 => b"0-16383,".repeat(128 << 10),
                _ => b"cpu0 1 2 3 4 5 6 7 8 9 10\n".repeat(40 << 10),
            };
            let _ = std::fs::write(p, huge);
            "replaced by a 1 MiB file"
        }
        11 if is_dir => {
            // a directory loop and a nest deeper than any runtime makes
            let _ = std::os::unix::fs::symlink(".", p.join("loop"));
            let _ = std::os::unix::fs::symlink("..", p.join("up"));
            let mut deep = p.to_path_buf();
            for k in 0..40 {
                deep = deep.join(format!("d{k}"));
            }
            let _ = std::fs::create_dir_all(&deep);
            let _ = std::fs::write(deep.join("cpu.stat"), "usage_usec 1\n");
            "looped and nested 40 deep"
        }
        12 if is_dir => {
            // wide: many cgroups, policies or zones named as the real ones are
            for k in 0..100 {
                let child = match rng.below(3) {
                    0 => format!("docker-{:064x}.scope", k as u128 * 0x9e37_79b9_7f4a_7c15),
                    1 => format!("policy{k}"),
                    _ => format!("thermal_zone{k}"),
                };
                let _ = std::fs::create_dir_all(p.join(&child));
                let _ = std::fs::write(p.join(&child).join("temp"), format!("{}\n", k * 1000));
                let _ = std::fs::write(p.join(&child).join("related_cpus"), format!("{}\n", k % 9));
            }
            "widened by 100 entries"
        }
        _ if is_dir => {
            remove(p);
            let _ = std::fs::write(p, "not a directory\n");
            "directory replaced by a file"
        }
        _ => {
            remove(p);
            let _ = std::fs::create_dir_all(p);
            "file replaced by an empty directory"
        }
    };
    format!("{rel}: {what}")
}

/// A /proc/stat whose ticks grow (busy 30 %) so later samples have intervals; written only when
/// `proc/stat` is a plain file or gone (a garbled one stays garbled, never an error here).
fn write_stat(root: &Path, cpus: u32, step: u64) {
    let p = root.join("proc/stat");
    if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_file()) {
        return;
    }
    let mut s = format!("cpu  {} 0 0 {} 0 0 0 0 0 0\n", 30 * step * cpus as u64, 70 * step * cpus as u64);
    for i in 0..cpus {
        s.push_str(&format!("cpu{i} {} 0 0 {} 0 0 0 0 0 0\n", 30 * step, 70 * step));
    }
    let _ = std::fs::write(p, s + "btime 1700000000\n");
}

/// What must hold for every sample, however garbled the tree.
fn check(snap: &Snapshot, context: &str) {
    assert_eq!(snap.sources.len(), Source::ALL.len(), "{context}");
    for s in &snap.sources {
        assert!(s.duration_seconds.is_finite() && s.duration_seconds >= 0.0, "{context}: {s:?}");
        if !s.success {
            assert!(
                snap.warnings.iter().any(|w| w.subsystem.as_deref() == Some(s.source.as_str())),
                "{context}: source {} failed without a warning naming it: {:?}",
                s.source,
                snap.warnings
            );
        }
    }
    for c in &snap.cpus {
        if let Some(hz) = c.frequency_hz {
            assert!(hz.is_finite() && hz > 0.0, "{context}: {c:?}");
        } else {
            assert!(c.frequency_note.is_some(), "{context}: a null frequency says why: {c:?}");
        }
    }
    for t in &snap.temperatures {
        assert!((-100.0..=250.0).contains(&t.celsius), "{context}: {t:?}");
    }
    // What the guest serves, the host can parse back (`ops::validate` polls it): a NaN or an
    // infinity would serialise as null and lose the whole document.
    let json = serde_json::to_string(snap).expect("a snapshot serialises");
    let back: Snapshot = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{context}: host cannot parse: {e}"));
    assert_eq!(back.cpus.len(), snap.cpus.len(), "{context}");
    let families = sysmon_collector::metrics::families(snap);
    let _ = sysmon_collector::export::prometheus::render(&families);
}

/// Longer than the whole fuzzer takes on a loaded 2-core machine in a debug build, by far: a
/// hang (a FIFO opened for reading, an endless file read to its end) ends the test here instead
/// of never.
const HANG_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn sampler_survives_garbled_frequency_thermal_and_cgroup_trees() {
    let rounds: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let seed = 0x7ee5_0000_0000_0001u64;
    // Printed first, so a failure's captured output names what reproduces it.
    eprintln!("fuzz trees: seed {seed:#018x}, {rounds} rounds");
    let progress = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(String::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (p, l) = (progress.clone(), last.clone());
    let started = Instant::now();
    let worker = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut garblings = 0usize;
        for round in 0..rounds {
            p.store(round, Ordering::Relaxed);
            let ((tree, named), cpus) = if round % 2 == 0 { (v2_big_little(), 8) } else { (v1_epyc(), 4) };
            let root = tree.dir.path().to_path_buf();
            let mut sampler = Sampler::new(
                tree.roots(),
                SamplerOptions { perf: false, cgroups: named.clone(), ..Default::default() },
            );
            let mut done = Vec::new();
            check(&sampler.sample(), &format!("round {round}, pristine"));
            for step in 0..3 {
                let all = entries(&root);
                for _ in 0..=rng.below(3) {
                    // two in three garblings hit what discovery walks: cpufreq, thermal, hwmon, cgroups
                    let pool: Vec<&PathBuf> = if rng.below(3) == 0 {
                        all.iter().collect()
                    } else {
                        all.iter()
                            .filter(|e| {
                                let s = e.to_string_lossy();
                                s.contains("cpufreq") || s.contains("/class/") || s.contains("cgroup")
                            })
                            .collect()
                    };
                    if pool.is_empty() {
                        continue;
                    }
                    let target = pool[rng.below(pool.len())].clone();
                    let what = garble(&mut rng, &root, &target);
                    done.push(what);
                    *l.lock().unwrap() = format!("round {round} step {step}: {done:?}");
                    garblings += 1;
                }
                write_stat(&root, cpus, step as u64 + 2);
                let context = format!("round {round} step {step} (seed {seed:#x}) after {done:?}");
                check(&sampler.sample(), &context);
                // A sampler keeps files open, and an unlinked regular file stays readable through
                // its descriptor (a kernel file would fail and be opened again): a fresh sampler
                // meets every replacement at its path.
                let mut fresh = Sampler::new(
                    tree.roots(),
                    SamplerOptions { perf: false, cgroups: named.clone(), ..Default::default() },
                );
                check(&fresh.sample(), &format!("{context}, fresh sampler"));
            }
        }
        done_tx.send(garblings).unwrap();
    });
    let garblings = match done_rx.recv_timeout(HANG_LIMIT) {
        Ok(n) => n,
        Err(_) if worker.is_finished() => {
            // the worker panicked: report its own message
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(_) => panic!(
            "the sampler did not finish {rounds} rounds within {HANG_LIMIT:?}: stuck in round {} after {}",
            progress.load(Ordering::Relaxed),
            last.lock().unwrap()
        ),
    };
    worker.join().unwrap();
    eprintln!(
        "fuzz trees: seed {seed:#018x}, {rounds} rounds, {garblings} garblings, {} samples in {:.1} s",
        rounds * 7,
        started.elapsed().as_secs_f64()
    );
}

/// The garblings that used to hang or exhaust memory, everywhere at once and deterministically:
/// every file of both trees (and the DMI and os-release files read once at start) replaced by
/// /dev/zero, /dev/urandom or a FIFO with no writer. Each read ends with an error the sample
/// carries as a warning; none waits for a writer or reads without end.
#[test]
fn endless_devices_and_fifos_everywhere_end_in_warnings() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        for (k, (tree, named)) in [v2_big_little(), v1_epyc()].into_iter().enumerate() {
            let root = tree.dir.path().to_path_buf();
            for rel in ["sys/class/dmi/id/sys_vendor", "sys/class/dmi/id/product_name"] {
                tree.write(rel, "QEMU\n");
            }
            let files: Vec<PathBuf> = entries(&root)
                .into_iter()
                .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
                .collect();
            // What is read once at start (cpuinfo, DMI, os-release) and the busiest files are
            // endless; of the rest, one in four is (reading 16 MiB of each is the slow part), the
            // others are FIFOs.
            let endless =
                ["proc/stat", "proc/cpuinfo", "proc/meminfo", "etc/os-release", "sys/class/dmi/id/sys_vendor"];
            for (n, p) in files.iter().enumerate() {
                std::fs::remove_file(p).unwrap();
                let rel = p.strip_prefix(&root).unwrap();
                if endless.iter().any(|e| rel == Path::new(e)) || n % 4 == 0 {
                    std::os::unix::fs::symlink(["/dev/zero", "/dev/urandom"][n % 2], p).unwrap();
                } else {
                    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                    // SAFETY: a valid NUL-terminated path.
                    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
                }
            }
            let mut sampler =
                Sampler::new(tree.roots(), SamplerOptions { perf: false, cgroups: named, ..Default::default() });
            let first = sampler.sample();
            let second = sampler.sample();
            for snap in [&first, &second] {
                check(snap, &format!("tree {k}"));
                assert!(snap.cpus.is_empty(), "tree {k}: /proc/stat is an endless device");
                for f in ["proc/stat", "proc/meminfo", "etc/os-release"] {
                    let w = snap
                        .warnings
                        .iter()
                        .find(|w| w.source.ends_with(f) || w.message.contains(f) || f.ends_with(w.source.as_str()));
                    assert!(w.is_some(), "tree {k}: no warning for {f}: {:?}", snap.warnings);
                }
                let refused = snap.warnings.iter().filter(|w| w.message.contains("longer than 16 MiB")).count();
                assert!(refused >= 2, "tree {k}: {:?}", snap.warnings);
            }
        }
        done_tx.send(()).unwrap();
    });
    match done_rx.recv_timeout(HANG_LIMIT) {
        Ok(()) => worker.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().unwrap_err()),
        Err(_) => panic!("the sampler did not end within {HANG_LIMIT:?} on endless files and FIFOs"),
    }
}

/// One-value fields (a governor, a driver, a zone type, a chip name, a label, the hostname, the
/// machine id) are read under the 4 KiB field cap, not the 16 MiB cap of whole files: one that is
/// longer is not what its path says and is refused, so it never rides along in every sample and
/// export. A field of exactly the cap is still read whole.
#[test]
fn oversize_one_value_fields_are_refused_and_the_rest_is_read() {
    use sysmon_collector::files::MAX_FIELD_BYTES;
    let (t, named) = v2_big_little();
    let huge = "A".repeat(64 << 10);
    t.write("sys/devices/system/cpu/cpufreq/policy0/scaling_governor", &huge);
    t.write("sys/devices/system/cpu/cpufreq/policy3/scaling_driver", &format!("{huge}\n"));
    t.write("sys/devices/virtual/thermal/thermal_zone1/type", &huge);
    t.write("sys/devices/platform/coretemp.0/hwmon/hwmon1/name", &huge);
    let exact = "L".repeat(MAX_FIELD_BYTES);
    t.write("sys/devices/platform/coretemp.0/hwmon/hwmon1/temp2_label", &exact);
    t.write("proc/sys/kernel/hostname", &huge);
    let mut sampler = Sampler::new(t.roots(), SamplerOptions { perf: false, cgroups: named, ..Default::default() });
    let snap = sampler.sample();
    check(&snap, "oversize fields");
    let cpu = |n: u32| snap.cpus.iter().find(|c| c.logical_number == n).unwrap();
    // policy0 is cpu0-2, policy3 cpu3-6, policy7 cpu7.
    assert_eq!((cpu(0).governor.as_deref(), cpu(0).driver.as_deref()), (None, Some("qcom-cpufreq-hw")));
    assert_eq!((cpu(3).governor.as_deref(), cpu(3).driver.as_deref()), (Some("walt"), None));
    assert_eq!((cpu(7).governor.as_deref(), cpu(7).driver.as_deref()), (Some("walt"), Some("qcom-cpufreq-hw")));
    assert!(snap.cpus.iter().all(|c| c.frequency_hz.is_some()), "{:?}", snap.cpus);
    let sensors: Vec<&str> = snap.temperatures.iter().map(|t| t.sensor.as_str()).collect();
    assert!(
        sensors.contains(&"thermal_zone0/x86_pkg_temp") && sensors.contains(&"thermal_zone1/unknown"),
        "{sensors:?}"
    );
    assert!(sensors.contains(&"hwmon1/unknown/Package id 0"), "{sensors:?}");
    assert!(
        sensors.contains(&format!("hwmon1/unknown/{exact}").as_str()),
        "the label of exactly the cap is read whole"
    );
    assert_eq!(snap.host.hostname, None);
    assert!(
        snap.warnings.iter().any(|w| w.source.contains("kernel/hostname") && w.message.contains("longer than 4 KiB")),
        "{:?}",
        snap.warnings
    );
    assert!(serde_json::to_string(&snap).unwrap().len() < 64 << 10, "no oversize field reached the snapshot");

    // The machine id (the OTLP host.id): an oversize /etc/machine-id gives way to dbus's copy;
    // with both oversize there is none.
    let id = "4b1f2f9c0d8e4c7a9a6b5e3d2c1b0a99";
    t.write("etc/machine-id", &huge);
    t.write("var/lib/dbus/machine-id", &format!("{id}\n"));
    assert_eq!(sysmon_collector::host::machine_id(&t.roots()).as_deref(), Some(id));
    t.write("var/lib/dbus/machine-id", &huge);
    assert_eq!(sysmon_collector::host::machine_id(&t.roots()), None);
    t.write("etc/machine-id", &format!("{id}\n"));
    assert_eq!(sysmon_collector::host::machine_id(&t.roots()).as_deref(), Some(id));
}
