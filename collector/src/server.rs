//! The HTTP endpoint of `serve`: `GET /metrics`, `GET /v1/snapshot`, `GET /healthz`. Scrapes are
//! answered from the latest background sample and never wait for a new one. Plain std threads
//! keep the resident size small; a bounded backlog keeps a flood of clients from costing memory.

use crate::export::prometheus;
use crate::metrics;
use crate::snapshot::Snapshot;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const WORKERS: usize = 2;
const BACKLOG: usize = 16;
const MAX_REQUEST_BYTES: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

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

fn handle(mut stream: TcpStream, latest: &Latest) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST_BYTES {
            stream.write_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )?;
            return Ok(());
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut first = head.lines().next().unwrap_or("").split_ascii_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let r = respond(latest, method, path);
    let body: &str = match &r.body {
        Body::Owned(s) => s,
        Body::Shared(p, f) => f(p),
    };
    let header = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// Accepts connections until the listener fails. A few long-lived worker threads answer them
/// (no thread is created per scrape); when all are busy and the backlog is full, a client gets 503
/// at once instead of costing memory.
pub fn run(listener: TcpListener, latest: Arc<Latest>) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<TcpStream>(BACKLOG);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..WORKERS {
        let (rx, latest) = (rx.clone(), latest.clone());
        std::thread::Builder::new().name(format!("http-{i}")).stack_size(128 * 1024).spawn(move || {
            loop {
                let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match next {
                    Ok(stream) => {
                        let _ = handle(stream, &latest);
                    }
                    Err(_) => return,
                }
            }
        })?;
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Err(std::sync::mpsc::TrySendError::Full(mut stream)) = tx.try_send(stream) {
            let _ =
                stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        }
    }
    Ok(())
}
