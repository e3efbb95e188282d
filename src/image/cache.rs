//! The verified image cache: `images/<sha256>/<file name>` with `<file name>.json` metadata beside
//! it and a lock per entry. An entry is only ever created by renaming a fully downloaded and
//! verified `.partial` file; a cache hit hashes the bytes again rather than trusting the metadata.

use super::download::hash_file;
use crate::lock::{self, Lock, LockError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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
}

impl ImageCache {
    pub fn new(dir: PathBuf) -> Self {
        ImageCache { dir }
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

    /// Locks one entry against a concurrent download of the same image.
    pub fn lock(&self, sha256: &str, patience: Duration, on_wait: impl FnMut(&str)) -> Result<Lock, CacheError> {
        let dir = self.entry_dir(sha256);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(lock::acquire(&dir.join(".lock"), &format!("image {sha256}"), patience, on_wait)?)
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

    /// Removes an entry whose bytes no longer match.
    pub fn evict(&self, image: &CachedImage) -> Result<(), CacheError> {
        let dir = self.entry_dir(&image.meta.sha256);
        for p in [image.path.clone(), self.meta_path(&image.meta.sha256, &image.meta.file_name)] {
            if p.exists() {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        let _ = std::fs::remove_dir(dir);
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

    /// Deletes partial downloads and every image whose digest is not in `keep`; returns what went.
    pub fn prune(&self, keep: &[String]) -> Result<Vec<PathBuf>, CacheError> {
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let sha = entry.file_name().to_string_lossy().into_owned();
            let _lock = self.lock(&sha, Duration::ZERO, |_| {})?;
            let whole = !keep.contains(&sha);
            for f in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name == ".lock" {
                    continue;
                }
                if whole || name.ends_with(".partial") {
                    std::fs::remove_file(f.path()).map_err(io(&f.path()))?;
                    removed.push(f.path());
                }
            }
            if whole {
                let _ = std::fs::remove_file(entry.path().join(".lock"));
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        Ok(removed)
    }
}
