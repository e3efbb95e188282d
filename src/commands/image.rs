//! `image fetch|list|verify|prune`.

use super::render::{Terminal, block_on, confirm, print_json};
use crate::{Exit, ImageCommand, SourceArgs};
use sysmonvm::exit;
use sysmonvm::image::cache::PrunePlan;
use sysmonvm::image::{ImageSource, KeySource};
use sysmonvm::ops::image::{self, FetchSource, PruneConfirmation};
use sysmonvm::workspace::Workspace;

fn source(args: SourceArgs) -> FetchSource {
    match args.url {
        Some(url) => FetchSource::Explicit(ImageSource {
            url: Some(url),
            path: None,
            checksum_url: args.checksum_url,
            sha256: args.sha256.map(|s| s.to_ascii_lowercase()),
            signature_url: args.signature_url,
            key: args.keyring.map(KeySource::File),
            key_fingerprint: args.key_fingerprint,
            mirrors: args.mirrors,
        }),
        None => FetchSource::Profile(args.profile),
    }
}

pub fn run(ws: &Workspace, cmd: ImageCommand, json: bool) -> Exit {
    match cmd {
        ImageCommand::Fetch(args) => {
            let sink = Terminal::new(json, false);
            let fetched = block_on(image::fetch(ws, &source(args), &sink))??;
            drop(sink);
            if json {
                print_json(&fetched)?;
            } else {
                println!("{}", fetched.path.display());
                eprintln!(
                    "sha256 {} ({} bytes, {}{})",
                    fetched.sha256,
                    fetched.size,
                    if fetched.from_cache() { "from the cache, re-hashed" } else { "downloaded" },
                    match (&fetched.signature_verified, &fetched.key_fingerprint) {
                        (true, f) => format!(", CHECKSUM signed by {}", f.as_deref().unwrap_or("?")),
                        (false, _) => String::new(),
                    }
                );
            }
        }
        ImageCommand::List => {
            let list = image::list(ws);
            if json {
                print_json(&list)?;
            } else {
                for i in &list {
                    println!(
                        "{}  {:>12}  {}  {}",
                        &i.meta.sha256[..16.min(i.meta.sha256.len())],
                        i.meta.size,
                        i.meta.fetched_at,
                        i.path.display()
                    );
                }
            }
        }
        ImageCommand::Verify => {
            let r = image::verify(ws)?;
            if json {
                print_json(&r)?;
            } else {
                for i in &r.images {
                    println!("{}  {}", if i.ok { "ok " } else { "BAD" }, i.path.display());
                }
            }
            return Ok(r.exit_status);
        }
        ImageCommand::Prune { all, yes } => {
            let mut ask = |plan: &PrunePlan| {
                for i in &plan.needs_confirmation {
                    eprintln!("{} is the backing image of VM {}", i.path.display(), i.used_by.join(", "));
                }
                let question = format!(
                    "delete these images too? VMs {} cannot boot until `up` fetches them again",
                    plan.vms_to_confirm().join(", ")
                );
                confirm(&question)
            };
            let confirmation = if yes { PruneConfirmation::Given } else { PruneConfirmation::Ask(&mut ask) };
            let r = image::prune(ws, all, confirmation)?;
            if json {
                print_json(&r)?;
            } else {
                for p in r.removed.iter().map(|i| &i.path).chain(&r.partials_removed) {
                    println!("removed {}", p.display());
                }
                for k in &r.kept {
                    println!("kept    {} ({})", k.path.display(), k.used_by.join(", "));
                }
                for m in &r.missing {
                    println!("missing {} (used by VM {}; `up` fetches it again)", m.sha256, m.used_by.join(", "));
                }
            }
        }
    }
    Ok(exit::OK)
}
