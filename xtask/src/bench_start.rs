//! Orchestration overhead of `sysmonvm vm start` against a bare QEMU launch of the same image with
//! the same flags, polled by a plain `ssh` loop, in the same run. Both are first boots of fresh
//! overlays of the test guest, and both end at the same point: SSH logs in and cloud-init has
//! finished (`/var/lib/cloud/instance/boot-finished`).

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn sysmonvm(ws: &Path, args: &[&str]) -> Result<std::process::Output> {
    let bin = crate::workspace_root().join("target/release/sysmonvm");
    Ok(Command::new(bin).arg("--workspace").arg(ws).args(args).output()?)
}

pub fn run(args: &[String]) -> Result<()> {
    let mut accel = "tcg".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--accel" => accel = it.next().context("--accel A")?.clone(),
            other => bail!("unknown option {other}"),
        }
    }
    let root = crate::workspace_root();
    if !Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "sysmonvm"])
        .current_dir(&root)
        .status()?
        .success()
    {
        bail!("build failed");
    }
    let ws = std::env::temp_dir().join(format!("sysmonvm-bench-start-{}", std::process::id()));
    std::fs::create_dir_all(&ws)?;
    let built = crate::guest_image::build(&root.join("target/guest-image"))?;
    crate::guest_image::serve_in_background(built, &ws.join("profiles"))?;

    for vm in ["bench-a", "bench-b"] {
        let o = sysmonvm(&ws, &["vm", "create", "--profile", "debian-12-x86_64", "--name", vm])?;
        if !o.status.success() {
            bail!("create {vm}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }

    // sysmonvm: the whole command, from invocation to its return after cloud-init finished.
    let t = Instant::now();
    let o = sysmonvm(&ws, &["vm", "start", "bench-a", "--accel", &accel, "--timeout", "10m", "--json"])?;
    let ours = t.elapsed();
    if !o.status.success() {
        bail!("vm start: {}", String::from_utf8_lossy(&o.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let _ = sysmonvm(&ws, &["vm", "stop", "bench-a", "--force"]);

    // Bare: the same argv (from `vm argv`), launched directly, then `ssh … test -f boot-finished` in a loop.
    let vm_dir = ws.join("vms/bench-b");
    let ssh_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let o = sysmonvm(
        &ws,
        &["vm", "argv", "--profile", "debian-12-x86_64", "--name", "bench-b", "--accel", &accel, "--json"],
    )?;
    let planned_launch: serde_json::Value = serde_json::from_slice(&o.stdout).context("vm argv --json")?;
    let argv: Vec<String> = serde_json::from_value(planned_launch["argv"].clone()).context("vm argv --json: argv")?;
    let planned = planned_launch["ssh_port"].as_u64().context("vm argv --json: ssh_port")?;
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| {
            a.replace(&format!("hostfwd=tcp:127.0.0.1:{planned}-:22"), &format!("hostfwd=tcp:127.0.0.1:{ssh_port}-:22"))
        })
        .collect();
    let key = ws.join("keys/id_ed25519");
    let t = Instant::now();
    if !Command::new(&argv[0]).args(&argv[1..]).status()?.success() {
        bail!("bare QEMU did not start");
    }
    loop {
        let ok = Command::new("ssh")
            .args([
                "-q",
                "-i",
                key.to_str().unwrap(),
                "-p",
                &ssh_port.to_string(),
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=2",
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                &format!("UserKnownHostsFile={}", vm_dir.join("known_hosts").display()),
            ])
            .args([
                "-o",
                "HostKeyAlias=sysmonvm-bench-b",
                "lab@127.0.0.1",
                "test -f /var/lib/cloud/instance/boot-finished",
            ])
            .status()?
            .success();
        if ok {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("bare boot did not finish");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let bare = t.elapsed();
    let _ = sysmonvm(&ws, &["vm", "stop", "bench-b", "--force"]);
    if let Ok(pid) = std::fs::read_to_string(vm_dir.join("qemu.pid")) {
        let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
    }
    let _ = std::fs::remove_dir_all(&ws);
    println!("| accel {accel}, first boot of the Debian 12 test guest | to SSH login + cloud-init done |");
    println!("|---|---|");
    println!("| bare `{}` + `ssh` loop | {:.1} s |", argv[0], bare.as_secs_f64());
    println!("| `sysmonvm vm start` | {:.1} s |", ours.as_secs_f64());
    println!("| overhead | {:+.1} s |", ours.as_secs_f64() - bare.as_secs_f64());
    println!("\nphases of the sysmonvm run (s after launch): {}", report["phases"]);
    Ok(())
}
