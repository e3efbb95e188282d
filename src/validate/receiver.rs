//! A minimal OTLP/HTTP receiver on the host's 127.0.0.1 for `validate`'s latency check: accepts
//! `POST /v1/metrics` (protobuf), answers 200 with an empty response, and records when each
//! request arrived and the newest reading time it carries (decoded with the collector's own
//! OTLP module). The guest reaches it through QEMU's user-network gateway (10.0.2.2).

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// (arrival, Unix seconds on the host; newest reading time in the request, Unix seconds as the
/// guest wrote it; metric names).
pub type Arrival = (f64, f64, Vec<String>);

pub struct Receiver {
    pub port: u16,
    pub arrivals: Arc<Mutex<Vec<Arrival>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Unix seconds now, on this machine's clock.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Binds 127.0.0.1 (never a public address) on a free port and serves in the background.
pub async fn start() -> std::io::Result<Receiver> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let store = arrivals.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let _ = serve(stream, store).await;
            });
        }
    });
    Ok(Receiver { port, arrivals, task })
}

const MAX_BODY: usize = 16 << 20;

async fn serve(stream: tokio::net::TcpStream, store: Arc<Mutex<Vec<Arrival>>>) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        if length > MAX_BODY {
            r.get_mut()
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).await?;
        let arrived = unix_now();
        let ok = request_line.starts_with("POST ") && request_line.contains("/v1/metrics");
        let status = match sysmon_collector::export::otlp::summarize(&body) {
            Ok((newest, names)) if ok => {
                if let Some(t) = newest {
                    store.lock().unwrap_or_else(|e| e.into_inner()).push((arrived, t as f64 / 1e9, names));
                }
                "200 OK"
            }
            Ok(_) => "404 Not Found",
            Err(_) => "400 Bad Request",
        };
        let reply = format!("HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
        r.get_mut().write_all(reply.as_bytes()).await?;
    }
}
