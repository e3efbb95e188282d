//! Project tasks: `cargo xtask <task>`. Each task is a plain Rust function so it runs the same
//! on a laptop and in CI.

mod bench_collector;
mod bench_fetch;
mod bench_start;
mod bench_up;
mod binfmt;
mod demo;
mod deps;
mod dist;
/// The e2e suite lives in `e2e/` beside its guest-side scripts.
#[path = "../../e2e/suite.rs"]
mod e2e;
mod guest_image;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  bench-collector [--seconds N] [--scrapes N]
      sysmon-collector serve vs prometheus-node-exporter (Debian package) side by side:
      median scrape latency, RSS, CPU at a 1 s sampling interval. Prints a Markdown table.
  bench-fetch [--mib N] [--rounds N]
      sysmonvm image fetch of an N MiB image (default 1024) over 127.0.0.1 against curl -o and
      curl -o + sha256sum, same server, same run. Prints a Markdown table.
  bench-up [--rounds N]
      on the running, provisioned test guest: `sysmonvm up` (no-op), `bootstrap`, `collector
      install` (no-ops), `collector status`, `vm status` against `ssh … true` in the same rounds;
      SSH logins and bytes counted in the guest; the first provisioning beside the boot.
  bench-start [--accel tcg|kvm|auto]
      sysmonvm vm start of the test guest against a bare QEMU launch with the same argv polled by
      an ssh loop, both to SSH login + cloud-init done, same run.
  demo [--arch x86_64|aarch64] [--workspace DIR]
      the whole job offline with no flags: installs missing system packages (as root), builds and
      serves the local Debian test guest, brings it up through `sysmonvm up`, shows live collector
      readings from the guest, runs a short validate, and says where the report is and how to reach
      and stop the VM. A re-run reuses the image and the VM; Ctrl-C stops what this run started.
  deps [--check|--install|--list] [--role vm|guest-image|test]…
      the system packages this project uses (one list: sysmonvm::system_packages); --check names
      what is missing, --install installs it (root; QEMU from bookworm-backports on Debian 12).
  dist [--formula URL SHA256]
      release artifacts in target/dist/: sysmonvm for this host, sysmon-collector for x86_64 and
      aarch64 musl, completions, the man page, SHA256SUMS; --formula also renders the Homebrew formula.
  e2e [--profile P]
      boot the real test guest through `sysmonvm up` (bootstrap, collector install), scrape the
      collector through its forward, run a container, inject faults, and check the lifecycle.
  guest-image [--arch x86_64|aarch64] [--workspace DIR] [--serve] [--port N] [--cache DIR]
      build (or reuse) the Debian 12 amd64 (or arm64) test guest from Debian packages, sign its CHECKSUM,
      write the debian-12-<arch> profile into the workspace; --serve serves it on 127.0.0.1.";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench-collector") => bench_collector::run(&args[1..]),
        Some("bench-fetch") => bench_fetch::run(&args[1..]),
        Some("guest-image") => guest_image::run_task(&args[1..]),
        Some("bench-start") => bench_start::run(&args[1..]),
        Some("bench-up") => bench_up::run(&args[1..]),
        Some("e2e") => e2e::run(&args[1..]),
        Some("dist") => dist::run(&args[1..]),
        Some("deps") => deps::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}
