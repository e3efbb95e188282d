//! HTTP downloads that hash while they stream and resume after an interruption. The bytes go to a
//! `.partial` file; a resume asks for the rest with `Range` and only a `206` whose `Content-Range`
//! starts where the file ends counts (a `200` restarts from zero). On resume the bytes already on
//! disk are hashed first, so the final digest covers every byte of the file. Writing and hashing
//! run on their own threads, overlapping the network.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the download stopped after {got} of {expected} bytes (kept; run again to resume)")]
    Truncated { url: String, got: u64, expected: u64 },
    #[error("{url}: larger than the {limit} bytes allowed for this file")]
    TooLarge { url: String, limit: usize },
    #[error("partial download {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    /// Failures another mirror might not have (as opposed to a local disk error).
    pub fn is_network(&self) -> bool {
        match self {
            DownloadError::Network { .. } | DownloadError::Truncated { .. } => true,
            DownloadError::Status { status, .. } => *status >= 500 || *status == 404 || *status == 429,
            _ => false,
        }
    }
}

/// Told about progress; the CLI shows a bar, tests and `--json` use [`NoProgress`].
pub trait Progress: Send + Sync {
    fn start(&self, _url: &str, _total: Option<u64>, _already: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub sha256: String,
    pub size: u64,
    /// Bytes that were already on disk from an earlier attempt.
    pub resumed_from: u64,
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (ring rather than aws-lc: no C build, and the
    // CLI stays checkable for macOS); install ring once per process, whoever gets here first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("sysmonvm/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings")
}

fn net(url: &str) -> impl Fn(reqwest::Error) -> DownloadError + '_ {
    move |source| DownloadError::Network { url: url.to_string(), source }
}

/// A small file (CHECKSUM, signature) into memory, refusing more than `limit` bytes.
pub async fn fetch_small(client: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<u8>, DownloadError> {
    let mut resp = client.get(url).send().await.map_err(net(url))?;
    if !resp.status().is_success() {
        return Err(DownloadError::Status { url: url.into(), status: resp.status().as_u16() });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(net(url))? {
        out.extend_from_slice(&chunk);
        if out.len() > limit {
            return Err(DownloadError::TooLarge { url: url.into(), limit });
        }
    }
    Ok(out)
}

/// `bytes 100-199/1000` → (100, Some(1000)).
pub fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The writer thread: appends chunks to the file and feeds the hash thread.
struct Sink {
    tx: std::sync::mpsc::SyncSender<Bytes>,
    writer: std::thread::JoinHandle<Result<(), std::io::Error>>,
    hasher: std::thread::JoinHandle<Sha256>,
    hash_tx: std::sync::mpsc::SyncSender<Bytes>,
}

impl Sink {
    fn open(path: &Path, keep: u64) -> Result<Sink, DownloadError> {
        let io = |source| DownloadError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(path).map_err(io)?;
        file.set_len(keep).map_err(io)?;
        // Hash what is already there before anything new arrives.
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = keep;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Bytes>(256);
        let hasher = std::thread::spawn(move || {
            for chunk in hash_rx {
                hasher.update(&chunk);
            }
            hasher
        });
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(256);
        let writer = std::thread::spawn(move || {
            // Chunks arrive at a few hundred KiB each: written as they are, no copy into a buffer.
            let mut w = file;
            for chunk in rx {
                w.write_all(&chunk)?;
            }
            // No fsync: a cache entry is re-hashed on every use, so a file cut short by a crash
            // is caught there, and the download is not slowed by a flush of the whole image.
            w.flush()
        });
        Ok(Sink { tx, writer, hasher, hash_tx })
    }

    fn push(&self, chunk: Bytes) -> bool {
        self.hash_tx.send(chunk.clone()).is_ok() && self.tx.send(chunk).is_ok()
    }

    fn close(self, path: &Path) -> Result<String, DownloadError> {
        drop(self.tx);
        drop(self.hash_tx);
        let write = self.writer.join().unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
        write.map_err(|source| DownloadError::Io { path: path.to_path_buf(), source })?;
        let hasher = self.hasher.join().map_err(|_| DownloadError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("hash thread panicked"),
        })?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Downloads `url` into `partial`, resuming what is there. Returns the SHA-256 of the whole file.
pub async fn fetch_to(
    client: &reqwest::Client,
    url: &str,
    partial: &Path,
    progress: &dyn Progress,
) -> Result<Downloaded, DownloadError> {
    let existing = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let mut req = client.get(url);
    if existing > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={existing}-"));
    }
    let mut resp = req.send().await.map_err(net(url))?;
    let status = resp.status().as_u16();
    let (keep, total) = match status {
        206 if existing > 0 => {
            let cr = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match cr {
                Some((start, total)) if start == existing => (existing, total),
                // A range we did not ask for: start over rather than splice mismatched bytes.
                _ => {
                    resp = client.get(url).send().await.map_err(net(url))?;
                    if !resp.status().is_success() {
                        return Err(DownloadError::Status { url: url.into(), status: resp.status().as_u16() });
                    }
                    (0, resp.content_length())
                }
            }
        }
        200 => (0, resp.content_length()),
        // The partial is as long as (or longer than) the file: start over.
        416 => {
            resp = client.get(url).send().await.map_err(net(url))?;
            if !resp.status().is_success() {
                return Err(DownloadError::Status { url: url.into(), status: resp.status().as_u16() });
            }
            (0, resp.content_length())
        }
        s => return Err(DownloadError::Status { url: url.into(), status: s }),
    };
    progress.start(url, total, keep);
    let sink = Sink::open(partial, keep)?;
    let mut size = keep;
    let mut cut: Option<DownloadError> = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                progress.advance(chunk.len() as u64);
                if !sink.push(chunk) {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                cut = Some(net(url)(e));
                break;
            }
        }
    }
    let sha256 = sink.close(partial)?;
    progress.finish();
    if let Some(total) = total
        && size < total
    {
        return Err(DownloadError::Truncated { url: url.into(), got: size, expected: total });
    }
    if let Some(e) = cut {
        return Err(e);
    }
    Ok(Downloaded { sha256, size, resumed_from: keep })
}

/// SHA-256 and size of a file on disk.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, Some(1000))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[tokio::test]
    async fn a_refused_connection_is_kept_as_the_source() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/CHECKSUM");
        let e = fetch_small(&client(), &url, 1024).await.unwrap_err();
        assert!(e.is_network(), "{e:?}");
        assert_eq!(e.to_string(), format!("downloading {url}"));
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<reqwest::Error>()), "{e:?}");
        let mut cause = std::error::Error::source(&e);
        let mut refused = false;
        while let Some(c) = cause {
            refused |=
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            cause = c.source();
        }
        assert!(refused, "{}", crate::errors::chain(&e));
    }

    #[test]
    fn a_partial_file_that_cannot_be_opened_names_it_and_keeps_the_io_error() {
        let d = tempfile::tempdir().unwrap();
        let partial = d.path().join("no-such-dir/image.partial");
        let Err(e) = Sink::open(&partial, 0) else { panic!("opened a file in a missing directory") };
        assert_eq!(e.to_string(), format!("partial download {}", partial.display()));
        let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()).expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn hash_file_matches_sha256sum_of_a_known_input() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        // sha256("abc") from FIPS 180-2, appendix B.1
        assert_eq!(
            hash_file(&p).unwrap(),
            ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(), 3)
        );
    }
}
