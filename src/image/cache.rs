//! The verified image cache: `images/<sha256>/<file name>` with `<file name>.json` metadata beside
//! it, and a lock per entry in the workspace's locks directory (never inside the entry, which
//! prune removes). An entry is only ever created by renaming a fully downloaded and verified
//! `.partial` file; a cache hit hashes the bytes again rather than trusting the metadata.
//!
//! Prune keeps every image a VM uses. What VMs use comes from each VM's `state.json`
//! ([`images_in_use`]); when that cannot be known for sure (a `state.json` that does not parse, a
//! VM being created right now) nothing is pruned: an image is re-downloadable, a VM's disk
//! whose backing file is gone is not bootable. Removing images VMs use takes `all` plus the names
//! of those VMs, confirmed by the user ([`PruneRequest::confirmed_vms`]).

use super::download::hash_file;
use crate::lock::{self, Lock, LockError};
use crate::workspace::{self, VmPaths, Workspace};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub file_name: String,
    pub url: Option<String>,
    pub checksum_url: Option<String>,
    pub sha256: String,
    pub size: u64,
    pub signature_verified: bool,
    pub key_fingerprint: Option<String>,
    /// RFC 3339 UTC.
    pub fetched_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedImage {
    pub path: PathBuf,
    pub meta: ImageMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

pub struct ImageCache {
    pub dir: PathBuf,
    /// Where the entries' lock files live (outside `dir`'s entries; never pruned).
    pub locks: PathBuf,
}

/// Whether a name is a lowercase hex sha256 (an entry directory's name).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ImageCache {
    /// The workspace's image cache.
    pub fn of(ws: &Workspace) -> Self {
        ImageCache { dir: ws.images_dir(), locks: ws.image_locks_dir() }
    }

    pub fn entry_dir(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    pub fn image_path(&self, sha256: &str, file_name: &str) -> PathBuf {
        self.entry_dir(sha256).join(file_name)
    }

    pub fn partial_path(&self, sha256: &str, file_name: &str) -> PathBuf {
        self.entry_dir(sha256).join(format!("{file_name}.partial"))
    }

    fn meta_path(&self, sha256: &str, file_name: &str) -> PathBuf {
        self.entry_dir(sha256).join(format!("{file_name}.json"))
    }

    /// The lock file of one entry.
    pub fn lock_path(&self, sha256: &str) -> PathBuf {
        self.locks.join(workspace::image_lock_name(sha256))
    }

    /// Locks one entry against a concurrent download or prune of the same image (and creates
    /// the entry's directory). Blocks the thread while it waits: async callers use [`Self::lock_async`].
    pub fn lock(&self, sha256: &str, patience: Duration, on_wait: impl FnMut(&str)) -> Result<Lock, CacheError> {
        let lock = lock::acquire(&self.lock_path(sha256), &format!("image {sha256}"), patience, on_wait)?;
        let dir = self.entry_dir(sha256);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(lock)
    }

    /// [`Self::lock`] that waits without blocking the async runtime.
    pub async fn lock_async(
        &self,
        sha256: &str,
        patience: Duration,
        on_wait: impl FnMut(&str),
    ) -> Result<Lock, CacheError> {
        let lock = lock::acquire_async(&self.lock_path(sha256), &format!("image {sha256}"), patience, on_wait).await?;
        let dir = self.entry_dir(sha256);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(lock)
    }

    /// The entry if its file and metadata are there (not yet re-hashed).
    pub fn lookup(&self, sha256: &str, file_name: &str) -> Option<CachedImage> {
        let path = self.image_path(sha256, file_name);
        let meta: ImageMeta = serde_json::from_slice(&std::fs::read(self.meta_path(sha256, file_name)).ok()?).ok()?;
        (path.is_file() && meta.sha256 == sha256).then_some(CachedImage { path, meta })
    }

    /// Hashes the cached bytes again; true when they still match.
    pub fn verify(&self, image: &CachedImage) -> Result<bool, CacheError> {
        let (digest, size) = hash_file(&image.path).map_err(io(&image.path))?;
        Ok(digest == image.meta.sha256 && size == image.meta.size)
    }

    /// Turns a verified partial file into the cache entry.
    pub fn commit(&self, meta: ImageMeta) -> Result<CachedImage, CacheError> {
        let partial = self.partial_path(&meta.sha256, &meta.file_name);
        let path = self.image_path(&meta.sha256, &meta.file_name);
        std::fs::rename(&partial, &path).map_err(io(&partial))?;
        let meta_path = self.meta_path(&meta.sha256, &meta.file_name);
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| CacheError::Io { path: meta_path.clone(), source: e.into() })?;
        std::fs::write(&meta_path, json).map_err(io(&meta_path))?;
        Ok(CachedImage { path, meta })
    }

    /// Removes an entry's image whose bytes no longer match. The entry's directory stays: the
    /// caller holds its lock and downloads the image into it again (prune removes empty ones).
    pub fn evict(&self, image: &CachedImage) -> Result<(), CacheError> {
        for p in [image.path.clone(), self.meta_path(&image.meta.sha256, &image.meta.file_name)] {
            if p.exists() {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<CachedImage> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let sha = entry.file_name().to_string_lossy().into_owned();
            for f in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if let Some(file_name) = name.strip_suffix(".json")
                    && let Some(img) = self.lookup(&sha, file_name)
                {
                    out.push(img);
                }
            }
        }
        out.sort_by(|a, b| a.meta.fetched_at.cmp(&b.meta.fetched_at));
        out
    }

    /// What is in one entry directory, and who holds its lock right now.
    fn scan_entry(&self, sha256: &str) -> Result<CacheEntry, CacheError> {
        let dir = self.entry_dir(sha256);
        let mut entry = CacheEntry {
            sha256: sha256.to_string(),
            dir: dir.clone(),
            images: Vec::new(),
            partials: Vec::new(),
            other: Vec::new(),
            busy: lock::holder_of(&self.lock_path(sha256))?,
        };
        let files = match std::fs::read_dir(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entry),
            Err(e) => return Err(io(&dir)(e)),
        };
        for f in files {
            let f = f.map_err(io(&dir))?;
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") {
                entry.partials.push(f.path());
            } else if self.lookup(sha256, &name).is_some() {
                entry.images.push(f.path());
            } else {
                entry.other.push(f.path());
            }
        }
        entry.images.sort();
        entry.partials.sort();
        entry.other.sort();
        Ok(entry)
    }

    /// Every entry directory (named by a sha256; anything else under `dir` is left alone).
    pub fn scan(&self) -> Result<Vec<CacheEntry>, CacheError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut shas = Vec::new();
        for e in entries {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_sha256(&name) && e.path().is_dir() {
                shas.push(name);
            }
        }
        shas.sort();
        shas.iter().map(|s| self.scan_entry(s)).collect()
    }

    /// What [`Self::prune_images`] would do now, changing nothing (for the CLI to show and confirm).
    pub fn plan_prune(&self, request: &PruneRequest) -> Result<PrunePlan, CacheError> {
        Ok(plan_prune(&self.scan()?, request))
    }

    /// The old prune: keeps only the digests in `keep`, knowing nothing of VMs. Kept so the
    /// current `image prune` command compiles; it must move to [`images_in_use`] +
    /// [`Self::plan_prune`] + [`Self::prune_images`], which keep what VMs use. It does go through
    /// the entry locks and never removes a lock file.
    pub fn prune(&self, keep: &[String]) -> Result<Vec<PathBuf>, CacheError> {
        let in_use = keep.iter().map(|sha| ImageUse { vm: String::new(), sha256: sha.clone() }).collect();
        let report = self.prune_images(&PruneRequest::keeping(in_use))?;
        let mut removed: Vec<PathBuf> = report.removed.into_iter().map(|i| i.path).collect();
        removed.extend(report.partials_removed);
        Ok(removed)
    }

    /// Removes partial downloads and the images no VM uses (with `all`, also those whose VMs
    /// are all in `confirmed_vms`). Each entry is decided again under its lock; an entry whose
    /// lock is held (a download in progress) is kept as it is. Lock files are never removed.
    pub fn prune_images(&self, request: &PruneRequest) -> Result<PruneReport, CacheError> {
        let entries = self.scan()?;
        let mut report = PruneReport { missing: missing_images(&entries, request), ..PruneReport::default() };
        for listed in entries {
            let lock = match lock::acquire(&self.lock_path(&listed.sha256), "image", Duration::ZERO, |_| {}) {
                Ok(l) => Some(l),
                Err(LockError::Held { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            // Under the lock the entry cannot change; without it, it is kept whatever it holds.
            let mut entry = self.scan_entry(&listed.sha256)?;
            if lock.is_some() {
                entry.busy = None;
            } else if entry.busy.is_none() {
                entry.busy = Some("another sysmonvm process".into());
            }
            match decide(&entry, request) {
                Decision::Remove(image) => {
                    for f in entry.images.iter().chain(&entry.partials).chain(&entry.other) {
                        remove_file(f)?;
                    }
                    report.partials_removed.extend(entry.partials.iter().cloned());
                    // Not empty only if something appeared meanwhile; then it stays.
                    let _ = std::fs::remove_dir(&entry.dir);
                    report.removed.push(image);
                }
                Decision::Keep { kept, remove_partials } => {
                    if remove_partials {
                        for f in &entry.partials {
                            remove_file(f)?;
                        }
                        report.partials_removed.extend(entry.partials.iter().cloned());
                    }
                    report.kept.push(kept);
                }
                Decision::Confirm(image) => {
                    for f in &entry.partials {
                        remove_file(f)?;
                    }
                    report.partials_removed.extend(entry.partials.iter().cloned());
                    report.needs_confirmation.push(image);
                }
            }
            drop(lock);
        }
        Ok(report)
    }
}

fn remove_file(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// One entry directory as found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheEntry {
    pub sha256: String,
    pub dir: PathBuf,
    /// Complete image files (with their metadata beside them).
    pub images: Vec<PathBuf>,
    /// Interrupted (or running) downloads.
    pub partials: Vec<PathBuf>,
    /// Metadata files and anything else in the directory.
    pub other: Vec<PathBuf>,
    /// The holder of the entry's lock when it was looked at (a download in progress).
    pub busy: Option<String>,
}

impl CacheEntry {
    /// The path to show for the entry: its image file, else its directory.
    pub fn shown_path(&self) -> PathBuf {
        self.images.first().cloned().unwrap_or_else(|| self.dir.clone())
    }
}

/// One VM's use of one image: the VM's disk has that image as its backing file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageUse {
    pub vm: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneRequest {
    /// What the VMs use: from [`images_in_use`].
    pub in_use: Vec<ImageUse>,
    /// Also remove images VMs use — only those whose VMs are all in `confirmed_vms`.
    pub all: bool,
    /// The VMs the user agreed to lose their images (after seeing [`PrunePlan::vms_to_confirm`]).
    pub confirmed_vms: Vec<String>,
}

impl PruneRequest {
    /// Keep whatever a VM uses; remove the rest.
    pub fn keeping(in_use: Vec<ImageUse>) -> Self {
        PruneRequest { in_use, all: false, confirmed_vms: Vec::new() }
    }

    fn users(&self, sha256: &str) -> Vec<String> {
        let set: BTreeSet<&str> = self.in_use.iter().filter(|u| u.sha256 == sha256).map(|u| u.vm.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }
}

/// An image and the VMs that use it (none for an unused one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunedImage {
    pub sha256: String,
    pub path: PathBuf,
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum KeepReason {
    /// A VM's disk uses it (and `all` was not given).
    InUse,
    /// Its lock is held: a download of it is running.
    Busy { holder: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptImage {
    pub sha256: String,
    pub path: PathBuf,
    pub used_by: Vec<String>,
    #[serde(flatten)]
    pub reason: KeepReason,
}

/// An image a VM uses that is not in the cache (removed earlier, or a local image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingImage {
    pub sha256: String,
    pub used_by: Vec<String>,
}

/// What a prune would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    pub remove: Vec<PrunedImage>,
    /// Partial downloads that would be removed (those inside removed entries too).
    pub partials: Vec<PathBuf>,
    pub kept: Vec<KeptImage>,
    /// Images VMs use that `all` removes once every VM using them is confirmed.
    pub needs_confirmation: Vec<PrunedImage>,
    pub missing: Vec<MissingImage>,
}

impl PrunePlan {
    /// The VMs to name and confirm so that `all` removes every image in `needs_confirmation`:
    /// all users of those images, sorted (an image goes only when all of its VMs are confirmed).
    pub fn vms_to_confirm(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.needs_confirmation.iter().flat_map(|i| &i.used_by).collect();
        set.into_iter().cloned().collect()
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Removed entries (`used_by` is not empty only for images removed with `all`).
    pub removed: Vec<PrunedImage>,
    pub partials_removed: Vec<PathBuf>,
    pub kept: Vec<KeptImage>,
    /// In-use images left because `all` was given without confirming all their VMs.
    pub needs_confirmation: Vec<PrunedImage>,
    pub missing: Vec<MissingImage>,
}

enum Decision {
    Remove(PrunedImage),
    Keep { kept: KeptImage, remove_partials: bool },
    Confirm(PrunedImage),
}

/// The rule for one entry, pure.
fn decide(entry: &CacheEntry, request: &PruneRequest) -> Decision {
    let used_by = request.users(&entry.sha256);
    let image = PrunedImage { sha256: entry.sha256.clone(), path: entry.shown_path(), used_by: used_by.clone() };
    if let Some(holder) = &entry.busy {
        let kept = KeptImage {
            sha256: image.sha256,
            path: image.path,
            used_by,
            reason: KeepReason::Busy { holder: holder.clone() },
        };
        return Decision::Keep { kept, remove_partials: false };
    }
    if used_by.is_empty() {
        return Decision::Remove(image);
    }
    if !request.all {
        let kept = KeptImage { sha256: image.sha256, path: image.path, used_by, reason: KeepReason::InUse };
        return Decision::Keep { kept, remove_partials: true };
    }
    if used_by.iter().all(|vm| request.confirmed_vms.contains(vm)) {
        Decision::Remove(image)
    } else {
        Decision::Confirm(image)
    }
}

fn missing_images(entries: &[CacheEntry], request: &PruneRequest) -> Vec<MissingImage> {
    let shas: BTreeSet<&str> = request.in_use.iter().map(|u| u.sha256.as_str()).collect();
    shas.into_iter()
        .filter(|sha| !entries.iter().any(|e| e.sha256 == *sha && !e.images.is_empty()))
        .map(|sha| MissingImage { sha256: sha.to_string(), used_by: request.users(sha) })
        .collect()
}

/// The prune plan over scanned entries, pure: unused images go; images VMs use stay unless
/// `all` is given and every VM using them is confirmed; entries being downloaded stay as they are.
pub fn plan_prune(entries: &[CacheEntry], request: &PruneRequest) -> PrunePlan {
    let mut plan = PrunePlan { missing: missing_images(entries, request), ..PrunePlan::default() };
    for entry in entries {
        match decide(entry, request) {
            Decision::Remove(image) => {
                plan.partials.extend(entry.partials.iter().cloned());
                plan.remove.push(image);
            }
            Decision::Keep { kept, remove_partials } => {
                if remove_partials {
                    plan.partials.extend(entry.partials.iter().cloned());
                }
                plan.kept.push(kept);
            }
            Decision::Confirm(image) => {
                plan.partials.extend(entry.partials.iter().cloned());
                plan.needs_confirmation.push(image);
            }
        }
    }
    plan
}

/// Why the images VMs use cannot be known; prune must then remove nothing.
#[derive(Debug, thiserror::Error)]
pub enum InUseError {
    #[error("cannot read {path}, so which images the VMs use is unknown; nothing is pruned")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} cannot be parsed, so which image VM {vm} uses is unknown; nothing is pruned (repair the file, or remove the VM with `sysmonvm vm destroy {vm}`)"
    )]
    BadState {
        vm: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: image_sha256 {value:?} is not a sha256, so which image VM {vm} uses is unknown; nothing is pruned (repair the file, or remove the VM with `sysmonvm vm destroy {vm}`)"
    )]
    BadSha { vm: String, path: PathBuf, value: String },
    #[error(
        "VM {vm} is being created or changed by {holder} and has no state.json yet, so its image is unknown; nothing is pruned (try again when that finishes)"
    )]
    Busy { vm: String, holder: String },
    #[error(
        "VM {vm} has a disk ({disk}) but no state.json, and the disk's backing file cannot be read; nothing is pruned (finish the VM with `sysmonvm up {vm}` or remove it with `sysmonvm vm destroy {vm}`)"
    )]
    UnknownBacking {
        vm: String,
        disk: PathBuf,
        #[source]
        source: BackingFileError,
    },
    #[error(transparent)]
    Workspace(#[from] workspace::WorkspaceError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// The fields of a VM's `state.json` that say which image it uses (the rest is `vm`'s business).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VmImage {
    #[serde(skip)]
    pub vm: String,
    pub image_sha256: String,
    pub image_path: PathBuf,
}

