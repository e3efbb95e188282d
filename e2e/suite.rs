//! `cargo xtask e2e`: boots the real test guest through `sysmonvm up`, exactly as a user would
//! (fetch + verify, create, boot, bootstrap, collector install), then checks from the host what a
//! user relies on: SSH with the pinned key, an idempotent bootstrap and install, the collector's
//! `/metrics` and `/v1/snapshot` through the forward, a container seen with its CPU use, faults
//! that must end in clear messages and leave the VM usable, and the lifecycle (clean stop, up
//! again, kill -9 recovery, destroy).
//!
//! Every step runs and is reported (pass, FAIL or not run, with its seconds), ending in
//! `e2e: N passed, M failed, K not run`; any failure or step not run makes the exit non-zero.
//! A required step (build, image, up, SSH login, …) that fails stops the steps that depend on
//! it, which are then reported as not run with the step they needed; an independent step's
//! failure is recorded and the suite goes on.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CONTAINER_SCRIPT: &str = include_str!("container.sh");

/// Destroys the VM and removes the workspace if the suite stops early, so a failed run leaves
/// no QEMU behind.
struct Cleanup {
    bin: PathBuf,
    ws: PathBuf,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = Command::new(&self.bin)
                .arg("--workspace")
                .arg(&self.ws)
                .args(["vm", "destroy", "e2e", "--yes"])
                .output();
            let _ = std::fs::remove_dir_all(&self.ws);
        }
    }
}

struct Run {
    ws: PathBuf,
    bin: PathBuf,
    name: String,
    /// Every step in order with its result, and the timings reported inside steps.
    entries: Vec<Entry>,
    /// The required step that failed: every later step depends on it and is not run.
    blocked_by: Option<String>,
}

enum Outcome {
    Passed {
        secs: f64,
    },
    Failed {
        secs: f64,
        error: String,
    },
    /// Not run because the named required step failed.
    NotRun {
        needs: String,
    },
}

enum Entry {
    Step {
        name: String,
        outcome: Outcome,
    },
    /// A part of a step's time (a boot phase, the first bootstrap), shown in the table under it.
    Timing {
        name: String,
        secs: f64,
    },
}

/// A step that the rest depends on (no image → no VM → no SSH) or one whose failure is only
/// recorded, and the suite goes on.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Required,
    Independent,
}

/// docs/json.md: every `--json` report the suite reads must have exactly the documented fields.
#[path = "../tests/common/json_doc.rs"]
mod json_doc;

const JSON_DOC: &str = include_str!("../docs/json.md");

/// The docs/json.md table a command's report is described by.
fn documented_as(args: &[&str]) -> Option<String> {
    let with_sub = matches!(args.first(), Some(&("vm" | "collector" | "image" | "profile" | "host")));
    let name = match args {
        ["vm", "list", ..] => "vm status".to_string(),
        ["collector", "uninstall", ..] => "bootstrap".to_string(),
        ["down", ..] => "vm stop".to_string(),
        ["validate", ..] if args.contains(&"--matrix") => "validate --matrix".to_string(),
        ["vm", "ssh" | "console", ..] | ["collector", "logs", ..] | ["host", "monitor", ..] => return None,
        [cmd, sub, ..] if with_sub => format!("{cmd} {sub}"),
        [cmd, ..] => cmd.to_string(),
        [] => return None,
    };
    Some(name)
}

fn check_documented(args: &[&str], json: &Value) -> Result<()> {
    match documented_as(args) {
        Some(name) => json_doc::check(JSON_DOC, &name, json).map_err(anyhow::Error::msg),
        None => Ok(()),
    }
}

/// What one sysmonvm command did.
struct Done {
    ok: bool,
    json: Value,
    stderr: String,
}

