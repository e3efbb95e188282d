//! `host monitor|install|uninstall`.

use super::render::{Terminal, block_on, print_json};
use crate::{Exit, HostCommand};
use sysmonvm::exit;
use sysmonvm::ops::host::{self, DaemonRequest, HostSample, MonitorRequest};

fn print_sample(s: &HostSample, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    match s {
        HostSample::Linux(l) => {
            let freqs: Vec<String> = l
                .cpus
                .iter()
                .map(|c| match c.frequency_hz {
                    Some(f) => format!("{} {:.2} GHz ({})", c.cpu, f / 1e9, c.frequency_source),
                    None => format!("{} - ({})", c.cpu, c.frequency_source),
                })
                .collect();
            println!("{} usage {:.1} % | {}", l.time, l.usage_pct.unwrap_or(f64::NAN), freqs.join(", "));
        }
        HostSample::Powermetrics(p) => {
            let parts: Vec<String> = p
                .clusters
                .iter()
                .map(|c| {
                    format!(
                        "{} {} active {}",
                        c.name,
                        c.freq_hz.map(|f| format!("{:.2} GHz", f / 1e9)).unwrap_or_else(|| "-".into()),
                        c.active_ratio.map(|a| format!("{:.0} %", a * 100.0)).unwrap_or_else(|| "-".into())
                    )
                })
                .collect();
            println!(
                "{} | {} | CPU {:.2} W",
                p.timestamp.as_deref().unwrap_or("-"),
                parts.join(", "),
                p.cpu_power_mw.unwrap_or(f64::NAN) / 1000.0
            );
        }
    }
}

pub fn run(cmd: HostCommand, json: bool) -> Exit {
    match cmd {
        HostCommand::Monitor { otlp_endpoint, interval, count } => {
            // Warnings (failed pushes) go to stderr even with --json: the samples own stdout.
            let sink = Terminal::new(json, false);
            let req = MonitorRequest { otlp_endpoint, interval, count };
            block_on(host::monitor(&req, |s| print_sample(s, json), &sink))??;
        }
        HostCommand::Install { otlp_endpoint, interval } => {
            let r = host::install_daemon(&DaemonRequest { otlp_endpoint, interval })?;
            if json {
                print_json(&r)?;
            } else {
                println!("installed {} (logs in {}/host-monitor.log)", r.plist, r.log_dir);
            }
        }
        HostCommand::Uninstall => {
            let r = host::uninstall_daemon()?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}: {}", r.plist, r.action);
            }
        }
    }
    Ok(exit::OK)
}