impl VmImage {
    /// Reads the image fields of a VM's `state.json`. `Ok(None)` when the VM has no `state.json`.
    pub fn read(vm: &VmPaths) -> Result<Option<VmImage>, InUseError> {
        let bytes = match std::fs::read(&vm.state) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(InUseError::Io { path: vm.state.clone(), source }),
        };
        let mut image: VmImage = serde_json::from_slice(&bytes).map_err(|source| InUseError::BadState {
            vm: vm.name.clone(),
            path: vm.state.clone(),
            source,
        })?;
        if !is_sha256(&image.image_sha256) {
            return Err(InUseError::BadSha { vm: vm.name.clone(), path: vm.state.clone(), value: image.image_sha256 });
        }
        image.vm = vm.name.clone();
        Ok(Some(image))
    }

    /// That the VM's backing image is still there (for `vm start` and `up` before launching).
    pub fn check_present(&self) -> Result<(), BackingImageError> {
        check_backing_image(&self.vm, &self.image_path, &self.image_sha256)
    }
}

/// The images the workspace's VMs use. A complete VM says so in its `state.json`; a VM dir
/// without one (a create that was interrupted, or is running now) is judged by its disk's
/// backing file, and a VM whose lock is held while it has no `state.json` makes the answer
/// unknown. Any doubt is an error, so a caller never prunes on a guess.
pub fn images_in_use(ws: &Workspace) -> Result<Vec<ImageUse>, InUseError> {
    let images_dir = ws.images_dir();
    let mut uses = Vec::new();
    for name in ws.vm_dirs()? {
        let vm = ws.vm(&name)?;
        if let Some(image) = VmImage::read(&vm)? {
            uses.push(ImageUse { vm: name, sha256: image.image_sha256 });
            continue;
        }
        if let Some(holder) = lock::holder_of(&vm.lock)? {
            return Err(InUseError::Busy { vm: name, holder });
        }
        for disk in [&vm.disk, &vm.disk_tmp] {
            if !disk.exists() {
                continue;
            }
            let backing = read_backing_file(disk).map_err(|source| InUseError::UnknownBacking {
                vm: name.clone(),
                disk: disk.clone(),
                source,
            })?;
            if let Some(sha256) = backing.and_then(|b| cache_entry_of(&images_dir, &vm.dir, &b)) {
                uses.push(ImageUse { vm: name.clone(), sha256 });
            }
        }
    }
    uses.sort();
    uses.dedup();
    Ok(uses)
}

