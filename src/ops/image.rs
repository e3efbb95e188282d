//! The image cache operations: fetch (verify, resume), list, verify, prune.

use super::events::{DownloadEvents, Event, Sink};
use super::{OpError, Result};
use crate::image::cache::{CachedImage, ImageCache};
use crate::image::{self, FetchedImage, ImageSource};
use crate::workspace::Workspace;
use serde::Serialize;
use std::path::PathBuf;

/// Where the image to fetch is described: a profile, or explicit URLs.
#[derive(Debug, Clone)]
pub enum FetchSource {
    Profile(Option<String>),
    Explicit(ImageSource),
}

pub async fn fetch(ws: &Workspace, source: &FetchSource, sink: &dyn Sink) -> Result<FetchedImage> {
    let src = match source {
        FetchSource::Profile(name) => ImageSource::from_profile(&super::load_profile(ws, name.as_deref())?),
        FetchSource::Explicit(s) => {
            if s.checksum_url.is_none() && s.sha256.is_none() {
                return Err(OpError::Invalid(
                    "--url needs --checksum-url or --sha256: downloads are always verified".into(),
                ));
            }
            s.clone()
        }
    };
    image::fetch(&src, &ImageCache::new(ws.images_dir()), &DownloadEvents(sink), |who| {
        sink.emit(Event::Waiting {
            what: "the image cache entry (downloading the same image)".into(),
            holder: who.to_string(),
        })
    })
    .await
    .map_err(|e| OpError::Image(Box::new(e)))
}

pub fn list(ws: &Workspace) -> Vec<CachedImage> {
    ImageCache::new(ws.images_dir()).list()
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifiedImage {
    pub path: PathBuf,
    pub sha256: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub images: Vec<VerifiedImage>,
    /// `exit::ERROR` when any image no longer matches its digest.
    pub exit_status: i32,
}

pub fn verify(ws: &Workspace) -> Result<VerifyReport> {
    let cache = ImageCache::new(ws.images_dir());
    let mut images = Vec::new();
    for i in cache.list() {
        let ok = cache.verify(&i)?;
        images.push(VerifiedImage { path: i.path, sha256: i.meta.sha256, ok });
    }
    let exit_status = if images.iter().all(|i| i.ok) { crate::exit::OK } else { crate::exit::ERROR };
    Ok(VerifyReport { images, exit_status })
}

/// An image a VM's disk uses as its backing file.
#[derive(Debug, Clone, Serialize)]
pub struct KeptImage {
    pub sha256: String,
    pub path: PathBuf,
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub removed: Vec<PathBuf>,
    /// Images kept because VMs use them (empty with `--all`).
    pub kept: Vec<KeptImage>,
}

/// Which cached images VMs use, from every VM's `state.json`. A state file that cannot be read
/// stops the prune: on doubt nothing is deleted.
pub fn prune_plan(ws: &Workspace) -> Result<PruneReport> {
    let mut kept: Vec<KeptImage> = Vec::new();
    for name in crate::vm::list(ws) {
        let state = crate::vm::load_state(&ws.vm(&name)?)?;
        match kept.iter_mut().find(|k| k.sha256 == state.image_sha256) {
            Some(k) => k.used_by.push(name),
            None => kept.push(KeptImage { sha256: state.image_sha256, path: state.image_path, used_by: vec![name] }),
        }
    }
    Ok(PruneReport { removed: Vec::new(), kept })
}

/// Deletes partial downloads and images no VM uses; with `all` (confirmed by the caller) also
/// the ones VMs use.
pub fn prune(ws: &Workspace, all: bool) -> Result<PruneReport> {
    let plan = prune_plan(ws)?;
    let keep: Vec<String> = if all { Vec::new() } else { plan.kept.iter().map(|k| k.sha256.clone()).collect() };
    let removed = ImageCache::new(ws.images_dir()).prune(&keep)?;
    Ok(PruneReport { removed, kept: if all { Vec::new() } else { plan.kept } })
}
