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