/// The sha256 of the cache entry a backing file lies in (`<images>/<sha256>/…`), if it does.
fn cache_entry_of(images_dir: &Path, disk_dir: &Path, backing: &Path) -> Option<String> {
    // QEMU resolves a relative backing file against the overlay's directory.
    let backing = if backing.is_relative() { disk_dir.join(backing) } else { backing.to_path_buf() };
    let lexical = normalize(&backing);
    let candidates = [(normalize(images_dir), lexical.clone())]
        .into_iter()
        .chain(std::fs::canonicalize(images_dir).ok().map(|d| (d, lexical.clone())))
        .chain(
            lexical
                .parent()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .zip(std::fs::canonicalize(images_dir).ok())
                .map(|(parent, dir)| (dir, parent.join(lexical.file_name().unwrap_or_default()))),
        );
    for (dir, file) in candidates {
        if let Ok(rest) = file.strip_prefix(&dir)
            && let Some(Component::Normal(first)) = rest.components().next()
            && let Some(sha) = first.to_str().filter(|s| is_sha256(s))
        {
            return Some(sha.to_string());
        }
    }
    None
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BackingFileError {
    #[error("cannot read the qcow2 header")]
    Io(#[source] std::io::Error),
    #[error("not a qcow2 file (no QFI\\xfb magic)")]
    NotQcow2,
    #[error("the qcow2 header's backing file name ({size} bytes at {offset}) is out of bounds")]
    BadHeader { offset: u64, size: u32 },
}

/// Where the backing file name sits in a qcow2 header (bytes 0..20), pure: `None` for an image
/// without a backing file.
pub fn qcow2_backing_location(header: &[u8; 20]) -> Result<Option<(u64, u32)>, BackingFileError> {
    if &header[0..4] != b"QFI\xfb" {
        return Err(BackingFileError::NotQcow2);
    }
    let offset = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
    let size = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    if offset == 0 || size == 0 {
        return Ok(None);
    }
    // QEMU refuses backing file names over 1023 bytes; the name follows the 72-byte v2 header.
    if size > 1023 || offset < 72 {
        return Err(BackingFileError::BadHeader { offset, size });
    }
    Ok(Some((offset, size)))
}

/// The backing file a qcow2 overlay names, as written in its header.
pub fn read_backing_file(disk: &Path) -> Result<Option<PathBuf>, BackingFileError> {
    let mut f = std::fs::File::open(disk).map_err(BackingFileError::Io)?;
    let mut header = [0u8; 20];
    f.read_exact(&mut header).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof { BackingFileError::NotQcow2 } else { BackingFileError::Io(e) }
    })?;
    let Some((offset, size)) = qcow2_backing_location(&header)? else { return Ok(None) };
    let mut name = vec![0u8; size as usize];
    f.seek(SeekFrom::Start(offset)).map_err(BackingFileError::Io)?;
    f.read_exact(&mut name).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            BackingFileError::BadHeader { offset, size }
        } else {
            BackingFileError::Io(e)
        }
    })?;
    use std::os::unix::ffi::OsStringExt;
    Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(name))))
}

