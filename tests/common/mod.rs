//! Test support for the sysmonvm integration tests: a real HTTP server on 127.0.0.1 with the
//! failure modes downloads meet (range requests, connections cut mid-body, 404, servers that
//! ignore Range), and OpenPGP keys and signatures made with the real `gpg`.
#![allow(dead_code)]

pub mod gpg;
pub mod http;
pub mod sshd;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether an external tool is installed; under CI=true a missing tool fails the test instead.
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "{tool} is required under CI=true (.ci/run installs it)");
        eprintln!("SKIPPED: {tool} not installed");
    }
    found
}
