//! `image fetch`: from a profile's image spec (or explicit URLs) to a verified file in the cache.
//!
//! Order: CHECKSUM (and its signature, verified against the trusted key) → the expected digest →
//! a cache hit is re-hashed → otherwise download (resuming) into a partial file while hashing →
//! compare → rename into the cache. A mismatch never becomes the cached image and never falls back
//! to another, unverified image; a network failure, an oversized body or a mismatch moves on to the
//! next mirror. Image bytes over plain http need a digest nothing on the path can forge: a pinned
//! sha256 or a signed CHECKSUM; any other unsigned fetch is allowed with a warning.

pub mod cache;
pub mod checksum;
pub mod download;
pub mod signature;

use crate::profile::{ImageSpec, Profile};
use cache::{CacheError, CachedImage, ImageCache, ImageMeta};
use download::{DownloadError, Limits, Progress};
use serde::Serialize;
use signature::{SignatureError, TrustedKey};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Attempts per URL (each resuming the last) before moving on to the next mirror.
const ATTEMPTS_PER_URL: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "checksum mismatch for {file}: expected sha256 {expected}, got {actual} (the downloaded bytes were discarded)"
    )]
    Mismatch { file: String, expected: String, actual: String },
    #[error("{checksum_url} has no SHA-256 entry for {file}")]
    NotListed { checksum_url: String, file: String },
    #[error("the CHECKSUM file says {from_file} but the profile pins {pinned} for {file}")]
    Conflict { file: String, from_file: String, pinned: String },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("every source failed:\n  {}", .0.join("\n  "))]
    AllSourcesFailed(Vec<String>),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(
        "{url} is plain http and its sha256 would come from {checksum}, which nothing signs: anyone on the path could change both; pin the image's sha256 (image.sha256 / --sha256) or give a signed CHECKSUM (image.signature_url and image.key), or use https"
    )]
    UnverifiedPlainHttp { url: String, checksum: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where the trusted key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Builtin(String),
    File(PathBuf),
}

/// Everything `fetch` needs, from a profile or from command-line flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSource {
    pub url: Option<String>,
    pub path: Option<PathBuf>,
    pub checksum_url: Option<String>,
    pub sha256: Option<String>,
    pub signature_url: Option<String>,
    pub key: Option<KeySource>,
    pub key_fingerprint: Option<String>,
    pub mirrors: Vec<String>,
}

impl ImageSource {
    pub fn from_spec(spec: &ImageSpec, base_dir: Option<&Path>) -> ImageSource {
        let rel = |p: &Path| match base_dir {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        };
        let key = spec.key.as_ref().map(|k| {
            if signature::builtin_key(k).is_some() {
                KeySource::Builtin(k.clone())
            } else {
                KeySource::File(rel(Path::new(k)))
            }
        });
        ImageSource {
            url: spec.url.clone(),
            path: spec.path.as_deref().map(rel),
            checksum_url: spec.checksum_url.clone(),
            sha256: spec.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            signature_url: spec.signature_url.clone(),
            key,
            key_fingerprint: spec.key_fingerprint.clone(),
            mirrors: spec.mirrors.clone(),
        }
    }

    pub fn from_profile(p: &Profile) -> ImageSource {
        ImageSource::from_spec(&p.image, p.base_dir.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchedImage {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub signature_verified: bool,
    pub key_fingerprint: Option<String>,
    /// Where the bytes came from this time; in JSON `cache`, `local`, or the URL downloaded.
    pub source: FetchOrigin,
    /// The URL asked for (the profile's, or the mirror's).
    pub url: Option<String>,
    /// What was not verified (an unsigned CHECKSUM); each is also a warning event.
    pub warnings: Vec<String>,
}

impl FetchedImage {
    /// A cache hit (re-hashed), not a download.
    pub fn from_cache(&self) -> bool {
        self.source == FetchOrigin::Cache
    }
}

/// Where a fetch found the bytes it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOrigin {
    /// An entry already in the cache, hashed again.
    Cache,
    /// The profile's local `path`.
    Local,
    /// Downloaded from this URL, after its redirects (so never an https URL for bytes that
    /// came over http).
    Downloaded(String),
}

impl Serialize for FetchOrigin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            FetchOrigin::Cache => "cache",
            FetchOrigin::Local => "local",
            FetchOrigin::Downloaded(url) => url,
        })
    }
}

pub fn file_name_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("image").to_string()
}

/// The same file under each mirror directory: `url` first, then `mirror + file name`.
pub fn candidates(url: &str, mirrors: &[String]) -> Vec<String> {
    let name = file_name_of(url);
    let mut v = vec![url.to_string()];
    v.extend(mirrors.iter().map(|m| format!("{}/{name}", m.trim_end_matches('/'))));
    v
}

