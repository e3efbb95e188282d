//! A minimal OTLP/HTTP receiver on the host's 127.0.0.1 for `validate`'s latency check: accepts
//! `POST /v1/metrics` (protobuf), answers 200 with an empty response, and records when each
//! request arrived and the newest reading time it carries (decoded with the collector's own
//! OTLP module). The guest reaches it through QEMU's user-network gateway (10.0.2.2).
//!
//! Everything it reads comes from an untrusted peer: the guest, or any other process on this
//! machine (every VM with user networking can reach the host's 127.0.0.1 as 10.0.2.2). So:
//! - a delivery counts only with this run's token (`Authorization: Bearer …`, random per run and
//!   given to the collector in its config); others get 401 before their body is read;
//! - the request head and the body are capped, one deadline covers a whole connection (head,
//!   body and the answer), at most [`Limits::max_connections`] are served at once and one request
//!   is served per connection (`Connection: close`), so a peer holds a slot for at most the deadline;
//! - what is kept per delivery is two times and a count, never the metric names, and the
//!   number of deliveries kept is capped too;
//! - the head is scanned once as it arrives (linear in its size, never rescanned per read).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the receiver allows one peer; [`Limits::default`] is what `validate` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is answered 503 and closed at once.
    pub max_connections: usize,
    /// One deadline per connection from accept: the head, the body and the answer.
    pub deadline: Duration,
    /// The request line and headers together, with the blank line that ends them.
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    /// Deliveries kept; later ones are counted in [`Counts::arrivals_dropped`].
    pub max_arrivals: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            // The collector's own send timeout is 10 s; a push is a few tens of KB.
            deadline: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            // The collector's request for a large guest is well under 1 MiB.
            max_body_bytes: 8 << 20,
            // A push every second for more than a day.
            max_arrivals: 100_000,
        }
    }
}

/// One delivery that counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// When the request was read in full, Unix seconds on the host's clock.
    pub arrived_unix: f64,
    /// The newest reading time in the request, Unix seconds as the guest wrote it.
    pub newest_reading_unix: f64,
    /// How many metrics the request carried.
    pub metrics: usize,
}

/// What happened to the connections and requests the receiver saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Deliveries answered 200 (including those with no data point, which are not arrivals).
    pub accepted: u64,
    /// Requests without this run's token (401).
    pub unauthorized: u64,
    /// Connections refused because [`Limits::max_connections`] were open (503).
    pub too_many_connections: u64,
    /// Connections that did not finish within [`Limits::deadline`] (408 when it can still be sent).
    pub timed_out: u64,
    /// Heads or bodies over their cap (431, 413).
    pub too_large: u64,
    /// Heads that are not HTTP/1.x, bodies that are not an OTLP request, wrong method or path.
    pub rejected: u64,
    /// Deliveries that counted but were not kept, beyond [`Limits::max_arrivals`].
    pub arrivals_dropped: u64,
    /// The most bytes ever buffered for one request head (at most the head cap plus one read).
    pub largest_head_buffered: usize,
}

#[derive(Default)]
struct Store {
    arrivals: Vec<Arrival>,
    counts: Counts,
}

pub struct Receiver {
    pub port: u16,
    token: String,
    store: Arc<Mutex<Store>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// This run's token (64 hex digits).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The `Authorization` header value a delivery must carry.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The deliveries that counted, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).arrivals.clone()
    }

    pub fn counts(&self) -> Counts {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).counts.clone()
    }
}

/// Unix seconds now, on this machine's clock.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Binds 127.0.0.1 (never a public address) on a free port and serves in the background with
/// the default limits and a fresh random token.
pub async fn start() -> std::io::Result<Receiver> {
    start_with(Limits::default()).await
}

pub async fn start_with(limits: Limits) -> std::io::Result<Receiver> {
    let token = random_token()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let store: Arc<Mutex<Store>> = Arc::default();
    let task = tokio::spawn(accept_loop(listener, Arc::new(limits), token.clone(), store.clone()));
    Ok(Receiver { port, token, store, task })
}

fn random_token() -> std::io::Result<String> {
    use ssh_key::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.try_fill_bytes(&mut bytes).map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}

async fn accept_loop(listener: TcpListener, limits: Arc<Limits>, token: String, store: Arc<Mutex<Store>>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let token: Arc<str> = token.into();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors or a connection reset before accept: keep serving, without spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            count(&store, |c| c.too_many_connections += 1);
            // Best effort and never waiting: a peer that does not read just loses the answer.
            let _ = stream.try_write(&reply("503 Service Unavailable", "too many connections\n"));
            continue;
        };
        let (limits, token, store) = (limits.clone(), token.clone(), store.clone());
        tokio::spawn(async move {
            let _slot = slot;
            serve_with_deadline(stream, &limits, &token, &store).await;
        });
    }
}

