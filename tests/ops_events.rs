//! Operations report progress as typed events to the sink they are given: collected here from
//! real operations (a download from a real HTTP server, a VM lock another holder keeps), so a
//! test sees what the CLI renders.

mod common;

use common::http::{Behaviour, Server};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sysmonvm::ops::events::{Collected, Event};
use sysmonvm::ops::{self, image::FetchSource};
use sysmonvm::workspace::Workspace;

#[test]
fn a_download_reports_start_progress_and_finish() {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let server = Server::start();
    server.put("/disk.img", body.clone(), Behaviour::Normal);
    let d = tempfile::tempdir().unwrap();
    let ws = Workspace::at(d.path());
    let src = sysmonvm::image::ImageSource {
        url: Some(server.url("/disk.img")),
        sha256: Some(sha.clone()),
        ..Default::default()
    };
    let sink = Collected::default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fetched = rt.block_on(ops::image::fetch(&ws, &FetchSource::Explicit(src), &sink)).unwrap();
    assert_eq!(fetched.sha256, sha);
    let events = sink.events();
    assert!(
        matches!(events.first(), Some(Event::DownloadStarted { total: Some(t), already: 0, .. }) if *t == body.len() as u64),
        "{events:?}"
    );
    let advanced: u64 = events.iter().map(|e| if let Event::DownloadProgress { bytes } = e { *bytes } else { 0 }).sum();
    assert_eq!(advanced, body.len() as u64);
    assert_eq!(events.last(), Some(&Event::DownloadFinished));

    // A second fetch is a cache hit: re-hashed, nothing downloaded, no download events.
    let sink = Collected::default();
    let again = rt
        .block_on(ops::image::fetch(
            &ws,
            &FetchSource::Explicit(sysmonvm::image::ImageSource {
                url: Some(server.url("/disk.img")),
                sha256: Some(sha),
                ..Default::default()
            }),
            &sink,
        ))
        .unwrap();
    assert!(again.from_cache());
    assert!(sink.events().is_empty(), "{:?}", sink.events());
}

#[test]
fn waiting_for_a_vm_lock_says_for_whom_and_never_blocks_the_runtime() {
    let d = tempfile::tempdir().unwrap();
    let ws = Workspace::at(d.path());
    let held = ops::lock_vm_blocking(&ws, "lab", &Collected::default()).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        drop(held);
    });
    // One thread for everything: if waiting blocked it, the ticker could not run.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let sink = Collected::default();
    let t = ticks.clone();
    let seen = rt.block_on(async {
        let ticker = tokio::spawn(async move {
            loop {
                t.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let lock = ops::lock_vm(&ws, "lab", &sink).await.unwrap();
        // Read at once: had the wait blocked the only thread, the ticker would not have run yet.
        let seen = ticks.load(Ordering::Relaxed);
        ticker.abort();
        drop(lock);
        seen
    });
    release.join().unwrap();
    assert!(seen >= 2, "the runtime was blocked while waiting for the lock: the ticker ran {seen} times");
    let events = sink.events();
    assert!(
        matches!(&events[..], [Event::Waiting { what, holder }] if what == "VM lab" && holder.contains(&format!("pid {}", std::process::id()))),
        "{events:?}"
    );
}
