//! `cargo xtask e2e`: boots the real test guest through `sysmonvm up`, exactly as a user would,
//! and checks the lifecycle end to end (the lifecycle part of the e2e suite; bootstrap, collector
//! install and containers come with the next issue). Prints the timings of every step.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Run {
    ws: PathBuf,
    bin: PathBuf,
    timings: Vec<(String, f64)>,
}

impl Run {
    fn sysmonvm(&self, args: &[&str]) -> Result<(bool, Value, String)> {
        let o = Command::new(&self.bin).arg("--workspace").arg(&self.ws).arg("--json").args(args).output()?;
        Ok((
            o.status.success(),
            serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    }

    fn step<T>(&mut self, name: &str, f: impl FnOnce(&mut Run) -> Result<T>) -> Result<T> {
        eprintln!("[e2e] {name} …");
        let t = Instant::now();
        let r = f(self).with_context(|| format!("e2e step `{name}`"))?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!("[e2e] {name}: ok ({secs:.1} s)");
        self.timings.push((name.to_string(), secs));
        Ok(r)
    }
}

fn expect(ok: bool, v: &Value, err: &str, what: &str) -> Result<()> {
    ensure!(ok, "{what} failed: {err}\n{v}");
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
    ensure!(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "sysmonvm"])
            .current_dir(&root)
            .status()?
            .success(),
        "build failed"
    );
    let ws = std::env::temp_dir().join(format!("sysmonvm-e2e-{}", std::process::id()));
    let mut r = Run { ws: ws.clone(), bin: root.join("target/release/sysmonvm"), timings: Vec::new() };

    if profile == "debian-12-x86_64" {
        let built =
            r.step("guest image (build or reuse)", |_| crate::guest_image::build(&root.join("target/guest-image")))?;
        crate::guest_image::serve_in_background(built, &ws.join("profiles"))?;
    }
    let name = "e2e";
    let vm_dir: PathBuf = ws.join("vms").join(name);

    let up = r.step("up (fetch + verify, create, boot to SSH and cloud-init)", |r| {
        let (ok, v, err) = r.sysmonvm(&["up", "--profile", &profile, "--name", name, "--timeout", "10m"])?;
        expect(ok, &v, &err, "up")?;
        ensure!(v["already_running"] == false, "{v}");
        Ok(v)
    })?;
    let accel = up["start"]["accel"].as_str().unwrap_or("?").to_string();
    eprintln!("[e2e] accelerator: {accel}; phases {}", up["start"]["phases"]);
    if Path::new("/dev/kvm").exists() && std::env::consts::OS == "linux" && Path::new("/sys/module/kvm_pvm").exists() {
        ensure!(accel == "tcg", "this machine's kvm_pvm cannot run the firmware: auto must end up as tcg, got {accel}");
    }

    r.step("SSH with the pinned host key", |r| {
        let o = Command::new(&r.bin)
            .arg("--workspace")
            .arg(&r.ws)
            .args(["vm", "ssh", name, "--", "cat", "/etc/hostname"])
            .output()?;
        ensure!(o.status.success(), "vm ssh: {}", String::from_utf8_lossy(&o.stderr));
        ensure!(
            String::from_utf8_lossy(&o.stdout).trim() == name,
            "hostname from the seed: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        // The pinned key: a known_hosts holding another key must make ssh refuse.
        let kh = vm_dir.join("known_hosts");
        let saved = std::fs::read_to_string(&kh)?;
        std::fs::write(
            &kh,
            format!(
                "sysmonvm-{name} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
            ),
        )?;
        let o = Command::new(&r.bin).arg("--workspace").arg(&r.ws).args(["vm", "ssh", name, "--", "true"]).output()?;
        std::fs::write(&kh, saved)?;
        ensure!(!o.status.success(), "ssh accepted a host key that is not the pinned one");
        Ok(())
    })?;

    r.step("vm status shows the guest agent's facts", |r| {
        let (ok, v, err) = r.sysmonvm(&["vm", "status", name])?;
        expect(ok, &v, &err, "status")?;
        ensure!(v["state"] == "running" && v["qmp_status"] == "running" && v["ssh_reachable"] == true, "{v}");
        let ga = &v["guest_agent"];
        ensure!(ga["os"]["id"] == "debian", "guest agent OS: {v}");
        ensure!(ga["vcpus"].as_array().map(|a| a.len()) == Some(2), "vCPUs: {v}");
        ensure!(ga["interfaces"].as_array().is_some_and(|a| !a.is_empty()), "interfaces: {v}");
        Ok(())
    })?;

    r.step("vm stop is clean (guest-initiated SHUTDOWN)", |r| {
        let (ok, v, err) = r.sysmonvm(&["vm", "stop", name, "--timeout", "3m"])?;
        expect(ok, &v, &err, "stop")?;
        ensure!(v["clean"] == true, "not a clean shutdown: {v}");
        Ok(())
    })?;

    r.step("up again restarts the same VM without re-creating it", |r| {
        let disk_id = std::fs::metadata(vm_dir.join("disk.qcow2"))?.modified()?;
        let (ok, v, err) = r.sysmonvm(&["up", "--profile", &profile, "--name", name, "--timeout", "10m"])?;
        expect(ok, &v, &err, "second up")?;
        ensure!(std::fs::metadata(vm_dir.join("disk.qcow2"))?.modified()? >= disk_id, "disk replaced");
        let (_, again, _) = r.sysmonvm(&["up", "--profile", &profile, "--name", name])?;
        ensure!(again["already_running"] == true, "up on a running VM must change nothing: {again}");
        Ok(())
    })?;

    r.step("kill -9 QEMU, status reconciles, up recovers", |r| {
        let pid = std::fs::read_to_string(vm_dir.join("qemu.pid"))?.trim().to_string();
        ensure!(Command::new("kill").args(["-9", &pid]).status()?.success());
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (_, v, _) = r.sysmonvm(&["vm", "status", name])?;
        ensure!(v["state"] == "stopped" && v["reconciled"] == true, "{v}");
        let (ok, v, err) = r.sysmonvm(&["up", "--profile", &profile, "--name", name, "--timeout", "10m"])?;
        expect(ok, &v, &err, "up after kill -9")?;
        Ok(())
    })?;

    r.step("destroy leaves nothing behind", |r| {
        let (ok, v, err) = r.sysmonvm(&["vm", "destroy", name, "--yes"])?;
        expect(ok, &v, &err, "destroy")?;
        ensure!(!vm_dir.exists(), "{} still exists", vm_dir.display());
        Ok(())
    })?;

    let _ = std::fs::remove_dir_all(&ws);
    println!("| e2e step ({profile}, accel {accel}) | seconds |");
    println!("|---|---|");
    for (n, s) in &r.timings {
        println!("| {n} | {s:.1} |");
    }
    println!("e2e: {} passed, 0 failed", r.timings.len());
    Ok(())
}