fn count(store: &Mutex<Store>, f: impl FnOnce(&mut Counts)) {
    f(&mut store.lock().unwrap_or_else(|e| e.into_inner()).counts);
}

fn reply(status: &str, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

async fn serve_with_deadline(mut stream: TcpStream, limits: &Limits, token: &str, store: &Mutex<Store>) {
    match tokio::time::timeout(limits.deadline, serve(&mut stream, limits, token, store)).await {
        Ok(Ok(())) => {}
        // The peer went away or reset: nothing to answer.
        Ok(Err(_)) => {}
        Err(_) => {
            count(store, |c| c.timed_out += 1);
            let _ = stream.try_write(&reply("408 Request Timeout", "the request did not arrive within the deadline\n"));
        }
    }
}

/// Reads one request and answers it; the caller bounds the whole of it by the deadline.
async fn serve(stream: &mut TcpStream, limits: &Limits, token: &str, store: &Mutex<Store>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        let searched = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        count(store, |c| c.largest_head_buffered = c.largest_head_buffered.max(buf.len()));
        if let Some(end) = head_end(&buf, searched) {
            if end > limits.max_head_bytes {
                return refuse_too_large(stream, store, "431 Request Header Fields Too Large", limits).await;
            }
            break end;
        }
        if buf.len() > limits.max_head_bytes {
            return refuse_too_large(stream, store, "431 Request Header Fields Too Large", limits).await;
        }
    };
    let head = match parse_head(&buf[..head_len]) {
        Ok(h) => h,
        Err(e) => {
            count(store, |c| c.rejected += 1);
            return answer(stream, "400 Bad Request", &format!("{e}\n")).await;
        }
    };
    if !head.authorization.is_some_and(|a| bearer_matches(a, token)) {
        count(store, |c| c.unauthorized += 1);
        return answer(stream, "401 Unauthorized", "this receiver takes deliveries only with its run's token\n").await;
    }
    if head.method != "POST" {
        count(store, |c| c.rejected += 1);
        return answer(stream, "405 Method Not Allowed", "only POST /v1/metrics\n").await;
    }
    if head.path.split('?').next() != Some("/v1/metrics") {
        count(store, |c| c.rejected += 1);
        return answer(stream, "404 Not Found", "only POST /v1/metrics\n").await;
    }
    let Some(length) = head.content_length else {
        count(store, |c| c.rejected += 1);
        return answer(stream, "411 Length Required", "send the body with Content-Length\n").await;
    };
    if length > limits.max_body_bytes {
        return refuse_too_large(stream, store, "413 Payload Too Large", limits).await;
    }
    // What arrived with the head, then the rest; never more than the declared length.
    let mut body = buf.split_off(head_len);
    body.truncate(length);
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let arrived_unix = unix_now();
    match sysmon_collector::export::otlp::summarize(&body) {
        Ok((newest, names)) => {
            {
                let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
                s.counts.accepted += 1;
                if let Some(t) = newest {
                    if s.arrivals.len() < limits.max_arrivals {
                        s.arrivals.push(Arrival {
                            arrived_unix,
                            newest_reading_unix: t as f64 / 1e9,
                            metrics: names.len(),
                        });
                    } else {
                        s.counts.arrivals_dropped += 1;
                    }
                }
            }
            let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            stream.write_all(ok).await?;
            stream.shutdown().await
        }
        Err(e) => {
            count(store, |c| c.rejected += 1);
            answer(stream, "400 Bad Request", &format!("the body is not an OTLP ExportMetricsServiceRequest: {e}\n"))
                .await
        }
    }
}

async fn answer(stream: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    stream.write_all(&reply(status, text)).await?;
    stream.shutdown().await
}

async fn refuse_too_large(
    stream: &mut TcpStream,
    store: &Mutex<Store>,
    status: &str,
    limits: &Limits,
) -> std::io::Result<()> {
    count(store, |c| c.too_large += 1);
    let text = format!(
        "the head may hold at most {} bytes and the body at most {} bytes\n",
        limits.max_head_bytes, limits.max_body_bytes
    );
    answer(stream, status, &text).await
}