/// A VM's backing image is gone or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum BackingImageError {
    #[error(
        "VM {vm}: its disk's backing image {path} (sha256 {sha256}) is gone (removed by `sysmonvm image prune --all`?); `sysmonvm up {vm}` fetches it again by that sha256, `sysmonvm vm destroy {vm}` removes the VM"
    )]
    Missing { vm: String, path: PathBuf, sha256: String },
    #[error("VM {vm}: cannot read its disk's backing image {path} (sha256 {sha256})")]
    Unreadable {
        vm: String,
        path: PathBuf,
        sha256: String,
        #[source]
        source: std::io::Error,
    },
}

/// That a VM's backing image (`image_path` and `image_sha256` of its `state.json`) is there.
pub fn check_backing_image(vm: &str, image_path: &Path, image_sha256: &str) -> Result<(), BackingImageError> {
    match std::fs::metadata(image_path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(BackingImageError::Missing {
            vm: vm.to_string(),
            path: image_path.to_path_buf(),
            sha256: image_sha256.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BackingImageError::Missing {
            vm: vm.to_string(),
            path: image_path.to_path_buf(),
            sha256: image_sha256.to_string(),
        }),
        Err(source) => Err(BackingImageError::Unreadable {
            vm: vm.to_string(),
            path: image_path.to_path_buf(),
            sha256: image_sha256.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn entry(sha: &str, busy: Option<&str>, partial: bool) -> CacheEntry {
        let dir = PathBuf::from("/c/images").join(sha);
        CacheEntry {
            sha256: sha.into(),
            images: vec![dir.join("img.qcow2")],
            partials: if partial { vec![dir.join("other.qcow2.partial")] } else { vec![] },
            other: vec![dir.join("img.qcow2.json")],
            busy: busy.map(str::to_string),
            dir,
        }
    }

    fn uses(pairs: &[(&str, &str)]) -> Vec<ImageUse> {
        pairs.iter().map(|(vm, sha)| ImageUse { vm: vm.to_string(), sha256: sha.to_string() }).collect()
    }

    #[test]
    fn images_vms_use_are_kept_and_say_by_whom() {
        let entries = [entry(A, None, true), entry(B, None, false), entry(C, Some("pid 7"), true)];
        let req = PruneRequest::keeping(uses(&[("lab", A), ("web", A), ("old", "d".repeat(64).as_str())]));
        let plan = plan_prune(&entries, &req);
        assert_eq!(plan.remove.iter().map(|i| i.sha256.as_str()).collect::<Vec<_>>(), [B]);
        assert_eq!(plan.kept.len(), 2);
        assert_eq!(plan.kept[0].used_by, ["lab", "web"]);
        assert_eq!(plan.kept[0].reason, KeepReason::InUse);
        assert_eq!(plan.kept[1].reason, KeepReason::Busy { holder: "pid 7".into() });
        // The kept entry's leftover partial goes; the one being downloaded stays.
        assert_eq!(plan.partials, [PathBuf::from(format!("/c/images/{A}/other.qcow2.partial"))]);
        assert_eq!(plan.missing, [MissingImage { sha256: "d".repeat(64), used_by: vec!["old".into()] }]);
        assert!(plan.vms_to_confirm().is_empty());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["kept"][0]["reason"], "in_use");
        assert_eq!(json["kept"][1]["holder"], "pid 7");
    }

    #[test]
    fn all_removes_in_use_images_only_for_confirmed_vms() {
        let entries = [entry(A, None, false), entry(B, None, false)];
        let mut req = PruneRequest { all: true, ..PruneRequest::keeping(uses(&[("lab", A), ("web", A), ("db", B)])) };
        let plan = plan_prune(&entries, &req);
        assert!(plan.remove.is_empty() && plan.kept.is_empty());
        assert_eq!(plan.vms_to_confirm(), ["db", "lab", "web"]);
        req.confirmed_vms = vec!["lab".into(), "db".into()];
        let plan = plan_prune(&entries, &req);
        assert_eq!(plan.remove.len(), 1);
        assert_eq!((plan.remove[0].sha256.as_str(), plan.remove[0].used_by.as_slice()), (B, &["db".to_string()][..]));
        assert_eq!(plan.needs_confirmation.len(), 1, "web was not confirmed, so A stays");
        assert_eq!(plan.vms_to_confirm(), ["lab", "web"], "A goes once both its VMs are confirmed");
    }

    #[test]
    fn qcow2_header_backing_location() {
        let mut h = [0u8; 20];
        assert!(matches!(qcow2_backing_location(&h), Err(BackingFileError::NotQcow2)));
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[7] = 3;
        assert_eq!(qcow2_backing_location(&h).unwrap(), None);
        h[8..16].copy_from_slice(&112u64.to_be_bytes());
        h[16..20].copy_from_slice(&40u32.to_be_bytes());
        assert_eq!(qcow2_backing_location(&h).unwrap(), Some((112, 40)));
        h[16..20].copy_from_slice(&5000u32.to_be_bytes());
        assert!(matches!(qcow2_backing_location(&h), Err(BackingFileError::BadHeader { .. })));
    }

    #[test]
    fn backing_paths_map_to_entries() {
        let images = Path::new("/ws/images");
        let f = |p: &str| cache_entry_of(images, Path::new("/ws/vms/a"), Path::new(p));
        assert_eq!(f(&format!("/ws/images/{A}/x.qcow2")), Some(A.to_string()));
        assert_eq!(f(&format!("../../images/{A}/x.qcow2")), Some(A.to_string()));
        assert_eq!(f("/ws/images/not-a-sha/x.qcow2"), None);
        assert_eq!(f("/elsewhere/x.qcow2"), None);
    }
}
