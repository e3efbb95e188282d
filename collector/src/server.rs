//! The HTTP endpoint of `serve`: `GET /metrics`, `GET /v1/snapshot`, `GET /healthz`. Scrapes are
//! answered from the latest background sample and never wait for a new one. One thread polls
//! every connection (no thread per client, so the resident size stays small), and each
//! connection has one deadline from accept, so clients that drip their request a byte at a time
//! cannot hold the server: other scrapes are answered while they wait, and they are dropped at
//! the deadline. Connections held at once are capped.

use crate::export::prometheus;
use crate::metrics;
use crate::snapshot::Snapshot;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Connections held at once; a slow one costs its socket and at most this many bytes of buffer.
pub const MAX_CONNECTIONS: usize = 256;
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// One deadline per connection from accept: its request (head and body) and the answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// A sample with its renderings, made at most once each.
pub struct Published {
    pub snapshot: Snapshot,
    prometheus: OnceLock<String>,
    json: OnceLock<String>,
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Self {
        Published { snapshot, prometheus: OnceLock::new(), json: OnceLock::new() }
    }

    pub fn prometheus(&self) -> &str {
        self.prometheus.get_or_init(|| prometheus::render(&metrics::families(&self.snapshot)))
    }

    pub fn json(&self) -> &str {
        self.json
            .get_or_init(|| serde_json::to_string(&self.snapshot).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
    }
}

/// The latest sample, shared by the sampling thread, the HTTP server and the OTLP pusher.
#[derive(Default)]
pub struct Latest(Mutex<Option<Arc<Published>>>);

impl Latest {
    pub fn set(&self, p: Published) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(p));
    }

    pub fn get(&self) -> Option<Arc<Published>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Body,
}

enum Body {
    Owned(String),
    Shared(Arc<Published>, fn(&Published) -> &str),
}

fn respond(latest: &Latest, method: &str, path: &str) -> Response {
    let text = |status, body: &str| Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: Body::Owned(body.to_string()),
    };
    if method != "GET" && method != "HEAD" {
        return text("405 Method Not Allowed", "only GET\n");
    }
    let path = path.split('?').next().unwrap_or(path);
    let current = latest.get();
    match (path, current) {
        ("/metrics", Some(p)) => Response {
            status: "200 OK",
            content_type: prometheus::CONTENT_TYPE,
            body: Body::Shared(p, Published::prometheus),
        },
        ("/v1/snapshot", Some(p)) => {
            Response { status: "200 OK", content_type: "application/json", body: Body::Shared(p, Published::json) }
        }
        ("/healthz", Some(_)) => text("200 OK", "ok\n"),
        ("/metrics" | "/v1/snapshot" | "/healthz", None) => text("503 Service Unavailable", "no sample yet\n"),
        ("/", _) => text("200 OK", "sysmon-collector: /metrics /v1/snapshot /healthz\n"),
        _ => text("404 Not Found", "not found\n"),
    }
}

/// A connection the event loop holds: reading its request, then writing the answer, both before
/// its one deadline from accept.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    state: State,
}

enum State {
    /// `searched`: how much of `buf` was already scanned for the blank line; `head`: the head's
    /// length and the body's, once the blank line has arrived.
    Reading {
        buf: Vec<u8>,
        searched: usize,
        head: Option<(usize, usize)>,
    },
    Writing {
        header: Vec<u8>,
        body: Option<Body>,
        written: usize,
    },
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Owned(s) => s.as_bytes(),
            Body::Shared(p, f) => f(p).as_bytes(),
        }
    }
}

fn plain(status: &str, text: &str) -> State {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    State::Writing { header: header.into_bytes(), body: Some(Body::Owned(text.to_string())), written: 0 }
}

/// Where the head ends (just past its blank line), looking only at bytes from `searched` on
/// (less three, for a blank line split across reads): reading a head costs linear time.
fn head_end(buf: &[u8], searched: usize) -> Option<usize> {
    let from = searched.saturating_sub(3);
    buf.get(from..)?.windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4)
}

/// The body length a head announces; an error is the answer to give instead.
fn body_length(head: &str) -> Result<usize, State> {
    let mut length = 0;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(plain("501 Not Implemented", "chunked requests are not supported\n"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            length =
                value.trim().parse().map_err(|_| plain("400 Bad Request", "Content-Length is not a byte count\n"))?;
        }
    }
    Ok(length)
}

/// What a connection's bytes so far mean: keep reading, or the answer to write.
fn advance_reading(buf: &[u8], searched: usize, head: &mut Option<(usize, usize)>, latest: &Latest) -> Option<State> {
    if head.is_none() {
        match head_end(buf, searched) {
            Some(end) => {
                let text = String::from_utf8_lossy(&buf[..end]);
                match body_length(&text) {
                    Ok(body) if end.saturating_add(body) <= MAX_REQUEST_BYTES => *head = Some((end, body)),
                    Ok(_) => return Some(plain("413 Payload Too Large", "requests here carry no body\n")),
                    Err(answer) => return Some(answer),
                }
            }
            None if buf.len() > MAX_REQUEST_BYTES => {
                return Some(plain("431 Request Header Fields Too Large", "request head too large\n"));
            }
            None => return None,
        }
    }
    let (end, body) = (*head)?;
    if buf.len() < end + body {
        return None;
    }
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut first = text.lines().next().unwrap_or("").split_ascii_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let r = respond(latest, method, path);
    let header = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.bytes().len()
    );
    let body = (method != "HEAD").then_some(r.body);
    Some(State::Writing { header: header.into_bytes(), body, written: 0 })
}

