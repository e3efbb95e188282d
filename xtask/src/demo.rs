//! `cargo xtask demo`: the main job on a fresh machine, offline, with no flags. It installs the
//! missing system packages (as root; otherwise it prints the exact command and stops), builds (or
//! reuses) the local Debian test guest, serves it on 127.0.0.1 for as long as it runs, brings it up
//! through `sysmonvm up` exactly as a user would (fetch + verify, create, boot, bootstrap, collector
//! install), shows live collector readings from the guest, runs a short `validate`, and says where
//! the report is and how to reach and stop the VM. The VM keeps running afterwards.
//!
//! Re-running reuses the built image and the VM (`up` is idempotent). Ctrl-C stops the image
//! server (it lives in this process) and the QEMU this run started, if it started one; a re-run
//! continues from where `up` got to.
//!
//! `sysmonvm up` runs as a child process for now; after the operations-layer issue it becomes a
//! library call.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use sysmonvm::system_packages::{self as sp, ForGuest, Role};

pub const VM_NAME: &str = "demo";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

struct Demo {
    bin: PathBuf,
    ws: Option<PathBuf>,
}

impl Demo {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(ws) = &self.ws {
            c.arg("--workspace").arg(ws);
        }
        c
    }

    /// A sysmonvm command whose progress goes to the terminal.
    fn visible(&self, args: &[&str]) -> Result<ExitStatus> {
        Ok(self.cmd().args(args).status()?)
    }

    /// A sysmonvm command's `--json` report; its messages go to the terminal.
    fn json(&self, args: &[&str]) -> Result<(bool, Value)> {
        let o = self.cmd().arg("--json").args(args).stderr(std::process::Stdio::inherit()).output()?;
        Ok((o.status.success(), serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)))
    }

    /// The VM's state ("running", "stopped", …), or None when it does not exist yet.
    fn vm_state(&self) -> Option<String> {
        let o =
            self.cmd().args(["--json", "vm", "status", VM_NAME]).stderr(std::process::Stdio::null()).output().ok()?;
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["state"].as_str().map(str::to_string)
    }

    /// How a person types this command (the release binary; `--workspace` only when one was given).
    fn shown(&self, args: &str) -> String {
        let ws = self.ws.as_ref().map(|w| format!(" --workspace {}", w.display())).unwrap_or_default();
        format!("{}{ws} {args}", self.bin.display())
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let mut arch = "x86_64".to_string();
    let mut ws: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--arch" => arch = it.next().context("--arch x86_64|aarch64")?.clone(),
            "--workspace" => ws = Some(it.next().context("--workspace DIR")?.into()),
            other => bail!("unknown option {other:?} (demo [--arch x86_64|aarch64] [--workspace DIR])"),
        }
    }
    let guest = match arch.as_str() {
        "x86_64" => ForGuest::X86_64,
        "aarch64" => bail!("the aarch64 test guest is not built by this checkout yet; run `cargo xtask demo` (x86_64)"),
        other => bail!("--arch takes x86_64 or aarch64, not {other:?}"),
    };

    step("system packages");
    crate::deps::ensure_installed(&sp::selected(&[Role::Vm, Role::GuestImage], Some(guest)))?;
    ensure_musl_target(&arch)?;

    let root = crate::workspace_root();
    step("building sysmonvm (release)");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "sysmonvm"])
        .current_dir(&root)
        .status()?;
    ensure!(built.success(), "cargo build --release -p sysmonvm failed");
    let demo = Demo { bin: root.join("target/release/sysmonvm"), ws: ws.clone() };
    let workspace = sysmonvm::workspace::Workspace::resolve(ws.as_deref())?;

    step("the Debian 12 test guest (built from Debian packages, or reused)");
    let image = crate::guest_image::build(&root.join("target/guest-image"))?;
    crate::guest_image::serve_in_background(image, &workspace.profiles_dir())?;

    // Ctrl-C from here on: the child sysmonvm gets it too and stops; this process cleans up.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let was_running = demo.vm_state().as_deref() == Some("running");

    step(&format!("sysmonvm up (VM `{VM_NAME}`; tcg can take a few minutes to boot)"));
    let up = demo.visible(&["up", "--profile", crate::guest_image::PROFILE_NAME, "--name", VM_NAME])?;
    if interrupted() || !up.success() {
        return stop_what_this_run_started(&demo, was_running, up);
    }

    let (ok, status) = demo.json(&["collector", "status", VM_NAME])?;
    let forward = status["forward"].as_str().map(str::to_string);
    ensure!(ok && forward.is_some(), "the collector does not answer through a forward: {status}");
    let forward = forward.unwrap_or_default();

    step(&format!("live readings from the guest's collector (http://{forward}/v1/snapshot)"));
    for _ in 0..3 {
        if interrupted() {
            return stop_what_this_run_started(&demo, was_running, up);
        }
        let snap: Value = serde_json::from_str(&http_get(&forward, "/v1/snapshot")?).context("snapshot JSON")?;
        print_readings(&snap);
        std::thread::sleep(Duration::from_secs(2));
    }

    let report = workspace.vm(VM_NAME)?.dir.join("validate-demo");
    step("a short validate (10 s per phase)");
    let report_s = report.display().to_string();
    let validated = demo.visible(&["validate", VM_NAME, "--duration-per-phase", "10s", "--report", &report_s])?;
    if interrupted() {
        return stop_what_this_run_started(&demo, was_running, up);
    }

    step("done");
    println!("report:      {}", report.join("report.html").display());
    println!("             {} (and report.md, report.json)", report.display());
    println!("metrics:     curl http://{forward}/metrics");
    println!("shell:       {}", demo.shown(&format!("vm ssh {VM_NAME}")));
    println!("status:      {}", demo.shown(&format!("vm status {VM_NAME}")));
    println!("stop:        {}", demo.shown(&format!("down {VM_NAME}")));
    println!("remove:      {}", demo.shown(&format!("vm destroy {VM_NAME} --yes")));
    println!("The VM keeps running; `cargo xtask demo` again reuses it.");
    ensure!(
        validated.success(),
        "validate reported failures ({validated}); see {}",
        report.join("report.md").display()
    );
    Ok(())
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// `up` cross-builds the collector from this checkout, which needs the guest's musl target.
fn ensure_musl_target(arch: &str) -> Result<()> {
    let target = format!("{arch}-unknown-linux-musl");
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == target) => Ok(()),
        Ok(_) => {
            eprintln!("deps: rustup target add {target}");
            ensure!(
                Command::new("rustup").args(["target", "add", &target]).status()?.success(),
                "rustup target add {target} failed"
            );
            Ok(())
        }
        // No rustup: cargo may still have the target (a distribution toolchain); the build says if not.
        Err(_) => Ok(()),
    }
}

