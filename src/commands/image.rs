use super::print_json;
use crate::{Exit, ImageCommand, SourceArgs};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use sysmonvm::image::cache::ImageCache;
use sysmonvm::image::download::Progress;
use sysmonvm::image::{self, ImageSource, KeySource};
use sysmonvm::profile;
use sysmonvm::workspace::Workspace;

/// An indicatif bar on a terminal; hidden under --json or when stderr is not a terminal.
struct Bar(ProgressBar);

impl Bar {
    fn new(json: bool) -> Bar {
        if json || !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        Bar(ProgressBar::new(0))
    }
}

impl Progress for Bar {
    fn start(&self, url: &str, total: Option<u64>, already: u64) {
        let style = ProgressStyle::with_template("{msg}\n{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template");
        self.0.set_style(style);
        self.0.set_length(total.unwrap_or(0));
        self.0.set_position(already);
        self.0.set_message(if already > 0 { format!("resuming {url}") } else { format!("downloading {url}") });
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn source(ws: &Workspace, args: &SourceArgs) -> anyhow::Result<ImageSource> {
    if let Some(url) = &args.url {
        if args.checksum_url.is_none() && args.sha256.is_none() {
            bail!("--url needs --checksum-url or --sha256: downloads are always verified");
        }
        return Ok(ImageSource {
            url: Some(url.clone()),
            path: None,
            checksum_url: args.checksum_url.clone(),
            sha256: args.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            signature_url: args.signature_url.clone(),
            key: args.keyring.clone().map(KeySource::File),
            key_fingerprint: args.key_fingerprint.clone(),
            mirrors: args.mirrors.clone(),
        });
    }
    let name = args.profile.clone().unwrap_or_else(|| default_profile().to_string());
    let p = profile::load(&name, Some(&ws.profiles_dir()))?;
    Ok(ImageSource::from_profile(&p))
}

/// The profile used when none is named: hvf on Apple Silicon, else the host's architecture.
pub fn default_profile() -> &'static str {
    if std::env::consts::ARCH == "aarch64" { "almalinux-9-aarch64" } else { "almalinux-9-x86_64" }
}

pub fn run(ws: &Workspace, cmd: ImageCommand, json: bool) -> Exit {
    let cache = ImageCache::new(ws.images_dir());
    match cmd {
        ImageCommand::Fetch(args) => {
            let src = source(ws, &args)?;
            let bar = Bar::new(json);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let fetched = rt
                .block_on(image::fetch(&src, &cache, &bar, |who| {
                    eprintln!("waiting for {who} (downloading the same image)")
                }))
                .context("image fetch")?;
            if json {
                print_json(&fetched)?;
            } else {
                println!("{}", fetched.path.display());
                eprintln!(
                    "sha256 {} ({} bytes, {}{})",
                    fetched.sha256,
                    fetched.size,
                    if fetched.source == "cache" { "from the cache, re-hashed" } else { "downloaded" },
                    if fetched.signature_verified {
                        format!(", CHECKSUM signed by {}", fetched.key_fingerprint.as_deref().unwrap_or("?"))
                    } else {
                        String::new()
                    }
                );
            }
        }
        ImageCommand::List => {
            let list = cache.list();
            if json {
                print_json(&list)?;
            } else {
                for i in &list {
                    println!(
                        "{}  {:>12}  {}  {}",
                        &i.meta.sha256[..16],
                        i.meta.size,
                        i.meta.fetched_at,
                        i.path.display()
                    );
                }
            }
        }
        ImageCommand::Verify => {
            let mut rows = Vec::new();
            let mut bad = 0;
            for i in cache.list() {
                let ok = cache.verify(&i)?;
                bad += usize::from(!ok);
                rows.push(serde_json::json!({ "path": i.path, "sha256": i.meta.sha256, "ok": ok }));
            }
            if json {
                print_json(&rows)?;
            } else {
                for r in &rows {
                    println!("{}  {}", if r["ok"] == true { "ok " } else { "BAD" }, r["path"].as_str().unwrap_or(""));
                }
            }
            return Ok(if bad > 0 { 1 } else { 0 });
        }
        ImageCommand::Prune => {
            // No VM records which image backs it yet (the lifecycle commands come next), so
            // nothing is kept but what is being downloaded right now (entries are locked).
            let removed = cache.prune(&[])?;
            if json {
                print_json(&removed)?;
            } else {
                for r in &removed {
                    println!("removed {}", r.display());
                }
            }
        }
    }
    Ok(0)
}
