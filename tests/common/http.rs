//! A small real HTTP/1.1 server for download tests. Each path has a body and a behaviour; every
//! request is logged with its Range header.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

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
}

#[derive(Clone)]
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || handle(stream, st));
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
}

fn handle(stream: std::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
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
    let mut out = stream;
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
    state.lock().unwrap().log.push(Logged { path: path.clone(), range, status });
    let _ = out.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    match cut {
        Some(n) if n < body.len() => {
            let _ = out.write_all(&body[..n]);
            let _ = out.flush();
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
        _ => {
            let _ = out.write_all(&body);
        }
    }
}