fn load_trusted_key(src: &ImageSource) -> Result<Option<TrustedKey>, ImageError> {
    let Some(key) = &src.key else { return Ok(None) };
    let (name, armored) = match key {
        KeySource::Builtin(n) => (n.clone(), signature::builtin_key(n).unwrap_or_default().to_string()),
        KeySource::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ImageError::Io { path: p.clone(), source })?;
            (p.display().to_string(), text)
        }
    };
    Ok(Some(signature::load_key(&name, &armored, src.key_fingerprint.as_deref())?))
}

async fn fetch_small_any(
    client: &reqwest::Client,
    url: &str,
    mirrors: &[String],
    limits: &Limits,
    errors: &mut Vec<String>,
) -> Option<(String, Vec<u8>)> {
    for u in candidates(url, mirrors) {
        match download::fetch_small(client, &u, limits).await {
            Ok(b) => return Some((u, b)),
            Err(e) => errors.push(crate::errors::chain(&e)),
        }
    }
    None
}

fn is_plain_http(url: &str) -> bool {
    url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// What the image's bytes are checked against, and how far that can be trusted.
struct Expected {
    sha256: String,
    signature_verified: bool,
    key_fingerprint: Option<String>,
    /// From the CHECKSUM's size comment, when it has one.
    size: Option<u64>,
    warnings: Vec<String>,
}

/// The expected digest, from a pinned sha256 and/or a (verified) CHECKSUM file.
async fn expected_digest(
    client: &reqwest::Client,
    src: &ImageSource,
    file: &str,
    limits: &Limits,
) -> Result<Expected, ImageError> {
    let key = load_trusted_key(src)?;
    let Some(checksum_url) = &src.checksum_url else {
        let pinned = src
            .sha256
            .clone()
            .ok_or_else(|| ImageError::Invalid("no checksum: give a CHECKSUM URL or a sha256".into()))?;
        // The user's own digest: nothing is left unverified.
        return Ok(Expected {
            sha256: pinned,
            signature_verified: false,
            key_fingerprint: None,
            size: None,
            warnings: Vec::new(),
        });
    };
    let mut errors = Vec::new();
    let (checksum_from, checksum) = fetch_small_any(client, checksum_url, &src.mirrors, limits, &mut errors)
        .await
        .ok_or(ImageError::AllSourcesFailed(errors.clone()))?;
    let checksum_text = String::from_utf8_lossy(&checksum).into_owned();
    let (listed_text, verified) = match (&key, &src.signature_url) {
        (Some(k), Some(sig_url)) => {
            let (_, sig) = fetch_small_any(client, sig_url, &src.mirrors, limits, &mut errors)
                .await
                .ok_or(ImageError::AllSourcesFailed(errors))?;
            if signature::is_clearsigned(&checksum_text) {
                (k.verify_clearsigned(&checksum_text)?, true)
            } else {
                k.verify_detached(&checksum, &sig)?;
                (checksum_text, true)
            }
        }
        (Some(k), None) if signature::is_clearsigned(&checksum_text) => (k.verify_clearsigned(&checksum_text)?, true),
        (Some(_), None) => {
            return Err(ImageError::Invalid(format!(
                "a trusted key is configured but {checksum_url} is not clearsigned and no signature URL is given"
            )));
        }
        (None, Some(_)) => {
            return Err(ImageError::Invalid("a signature URL needs a trusted key to check it against".into()));
        }
        (None, None) => (checksum_text, false),
    };
    let entries = checksum::parse(&listed_text);
    let entry = checksum::sha256_for(&entries, file)
        .ok_or_else(|| ImageError::NotListed { checksum_url: checksum_url.clone(), file: file.to_string() })?;
    let mut warnings = Vec::new();
    match &src.sha256 {
        Some(pinned) if pinned != &entry.digest => {
            return Err(ImageError::Conflict {
                file: file.into(),
                from_file: entry.digest.clone(),
                pinned: pinned.clone(),
            });
        }
        // The pin vouches for the digest; the CHECKSUM only agreed with it.
        Some(_) => {}
        None if !verified => warnings.push(format!(
            "the sha256 of {file} comes from {checksum_from}, which is not signed (no image.signature_url and image.key): the image is only as trustworthy as that server{}",
            if is_plain_http(&checksum_from) { " and the plain-http path to it" } else { "" }
        )),
        None => {}
    }
    Ok(Expected {
        sha256: entry.digest.clone(),
        signature_verified: verified,
        key_fingerprint: key.map(|k| k.fingerprint),
        size: checksum::size_for(&listed_text, file),
        warnings,
    })
}

/// Fetches and verifies an image into the cache (or verifies a local image in place), with the
/// default [`Limits`].
pub async fn fetch(
    src: &ImageSource,
    cache: &ImageCache,
    progress: &dyn Progress,
    on_wait: impl FnMut(&str),
) -> Result<FetchedImage, ImageError> {
    fetch_with(src, cache, &Limits::default(), progress, on_wait).await
}

/// [`fetch`] with the given caps and deadlines.
pub async fn fetch_with(
    src: &ImageSource,
    cache: &ImageCache,
    limits: &Limits,
    progress: &dyn Progress,
    mut on_wait: impl FnMut(&str),
) -> Result<FetchedImage, ImageError> {
    if let Some(path) = &src.path {
        let expected =
            src.sha256.clone().ok_or_else(|| ImageError::Invalid("a local image needs its sha256".into()))?;
        let (actual, size) =
            download::hash_file(path).map_err(|source| ImageError::Io { path: path.clone(), source })?;
        if actual != expected {
            return Err(ImageError::Mismatch { file: path.display().to_string(), expected, actual });
        }
        return Ok(FetchedImage {
            path: path.clone(),
            sha256: actual,
            size,
            signature_verified: false,
            key_fingerprint: None,
            source: FetchOrigin::Local,
            url: None,
            warnings: Vec::new(),
        });
    }
    let url = src.url.clone().ok_or_else(|| ImageError::Invalid("no image URL or path".into()))?;
    let sources = candidates(&url, &src.mirrors);
    if src.checksum_url.is_none() && src.sha256.is_none() {
        return Err(ImageError::Invalid(format!("{url}: no checksum: give a CHECKSUM URL or a sha256")));
    }
    // Decided before anything is fetched: a key means the CHECKSUM must verify (or the fetch fails).
    if src.sha256.is_none()
        && src.key.is_none()
        && let Some(plain) = sources.iter().find(|u| is_plain_http(u))
    {
        return Err(ImageError::UnverifiedPlainHttp {
            url: plain.clone(),
            checksum: src.checksum_url.clone().unwrap_or_default(),
        });
    }
    let file = file_name_of(&url);
    let client = download::client();
    let expected = expected_digest(&client, src, &file, limits).await?;
    let Expected { sha256: digest, signature_verified, key_fingerprint, size: listed_size, warnings } = expected;

    let _lock = cache.lock_async(&digest, Duration::from_secs(3600), &mut on_wait).await?;
    if let Some(hit) = cache.lookup(&digest, &file) {
        if cache.verify(&hit)? {
            return Ok(FetchedImage {
                path: hit.path,
                sha256: digest,
                size: hit.meta.size,
                signature_verified: hit.meta.signature_verified,
                key_fingerprint: hit.meta.key_fingerprint,
                source: FetchOrigin::Cache,
                url: Some(url),
                warnings,
            });
        }
        cache.evict(&hit)?;
    }

    let partial = cache.partial_path(&digest, &file);
    let mut errors = Vec::new();
    for candidate in sources {
        for _ in 0..ATTEMPTS_PER_URL {
            match download::fetch_to(&client, &candidate, &partial, listed_size, limits, progress).await {
                Ok(d) if d.sha256 == digest => {
                    let img: CachedImage = cache.commit(ImageMeta {
                        file_name: file.clone(),
                        url: Some(d.source_url.clone()),
                        checksum_url: src.checksum_url.clone(),
                        sha256: digest.clone(),
                        size: d.size,
                        signature_verified,
                        key_fingerprint: key_fingerprint.clone(),
                        fetched_at: sysmon_collector::host::now_rfc3339(),
                    })?;
                    download::discard_partial(&partial);
                    return Ok(FetchedImage {
                        path: img.path,
                        sha256: digest,
                        size: d.size,
                        signature_verified,
                        key_fingerprint,
                        source: FetchOrigin::Downloaded(d.source_url),
                        url: Some(candidate),
                        warnings,
                    });
                }
                Ok(d) => {
                    // Not resumable (the bytes are wrong somewhere) and not this mirror's to retry.
                    download::discard_partial(&partial);
                    let mismatch =
                        ImageError::Mismatch { file: d.source_url, expected: digest.clone(), actual: d.sha256 };
                    errors.push(mismatch.to_string());
                    break;
                }
                Err(e) if e.is_network() => {
                    errors.push(crate::errors::chain(&e));
                    if matches!(e, DownloadError::TooLarge { .. }) {
                        download::discard_partial(&partial);
                    }
                    if !e.worth_retrying() {
                        break; // the same URL will answer the same: next mirror
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(ImageError::AllSourcesFailed(errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_candidates_keep_the_file_name() {
        let c = candidates("https://a/x/img.qcow2", &["https://b/y/".into(), "http://c".into()]);
        assert_eq!(c, vec!["https://a/x/img.qcow2", "https://b/y/img.qcow2", "http://c/img.qcow2"]);
        assert_eq!(file_name_of("https://h/p/CHECKSUM?x=1"), "CHECKSUM");
    }
}