/// Ctrl-C (or a failed `up`): stop the QEMU this run started; the image server ends with us.
fn stop_what_this_run_started(demo: &Demo, was_running: bool, up: ExitStatus) -> Result<()> {
    if !was_running && demo.vm_state().as_deref() == Some("running") {
        eprintln!("stopping the VM this run started ({VM_NAME}); `cargo xtask demo` again continues");
        let _ = demo.cmd().args(["vm", "stop", VM_NAME, "--force"]).status();
    }
    if interrupted() {
        bail!("interrupted; the image server stopped with this process");
    }
    bail!("sysmonvm up failed ({up}); its message is above. `cargo xtask demo` again continues from there")
}

/// How long one GET to the collector's forward may take, connect to last byte.
const GET_DEADLINE: Duration = Duration::from_secs(15);
/// The most a GET reads (a snapshot of a few hundred CPUs is well under 1 MiB).
const GET_CAP: usize = 16 << 20;

/// A plain HTTP/1.1 GET to the collector's 127.0.0.1 forward, with one deadline for the whole
/// request and a size cap.
fn http_get(addr: &str, path: &str) -> Result<String> {
    http_get_within(addr, path, GET_DEADLINE, GET_CAP)
}

/// [`http_get`] with its deadline and cap. The deadline covers connect, request and every read
/// together (each read waits at most for what is left of it), so a peer that drips a byte at a
/// time cannot stretch the GET; more than `cap` bytes is an error, not a cut body.
fn http_get_within(addr: &str, path: &str, deadline: Duration, cap: usize) -> Result<String> {
    let until = std::time::Instant::now() + deadline;
    let left = || until.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero());
    let overran = || anyhow::anyhow!("GET http://{addr}{path}: no complete answer within {deadline:?}");
    let sockaddr: std::net::SocketAddr = addr.parse().with_context(|| format!("{addr} is no IP:port"))?;
    let mut s = TcpStream::connect_timeout(&sockaddr, deadline).with_context(|| format!("connect {addr}"))?;
    s.set_write_timeout(Some(left().ok_or_else(overran)?))?;
    // One write: a request in pieces can leave a peer that reads once and closes with bytes
    // unread, and its kernel then resets the connection under the answer.
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left().ok_or_else(overran)?))?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if raw.len() + n > cap => bail!("GET http://{addr}{path}: the answer is longer than {cap} bytes"),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(overran());
            }
            Err(e) => return Err(e).with_context(|| format!("GET http://{addr}{path}")),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        sysmonvm::sanitize::line(head.lines().next().unwrap_or(""))
    );
    Ok(body.to_string())
}

