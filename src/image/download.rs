//! HTTP downloads that hash while they stream and resume after an interruption. The bytes go to a
//! `.partial` file; a resume asks for the rest with `Range` and only a `206` whose `Content-Range`
//! starts where the file ends counts (a `200` restarts from zero). On resume the bytes already on
//! disk are hashed first, so the final digest covers every byte of the file. Writing and hashing
//! run on their own threads, overlapping the network.
//!
//! A mirror is untrusted: every request has a deadline for the whole operation, every body a size
//! cap, a redirect from https to plain http is refused, and a partial file records the URL its
//! bytes came from (`<partial>.source`) so it is only ever resumed from that same URL.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Caps and deadlines for everything fetched from a mirror. [`Limits::default`] is what the CLI
/// uses; tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most an image may be when it is bigger than its CHECKSUM's size comment says, or when
    /// there is no such comment (then only this and the server's `Content-Length` cap it).
    pub max_image_bytes: u64,
    /// A CHECKSUM or a signature.
    pub small_file_bytes: usize,
    /// A CHECKSUM or signature fetch from connect to the last byte.
    pub small_file_deadline: Duration,
    /// From sending a request to its response headers.
    pub response_deadline: Duration,
    /// An image download that receives fewer than `stall_min_bytes` in any `stall_window` is cut
    /// (a server that drips a byte now and then would otherwise hold it forever).
    pub stall_window: Duration,
    pub stall_min_bytes: u64,
    /// One whole attempt at an image download (resumed by the next attempt).
    pub download_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Cloud images are 0.3–2 GiB; 64 GiB is far above any, and still ends an endless body.
            max_image_bytes: 64 << 30,
            small_file_bytes: 4 << 20,
            small_file_deadline: Duration::from_secs(120),
            response_deadline: Duration::from_secs(60),
            // 64 KiB a minute is about 1 KiB/s: slower than any usable link.
            stall_window: Duration::from_secs(60),
            stall_min_bytes: 64 << 10,
            download_deadline: Duration::from_secs(12 * 3600),
        }
    }
}

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
    #[error("{url}: larger than the {limit} bytes {why} (stopped after {received} bytes; nothing kept)")]
    TooLarge { url: String, limit: u64, why: SizeLimit, received: u64 },
    #[error(
        "{from} redirected to {to}: a download asked for over https is never continued over plain http; use an https mirror or fix the server's redirect"
    )]
    Downgrade { from: String, to: String },
    #[error("{url}: {what} did not finish within {}s", after.as_secs())]
    Deadline { url: String, what: &'static str, after: Duration },
    #[error(
        "{url}: fewer than {min} bytes arrived in {}s ({got} did): the server is too slow or stalled (kept; run again to resume)",
        window.as_secs()
    )]
    Stalled { url: String, got: u64, min: u64, window: Duration },
    #[error("partial download {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a size cap came from, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// The CHECKSUM's size comment for the file.
    Checksum,
    /// The absolute cap, [`Limits::max_image_bytes`].
    Absolute,
    /// The cap on a CHECKSUM or signature, [`Limits::small_file_bytes`].
    SmallFile,
}

impl std::fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SizeLimit::Checksum => "the CHECKSUM lists for it",
            SizeLimit::Absolute => "allowed for any image",
            SizeLimit::SmallFile => "allowed for a CHECKSUM or signature",
        })
    }
}

impl DownloadError {
    /// Failures another mirror might not have (as opposed to a local disk error).
    pub fn is_network(&self) -> bool {
        match self {
            DownloadError::Network { .. }
            | DownloadError::Truncated { .. }
            | DownloadError::TooLarge { .. }
            | DownloadError::Downgrade { .. }
            | DownloadError::Deadline { .. }
            | DownloadError::Stalled { .. } => true,
            DownloadError::Status { status, .. } => *status >= 500 || *status == 404 || *status == 429,
            DownloadError::Io { .. } => false,
        }
    }

