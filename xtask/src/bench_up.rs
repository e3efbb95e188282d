//! Provisioning speed: on the running, provisioned test guest, N rounds of `sysmonvm up` (a
//! no-op), `bootstrap` and `collector install` (no-ops), `collector status` and `vm status`,
//! interleaved with the baseline, one `ssh -o BatchMode=yes … true` with the same key, so every
//! command is measured under the same load as its baseline. SSH logins are counted outside
//! sysmonvm, from the guest sshd's log. The first provisioning (the `up` that boots the guest) is reported beside the boot,
//! split into the time the guest spent in its steps and the rest (SSH, transfer, health check).

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Bench {
    bin: PathBuf,
    ws: PathBuf,
    vm: String,
    user: String,
    port: u16,
}

impl Bench {
    fn sysmonvm(&self, args: &[&str]) -> Result<(f64, Value)> {
        let t = Instant::now();
        let o = Command::new(&self.bin).arg("--workspace").arg(&self.ws).args(args).arg("--json").output()?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(
            o.status.success() || args.first() == Some(&"collector"),
            "sysmonvm {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        Ok((secs, serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)))
    }

    /// `ssh -o BatchMode=yes … COMMAND` with the VM's key and pinned host key: the baseline.
    fn ssh(&self, command: &str) -> Result<(f64, String)> {
        let vm_dir = self.ws.join("vms").join(&self.vm);
        let t = Instant::now();
        let o = Command::new("ssh")
            .arg("-q")
            .arg("-i")
            .arg(self.ws.join("keys/id_ed25519"))
            .args(["-p", &self.port.to_string(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", vm_dir.join("known_hosts").display()))
            .arg("-o")
            .arg(format!("HostKeyAlias=sysmonvm-{}", self.vm))
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command)
            .output()?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(o.status.success(), "ssh {command}: {}", String::from_utf8_lossy(&o.stderr));
        Ok((secs, String::from_utf8_lossy(&o.stdout).into_owned()))
    }

    /// Logins the guest's sshd accepted since boot: read over SSH, so each reading counts its
    /// own login too (subtracted by the caller).
    fn guest_logins(&self) -> Result<u64> {
        let (_, out) =
            self.ssh("sudo -n journalctl -b -o cat _COMM=sshd -t sshd 2>/dev/null | grep -c '^Accepted publickey'")?;
        out.trim().parse::<u64>().context("sshd log count")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The seconds the guest spent in a run report's steps: each step's time less its files'
/// transfer (SSH's share, reported apart).
fn step_seconds(run: &Value) -> f64 {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some(s["seconds"].as_f64()? - s["transfer_seconds"].as_f64().unwrap_or(0.0)))
        .sum()
}

/// The seconds a run report's files took to arrive.
fn transfer_seconds(run: &Value) -> f64 {
    run["steps"].as_array().into_iter().flatten().filter_map(|s| s["transfer_seconds"].as_f64()).sum()
}

pub fn run(args: &[String]) -> Result<()> {
    let mut rounds = 5usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    ensure!(rounds > 0, "--rounds must be at least 1");
    let root = crate::workspace_root();
    ensure!(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "sysmonvm"])
            .current_dir(&root)
            .status()?
            .success(),
        "cargo build --release -p sysmonvm failed"
    );
    let ws = std::env::temp_dir().join(format!("sysmonvm-bench-up-{}", std::process::id()));
    std::fs::create_dir_all(&ws)?;
    let built = crate::guest_image::build(&root.join("target/guest-image"))?;
    crate::guest_image::serve_in_background(built, &ws.join("profiles"))?;
    let mut b = Bench {
        bin: root.join("target/release/sysmonvm"),
        ws: ws.clone(),
        vm: "bench".into(),
        user: String::new(),
        port: 0,
    };
    let result = measure(&mut b, &root, rounds);
    let _ = Command::new(&b.bin).arg("--workspace").arg(&ws).args(["vm", "destroy", "bench", "--yes"]).output();
    let _ = std::fs::remove_dir_all(&ws);
    result
}

fn measure(b: &mut Bench, root: &Path, rounds: usize) -> Result<()> {
    b.sysmonvm(&[
        "collector",
        "build",
        "--target",
        "x86_64-unknown-linux-musl",
        "--source",
        &root.display().to_string(),
    ])?;
    // The first `up`: fetch, create, boot, and the first provisioning of a fresh guest.
    let (_, up) = b.sysmonvm(&["up", "--profile", "debian-12-x86_64", "--name", "bench", "--timeout", "15m"])?;
    let state: Value = serde_json::from_str(&std::fs::read_to_string(b.ws.join("vms/bench/state.json"))?)?;
    b.user = state["profile"]["ssh"]["user"].as_str().context("state.json: ssh user")?.to_string();
    b.port = state["ssh_port"].as_u64().context("state.json: ssh_port")? as u16;
    let phase = |name: &str| {
        up["start"]["phases"].as_array().into_iter().flatten().find(|p| p[0] == name).and_then(|p| p[1].as_f64())
    };
    let first = up["provision"]["seconds"].as_f64().context("provision.seconds")?;
    let guest_first = step_seconds(&up["provision"]["bootstrap"]) + step_seconds(&up["provision"]["collector"]["run"]);
    let transfer_first = transfer_seconds(&up["provision"]["collector"]["run"]);

    // The logins of one run of each command, counted in the guest.
    let reading_logins = {
        let first = b.guest_logins()?;
        b.guest_logins()? - first
    };
    let mut counted = Vec::new();
    let commands: [(&str, Vec<&str>); 5] = [
        ("sysmonvm up (no-op)", vec!["up", "--profile", "debian-12-x86_64", "--name", "bench"]),
        ("sysmonvm bootstrap (no-op)", vec!["bootstrap", "bench"]),
        ("sysmonvm collector install (no-op)", vec!["collector", "install", "bench"]),
        ("sysmonvm collector status", vec!["collector", "status", "bench"]),
        ("sysmonvm vm status", vec!["vm", "status", "bench"]),
    ];
    let mut before = b.guest_logins()?;
    for (label, args) in &commands {
        b.sysmonvm(args)?;
        let after = b.guest_logins()?;
        counted.push((*label, (after - before).saturating_sub(reading_logins)));
        before = after;
    }

    // Timings: each round runs the baseline and every command once, in turn.
    let mut baseline = Vec::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); commands.len()];
    let mut guest_in_up = Vec::new();
    for _ in 0..rounds {
        baseline.push(b.ssh("true")?.0);
        for (i, (_, args)) in commands.iter().enumerate() {
            let (secs, report) = b.sysmonvm(args)?;
            times[i].push(secs);
            if i == 0 {
                guest_in_up.push(
                    step_seconds(&report["provision"]["bootstrap"])
                        + step_seconds(&report["provision"]["collector"]["run"]),
                );
            }
        }
    }
    let base = median(baseline.clone());
    println!(
        "| on the running, provisioned Debian 12 test guest (tcg), median of {rounds} | seconds | × `ssh true` | SSH logins |"
    );
    println!("|---|---|---|---|");
    println!("| `ssh -o BatchMode=yes … true` (baseline) | {base:.2} | 1.00 | 1 | |");
    for (i, (label, _)) in commands.iter().enumerate() {
        let m = median(times[i].clone());
        let (_, logins) = counted[i];
        println!("| `{label}` | {m:.2} | {:.2} | {logins} |", m / base);
    }
    println!(
        "\nguest time in the no-op `up`'s steps (median): {:.2} s; the rest is SSH, the script's transfer and the health check",
        median(guest_in_up)
    );
    println!(
        "\nfirst provisioning of the fresh guest: {first:.1} s (the guest's own steps {guest_first:.1} s; SSH, file transfer ({transfer_first:.2} s of it) and health check {:.1} s), after a boot to cloud-init of {:.1} s",
        first - guest_first,
        phase("cloud-init").unwrap_or(f64::NAN)
    );
    let steps = |run: &Value| -> Vec<String> {
        run["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let (secs, transfer) = (s["seconds"].as_f64().unwrap_or(f64::NAN), s["transfer_seconds"].as_f64());
                let name = s["name"].as_str().unwrap_or("?");
                match transfer.filter(|t| *t > 0.0) {
                    Some(t) => format!("{name} {secs:.2} (transfer {t:.2})"),
                    None => format!("{name} {secs:.2}"),
                }
            })
            .collect()
    };
    println!("  bootstrap steps (s): {}", steps(&up["provision"]["bootstrap"]).join(", "));
    println!("  collector install steps (s): {}", steps(&up["provision"]["collector"]["run"]).join(", "));
    println!(
        "  baseline ssh true, each round (s): {}",
        baseline.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}