fn print_readings(snap: &Value) {
    let clean = |v: &Value| sysmonvm::sanitize::line(v.as_str().unwrap_or(""));
    println!("{}  ({} CPUs)", clean(&snap["timestamp"]), snap["cpus"].as_array().map_or(0, Vec::len));
    for c in snap["cpus"].as_array().into_iter().flatten() {
        let freq = c["frequency_hz"].as_f64().map_or("no value".to_string(), |hz| format!("{:.0} MHz", hz / 1e6));
        let usage = c["usage"]["usage_pct"].as_f64().map_or("-".to_string(), |u| format!("{u:.1} %"));
        println!(
            "  {:<6} usage {:>7}  frequency {:>10}  source {:<14} {}",
            clean(&c["cpu"]),
            usage,
            freq,
            clean(&c["frequency_source"]),
            clean(&c["frequency_note"])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A real server on 127.0.0.1 that reads the request and answers with `answer`, run on a
    /// thread for one connection.
    fn serve_once(answer: impl FnOnce(&mut TcpStream) + Send + 'static) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                // The whole request head: closing with some of it unread would reset the
                // connection under the answer.
                let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                answer(&mut s);
            }
        });
        addr
    }

    #[test]
    fn a_get_reads_the_body() {
        let addr = serve_once(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        });
        assert_eq!(http_get_within(&addr, "/v1/snapshot", Duration::from_secs(60), 1 << 20).unwrap(), "{\"a\":1}");
    }

    /// A peer that drips a byte every 100 ms (each read gets something well within any per-read
    /// timeout) for up to 60 s: the GET ends at its own deadline. The bound below only fails a GET
    /// that waited for the drip to end; it says nothing about speed.
    #[test]
    fn a_dripping_peer_ends_at_the_whole_request_deadline() {
        let addr = serve_once(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until && s.write_all(b"x").is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let deadline = Duration::from_secs(2);
        let started = Instant::now();
        let e = http_get_within(&addr, "/v1/snapshot", deadline, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("no complete answer within 2s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(40), "waited for the drip to end: {:?}", started.elapsed());
    }

    #[test]
    fn an_endless_body_stops_at_the_cap() {
        let addr = serve_once(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let chunk = [b'y'; 64 << 10];
            for _ in 0..4096 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let e = http_get_within(&addr, "/v1/snapshot", Duration::from_secs(120), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
    }
}