    /// A failure that asking the same URL again (resuming) may get past; the others go straight
    /// to the next mirror: the same URL would answer the same.
    pub fn worth_retrying(&self) -> bool {
        matches!(
            self,
            DownloadError::Network { .. }
                | DownloadError::Truncated { .. }
                | DownloadError::Deadline { .. }
                | DownloadError::Stalled { .. }
        )
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
    /// Where the bytes came from: the URL asked for after its redirects.
    pub source_url: String,
}

/// The redirect policy's refusal, found again in the reqwest error's sources by [`net`].
#[derive(Debug, thiserror::Error)]
#[error("{from} redirected to {to}")]
struct RedirectDowngrade {
    from: String,
    to: String,
}

/// Follows up to 10 redirects, never from https to plain http: bytes asked for over https must
/// not arrive over a connection anyone on the path can rewrite (and then be shown as https).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.previous().last().filter(|from| from.scheme() == "https" && attempt.url().scheme() == "http");
        if let Some(from) = downgrade {
            let refusal = RedirectDowngrade { from: from.to_string(), to: attempt.url().to_string() };
            attempt.error(refusal)
        } else if attempt.previous().len() > 10 {
            let last = attempt.url().to_string();
            attempt.error(format!("more than 10 redirects, the last to {last}"))
        } else {
            attempt.follow()
        }
    })
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (ring rather than aws-lc: no C build, and the
    // CLI stays checkable for macOS); install ring once per process, whoever gets here first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        .redirect(redirect_policy())
        .user_agent(concat!("sysmonvm/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings")
}

fn net(url: &str) -> impl Fn(reqwest::Error) -> DownloadError + '_ {
    move |source| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
        while let Some(c) = cause {
            if let Some(d) = c.downcast_ref::<RedirectDowngrade>() {
                return DownloadError::Downgrade { from: d.from.clone(), to: d.to.clone() };
            }
            cause = c.source();
        }
        DownloadError::Network { url: url.to_string(), source }
    }
}

/// Sends a request, waiting at most `deadline` for the response headers.
async fn send(req: reqwest::RequestBuilder, url: &str, deadline: Duration) -> Result<reqwest::Response, DownloadError> {
    match tokio::time::timeout(deadline, req.send()).await {
        Ok(sent) => sent.map_err(net(url)),
        Err(_) => Err(DownloadError::Deadline { url: url.into(), what: "the response headers", after: deadline }),
    }
}

