//! The image cache operations: fetch (verify, resume), list, verify, prune.

use super::events::{DownloadEvents, Event, Sink};
use super::{OpError, Result};
use crate::image::cache::{CachedImage, ImageCache, PrunePlan, PruneReport, PruneRequest, images_in_use};
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
    let fetched = image::fetch(&src, &ImageCache::of(ws), &DownloadEvents(sink), |who| {
        sink.emit(Event::Waiting {
            what: "the image cache entry (downloading the same image)".into(),
            holder: who.to_string(),
        })
    })
    .await
    .map_err(|e| OpError::Image(Box::new(e)))?;
    for w in &fetched.warnings {
        sink.warning(w.clone());
    }
    Ok(fetched)
}

pub fn list(ws: &Workspace) -> Vec<CachedImage> {
    ImageCache::of(ws).list()
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
    let cache = ImageCache::of(ws);
    let mut images = Vec::new();
    for i in cache.list() {
        let ok = cache.verify(&i)?;
        images.push(VerifiedImage { path: i.path, sha256: i.meta.sha256, ok });
    }
    let exit_status = if images.iter().all(|i| i.ok) { crate::exit::OK } else { crate::exit::ERROR };
    Ok(VerifyReport { images, exit_status })
}

/// How `prune --all` learns that the VMs whose images it would delete are confirmed.
pub enum PruneConfirmation<'a> {
    /// `--yes`: the caller confirmed them beforehand.
    Given,
    /// Asked once with the plan, before anything is deleted; false deletes nothing.
    Ask(&'a mut dyn FnMut(&PrunePlan) -> bool),
}

/// Deletes partial downloads and images no VM uses. With `all`, also the images VMs use, once
/// those VMs are confirmed (the plan names them); declined, nothing at all is deleted. Every
/// VM's `state.json` must be readable: on doubt nothing is deleted.
pub fn prune(ws: &Workspace, all: bool, confirmation: PruneConfirmation<'_>) -> Result<PruneReport> {
    let cache = ImageCache::of(ws);
    let in_use = images_in_use(ws).map_err(OpError::ImagesInUse)?;
    let plan = cache.plan_prune(&PruneRequest { in_use: in_use.clone(), all, confirmed_vms: Vec::new() })?;
    let vms = plan.vms_to_confirm();
    if let PruneConfirmation::Ask(ask) = confirmation
        && !vms.is_empty()
        && !ask(&plan)
    {
        return Err(OpError::NotConfirmed { vms: vms.join(", ") });
    }
    Ok(cache.prune_images(&PruneRequest { in_use, all, confirmed_vms: vms })?)
}