impl Run {
    fn sysmonvm(&self, args: &[&str]) -> Result<Done> {
        let o = Command::new(&self.bin).arg("--workspace").arg(&self.ws).arg("--json").args(args).output()?;
        Ok(Done {
            ok: o.status.success(),
            json: serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    fn must(&self, args: &[&str]) -> Result<Value> {
        let d = self.sysmonvm(args)?;
        ensure!(d.ok, "sysmonvm {} failed:\n{}\n{}", args.join(" "), d.stderr, d.json);
        check_documented(args, &d.json)?;
        Ok(d.json)
    }

    /// A command in the guest over the pinned SSH; stdout.
    fn guest(&self, command: &str) -> Result<String> {
        let o = Command::new(&self.bin)
            .arg("--workspace")
            .arg(&self.ws)
            .args(["vm", "ssh", &self.name, "--", command])
            .output()?;
        ensure!(o.status.success(), "in the guest `{command}`: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// A step the later ones depend on: when it fails, every later step is reported as not run.
    fn required<T>(&mut self, name: &str, f: impl FnOnce(&mut Run) -> Result<T>) -> Option<T> {
        self.step(Kind::Required, name, f)
    }

    /// A step whose failure is recorded; the suite goes on with the next one.
    fn independent<T>(&mut self, name: &str, f: impl FnOnce(&mut Run) -> Result<T>) -> Option<T> {
        self.step(Kind::Independent, name, f)
    }

    fn step<T>(&mut self, kind: Kind, name: &str, f: impl FnOnce(&mut Run) -> Result<T>) -> Option<T> {
        if let Some(needs) = &self.blocked_by {
            eprintln!("[e2e] {name}: not run (needs `{needs}`, which failed)");
            self.entries
                .push(Entry::Step { name: name.to_string(), outcome: Outcome::NotRun { needs: needs.clone() } });
            return None;
        }
        eprintln!("[e2e] {name} …");
        let t = Instant::now();
        // A panic in a step (an index into unexpected guest output) is that step's failure, not
        // the end of the suite; the default hook has already printed where it happened.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(anyhow::anyhow!("panicked: {what}"))
        });
        let secs = t.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(v) => {
                eprintln!("[e2e] {name}: ok ({secs:.1} s)");
                self.entries.push(Entry::Step { name: name.to_string(), outcome: Outcome::Passed { secs } });
                return Some(v);
            }
            Err(e) => {
                let error = format!("{e:#}");
                eprintln!("[e2e] {name}: FAIL ({secs:.1} s): {error}");
                Outcome::Failed { secs, error }
            }
        };
        self.entries.push(Entry::Step { name: name.to_string(), outcome });
        if kind == Kind::Required {
            self.blocked_by = Some(name.to_string());
        }
        None
    }

    /// When the step just run failed, undoes what it may have left behind (a load, a container,
    /// a port squatter, a changed collector config), so the independent steps after it meet the
    /// guest as they would after a pass. Best effort: the step's own failure is what is reported.
    fn if_failed(&self, undo: impl FnOnce(&Run)) {
        if matches!(self.entries.last(), Some(Entry::Step { outcome: Outcome::Failed { .. }, .. })) {
            eprintln!("[e2e] undoing what the failed step may have left in the guest");
            undo(self);
        }
    }

    /// How many steps passed, failed and were not run.
    fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for entry in &self.entries {
            match entry {
                Entry::Step { outcome: Outcome::Passed { .. }, .. } => counts.0 += 1,
                Entry::Step { outcome: Outcome::Failed { .. }, .. } => counts.1 += 1,
                Entry::Step { outcome: Outcome::NotRun { .. }, .. } => counts.2 += 1,
                Entry::Timing { .. } => {}
            }
        }
        counts
    }

    fn timing(&mut self, name: &str, secs: f64) {
        self.entries.push(Entry::Timing { name: name.to_string(), secs });
    }

    /// One line per step, the Markdown timing table, and `e2e: N passed, M failed, K not run`;
    /// an error when any step failed or was not run.
    fn report(&self, profile: &str, accel: &str) -> Result<()> {
        eprintln!();
        for entry in &self.entries {
            let Entry::Step { name, outcome } = entry else { continue };
            match outcome {
                Outcome::Passed { secs } => eprintln!("[e2e] pass    {secs:6.1} s  {name}"),
                Outcome::Failed { secs, error } => {
                    eprintln!("[e2e] FAIL    {secs:6.1} s  {name}\n        {}", error.replace('\n', "\n        "));
                }
                Outcome::NotRun { needs } => {
                    eprintln!("[e2e] not run           {name} (needs `{needs}`, which failed)")
                }
            }
        }
        println!("| e2e step ({profile}, accel {accel}) | result | seconds |");
        println!("|---|---|---|");
        for entry in &self.entries {
            match entry {
                Entry::Step { name, outcome: Outcome::Passed { secs } } => println!("| {name} | pass | {secs:.1} |"),
                Entry::Step { name, outcome: Outcome::Failed { secs, .. } } => {
                    println!("| {name} | FAIL | {secs:.1} |")
                }
                Entry::Step { name, outcome: Outcome::NotRun { .. } } => println!("| {name} | not run | |"),
                Entry::Timing { name, secs } => println!("|   {name} | | {secs:.1} |"),
            }
        }
        let (passed, failed, not_run) = self.counts();
        println!("e2e: {passed} passed, {failed} failed, {not_run} not run");
        ensure!(failed == 0 && not_run == 0, "e2e: {failed} failed, {not_run} not run (see the FAIL lines above)");
        Ok(())
    }
}

fn http_get(url: &str) -> Result<String> {
    let o = Command::new("curl").args(["-fsS", "-m", "10", url]).output().context("curl")?;
    ensure!(o.status.success(), "GET {url}: {}", String::from_utf8_lossy(&o.stderr));
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn outcomes(run: &Value) -> Vec<(String, String)> {
    run["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (s["name"].as_str().unwrap_or("").to_string(), s["outcome"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn changed(run: &Value) -> Vec<String> {
    outcomes(run).into_iter().filter(|(_, o)| o == "changed").map(|(n, _)| n).collect()
}

fn main_pid(r: &Run) -> Result<u64> {
    let s = r.must(&["collector", "status", &r.name])?;
    s["main_pid"].as_u64().with_context(|| format!("no MainPID: {s}"))
}

/// Per-CPU cycles per second from `perf stat -I 1000 -a -A -e cycles -x,` lines
/// (`time,CPUn,count,,cycles,…`): each interval's count over its own length, averaged per CPU.
fn perf_rates(text: &str) -> Vec<(String, f64)> {
    let mut last_t: std::collections::BTreeMap<String, f64> = Default::default();
    let mut sums: std::collections::BTreeMap<String, (f64, u32)> = Default::default();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() < 5 || f[4] != "cycles" {
            continue;
        }
        let (Ok(t), Ok(count)) = (f[0].trim().parse::<f64>(), f[2].trim().parse::<f64>()) else { continue };
        let cpu = f[1].trim().to_lowercase();
        let prev = last_t.insert(cpu.clone(), t).unwrap_or(0.0);
        if t > prev {
            let e = sums.entry(cpu).or_insert((0.0, 0));
            e.0 += count / (t - prev);
            e.1 += 1;
        }
    }
    sums.into_iter().map(|(cpu, (sum, n))| (cpu, sum / n as f64)).collect()
}

/// The arm64 TCG guest's PMU (the one QEMU also emulates under hvf) counts 1e9 cycles per wall
/// second idle and busy. The collector must never publish a frequency from it, must call it
/// `perf-synthetic` once it has seen it idle and busy, with its rate (1.000 GHz within 1 %) in the
/// note and in `counter_rate_hz`, agreeing within 1 % with `perf stat` over the same interval.
fn emulated_pmu(r: &mut Run, forward: &str, vcpus: usize) -> Result<()> {
    let snapshot =
        || -> Result<Value> { Ok(serde_json::from_str(&http_get(&format!("http://{forward}/v1/snapshot"))?)?) };
    let no_value = |snap: &Value| -> Result<()> {
        for c in snap["cpus"].as_array().context("cpus")? {
            ensure!(c["frequency_hz"].is_null(), "a frequency was published from the emulated counter: {c}");
            let src = c["frequency_source"].as_str().unwrap_or("");
            ensure!(src == "perf-synthetic" || src == "perf-unverified", "source {src}: {c}");
        }
        Ok(())
    };
    let all_synthetic = |snap: &Value| {
        snap["cpus"]
            .as_array()
            .is_some_and(|a| a.len() == vcpus && a.iter().all(|c| c["frequency_source"] == "perf-synthetic"))
    };
    // Idle first (the guest settles after provisioning), then a load on every CPU.
    let deadline = Instant::now() + Duration::from_secs(240);
    r.guest("sudo systemd-run -q --unit=sysmonvm-e2e-load stress-ng --cpu 0 --timeout 60s")?;
    let mut snap = snapshot()?;
    while !all_synthetic(&snap) {
        no_value(&snap)?;
        ensure!(Instant::now() < deadline, "not perf-synthetic on every CPU within 240 s: {}", snap["cpus"]);
        std::thread::sleep(Duration::from_secs(2));
        snap = snapshot()?;
    }
    let check_rates = |snap: &Value| -> Result<()> {
        for c in snap["cpus"].as_array().context("cpus")? {
            let rate = c["counter_rate_hz"].as_f64().context("counter_rate_hz")?;
            ensure!((rate / 1e9 - 1.0).abs() <= 0.01, "counter rate {rate} is not 1.000 GHz within 1 %: {c}");
            let note = c["frequency_note"].as_str().unwrap_or("");
            ensure!(
                note.contains("constant-rate") && note.contains(" GHz"),
                "the note cites the measured rate: {note}"
            );
        }
        Ok(())
    };
    no_value(&snap)?;
    check_rates(&snap)?;
    eprintln!("[e2e] under load: {}", snap["cpus"][0]["frequency_note"]);
    // The perf plumbing against perf itself, over the same seconds, while the load still runs.
    // A constant-rate counter has one rate, so the collector's latest interval (taken as perf
    // ends, with the load still on) and perf's 1 s intervals measure the same quantity.
    let perf = r.guest("sudo perf stat -I 1000 -a -A -e cycles -x, sleep 6 2>&1")?;
    let after = snapshot()?;
    let reference = perf_rates(&perf);
    ensure!(reference.len() == vcpus, "perf stat gave {} CPUs: {perf}", reference.len());
    for (cpu, rate) in &reference {
        let collector = after["cpus"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["cpu"] == cpu.as_str()))
            .and_then(|c| c["counter_rate_hz"].as_f64())
            .with_context(|| format!("no counter rate for {cpu}"))?;
        ensure!((collector / rate - 1.0).abs() <= 0.01, "{cpu}: collector {collector:.4e} vs perf stat {rate:.4e}");
        eprintln!("[e2e] {cpu}: collector counter rate {collector:.4e}/s, perf stat {rate:.4e}/s");
    }
    // Idle again: still perf-synthetic, still no value.
    r.guest("sudo systemctl stop sysmonvm-e2e-load 2>/dev/null || true")?;
    std::thread::sleep(Duration::from_secs(4));
    let idle = snapshot()?;
    no_value(&idle)?;
    ensure!(all_synthetic(&idle), "idle: {}", idle["cpus"]);
    check_rates(&idle)?;
    Ok(())
}

/// `vm stop` counts as clean only when QMP reported a guest-initiated SHUTDOWN.
fn clean_stop(r: &mut Run) -> Result<()> {
    let v = r.must(&["vm", "stop", &r.name, "--timeout", "3m"])?;
    ensure!(v["clean"] == true, "not a clean shutdown: {v}");
    Ok(())
}

/// kill -9 QEMU: `vm status` reconciles the stale state, and `up` brings the same VM back.
fn kill_and_recover(r: &mut Run, vm_dir: &Path, profile: &str) -> Result<()> {
    let pid = std::fs::read_to_string(vm_dir.join("qemu.pid"))?.trim().to_string();
    ensure!(Command::new("kill").args(["-9", &pid]).status()?.success());
    std::thread::sleep(Duration::from_secs(1));
    let v = r.sysmonvm(&["vm", "status", &r.name])?.json;
    ensure!(v["state"] == "stopped" && v["reconciled"] == true, "{v}");
    r.must(&["up", "--profile", profile, "--name", &r.name, "--timeout", "10m"])?;
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut profile = "debian-12-x86_64".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--profile" => profile = it.next().context("--profile P")?.clone(),
            other => bail!("unknown option {other}"),
        }
    }
    let root = crate::workspace_root();
    let ws = std::env::temp_dir().join(format!("sysmonvm-e2e-{}", std::process::id()));
    let name = "e2e".to_string();
    let mut r = Run {
        ws: ws.clone(),
        bin: std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("release/sysmonvm"),
        name: name.clone(),
        entries: Vec::new(),
        blocked_by: None,
    };
    let name = name.as_str();
    let mut cleanup = Cleanup { bin: r.bin.clone(), ws: ws.clone(), armed: true };

    // Required steps first: each later step needs what these make (the binary, the served image,
    // the profile's vCPU count, the staged collector, the running VM, SSH into it). After one of
    // them fails the rest are reported as not run, so the placeholder values below are never used.
    r.required("build sysmonvm (release)", |_| {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "sysmonvm"])
            .current_dir(&root)
            .status()?;
        ensure!(built.success(), "cargo build --release -p sysmonvm failed: {built}");
        Ok(())
    });

    // The test guests this checkout builds; other profiles (AlmaLinux) are fetched as they are.
    let aarch64 = profile.contains("aarch64");
    let test_guest = match profile.as_str() {
        "debian-12-x86_64" => Some(crate::guest_image::GuestArch::X86_64),
        "debian-12-aarch64" => Some(crate::guest_image::GuestArch::Aarch64),
        _ => None,
    };
    if let Some(arch) = test_guest {
        r.required(&format!("guest image {} (build or reuse), served on 127.0.0.1", arch.as_str()), |_| {
            let built = crate::guest_image::build_arch(&root.join("target/guest-image"), arch)?;
            crate::guest_image::serve_in_background(built, &ws.join("profiles"))
        });
    }
    let vm_dir: PathBuf = ws.join("vms").join(name);
    let vcpus = r
        .required(&format!("profile {profile} resolves (its vCPU count)"), |r| {
            let shown = r.must(&["profile", "show", &profile])?;
            Ok(shown["smp"].as_u64().context("profile smp")? as usize)
        })
        .unwrap_or(0);
    let os_id = profile.split('-').next().unwrap_or("").to_string();
    let arch_target =
        if profile.contains("aarch64") { "aarch64-unknown-linux-musl" } else { "x86_64-unknown-linux-musl" };

    r.required("collector build (cross, musl, rust-lld) staged in the workspace", |r| {
        let v = r.must(&["collector", "build", "--target", arch_target, "--source", &root.display().to_string()])?;
        let staged = PathBuf::from(v["binary"].as_str().unwrap_or(""));
        ensure!(staged.starts_with(&r.ws) && staged.is_file(), "{v}");
        Ok(())
    });

    // The later steps scrape the collector through the forward `up` set up, so that it answers
    // there is part of this step.
    let (up, forward) = r
        .required("up (fetch + verify, create, boot, bootstrap, collector install)", |r| {
            let v = r.must(&["up", "--profile", &profile, "--name", name, "--timeout", "10m"])?;
            ensure!(v["already_running"] == false, "{v}");
            let install = &v["provision"]["collector"];
            ensure!(install["answers_via_forward"] == true, "{install}");
            let forward = install["forward"].as_str().context("collector forward")?.to_string();
            Ok((v, forward))
        })
        .unwrap_or_default();
    let accel = up["start"]["accel"].as_str().unwrap_or("?").to_string();
    if !up.is_null() {
        eprintln!("[e2e] accelerator: {accel}; phases {}", up["start"]["phases"]);
        for (phase, t) in up["start"]["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?, p[1].as_f64()?)))
        {
            if phase == "sshd" || phase == "cloud-init" {
                r.timing(&format!("boot to {phase}"), t);
            }
        }
        let boot = &up["provision"]["bootstrap"];
        eprintln!(
            "[e2e] first bootstrap changed {:?}; install changed {:?}",
            changed(boot),
            changed(&up["provision"]["collector"]["run"])
        );
        r.timing("bootstrap (first)", boot["seconds"].as_f64().unwrap_or(f64::NAN));
        r.timing(
            "collector install (first)",
            up["provision"]["collector"]["run"]["seconds"].as_f64().unwrap_or(f64::NAN),
        );
    }

    r.independent(
        "the first up: auto picks an accelerator that works here; the bootstrap sets perf_event_paranoid",
        |_| {
            if Path::new("/dev/kvm").exists()
                && std::env::consts::OS == "linux"
                && Path::new("/sys/module/kvm_pvm").exists()
            {
                ensure!(
                    accel == "tcg",
                    "this machine's kvm_pvm cannot run the firmware: auto must end up as tcg, got {accel}"
                );
            }
            let boot = &up["provision"]["bootstrap"];
            ensure!(
                changed(boot).contains(&"perf-event-paranoid".to_string()),
                "the first bootstrap must set perf_event_paranoid: {boot}"
            );
            Ok(())
        },
    );

    r.required("SSH login with the pinned host key (hostname from the seed)", |r| {
        ensure!(r.guest("cat /etc/hostname")?.trim() == name, "hostname from the seed");
        Ok(())
    });

    r.independent("SSH refuses a host key that is not the pinned one", |r| {
        // A known_hosts holding another key must make ssh refuse.
        let kh = vm_dir.join("known_hosts");
        let saved = std::fs::read_to_string(&kh)?;
        std::fs::write(
            &kh,
            format!(
                "sysmonvm-{name} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
            ),
        )?;
        let refused = r.guest("true").is_err();
        std::fs::write(&kh, saved)?;
        ensure!(refused, "ssh accepted a host key that is not the pinned one");
        Ok(())
    });

    // The aarch64 run is the short path of its CI allowance: the idempotence, container and fault
    // steps are the same code on both arches and run on x86_64.
    if !aarch64 {
        r.independent("bootstrap again changes nothing and says so", |r| {
            let v = r.must(&["bootstrap", name])?;
            ensure!(changed(&v).is_empty() && v["changed"] == false, "second bootstrap changed {:?}", changed(&v));
            ensure!(r.guest("cat /proc/sys/kernel/perf_event_paranoid")?.trim() == "1");
            let governor =
                v["steps"].as_array().and_then(|a| a.iter().find(|s| s["name"] == "governor-performance")).cloned();
            let governor = governor.context("no governor step")?;
            if !Path::new("/sys/devices/system/cpu/cpu0/cpufreq").exists() || accel == "tcg" {
                ensure!(governor["outcome"] == "skipped", "no cpufreq in a TCG guest: {governor}");
                ensure!(governor["notes"][0].as_str().is_some_and(|n| n.contains("no cpufreq driver")), "{governor}");
            }
            Ok(())
        });

        r.independent("collector install again changes nothing; the service keeps running", |r| {
            let pid = main_pid(r)?;
            let v = r.must(&["collector", "install", name])?;
            ensure!(changed(&v["run"]).is_empty(), "second install changed {:?}", changed(&v["run"]));
            ensure!(main_pid(r)? == pid, "the service was restarted although nothing changed");
            let s = r.must(&["collector", "status", name])?;
            ensure!(s["active"] == "active" && s["answers_via_forward"] == true, "{s}");
            ensure!(r.guest("systemctl show -p User --value serviceradar-sysmon-vm")?.trim() == "sysmon-vm");
            let logs = Command::new(&r.bin)
                .arg("--workspace")
                .arg(&r.ws)
                .args(["collector", "logs", name, "-n", "20"])
                .output()?;
            ensure!(
                logs.status.success()
                    && String::from_utf8_lossy(&logs.stdout).contains("sysmon-collector: serving http://"),
                "collector logs: {}",
                String::from_utf8_lossy(&logs.stderr)
            );
            Ok(())
        });
    }

    if !aarch64 {
        r.independent("up on the ready VM: no boot wait, nothing changed, nothing sent", |r| {
            let v = r.must(&["up", "--profile", &profile, "--name", name])?;
            ensure!(
                v["already_running"] == true && v["start"]["phases"].as_array().is_some_and(|p| p.is_empty()),
                "{}",
                v["start"]
            );
            let (boot, run) = (&v["provision"]["bootstrap"], &v["provision"]["collector"]["run"]);
            ensure!(
                changed(boot).is_empty() && changed(run).is_empty(),
                "changed {:?} {:?}",
                changed(boot),
                changed(run)
            );
            ensure!(
                boot.get("sent").is_none() && run.get("sent").is_none(),
                "files sent although nothing differs: {run}"
            );
            r.timing("up on the ready VM", v["seconds"].as_f64().unwrap_or(f64::NAN));
            Ok(())
        });

        r.independent("up repairs what changed in the guest: a package removed, the unit edited, the binary replaced", |r| {
            let pid = main_pid(r)?;
            r.guest(
                "sudo dpkg -r jq >/dev/null 2>&1 && \
                 echo '# edited by the e2e' | sudo tee -a /etc/systemd/system/serviceradar-sysmon-vm.service >/dev/null && \
                 sudo cp /bin/true /usr/local/bin/sysmon-collector.e2e && sudo mv /usr/local/bin/sysmon-collector.e2e /usr/local/bin/sysmon-collector && \
                 sudo rm -f /var/lib/sysmonvm/stage/sysmon-collector",
            )?;
            let v = r.must(&["up", "--profile", &profile, "--name", name])?;
            let (boot, run) = (&v["provision"]["bootstrap"], &v["provision"]["collector"]["run"]);
            ensure!(changed(boot).contains(&"packages".to_string()), "the removed package was not noticed: {:?}", changed(boot));
            for step in ["binary", "unit", "restart"] {
                ensure!(changed(run).contains(&step.to_string()), "`{step}` not repaired: {:?}", changed(run));
            }
            let sent: Vec<&str> = run["sent"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            // The unit's staged copy is intact (repaired from it, nothing sent); the binary's was
            // removed, so it alone is sent.
            ensure!(sent.len() == 1 && sent[0].ends_with("/sysmon-collector"), "only the binary should be sent: {sent:?}");
            ensure!(r.guest("jq --version").is_ok(), "jq is back");
            ensure!(main_pid(r)? != pid, "the repaired service was restarted");
            let s = r.must(&["collector", "status", name])?;
            ensure!(s["active"] == "active" && s["answers_via_forward"] == true, "{s}");
            let again = r.must(&["up", "--profile", &profile, "--name", name])?;
            let run = &again["provision"]["collector"]["run"];
            ensure!(changed(run).is_empty() && run.get("sent").is_none(), "after the repair: {run}");
            Ok(())
        });
        r.if_failed(|r| {
            let _ = r.sysmonvm(&["up", "--profile", &profile, "--name", name]);
        });

        r.independent("a recorded guest address the guest no longer has is found again", |r| {
            let state_file = r.ws.join("vms").join(name).join("state.json");
            let mut state: Value = serde_json::from_slice(&std::fs::read(&state_file)?)?;
            let real = state["guest_address"].clone();
            ensure!(real.is_string(), "the install recorded no guest address: {state}");
            state["guest_address"] = Value::from("192.0.2.7");
            std::fs::write(&state_file, serde_json::to_vec_pretty(&state)?)?;
            let v = r.must(&["collector", "install", name])?;
            // The run with the stale address stopped at its first step; the one after the probe
            // found everything as it was: the config the real address gives is the installed one.
            ensure!(changed(&v["run"]).is_empty(), "{:?}", changed(&v["run"]));
            let after: Value = serde_json::from_slice(&std::fs::read(&state_file)?)?;
            ensure!(after["guest_address"] == real, "recorded {} instead of {real}", after["guest_address"]);
            Ok(())
        });
    }

    r.independent("scrape /metrics and /v1/snapshot through the forward", |_| {
        let metrics = http_get(&format!("http://{forward}/metrics"))?;
        ensure!(metrics.contains("cpu=\"cpu1\""), "no per-CPU series in /metrics");
        let frequency_samples = metrics.lines().filter(|l| l.starts_with("system_cpu_frequency_hertz{")).count();
        if aarch64 && accel == "tcg" {
            // QEMU's emulated PMU is no clock: never a frequency sample, its rate on its own once
            // the collector has told it from a clock (checked per CPU below; the PMU step loads it).
            ensure!(frequency_samples == 0, "an emulated counter published a frequency:\n{metrics}");
        } else {
            ensure!(frequency_samples > 0, "no frequency samples in /metrics");
        }
        let snap: Value = serde_json::from_str(&http_get(&format!("http://{forward}/v1/snapshot"))?)?;
        let cpus = snap["cpus"].as_array().context("cpus")?;
        ensure!(cpus.len() == vcpus, "one entry per vCPU ({vcpus}): {}", cpus.len());
        // Scraped after the snapshot, so a sample that has told the counter apart is in it too.
        let counter_rate = http_get(&format!("http://{forward}/metrics"))?.contains("sysmon_cpu_cycles_rate_hertz{");
        for c in cpus {
            // An x86_64 TCG guest: no cpufreq, no PMU, only the constant `cpu MHz` of /proc/cpuinfo.
            if accel == "tcg" && !aarch64 {
                ensure!(c["frequency_source"] == "cpuinfo", "frequency source as the guest offers it: {c}");
                ensure!(c["frequency_hz"].as_f64().is_some_and(|f| f > 1e8), "{c}");
            }
            // Right after the install the collector may not have seen its CPUs idle and busy yet:
            // then it says it is still checking, and publishes neither a frequency nor a rate.
            if accel == "tcg" && aarch64 {
                ensure!(c["frequency_hz"].is_null(), "an emulated counter gave a frequency: {c}");
                let note = c["frequency_note"].as_str().unwrap_or("");
                let told = c["frequency_source"] == "perf-synthetic" && counter_rate;
                ensure!(told || note.contains("still checking"), "neither a counter rate nor still checking: {c}");
            }
        }
        ensure!(snap["host"]["virtualization"].is_string(), "{}", snap["host"]);
        Ok(())
    });

    // ServiceRadar's agent polls the collector over gRPC: GetStatus through the host's 127.0.0.1
    // forward of the gRPC port, by PyPI's grpcio compiling our proto (target/grpc-venv, made by
    // `cargo xtask deps --install`), agrees with /v1/snapshot CPU by CPU; `collector install
    // --serviceradar` prints the agent's check entry for that forward.
    r.independent("GetStatus over gRPC through the forward, as ServiceRadar's agent calls it", |r| {
        let v = r.must(&["collector", "install", name, "--serviceradar"])?;
        let grpc = v["grpc_forward"].as_str().context("grpc_forward")?.to_string();
        ensure!(
            v["serviceradar_check"]
                == serde_json::json!({"name": "sysmon-vm", "type": "grpc", "details": grpc.clone()}),
            "{v}"
        );
        let py = root.join("target/grpc-venv/bin/python");
        ensure!(py.is_file(), "{} missing: run `cargo xtask deps --install`", py.display());
        let out = std::process::Command::new(&py)
            .arg(root.join("collector/tests/grpc_client.py"))
            .arg("--proto-dir")
            .arg(root.join("collector/proto"))
            .arg("--fixture")
            .arg(root.join("collector/tests/fixtures/serviceradar/structs.json"))
            .args(["--addr", &grpc])
            .output()?;
        ensure!(out.status.success(), "grpc_client.py: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value =
            serde_json::from_slice(out.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap_or(b""))?;
        ensure!(got["ok"] == true && got["available"] == true, "{got}");
        ensure!(got["schema_errors"] == serde_json::json!([]), "{got}");
        let snap: Value = serde_json::from_str(&http_get(&format!("http://{forward}/v1/snapshot"))?)?;
        let cpus = got["message"]["status"]["cpus"].as_array().context("cpus")?;
        let snap_cpus = snap["cpus"].as_array().context("snapshot cpus")?;
        ensure!(cpus.len() == vcpus && snap_cpus.len() == vcpus, "one entry per vCPU ({vcpus}): {}", cpus.len());
        for (c, s) in cpus.iter().zip(snap_cpus) {
            ensure!(c["frequency_source"] == s["frequency_source"], "source: {c} vs {s}");
            match (c["frequency_hz"].as_f64(), s["frequency_hz"].as_f64()) {
                (None, None) => {}
                // Two samples apart: the same source; a constant cpuinfo rate is equal.
                (Some(a), Some(b)) => ensure!((a - b).abs() <= 0.01 * b, "frequency: {c} vs {s}"),
                _ => anyhow::bail!("frequency present in one and not the other: {c} vs {s}"),
            }
        }
        ensure!(got["others"]["GetResults"] == "UNIMPLEMENTED", "{got}");
        Ok(())
    });

    if aarch64 {
        r.independent(
            "the emulated PMU is a counter, not a clock: perf-synthetic, no frequency value, 1 GHz per wall second",
            |r| emulated_pmu(r, &forward, vcpus),
        );
        r.if_failed(|r| {
            let _ = r.guest("sudo systemctl stop sysmonvm-e2e-load 2>/dev/null || true");
        });
    }

    if !aarch64 {
        r.independent("a container in the guest shows up; its CPU seconds match the process's own", |r| {
            let script = CONTAINER_SCRIPT.replace('\'', "'\\''");
            let id = r.guest(&format!("sudo sh -c '{script}'"))?.trim().to_string();
            ensure!(id.len() == 64, "podman run printed {id:?}");
            let pid: u32 = r.guest("sudo podman inspect -f '{{.State.Pid}}' sysmonvm-burner")?.trim().parse()?;
            // The reference: the burner's own utime + stime from /proc/PID/stat in the guest, with the
            // guest's clock, read before and after a collector sample taken in between. No wall-clock
            // threshold: a slow guest only takes longer (bounded) to reach 0.2 s of CPU.
            let reference = |r: &Run| -> Result<(f64, f64)> {
                let out = r.guest(&format!("date +%s.%N; cat /proc/{pid}/stat; getconf CLK_TCK"))?;
                let lines: Vec<&str> = out.lines().collect();
                ensure!(lines.len() == 3, "reference read: {out:?}");
                let at: f64 = lines[0].trim().parse()?;
                let f: Vec<&str> = lines[1][lines[1].rfind(')').context("comm")? + 2..].split_whitespace().collect();
                let ticks: f64 = lines[2].trim().parse()?;
                Ok((at, (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / ticks))
            };
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut seen: Vec<f64> = Vec::new();
            loop {
                ensure!(Instant::now() < deadline, "container {id} not seen with 0.2 s of CPU within 180 s: {seen:?}");
                let (t1, before) = reference(r)?;
                // The first collector sample taken after the first reference read.
                let snap = loop {
                    let snap: Value = serde_json::from_str(&http_get(&format!("http://{forward}/v1/snapshot"))?)?;
                    if snap["timestamp_unix_nano"].as_f64().is_some_and(|t| t / 1e9 > t1) {
                        break snap;
                    }
                    ensure!(Instant::now() < deadline, "no collector sample after {t1}");
                    std::thread::sleep(Duration::from_millis(300));
                };
                let (_, after) = reference(r)?;
                let c = snap["containers"].as_array().and_then(|a| a.iter().find(|c| c["id"] == id.as_str())).cloned();
                let Some(c) = c else {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                };
                ensure!(c["runtime"] == "podman", "{c}");
                let cpu = c["cpu_seconds"].as_f64().context("cpu_seconds")?;
                let slack = 0.02 + 0.05 * after;
                ensure!(
                    cpu >= before - slack && cpu <= after + slack,
                    "collector {cpu:.3} s, the burner's own /proc/PID/stat {before:.3}..{after:.3} s"
                );
                seen.push(cpu);
                if before >= 0.2 && seen.len() >= 2 && seen[seen.len() - 1] > seen[0] {
                    eprintln!("[e2e] container {}: cpu_seconds {seen:?}, reference {before:.3}..{after:.3}", &id[..12]);
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            r.guest("sudo podman rm -f sysmonvm-burner >/dev/null")?;
            Ok(())
        });
        r.if_failed(|r| {
            let _ = r.guest("sudo podman rm -f sysmonvm-burner >/dev/null");
        });

        r.independent("a config change recycles the service without a reboot", |r| {
            let boot_id = r.guest("cat /proc/sys/kernel/random/boot_id")?;
            let pid = main_pid(r)?;
            let v = r.must(&["collector", "install", name, "--cgroup", "system.slice"])?;
            ensure!(changed(&v["run"]) == ["config", "restart", "answers"], "{:?}", changed(&v["run"]));
            ensure!(main_pid(r)? != pid, "the service was not restarted");
            ensure!(r.guest("cat /proc/sys/kernel/random/boot_id")? == boot_id, "the guest rebooted");
            let snap: Value = serde_json::from_str(&http_get(&format!("http://{forward}/v1/snapshot"))?)?;
            let named = snap["containers"].as_array().is_some_and(|a| a.iter().any(|c| c["id"] == "system.slice"));
            ensure!(named, "the named cgroup is not reported");
            r.must(&["collector", "install", name])?;
            Ok(())
        });
        r.if_failed(|r| {
            let _ = r.sysmonvm(&["collector", "install", name]);
        });

        r.independent("collector image: built by the guest's Docker from what sysmonvm sent, nothing pulled; its container answers; again, nothing is built", |r| {
            let v = r.must(&["collector", "image", name])?;
            ensure!(v["built"] == true && v["image"] == "sysmon-collector:latest", "{v}");
            let snap = r.guest("sudo docker run --rm --network none sysmon-collector:latest snapshot --json --interval 200ms")?;
            let snap: Value = serde_json::from_str(&snap).context("the container's snapshot")?;
            ensure!(snap["cpus"].as_array().is_some_and(|c| !c.is_empty()), "the container saw no CPUs: {snap}");
            let images = r.guest("sudo docker image ls --format '{{.Repository}}:{{.Tag}}'")?;
            ensure!(images.trim() == "sysmon-collector:latest", "images in the guest: {images:?}");
            let again = r.must(&["collector", "image", name])?;
            ensure!(again["built"] == false && changed(&again["run"]).is_empty(), "the second run did something: {again}");
            ensure!(again["run"]["sent"].is_null(), "the second run sent files: {again}");
            Ok(())
        });

        r.independent("the collector in each mode (container, container-sys-ro, privileged, native) answers through the forward; back to native, no container is left", |r| {
            for mode in ["container", "container-sys-ro", "privileged", "native"] {
                let v = r.must(&["collector", "install", name, "--mode", mode])?;
                ensure!(v["mode"] == mode && v["answers_via_forward"] == true, "mode {mode}: {v}");
                let snap: Value = serde_json::from_str(&http_get(&format!("http://{forward}/v1/snapshot"))?)?;
                ensure!(snap["cpus"].as_array().is_some_and(|c| c.len() == vcpus), "mode {mode}: {}", snap["cpus"]);
                // What each mode sees, and that what it cannot see says so (collector_mode.rs's table).
                let failing: Vec<&str> = snap["sources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["success"] == false)
                    .filter_map(|s| s["source"].as_str())
                    .collect();
                let says_container = |source: &str| {
                    snap["warnings"].as_array().into_iter().flatten().any(|w| {
                        w["subsystem"] == source && w["message"].as_str().is_some_and(|m| m.starts_with("in a container"))
                    })
                };
                let interfaces: Vec<&str> =
                    snap["networks"].as_array().into_iter().flatten().filter_map(|n| n["interface"].as_str()).collect();
                match mode {
                    "container" => {
                        for source in ["network", "filesystems", "containers", "host"] {
                            ensure!(failing.contains(&source) && says_container(source), "mode {mode}, {source}: {snap}");
                        }
                        ensure!(!interfaces.contains(&"docker0"), "the container's own netns: {interfaces:?}");
                    }
                    "container-sys-ro" => {
                        // The host's network, cgroup tree (the collector's own container in it),
                        // host name and os-release; not the host's mount points.
                        ensure!(failing == ["filesystems"], "mode {mode}: failing {failing:?}: {}", snap["warnings"]);
                        ensure!(interfaces.contains(&"docker0"), "mode {mode}: the host's netns: {interfaces:?}");
                        ensure!(snap["containers"].as_array().is_some_and(|c| !c.is_empty()), "mode {mode}: {}", snap["containers"]);
                        ensure!(snap["host"]["hostname"] == name && snap["host"]["os"].is_string(), "mode {mode}: {}", snap["host"]);
                    }
                    _ => {
                        ensure!(failing.is_empty(), "mode {mode}: failing {failing:?}: {}", snap["warnings"]);
                        ensure!(interfaces.contains(&"docker0") && snap["host"]["hostname"] == name, "mode {mode}: {snap}");
                    }
                }
                let running = r.guest("sudo docker ps --format '{{.Names}}'")?;
                let expect = if mode == "native" { "" } else { "sysmon-collector" };
                ensure!(running.trim() == expect, "mode {mode}: containers running: {running:?}");
                let again = r.must(&["collector", "install", name])?;
                ensure!(again["mode"] == mode && changed(&again["run"]).is_empty(), "mode {mode} again: {again}");
            }
            Ok(())
        });
        r.if_failed(|r| {
            let _ = r.sysmonvm(&["collector", "install", name, "--mode", "native"]);
        });

        r.independent("fault: a collector that won't start", |r| {
            let bad = r.ws.join("bad-listen.json");
            std::fs::write(&bad, r#"{"listen_addr": "192.0.2.1:9105"}"#)?;
            let d = r.sysmonvm(&["collector", "install", name, "--config", &bad.display().to_string()])?;
            ensure!(!d.ok, "an unbindable listen address must fail the install");
            ensure!(
                d.stderr.contains("step `answers` failed") && d.stderr.contains("cannot listen on 192.0.2.1:9105"),
                "{}",
                d.stderr
            );
            eprintln!("[e2e] message was:\n{}", d.stderr.trim());
            let v = r.must(&["collector", "install", name])?;
            ensure!(v["answers_via_forward"] == true, "recovery: {v}");
            Ok(())
        });

        r.independent("fault: the collector's port taken in the guest", |r| {
            r.must(&["collector", "uninstall", name])?;
            ensure!(r.guest("id -u sysmon-vm || echo gone")?.trim() == "gone", "uninstall left the user");
            // SO_REUSEADDR: the port may still have TIME_WAIT connections from the health checks.
            let squat = "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9105)); s.listen(); time.sleep(3600)";
            r.guest(&format!("sudo systemd-run -q --unit=sysmonvm-squatter python3 -c \"{squat}\""))?;
            r.guest("for i in $(seq 60); do ss -Hltn 'sport = :9105' | grep -q . && exit 0; sleep 0.5; done; exit 1")
                .context("the squatter never listened on 9105")?;
            let d = r.sysmonvm(&["collector", "install", name])?;
            ensure!(!d.ok && d.stderr.contains("os error 98") && d.stderr.contains("hint: another program listens"), "install with the port taken: {}\n{}", d.stderr, d.json);
            eprintln!("[e2e] message was:\n{}", d.stderr.trim());
            r.guest("sudo systemctl stop sysmonvm-squatter")?;
            let v = r.must(&["collector", "install", name])?;
            ensure!(v["answers_via_forward"] == true, "recovery: {v}");
            Ok(())
        });
        r.if_failed(|r| {
            let _ = r.guest("sudo systemctl stop sysmonvm-squatter 2>/dev/null || true");
            let _ = r.sysmonvm(&["collector", "install", name]);
        });

        r.independent("fault: a failing package install", |r| {
            let d = r.sysmonvm(&["bootstrap", name, "--package", "sysmonvm-no-such-package"])?;
            ensure!(!d.ok, "a missing package must fail the bootstrap");
            ensure!(
                d.stderr.contains("step `packages` failed with exit status") && d.stderr.contains("command: "),
                "{}",
                d.stderr
            );
            ensure!(d.stderr.contains("hint:"), "no hint: {}", d.stderr);
            eprintln!("[e2e] message was:\n{}", d.stderr.trim());
            let v = r.must(&["bootstrap", name])?;
            ensure!(changed(&v).is_empty(), "re-run: {:?}", changed(&v));
            Ok(())
        });

        r.independent("fault: a guest without network", |r| {
            let route = r.guest("ip -4 route show default")?;
            r.guest("sudo ip route del default")?;
            let d = r.sysmonvm(&["bootstrap", name, "--package", "htop"]);
            r.guest(&format!("sudo ip route add {}", route.trim()))?;
            let d = d?;
            ensure!(!d.ok && d.stderr.contains("step `packages` failed"), "{}", d.stderr);
            ensure!(
                d.stderr.contains("cannot reach its package mirrors")
                    || d.stderr.contains("not in the guest's repositories"),
                "{}",
                d.stderr
            );
            eprintln!("[e2e] message was:\n{}", d.stderr.trim());
            r.must(&["bootstrap", name])?;
            Ok(())
        });
    }

    let report_dir = root.join("target/validate-e2e");
    r.independent(
        "validate against the real guest (usage, throttle, latency pass; frequency not comparable under tcg)",
        |r| {
            let _ = std::fs::remove_dir_all(&report_dir);
            let dir = report_dir.display().to_string();
            let phase = if aarch64 { "15s" } else { "20s" };
            let args = ["validate", name, "--duration-per-phase", phase, "--report", &dir];
            let d = r.sysmonvm(&args)?;
            if d.ok {
                check_documented(&args, &d.json)?;
            }
            let rep: Value =
                serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).context("report.json")?)?;
            let checks = rep["checks"].as_array().context("checks")?;
            let failed: Vec<&Value> = checks.iter().filter(|c| c["verdict"] == "fail").collect();
            ensure!(failed.is_empty(), "failed checks: {}", serde_json::to_string_pretty(&failed)?);
            ensure!(d.ok && rep["summary"]["exit_status"] == 0, "validate: {}\n{}", d.stderr, rep["summary"]);
            for name in ["usage-vs-proc-stat", "usage-vs-load", "throttle-usage", "throttle-visible", "otlp-latency"] {
                ensure!(checks.iter().any(|c| c["name"] == name && c["verdict"] == "pass"), "no passing {name} check");
            }
            ensure!(
                checks.iter().any(|c| c["name"] == "host-frequency" && c["verdict"] == "info"),
                "the host's clocks are reported as context"
            );
            let freq: Vec<&Value> = checks.iter().filter(|c| c["name"] == "frequency").collect();
            ensure!(!freq.is_empty());
            if accel == "tcg" {
                ensure!(
                    freq.iter().all(
                        |c| c["verdict"] == "not_comparable" && c["reason"].as_str().is_some_and(|r| !r.is_empty())
                    ),
                    "under tcg every frequency check is not comparable, with its reason: {freq:?}"
                );
            }
            if aarch64 && accel == "tcg" {
                // Every check names the emulated counter and its measured rate; the source per CPU.
                for c in &freq {
                    let why = c["reason"].as_str().unwrap_or("");
                    ensure!(c["source"] == "perf-synthetic", "{c}");
                    ensure!(why.contains("perf-synthetic") && why.contains("GHz per wall second"), "{c}");
                }
            }
            for f in
                ["report.md", "report.html", "samples.csv", "rollups.csv", "runs.jsonl", "usage.svg", "throttle.svg"]
            {
                ensure!(report_dir.join(f).is_file(), "{f} missing");
            }
            eprintln!("[e2e] validate: {}", rep["summary"]);
            // The collector is back as `up` installs it: no OTLP endpoint, no extra cgroup.
            let cfg = r.guest("sudo cat /etc/serviceradar/checkers/sysmon-vm.json")?;
            ensure!(
                !cfg.contains("otlp") && !cfg.contains("validate-throttle"),
                "collector config not restored: {cfg}"
            );
            Ok(())
        },
    );

    if !aarch64 {
        // The reduced matrix CI runs (issue 17): smp 1 and 2 × native and container-sys-ro, 10 s
        // phases. It is killed (SIGKILL) in the middle of its second cell, then resumed: the
        // finished cell is kept, the killed one runs again, and the VM ends as it began.
        let matrix_dir = root.join("target/validate-matrix-e2e");
        r.independent(
            "validate --matrix smp=1,2 mode=native,container-sys-ro governor=…: killed in its second cell, resumed; every cell passes, the table says what each mode saw, governors not applicable without cpufreq, the VM is put back",
            |r| {
                let _ = std::fs::remove_dir_all(&matrix_dir);
                let dir = matrix_dir.display().to_string();
                let mut args = vec!["validate", name, "--duration-per-phase", "10s", "--report", &dir];
                // Governors too: this guest has no cpufreq, so the axis is reported as not
                // applicable and each mode runs once.
                args.extend(["--matrix", "smp=1,2", "mode=native,container-sys-ro", "governor=performance,powersave"]);
                let began = Instant::now();
                let mut child = Command::new(&r.bin)
                    .arg("--workspace")
                    .arg(&r.ws)
                    .arg("--json")
                    .args(&args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()?;
                let cells_done = || -> usize {
                    std::fs::read_to_string(matrix_dir.join("matrix.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                        .and_then(|m| m["cells"].as_array().map(Vec::len))
                        .unwrap_or(0)
                };
                while cells_done() < 1 {
                    ensure!(child.try_wait()?.is_none(), "the matrix ended before its first cell was recorded");
                    ensure!(began.elapsed() < Duration::from_secs(300), "no cell finished in 5 minutes");
                    std::thread::sleep(Duration::from_millis(500));
                }
                // Into the second cell (container-sys-ro: the collector runs in that mode with
                // validate's config), then killed.
                std::thread::sleep(Duration::from_secs(25));
                child.kill()?;
                child.wait()?;
                let first: Value = serde_json::from_str(&std::fs::read_to_string(matrix_dir.join("matrix.json"))?)?;
                ensure!(first["complete"] == false && first["cells"].as_array().map(Vec::len) == Some(1), "{first}");
                let mut resume = args.clone();
                resume.push("--resume");
                let d = r.sysmonvm(&resume)?;
                let m = &d.json;
                ensure!(!m.is_null(), "the resumed matrix printed no report: {}", d.stderr);
                check_documented(&resume, m)?;
                eprintln!("[e2e] matrix: {} s in all, {}", began.elapsed().as_secs(), m["summary"]);
                let cells = m["cells"].as_array().context("cells")?;
                let ids: Vec<&str> = cells.iter().filter_map(|c| c["id"].as_str()).collect();
                ensure!(
                    ids == ["smp2-native", "smp2-container-sys-ro", "smp1-native", "smp1-container-sys-ro"],
                    "cells: {ids:?}"
                );
                ensure!(cells[0]["started"] == first["cells"][0]["started"], "the finished cell was not kept");
                let axis = m["governor_axis"].as_array().context("governor_axis")?;
                ensure!(
                    axis.len() == 2
                        && axis.iter().all(|g| g["applicable"] == false
                            && g["why"].as_str().is_some_and(|w| w.contains("no cpufreq driver"))),
                    "the governor axis on a guest without cpufreq: {axis:?}"
                );
                for c in cells {
                    ensure!(c["verdict"] == "pass", "cell {}: {c}", c["id"]);
                    ensure!(c["frequency_sources"] == serde_json::json!(["cpuinfo"]), "{c}");
                    let missing: Vec<&str> =
                        c["missing"].as_array().into_iter().flatten().filter_map(|x| x["source"].as_str()).collect();
                    let expect: &[&str] = if c["mode"] == "native" { &[] } else { &["filesystems"] };
                    ensure!(missing == expect, "cell {}: missing {missing:?}", c["id"]);
                    let cell_dir = matrix_dir.join(c["report_dir"].as_str().context("report_dir")?);
                    ensure!(cell_dir.join("report.json").is_file() && cell_dir.join("usage.svg").is_file(), "{cell_dir:?}");
                }
                ensure!(d.ok && m["complete"] == true && m["summary"]["exit_status"] == 0, "{}\n{}", d.stderr, m["summary"]);
                let md = std::fs::read_to_string(matrix_dir.join("matrix.md"))?;
                let row = "| [smp1-container-sys-ro](cells/smp1-container-sys-ro/report.md) | 1 | container-sys-ro |";
                ensure!(md.contains(row), "{md}");
                let html = std::fs::read_to_string(matrix_dir.join("matrix.html"))?;
                ensure!(html.matches("<figure><svg").count() >= 8, "each cell's charts in matrix.html");
                // Put back: the VM's vCPU count, the collector native with its own config.
                let st = r.must(&["vm", "status", name])?;
                ensure!(st["guest_agent"]["vcpus"].as_array().map(Vec::len) == Some(vcpus), "{st}");
                let status = r.must(&["collector", "status", name])?;
                ensure!(status["mode"] == "native" && status["answers_via_forward"] == true, "{status}");
                let cfg = r.guest("sudo cat /etc/serviceradar/checkers/sysmon-vm.json")?;
                ensure!(!cfg.contains("otlp") && !cfg.contains("validate-throttle"), "collector config not restored: {cfg}");
                ensure!(r.guest("sudo docker ps -q")?.trim().is_empty(), "a container was left running");
                Ok(())
            },
        );
        r.if_failed(|r| {
            let _ = r.sysmonvm(&["collector", "install", name, "--mode", "native"]);
        });
    }

    r.independent("vm status shows the guest agent's facts", |r| {
        let v = r.must(&["vm", "status", name])?;
        ensure!(v["state"] == "running" && v["qmp_status"] == "running" && v["ssh_reachable"] == true, "{v}");
        let ga = &v["guest_agent"];
        ensure!(ga["os"]["id"] == os_id.as_str(), "guest agent OS: {v}");
        ensure!(ga["vcpus"].as_array().map(|a| a.len()) == Some(vcpus), "vCPUs: {v}");
        ensure!(ga["interfaces"].as_array().is_some_and(|a| !a.is_empty()), "interfaces: {v}");
        Ok(())
    });

    // aarch64 boots take 2–2.5 min under tcg: kill -9 and its recovery first, then the clean
    // stop, so its allowance holds one extra boot instead of two.
    //
    // The lifecycle steps need a running VM from the one before (the clean stop needs the VM
    // that kill -9's recovery brought back; kill -9 needs the one `up again` started), but
    // `destroy` only needs the VM the first `up` created: it runs after a lifecycle failure too.
    let before_lifecycle = r.blocked_by.clone();
    if aarch64 {
        r.required("kill -9 QEMU, status reconciles, up recovers", |r| kill_and_recover(r, &vm_dir, &profile));
        r.independent("vm stop is clean (guest-initiated SHUTDOWN)", clean_stop);
    } else {
        r.independent("vm stop is clean (guest-initiated SHUTDOWN)", clean_stop);

        r.required("up again restarts the same VM without re-creating it; the collector comes back", |r| {
            let disk_id = std::fs::metadata(vm_dir.join("disk.qcow2"))?.modified()?;
            let v = r.must(&["up", "--profile", &profile, "--name", name, "--timeout", "10m"])?;
            ensure!(std::fs::metadata(vm_dir.join("disk.qcow2"))?.modified()? >= disk_id, "disk replaced");
            ensure!(changed(&v["provision"]["bootstrap"]).is_empty(), "{v}");
            ensure!(v["provision"]["collector"]["answers_via_forward"] == true, "{v}");
            let again = r.must(&["up", "--profile", &profile, "--name", name])?;
            ensure!(again["already_running"] == true, "up on a running VM must change nothing: {again}");
            ensure!(changed(&again["provision"]["collector"]["run"]).is_empty(), "{again}");
            Ok(())
        });

        r.independent("kill -9 QEMU, status reconciles, up recovers", |r| kill_and_recover(r, &vm_dir, &profile));
    }
    r.blocked_by = before_lifecycle;

    r.independent("destroy leaves nothing behind", |r| {
        r.must(&["vm", "destroy", name, "--yes"])?;
        ensure!(!vm_dir.exists(), "{} still exists", vm_dir.display());
        Ok(())
    });

    let verdict = r.report(&profile, &accel);
    if verdict.is_ok() {
        // Destroy passed: nothing is left to clean up but the workspace.
        cleanup.armed = false;
        let _ = std::fs::remove_dir_all(&ws);
    }
    verdict
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_report_the_suite_reads_has_a_table() {
        for args in [
            &["up", "--profile", "p"][..],
            &["vm", "status", "x"],
            &["vm", "stop", "x"],
            &["bootstrap", "x"],
            &["collector", "install", "x"],
            &["collector", "status", "x"],
            &["validate", "x"],
            &["profile", "show", "p"],
            &["vm", "destroy", "x", "--yes"],
        ] {
            let name = super::documented_as(args).unwrap();
            assert!(super::json_doc::documented(super::JSON_DOC, &name).is_some(), "{name}");
        }
        assert_eq!(super::documented_as(&["vm", "ssh", "x", "--", "true"]), None);
    }

    use super::*;

    fn run() -> Run {
        Run {
            ws: PathBuf::from("/nonexistent"),
            bin: PathBuf::from("/nonexistent/sysmonvm"),
            name: "e2e".into(),
            entries: Vec::new(),
            blocked_by: None,
        }
    }

    fn outcomes(r: &Run) -> Vec<(&str, &str)> {
        r.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Step { name, outcome } => Some((
                    name.as_str(),
                    match outcome {
                        Outcome::Passed { .. } => "pass",
                        Outcome::Failed { .. } => "FAIL",
                        Outcome::NotRun { .. } => "not run",
                    },
                )),
                Entry::Timing { .. } => None,
            })
            .collect()
    }

    #[test]
    fn an_independent_failure_is_counted_and_the_suite_goes_on() {
        let mut r = run();
        assert_eq!(r.required("a", |_| Ok(1)), Some(1));
        assert_eq!(r.independent("b", |_| -> Result<()> { bail!("b broke") }), None);
        let mut ran = false;
        r.independent("c", |_| {
            ran = true;
            Ok(())
        });
        assert!(ran, "a step after an independent failure must run");
        assert_eq!(outcomes(&r), [("a", "pass"), ("b", "FAIL"), ("c", "pass")]);
        assert_eq!(r.counts(), (2, 1, 0));
        let e = r.report("p", "tcg").unwrap_err().to_string();
        assert!(e.contains("1 failed, 0 not run"), "{e}");
    }

    #[test]
    fn a_required_failure_stops_the_dependent_rest_which_is_reported_not_run() {
        let mut r = run();
        r.required("up", |_| -> Result<()> { bail!("no VM") });
        let mut ran = false;
        r.independent("ssh", |_| {
            ran = true;
            Ok(())
        });
        r.required("again", |_| Ok(()));
        assert!(!ran, "a step after a failed required one must not run");
        assert_eq!(outcomes(&r), [("up", "FAIL"), ("ssh", "not run"), ("again", "not run")]);
        assert!(matches!(&r.entries[1], Entry::Step { outcome: Outcome::NotRun { needs }, .. } if needs == "up"));
        let e = r.report("p", "?").unwrap_err().to_string();
        assert!(e.contains("1 failed, 2 not run"), "{e}");
    }

    #[test]
    fn a_panicking_step_is_a_failure_and_undo_runs_only_after_a_failure() {
        let mut r = run();
        r.independent("fine", |_| Ok(()));
        let mut undone = 0;
        r.if_failed(|_| undone += 1);
        r.independent("index", |_| -> Result<()> {
            let fields: Vec<&str> = Vec::new();
            ensure!(fields[11] == "x");
            Ok(())
        });
        r.if_failed(|_| undone += 1);
        assert_eq!(undone, 1);
        r.independent("after", |_| Ok(()));
        assert_eq!(outcomes(&r), [("fine", "pass"), ("index", "FAIL"), ("after", "pass")]);
        let Entry::Step { outcome: Outcome::Failed { error, .. }, .. } = &r.entries[1] else { panic!() };
        assert!(error.contains("panicked: index out of bounds"), "{error}");
    }

    #[test]
    fn all_passed_is_ok() {
        let mut r = run();
        r.required("a", |_| Ok(()));
        r.timing("a part", 1.0);
        r.independent("b", |_| Ok(()));
        assert_eq!(r.counts(), (2, 0, 0));
        r.report("p", "tcg").unwrap();
    }
}
