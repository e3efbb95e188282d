//! Project tasks: `cargo xtask <task>`. Each task is a plain Rust function so it runs the same
//! on a laptop and in CI.

mod bench_collector;
mod bench_fetch;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  bench-collector [--seconds N] [--scrapes N]
      sysmon-collector serve vs prometheus-node-exporter (Debian package) side by side:
      median scrape latency, RSS, CPU at a 1 s sampling interval. Prints a Markdown table.
  bench-fetch [--mib N] [--rounds N]
      sysmonvm image fetch of an N MiB image (default 1024) over 127.0.0.1 against curl -o and
      curl -o + sha256sum, same server, same run. Prints a Markdown table.";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench-collector") => bench_collector::run(&args[1..]),
        Some("bench-fetch") => bench_fetch::run(&args[1..]),
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
