//! A small real HTTP/1.1 server for download tests, over plain TCP or TLS. Each path has a body
//! and a behaviour (the failure modes downloads meet, and what a hostile mirror does: endless
//! bodies, dripping bytes, silence, redirects); every request is logged with its Range header,
//! and the body bytes written for each path are counted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Send this many body bytes, then close, for the next `times` requests.
    CutAfter {
        bytes: usize,
        times: usize,
    },
    /// Answer every request with the whole body and 200, whatever the Range says.
    IgnoreRange,
    NotFound,
    /// Serve the body with every byte at `offset` flipped.
    Tamper {
        offset: usize,
    },
    /// 200 with the given `Content-Length` (or none: the body ends when the connection does),
    /// then body bytes for as long as the client reads them.
    Endless {
        content_length: Option<u64>,
    },
    /// 200 with the body's real `Content-Length`, then one body byte every `every`.
    Drip {
        every: Duration,
    },
    /// Reads the request and never answers (the connection stays open for a minute).
    Silent,
    /// `302 Found` to `location` (any URL, another server's too).
    Redirect {
        location: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, Behaviour)>,
    log: Vec<Logged>,
    sent: HashMap<String, u64>,
}

#[derive(Clone)]
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

/// A connection the handler can read, write and cut, plain or TLS.
trait Conn: Read + Write + Send {
    /// Ends the connection mid-body.
    fn cut(&mut self);
    /// Ends the connection after a whole response.
    fn finish(&mut self) {}
}

impl Conn for TcpStream {
    fn cut(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn cut(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
    fn finish(&mut self) {
        // A TLS peer expects close_notify before the connection ends.
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
    }
}

impl Server {
    pub fn start() -> Server {
        Self::serve(None)
    }

    /// An https server on 127.0.0.1 with this certificate chain and key (PEM): the client must
    /// trust the chain's CA (the CLI reads `SSL_CERT_FILE`).
    pub fn start_tls(chain_pem: &[u8], key_pem: &[u8]) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem).collect::<Result<_, _>>().expect("a PEM certificate chain");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("a PEM private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a usable certificate and key");
        Self::serve(Some(Arc::new(config)))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let st = st.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => handle(stream, st),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                        handle(rustls::StreamOwned::new(conn, stream), st)
                    }
                });
            }
        });
        Server { base, state }
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>, behaviour: Behaviour) {
        self.state.lock().unwrap().files.insert(path.to_string(), (body.into(), behaviour));
    }

    pub fn set(&self, path: &str, behaviour: Behaviour) {
        if let Some(f) = self.state.lock().unwrap().files.get_mut(path) {
            f.1 = behaviour;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.path == path).collect()
    }

    /// Body bytes written for `path` so far, over every request.
    pub fn bytes_sent(&self, path: &str) -> u64 {
        self.state.lock().unwrap().sent.get(path).copied().unwrap_or(0)
    }
}

fn count(state: &Mutex<State>, path: &str, n: usize) {
    *state.lock().unwrap().sent.entry(path.to_string()).or_default() += n as u64;
}

fn handle(stream: impl Conn, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    // A GET has no body: nothing buffered is lost.
    let mut out = reader.into_inner();
    let (entry, cut) = {
        let mut s = state.lock().unwrap();
        let e = s.files.get(&path).cloned();
        let mut cut = None;
        if let Some((_, Behaviour::CutAfter { bytes, times })) = s.files.get_mut(&path)
            && *times > 0
        {
            *times -= 1;
            cut = Some(*bytes);
        }
        (e, cut)
    };
    let log = |status| state.lock().unwrap().log.push(Logged { path: path.clone(), range: range.clone(), status });
    match &entry {
        Some((_, Behaviour::Silent)) => {
            log(0);
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        Some((_, Behaviour::Redirect { location })) => {
            log(302);
            let _ = out.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let _ = out.flush();
            out.finish();
            return;
        }
        Some((_, Behaviour::Endless { content_length })) => {
            log(200);
            let length = content_length.map(|n| format!("Content-Length: {n}\r\n")).unwrap_or_default();
            if out.write_all(format!("HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n").as_bytes()).is_err() {
                return;
            }
            let chunk = vec![0x5a_u8; 64 << 10];
            while out.write_all(&chunk).is_ok() {
                count(&state, &path, chunk.len());
            }
            return;
        }
        Some((body, Behaviour::Drip { every })) => {
            log(200);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            if out.write_all(head.as_bytes()).and_then(|_| out.flush()).is_err() {
                return;
            }
            for b in body {
                std::thread::sleep(*every);
                if out.write_all(&[*b]).and_then(|_| out.flush()).is_err() {
                    return;
                }
                count(&state, &path, 1);
            }
            return;
        }
        _ => {}
    }
    let (status, head, body): (u16, String, Vec<u8>) = match entry {
        None | Some((_, Behaviour::NotFound)) => {
            (404, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".into(), vec![])
        }
        Some((mut body, behaviour)) => {
            if let Behaviour::Tamper { offset } = behaviour
                && offset < body.len()
            {
                body[offset] ^= 0xff;
            }
            let total = body.len();
            let start = range
                .as_deref()
                .filter(|_| behaviour != Behaviour::IgnoreRange)
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            match start {
                Some(s) if s >= total => (
                    416,
                    format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\n"
                    ),
                    vec![],
                ),
                Some(s) => (
                    206,
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{total}\r\nContent-Length: {}\r\n",
                        total - 1,
                        total - s
                    ),
                    body[s..].to_vec(),
                ),
                None => (200, format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\n"), body),
            }
        }
    };
    log(status);
    let _ = out.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    match cut {
        Some(n) if n < body.len() => {
            let _ = out.write_all(&body[..n]);
            count(&state, &path, n);
            let _ = out.flush();
            out.cut();
        }
        _ => {
            if out.write_all(&body).is_ok() {
                count(&state, &path, body.len());
            }
            let _ = out.flush();
            out.finish();
        }
    }
}