/// A small file (CHECKSUM, signature) into memory: at most `limits.small_file_bytes`, and all of
/// it within `limits.small_file_deadline`.
pub async fn fetch_small(client: &reqwest::Client, url: &str, limits: &Limits) -> Result<Vec<u8>, DownloadError> {
    let deadline = limits.small_file_deadline;
    let limit = limits.small_file_bytes;
    let whole = async {
        let mut resp = client.get(url).send().await.map_err(net(url))?;
        if !resp.status().is_success() {
            return Err(DownloadError::Status { url: url.into(), status: resp.status().as_u16() });
        }
        let too_large = |received: u64| DownloadError::TooLarge {
            url: url.into(),
            limit: limit as u64,
            why: SizeLimit::SmallFile,
            received,
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large(0));
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net(url))? {
            if out.len() + chunk.len() > limit {
                return Err(too_large((out.len() + chunk.len()) as u64));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    match tokio::time::timeout(deadline, whole).await {
        Ok(r) => r,
        Err(_) => Err(DownloadError::Deadline { url: url.into(), what: "the whole fetch", after: deadline }),
    }
}

/// Where the URL a partial file's bytes came from is recorded.
pub fn origin_path(partial: &Path) -> PathBuf {
    let mut name = partial.file_name().unwrap_or_default().to_os_string();
    name.push(".source");
    partial.with_file_name(name)
}

/// Removes a partial file and its origin record.
pub fn discard_partial(partial: &Path) {
    let _ = std::fs::remove_file(partial);
    let _ = std::fs::remove_file(origin_path(partial));
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

/// Downloads `url` into `partial`, resuming what is there if it came from the same URL. Returns
/// the SHA-256 of the whole file. At most `expected_size` bytes (the CHECKSUM's size comment),
/// never more than `limits.max_image_bytes`; a larger `Content-Length` is refused before any byte
/// is written. On [`DownloadError::TooLarge`] the caller discards the partial file.
pub async fn fetch_to(
    client: &reqwest::Client,
    url: &str,
    partial: &Path,
    expected_size: Option<u64>,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<Downloaded, DownloadError> {
    let origin = origin_path(partial);
    // Two lines: the URL asked for, and the URL its bytes came from after redirects.
    let recorded = std::fs::read_to_string(&origin).unwrap_or_default();
    let mut recorded = recorded.lines();
    let (asked, came_from) = (recorded.next(), recorded.next());
    // Bytes of unknown origin (no record: an older version, a crash before the record) or from
    // another URL are not spliced onto bytes from here.
    let existing = match (asked, came_from) {
        (Some(asked), Some(_)) if asked == url => std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0),
        _ => 0,
    };
    let mut req = client.get(url);
    if existing > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={existing}-"));
    }
    let mut resp = send(req, url, limits.response_deadline).await?;
    let from_scratch = |resp: reqwest::Response| async move {
        drop(resp);
        let resp = send(client.get(url), url, limits.response_deadline).await?;
        if !resp.status().is_success() {
            return Err(DownloadError::Status { url: url.into(), status: resp.status().as_u16() });
        }
        let total = resp.content_length();
        Ok((resp, 0, total))
    };
    let status = resp.status().as_u16();
    let (keep, total);
    (resp, keep, total) = match status {
        // The same range of the same file, from the URL the partial came from (after redirects).
        206 if existing > 0 && came_from == Some(resp.url().as_str()) => {
            let cr = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match cr {
                Some((start, total)) if start == existing => (resp, existing, total),
                // A range we did not ask for: start over rather than splice mismatched bytes.
                _ => from_scratch(resp).await?,
            }
        }
        // Redirected somewhere else than the partial's bytes came from: start over.
        206 if existing > 0 => from_scratch(resp).await?,
        200 => {
            let total = resp.content_length();
            (resp, 0, total)
        }
        // The partial is as long as (or longer than) the file: start over.
        416 => from_scratch(resp).await?,
        s => return Err(DownloadError::Status { url: url.into(), status: s }),
    };
    let (limit, why) = match expected_size {
        Some(n) if n <= limits.max_image_bytes => (n, SizeLimit::Checksum),
        _ => (limits.max_image_bytes, SizeLimit::Absolute),
    };
    let too_large = |received| DownloadError::TooLarge { url: url.into(), limit, why, received };
    if total.is_some_and(|t| t > limit) {
        return Err(too_large(keep));
    }
    let source_url = resp.url().to_string();
    if keep == 0 {
        std::fs::write(&origin, format!("{url}\n{source_url}\n"))
            .map_err(|source| DownloadError::Io { path: origin.clone(), source })?;
    }
    progress.start(&source_url, total, keep);
    let sink = Sink::open(partial, keep)?;
    let mut size = keep;
    let mut cut: Option<DownloadError> = None;
    let started = tokio::time::Instant::now();
    let give_up = started + limits.download_deadline;
    let mut window_end = started + limits.stall_window;
    let mut window_bytes = 0u64;
    loop {
        let wake = window_end.min(give_up);
        let next = tokio::time::timeout_at(wake, resp.chunk()).await;
        let now = tokio::time::Instant::now();
        if now >= give_up {
            cut = Some(DownloadError::Deadline {
                url: url.into(),
                what: "the download",
                after: limits.download_deadline,
            });
            break;
        }
        if now >= window_end {
            if window_bytes < limits.stall_min_bytes {
                cut = Some(DownloadError::Stalled {
                    url: url.into(),
                    got: window_bytes,
                    min: limits.stall_min_bytes,
                    window: limits.stall_window,
                });
                break;
            }
            window_end = now + limits.stall_window;
            window_bytes = 0;
        }
        match next {
            // The window ended with no chunk: checked above.
            Err(_elapsed) => {}
            Ok(Ok(Some(chunk))) => {
                let len = chunk.len() as u64;
                if size + len > limit {
                    cut = Some(too_large(size + len));
                    break;
                }
                size += len;
                window_bytes += len;
                progress.advance(len);
                if !sink.push(chunk) {
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                cut = Some(net(url)(e));
                break;
            }
        }
    }
    let sha256 = sink.close(partial)?;
    progress.finish();
    // Our own cut says why; a connection the server cut is best told as how far it got.
    if let Some(e) = cut.take_if(|e| !matches!(e, DownloadError::Network { .. })) {
        return Err(e);
    }
    if let Some(total) = total
        && size < total
    {
        return Err(DownloadError::Truncated { url: url.into(), got: size, expected: total });
    }
    if let Some(e) = cut {
        return Err(e);
    }
    Ok(Downloaded { sha256, size, resumed_from: keep, source_url })
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
        let e = fetch_small(&client(), &url, &Limits::default()).await.unwrap_err();
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