/// Moves a connection on as far as its socket allows without blocking; false when it is done
/// (answered, closed by the peer, or failed).
fn progress(conn: &mut Conn, latest: &Latest) -> bool {
    loop {
        match &mut conn.state {
            State::Reading { buf, searched, head } => {
                let mut chunk = [0u8; 4096];
                match conn.stream.read(&mut chunk) {
                    Ok(0) => return false,
                    Ok(n) => {
                        let before = buf.len();
                        buf.extend_from_slice(&chunk[..n]);
                        let next = advance_reading(buf, *searched, head, latest);
                        *searched = before + n;
                        if let Some(next) = next {
                            conn.state = next;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            State::Writing { header, body, written } => {
                let body_bytes = body.as_ref().map_or(&[][..], Body::bytes);
                let total = header.len() + body_bytes.len();
                if *written >= total {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    return false;
                }
                let rest =
                    if *written < header.len() { &header[*written..] } else { &body_bytes[*written - header.len()..] };
                match conn.stream.write(rest) {
                    Ok(0) => return false,
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        }
    }
}

/// Serves until the listener fails, on the calling thread: one poll(2) loop holds every
/// connection, so a slow client costs a slot and a small buffer, never a worker. Each connection
/// has one deadline from accept for its request (head and body) and the answer; past it, it is
/// dropped (with a 408 when it was still sending). Beyond [`MAX_CONNECTIONS`] open at once, a new
/// client gets 503 at once instead of costing memory.
pub fn run(listener: TcpListener, latest: Arc<Latest>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        fds.clear();
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            let events = if matches!(c.state, State::Reading { .. }) { libc::POLLIN } else { libc::POLLOUT };
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
        }
        if !poll_until(&mut fds, conns.iter().map(|c| c.deadline))? {
            continue;
        }
        // Connections first (their indices match `fds[1..]`), then new ones.
        let mut keep = Vec::with_capacity(conns.len());
        for (i, mut c) in conns.drain(..).enumerate() {
            let open = if fds[i + 1].revents != 0 { progress(&mut c, &latest) } else { true };
            if open {
                keep.push(c);
            }
        }
        conns = keep;
        let now = Instant::now();
        conns.retain_mut(|c| {
            if c.deadline > now {
                return true;
            }
            if matches!(c.state, State::Reading { .. }) {
                // Best effort and never waiting: a client that does not read just loses it.
                let _ =
                    c.stream.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            }
            false
        });
        if fds[0].revents != 0 {
            accept_ready(&listener, &mut conns, &latest);
        }
    }
}

fn accept_ready(listener: &TcpListener, conns: &mut Vec<Conn>, latest: &Latest) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err() {
                    let _ = stream
                        .write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                let mut c = Conn {
                    stream,
                    deadline: Instant::now() + REQUEST_DEADLINE,
                    state: State::Reading { buf: Vec::new(), searched: 0, head: None },
                };
                // The request is often there already: answer without another round of poll.
                if progress(&mut c, latest) {
                    conns.push(c);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Out of descriptors, or a connection reset before accept: try again on the next
            // round, after a pause so a persistent error does not spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        }
    }
}

/// One `poll(2)` over `fds`, waking no later than the earliest of `deadlines` (or after at most
/// 60 s). False when a signal interrupted it (the caller polls again); the poll loops of the HTTP
/// and the gRPC server share it.
pub(crate) fn poll_until(fds: &mut [libc::pollfd], deadlines: impl Iterator<Item = Instant>) -> std::io::Result<bool> {
    let now = Instant::now();
    let timeout_ms = deadlines
        .map(|d| d.saturating_duration_since(now).as_millis().saturating_add(1).min(60_000) as libc::c_int)
        .min()
        .unwrap_or(-1);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ready < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_a_blank_line_split_across_reads() {
        let whole = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        for searched in 0..=21 {
            assert_eq!(head_end(whole, searched), Some(24));
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
    }

    #[test]
    fn bodies_and_their_limits() {
        let latest = Latest::default();
        let mut head = None;
        assert!(
            advance_reading(b"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", 0, &mut head, &latest).is_none()
        );
        assert_eq!(head, Some((44, 3)));
        let done = advance_reading(b"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 44, &mut head, &latest);
        let Some(State::Writing { header, .. }) = done else { panic!("answered once the body is in") };
        assert!(header.starts_with(b"HTTP/1.1 503 "), "{}", String::from_utf8_lossy(&header));
        for (request, status) in [
            (&b"GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"[..], "413 "),
            (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400 "),
            (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "501 "),
        ] {
            let Some(State::Writing { header, .. }) = advance_reading(request, 0, &mut None, &latest) else { panic!() };
            assert!(header.starts_with(format!("HTTP/1.1 {status}").as_bytes()));
        }
        let long = vec![b'a'; MAX_REQUEST_BYTES + 1];
        let Some(State::Writing { header, .. }) = advance_reading(&long, 0, &mut None, &latest) else { panic!() };
        assert!(header.starts_with(b"HTTP/1.1 431 "));
    }
}
