//! `bootstrap` and `collector build|install|image|status|logs|uninstall`.

use super::render::{Terminal, block_on, print_json, safe, safe_line};
use crate::{BootstrapArgs, CollectorCommand};
use std::io::Write;
use sysmonvm::exit;
use sysmonvm::ops::provision::{
    self, BootstrapRequest, BuildRequest, ImageRequest, InstallRequest, LogsRequest, StatusRequest, UninstallRequest,
};
use sysmonvm::workspace::Workspace;

pub fn bootstrap(ws: &Workspace, a: BootstrapArgs, json: bool) -> crate::Exit {
    let sink = Terminal::new(json, a.verbose);
    let req = BootstrapRequest { name: a.name, packages: a.packages };
    let r = block_on(provision::bootstrap(ws, &req, &sink))??;
    if json {
        print_json(&r)?;
    }
    Ok(exit::OK)
}

pub fn run(ws: &Workspace, cmd: CollectorCommand, json: bool) -> crate::Exit {
    match cmd {
        CollectorCommand::Build { target, mtls, profile, source } => {
            let sink = Terminal::new(json, true);
            let r = provision::collector_build(ws, &BuildRequest { target, profile, source, mtls }, &sink)?;
            if json {
                print_json(&r)?;
            } else {
                println!("staged {} (sha256 {})", r.binary.display(), r.sha256);
            }
        }
        CollectorCommand::Install(a) => {
            let sink = Terminal::new(json, a.verbose);
            let req = InstallRequest {
                name: a.name,
                binary: a.binary,
                config: a.config,
                otlp_endpoint: a.otlp_endpoint,
                cgroups: a.cgroups,
                source: a.source,
                serviceradar: a.serviceradar,
                certs: a.certs,
                mode: a.mode,
                ..Default::default()
            };
            let r = block_on(provision::collector_install(ws, &req, &sink))??;
            if json {
                print_json(&r)?;
            } else if let Some(check) = &r.serviceradar_check {
                // The one line to paste into ServiceRadar's agent config (its checks list).
                println!("{}", serde_json::to_string(check)?);
            }
        }
        CollectorCommand::Image { name, binary, source, verbose } => {
            let sink = Terminal::new(json, verbose);
            let r = block_on(provision::collector_image(ws, &ImageRequest { name, binary, source }, &sink))??;
            if json {
                print_json(&r)?;
            } else {
                println!("{} (content sha256 {})", r.image, r.content_sha256);
            }
        }
        CollectorCommand::Status { name } => {
            // Warnings (guest output cut at its cap) go to stderr, in --json mode too.
            let sink = Terminal::new(json, false);
            let s = block_on(provision::collector_status(ws, &StatusRequest { name }, &sink))??;
            if json {
                print_json(&s)?;
            } else {
                let or = |v: &Option<String>, d: &str| safe_line(v.as_deref().unwrap_or(d));
                let active = s.active.map_or("?", |a| a.as_str());
                println!("{}: {} ({})", s.vm, active, or(&s.sub, "?"));
                println!("  mode         {}", s.mode.as_str());
                println!("  version      {}", or(&s.version, "not installed"));
                println!("  binary       {} {}", s.binary, or(&s.binary_sha256, "-"));
                if s.mode.is_container() {
                    println!(
                        "  image        {} content {}",
                        sysmonvm::guest::collector_image::IMAGE,
                        or(&s.image_content_sha256, "- (no container running)")
                    );
                }
                println!("  restarts     {}", s.restarts.map(|r| r.to_string()).unwrap_or_else(|| "-".into()));
                if let Some(f) = &s.forward {
                    let ok = if s.answers_via_forward { "(answers)" } else { "(not answering)" };
                    println!("  metrics      http://{f}/metrics {ok}");
                }
            }
            return Ok(s.exit_status);
        }
        CollectorCommand::Logs { name, lines, follow } => {
            let req = LogsRequest { name, lines, follow };
            return Ok(block_on(provision::collector_logs(ws, &req, |is_err, bytes| {
                // The journal is guest text: made printable before it reaches the terminal.
                let text = safe(&String::from_utf8_lossy(bytes));
                if is_err {
                    let _ = std::io::stderr().write_all(text.as_bytes());
                } else {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
            }))??);
        }
        CollectorCommand::Uninstall { name, verbose } => {
            let sink = Terminal::new(json, verbose);
            let r = block_on(provision::collector_uninstall(ws, &UninstallRequest { name }, &sink))??;
            if json {
                print_json(&r)?;
            }
        }
    }
    Ok(exit::OK)
}