/// The end of the head (just past its blank line) in `buf`, looking only at bytes from `searched`
/// on (less three, for a `\r\n\r\n` split across reads), so reading a head costs linear time.
pub fn head_end(buf: &[u8], searched: usize) -> Option<usize> {
    let from = searched.saturating_sub(3);
    buf.get(from..)?.windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4)
}

/// A request's line and the headers the receiver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_length: Option<usize>,
    /// The raw `Authorization` value.
    pub authorization: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request line is not `METHOD PATH HTTP/1.x`")]
    RequestLine,
    #[error("header line {line} is not `Name: value`")]
    HeaderLine { line: usize },
    #[error("Content-Length is not a decimal byte count")]
    ContentLength,
    #[error("Content-Length is given twice with different values")]
    ConflictingContentLength,
    #[error("Transfer-Encoding is not supported here; send the body with Content-Length")]
    TransferEncoding,
}

/// Parses a request head (what [`head_end`] delimits, the blank line included or not). Bytes, not
/// text: nothing here trusts the peer's encoding, and each byte is looked at a bounded number of times.
pub fn parse_head(head: &[u8]) -> Result<Head<'_>, HeadError> {
    let head = head.strip_suffix(b"\r\n\r\n").or_else(|| head.strip_suffix(b"\r\n")).unwrap_or(head);
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::RequestLine)?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::RequestLine);
    };
    let token =
        |s: &[u8]| !s.is_empty() && s.iter().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b));
    if !token(method)
        || !path.starts_with(b"/")
        || !path.iter().all(|b| b.is_ascii_graphic())
        || !(version == b"HTTP/1.1" || version == b"HTTP/1.0")
    {
        return Err(HeadError::RequestLine);
    }
    // Checked to be ASCII above, so these cannot fail.
    let method = std::str::from_utf8(method).map_err(|_| HeadError::RequestLine)?;
    let path = std::str::from_utf8(path).map_err(|_| HeadError::RequestLine)?;
    let mut parsed = Head { method, path, content_length: None, authorization: None };
    for (i, line) in lines.enumerate() {
        let colon = line.iter().position(|&b| b == b':').ok_or(HeadError::HeaderLine { line: i + 1 })?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if !token(name) || value.iter().any(|&b| b == b'\r' || b == 0) {
            return Err(HeadError::HeaderLine { line: i + 1 });
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::ContentLength);
            }
            let n: usize =
                std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).ok_or(HeadError::ContentLength)?;
            if parsed.content_length.is_some_and(|m| m != n) {
                return Err(HeadError::ConflictingContentLength);
            }
            parsed.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case(b"authorization") {
            parsed.authorization = Some(value);
        }
    }
    Ok(parsed)
}

/// Whether `value` is `Bearer TOKEN`, compared in time that does not depend on where it differs.
pub fn bearer_matches(value: &[u8], token: &str) -> bool {
    let Some(given) = value.strip_prefix(b"Bearer ") else { return false };
    let expected = token.as_bytes();
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(
            b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nauthorization: Bearer t\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            h,
            Head { method: "POST", path: "/v1/metrics", content_length: Some(12), authorization: Some(b"Bearer t") }
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n").unwrap().content_length,
            Some(1)
        );
        for (bad, e) in [
            (&b"GET /\r\n\r\n"[..], HeadError::RequestLine),
            (b"GET  / HTTP/1.1\r\n\r\n", HeadError::RequestLine),
            (b"GET x HTTP/1.1\r\n\r\n", HeadError::RequestLine),
            (b"GET / HTTP/2\r\n\r\n", HeadError::RequestLine),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", HeadError::HeaderLine { line: 1 }),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HeadError::ContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", HeadError::ContentLength),
            (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HeadError::ConflictingContentLength),
            (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HeadError::TransferEncoding),
        ] {
            assert_eq!(parse_head(bad), Err(e), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn head_end_finds_a_blank_line_split_across_reads() {
        let whole = b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody";
        assert_eq!(head_end(whole, 0), Some(24));
        for split in 0..whole.len() {
            assert_eq!(head_end(whole, split.min(21)), Some(24), "searched {split}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(head_end(b"", 5), None);
    }

    #[test]
    fn the_token_must_match_exactly() {
        assert!(bearer_matches(b"Bearer abc", "abc"));
        for wrong in [&b"Bearer abd"[..], b"Bearer ab", b"Bearer abcd", b"bearer abc", b"abc", b""] {
            assert!(!bearer_matches(wrong, "abc"), "{}", String::from_utf8_lossy(wrong));
        }
        let t = random_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, random_token().unwrap());
    }
}
