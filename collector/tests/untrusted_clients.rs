//! The collector's HTTP server against hostile clients, with real TCP clients against the real
//! binary: clients that drip their request a byte at a time hold no worker (every `/healthz` is
//! answered while 50 of them are open, and they are dropped at the deadline), a request head
//! without end is cut at the cap, and the OTLP push sends the headers its config names (the
//! token `sysmonvm validate`'s receiver asks for).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sysmon_collector::server::{MAX_REQUEST_BYTES, REQUEST_DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_sysmon-collector");

struct Serve(Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sysmon-collector serve` on a free port of 127.0.0.1, sampling this machine.
fn serve(extra: &[&str]) -> Serve {
    let mut child = Command::new(BIN)
        .args(extra)
        .args(["serve", "--listen", "127.0.0.1:0", "--interval", "200ms"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("collector announces its address");
    Serve(child, addr)
}

/// One `GET /healthz`: its status line, with a read deadline far beyond anything expected.
fn healthz(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.lines().next().unwrap_or("(no answer)").to_string()
}

/// Whether the server has ended this connection (EOF, a reset, or a 408 waiting to be read).
fn ended_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 256];
    let ended = match (&mut &*s).read(&mut b) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    ended
}

#[test]
fn fifty_dripping_clients_hold_no_worker_and_end_at_the_deadline() {
    let server = serve(&[]);
    assert_eq!(healthz(&server.1), "HTTP/1.1 200 OK");

    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&server.1).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // Each drips a byte a second and never ends its head, as the reproduction's clients did.
    let mut dripped = Instant::now();
    let mut answers = Vec::new();
    while opened.elapsed() < REQUEST_DEADLINE / 2 {
        if dripped.elapsed() >= Duration::from_secs(1) {
            for s in &mut slow {
                let _ = s.write_all(b"X");
            }
            dripped = Instant::now();
        }
        let asked = Instant::now();
        let status = healthz(&server.1);
        answers.push((status, asked.elapsed(), opened.elapsed()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let worst = answers.iter().map(|a| a.1).max().unwrap();
    eprintln!("{} /healthz answered while 50 clients dripped; slowest {worst:?}", answers.len());
    assert!(answers.len() >= 3, "{answers:?}");
    for (status, took, at) in &answers {
        assert_eq!(status, "HTTP/1.1 200 OK", "{answers:?}");
        // Answered before the slow clients' deadline ran out: they did not hold the server.
        assert!(*at < REQUEST_DEADLINE, "answered {took:?} after asking, {at:?} after the slow clients came");
    }
    let still_open = slow.iter().filter(|s| !ended_by_server(s)).count();
    assert_eq!(still_open, 50, "the answers came while every slow client was still connected");

    // The deadline is from accept: dripping does not extend it.
    let bound = REQUEST_DEADLINE + Duration::from_secs(10);
    while slow.iter().any(|s| !ended_by_server(s)) {
        assert!(opened.elapsed() < bound, "slow clients still connected {:?} after they came", opened.elapsed());
        for s in &mut slow {
            let _ = s.write_all(b"X");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("all 50 slow clients dropped {:?} after they came (deadline {REQUEST_DEADLINE:?})", opened.elapsed());
    assert_eq!(healthz(&server.1), "HTTP/1.1 200 OK");
}

#[test]
fn an_endless_head_is_cut_at_the_cap() {
    let server = serve(&[]);
    let mut s = TcpStream::connect(&server.1).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Long: ").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    // Socket buffers take a few MB at most; the server stops reading at its cap and closes.
    while sent < 1 << 30 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    eprintln!("the server stopped taking the head after {sent} bytes, {:?}", started.elapsed());
    assert!(sent < 64 << 20, "sent {sent} bytes of head without being cut off (cap {MAX_REQUEST_BYTES})");
    assert_eq!(healthz(&server.1), "HTTP/1.1 200 OK");
}

#[test]
fn otlp_headers_from_the_config_go_with_every_push() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sysmon-vm.json");
    let config = serde_json::json!({
        "otlp": { "endpoint": endpoint, "push_interval": "200ms", "headers": { "Authorization": "Bearer 0badc0ffee" } }
    });
    std::fs::write(&cfg, config.to_string()).unwrap();
    let _server = serve(&["--config", cfg.to_str().unwrap()]);
    listener.set_nonblocking(false).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(stream) = stream else { continue };
            let mut r = BufReader::new(stream);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(head);
        }
    });
    for _ in 0..2 {
        let head = rx.recv_timeout(Duration::from_secs(30)).expect("an OTLP push");
        assert!(head.iter().any(|h| h.eq_ignore_ascii_case("authorization: Bearer 0badc0ffee")), "{head:?}");
    }

    // A header value that would inject another header is refused with the key it came from.
    std::fs::write(&cfg, r#"{"otlp": {"endpoint": "http://127.0.0.1:9", "headers": {"X-A": "1\r\nX-B: 2"}}}"#).unwrap();
    let out = Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("otlp.headers") && err.contains("line break"), "{err}");
}
