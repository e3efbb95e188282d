//! Test support for the sysmonvm integration tests: a real HTTP server on 127.0.0.1 with the
//! failure modes downloads meet (range requests, connections cut mid-body, 404, servers that
//! ignore Range), and OpenPGP keys and signatures made with the real `gpg`.
#![allow(dead_code)]

pub mod gpg;
pub mod http;
pub mod json_doc;
pub mod sshd;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test that cannot run here says so: `SKIPPED: why` on stderr, or under CI=true, where
/// everything a test needs is set up, a failure.
pub fn skip(why: &str) {
    assert!(!in_ci(), "{why}; it is required under CI=true");
    eprintln!("SKIPPED: {why}");
}

/// Whether an external tool (a command, or a file given by its absolute path) is installed; under CI=true a missing tool fails the test instead.
pub fn have(tool: &str) -> bool {
    let found = sysmonvm::system_packages::provided(tool, &std::env::var("PATH").unwrap_or_default());
    if !found {
        let why = sysmonvm::system_packages::missing_tool_message(tool);
        skip(&format!("{why} (.ci/run installs it)"));
    }
    found
}

/// Runs the `sysmonvm` binary on a workspace with `--json` and no stdin: (exit status, the JSON
/// it printed or null, stderr).
pub fn sysmonvm_json(ws: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
        .arg("--workspace")
        .arg(ws)
        .arg("--json")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), v, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Another process holding the flock(2) lock at `path` until [`release`]d (`flock --no-fork`
/// execs its command, so killing it releases the lock rather than leaving a forked child
/// holding it). None (SKIPPED, or a failure under CI) without `flock`.
pub fn hold_lock_in_another_process(path: &std::path::Path) -> Option<std::process::Child> {
    use std::time::{Duration, Instant};
    if !have("flock") {
        return None;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let child = std::process::Command::new("flock")
        .args(["--exclusive", "--no-fork"])
        .arg(path)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while sysmonvm::lock::holder_of(path).unwrap().is_none() {
        assert!(Instant::now() < end, "flock did not take {} within 10 s", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

/// Ends a [`hold_lock_in_another_process`] holder, releasing its lock.
pub fn release(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}
