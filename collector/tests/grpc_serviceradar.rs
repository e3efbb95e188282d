//! The collector as ServiceRadar's sysmon-vm checker, against real peers: a Python grpcio client
//! (PyPI's grpcio + grpcio-tools, compiling our own proto/monitoring.proto) calls GetStatus over
//! plaintext and, built with feature `mtls`, over mTLS with certificates made here by the openssl
//! CLI (and is refused without a client certificate, or with one from another CA); the JSON it
//! gets is decoded with the schema of ServiceRadar's Go structs read from
//! tests/fixtures/serviceradar/structs.json. Hostile clients on raw sockets (a malformed frame,
//! a wrong method, an oversize message, a client that never sends, a stalled TLS handshake) get
//! the right gRPC status or are dropped, while the HTTP endpoint keeps answering.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sysmon_collector::grpc::HANDSHAKE_DEADLINE;
use sysmon_collector::grpc::hpack::{self, Decoder};

const BIN: &str = env!("CARGO_BIN_EXE_sysmon-collector");

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Serve {
    child: Child,
    grpc: String,
    http: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sysmon-collector --config CFG serve` with both endpoints on free ports of 127.0.0.1.
fn serve(config: &serde_json::Value) -> Serve {
    let dir = tempfile::tempdir().unwrap().keep();
    let cfg = dir.join("sysmon-vm.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("collector: {line}");
            let _ = tx.send(line);
        }
    });
    let (mut grpc, mut http) = (None, None);
    while grpc.is_none() || http.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("collector announces both endpoints");
        let addr =
            |scheme: &str| line.split(scheme).nth(1).map(|r| r.split_whitespace().next().unwrap_or("").to_string());
        grpc = grpc.or(addr("serving grpc://"));
        http = http.or(addr("serving http://"));
    }
    Serve { child, grpc: grpc.unwrap(), http: http.unwrap() }
}

fn plaintext_config() -> serde_json::Value {
    serde_json::json!({"listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0", "sample_interval": "200ms"})
}

fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.lines().next().unwrap_or("(no answer)").to_string(), body.to_string())
}

/// A Python with grpcio and grpcio-tools: $SYSMONVM_GRPC_PYTHON, the venv `cargo xtask deps
/// --install` makes (target/grpc-venv), or python3 itself. None (SKIPPED, a failure under CI).
fn grpc_python() -> Option<PathBuf> {
    let venv = manifest().join("../target/grpc-venv/bin/python");
    let candidates: Vec<PathBuf> = std::env::var_os("SYSMONVM_GRPC_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv, PathBuf::from("python3")])
        .collect();
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import grpc, grpc_tools.protoc"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(py);
        }
    }
    common::skip(
        "Python grpcio and grpcio-tools (PyPI) are not installed: `cargo xtask deps --install` puts them in \
         target/grpc-venv (or set SYSMONVM_GRPC_PYTHON to a python that has them)",
    );
    None
}

/// Runs tests/grpc_client.py against `addr`; its one JSON line.
fn client(py: &Path, addr: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(py)
        .arg(manifest().join("tests/grpc_client.py"))
        .args(["--proto-dir", manifest().join("proto").to_str().unwrap()])
        .args(["--fixture", manifest().join("tests/fixtures/serviceradar/structs.json").to_str().unwrap()])
        .args(["--addr", addr])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "grpc_client.py failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The payload matches the fixture's schema and /v1/snapshot: one CPU per snapshot CPU, with
/// the same frequency (absent exactly when the snapshot has none) and source.
fn check_status(got: &serde_json::Value, http: &str) {
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["available"], true, "{got}");
    assert_eq!(got["service_name"], "sysmon-vm");
    assert_eq!(got["service_type"], "grpc");
    assert_eq!(got["agent_id"], "agent-test");
    assert_eq!(got["schema_errors"], serde_json::json!([]), "{got}");
    let (status, body) = http_get(http, "/v1/snapshot");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let snap: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cpus = got["message"]["status"]["cpus"].as_array().unwrap();
    let snap_cpus = snap["cpus"].as_array().unwrap();
    assert_eq!(cpus.len(), snap_cpus.len(), "{got}");
    for (c, s) in cpus.iter().zip(snap_cpus) {
        assert_eq!(c["core_id"], s["logical_number"]);
        assert_eq!(c["frequency_source"], s["frequency_source"], "{c} vs {s}");
        assert_eq!(c["agent_id"], "agent-test");
        // A CPU without a frequency omits frequency_hz; with one, the value is a frequency the
        // same source gave (the two documents may be from different samples).
        assert_eq!(c.get("frequency_hz").is_some(), !s["frequency_hz"].is_null(), "{c} vs {s}");
    }
    assert_eq!(got["others"]["GetResults"], "UNIMPLEMENTED");
    assert_eq!(got["others"]["StreamResults"], "UNIMPLEMENTED");
    assert_eq!(got["others"]["NoSuchMethod"], "UNIMPLEMENTED");
}

#[test]
fn a_grpcio_client_gets_serviceradars_payload_over_plaintext() {
    let Some(py) = grpc_python() else { return };
    let server = serve(&plaintext_config());
    let got = client(&py, &server.grpc, &[]);
    check_status(&got, &server.http);
    let memory = &got["message"]["status"]["memory"];
    assert!(memory["total_bytes"].as_u64().unwrap() > 0, "{memory}");
}

// ---- raw HTTP/2 on a socket: hostile and broken clients ----

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn hello() -> Vec<u8> {
    let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut b, 4, 0, 0, &[]);
    b
}

fn call_headers(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    hpack::encode_literal(&mut block, ":path", path);
    hpack::encode_literal(&mut block, ":authority", "x");
    hpack::encode_literal(&mut block, "content-type", "application/grpc");
    hpack::encode_literal(&mut block, "te", "trailers");
    let mut out = Vec::new();
    frame(&mut out, 1, 0x4, 1, &block);
    out
}

/// Everything the server sends until it closes or sends a stream's END_STREAM headers; frames
/// as (type, flags, stream, payload). The read deadline is far beyond anything expected.
/// (type, flags, stream, payload)
type Frame = (u8, u8, u32, Vec<u8>);

fn read_frames(s: &mut TcpStream, until_end_of: Option<u32>) -> (Vec<Frame>, bool) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let f = (buf[3], buf[4], u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]), buf[9..9 + len].to_vec());
            buf.drain(..9 + len);
            let end = f.0 == 1 && f.1 & 1 != 0 && Some(f.2) == until_end_of;
            frames.push(f);
            if end {
                return (frames, false);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return (frames, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (frames, true),
            Err(e) => panic!("no answer within 60 s: {e}"),
        }
    }
}

fn grpc_status(frames: &[Frame], stream: u32) -> Option<(String, String)> {
    let mut d = Decoder::new(4096, 1 << 20);
    for (kind, flags, id, payload) in frames {
        if *kind != 1 {
            continue;
        }
        let fields = d.decode(payload).unwrap();
        if *id == stream && flags & 1 != 0 {
            let get = |n: &[u8]| {
                fields
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            return Some((get(b"grpc-status"), get(b"grpc-message")));
        }
    }
    None
}

#[test]
fn wrong_methods_and_oversize_messages_get_their_grpc_status() {
    let server = serve(&plaintext_config());
    for (path, status) in [
        ("/monitoring.AgentService/GetResults", "12"),
        ("/monitoring.AgentService/Nope", "12"),
        ("/other.Service/GetStatus", "12"),
    ] {
        let mut s = TcpStream::connect(&server.grpc).unwrap();
        let mut req = hello();
        req.extend(call_headers(path));
        let mut data = vec![0, 0, 0, 0, 0];
        frame(&mut req, 0, 1, 1, &std::mem::take(&mut data));
        s.write_all(&req).unwrap();
        let (frames, _) = read_frames(&mut s, Some(1));
        let got = grpc_status(&frames, 1);
        assert_eq!(got.as_ref().map(|g| g.0.as_str()), Some(status), "{path}: {got:?}");
    }
    // A message announcing 1 GiB: RESOURCE_EXHAUSTED at once, without reading it.
    let mut s = TcpStream::connect(&server.grpc).unwrap();
    let mut req = hello();
    req.extend(call_headers("/monitoring.AgentService/GetStatus"));
    let mut prefix = vec![0];
    prefix.extend_from_slice(&(1u32 << 30).to_be_bytes());
    prefix.extend_from_slice(&[0u8; 1000]);
    frame(&mut req, 0, 0, 1, &prefix);
    s.write_all(&req).unwrap();
    let (frames, _) = read_frames(&mut s, Some(1));
    let got = grpc_status(&frames, 1).expect("a status");
    assert_eq!(got.0, "8", "{got:?}");
    assert!(got.1.contains("larger than max"), "{got:?}");
    // A request that is not a StatusRequest: INTERNAL, as grpc-go says for what it cannot unmarshal.
    let mut s = TcpStream::connect(&server.grpc).unwrap();
    let mut req = hello();
    req.extend(call_headers("/monitoring.AgentService/GetStatus"));
    frame(&mut req, 0, 1, 1, &[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    s.write_all(&req).unwrap();
    let (frames, _) = read_frames(&mut s, Some(1));
    assert_eq!(grpc_status(&frames, 1).map(|g| g.0), Some("13".into()));
    assert_eq!(http_get(&server.http, "/healthz").0, "HTTP/1.1 200 OK");
}

#[test]
fn malformed_frames_end_the_connection_with_goaway_and_http_keeps_answering() {
    let server = serve(&plaintext_config());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("a PING of 7 bytes", {
            let mut b = hello();
            frame(&mut b, 6, 0, 0, &[0; 7]);
            b
        }),
        ("a frame announcing 16 MiB", {
            let mut b = hello();
            b.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
            b
        }),
        ("a header block with an index in neither table", {
            let mut b = hello();
            frame(&mut b, 1, 0x5, 1, &[0xff, 0x7f]);
            b
        }),
        ("DATA on stream 0", {
            let mut b = hello();
            frame(&mut b, 0, 0, 0, b"x");
            b
        }),
    ];
    for (what, bytes) in bad {
        let mut s = TcpStream::connect(&server.grpc).unwrap();
        s.write_all(&bytes).unwrap();
        let (frames, closed) = read_frames(&mut s, None);
        assert!(closed, "{what}: connection still open");
        assert!(frames.iter().any(|f| f.0 == 7), "{what}: no GOAWAY in {frames:?}");
    }
    // Not HTTP/2 at all.
    let mut s = TcpStream::connect(&server.grpc).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, closed) = read_frames(&mut s, None);
    assert!(closed);
    assert_eq!(http_get(&server.http, "/healthz").0, "HTTP/1.1 200 OK");
}

#[test]
fn clients_that_never_send_are_dropped_and_hold_nothing() {
    let server = serve(&plaintext_config());
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&server.grpc).unwrap()).collect();
    // A half preface too.
    idle[0].write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    // Meanwhile the HTTP endpoint answers, and so does a real call on the gRPC one.
    assert_eq!(http_get(&server.http, "/healthz").0, "HTTP/1.1 200 OK");
    let mut s = TcpStream::connect(&server.grpc).unwrap();
    let mut req = hello();
    req.extend(call_headers("/monitoring.AgentService/GetStatus"));
    frame(&mut req, 0, 1, 1, &[0, 0, 0, 0, 0]);
    s.write_all(&req).unwrap();
    let (frames, _) = read_frames(&mut s, Some(1));
    assert_eq!(grpc_status(&frames, 1).map(|g| g.0), Some("0".into()));
    assert!(frames.iter().any(|f| f.0 == 0 && f.3.len() > 5), "a message came");
    // Every idle client is closed by the server (a read that ends, never our 60 s timeout).
    for c in &mut idle {
        let (_, closed) = read_frames(c, None);
        assert!(closed);
    }
    eprintln!("20 silent clients dropped {:?} after connecting (deadline {HANDSHAKE_DEADLINE:?})", opened.elapsed());
    assert_eq!(http_get(&server.http, "/healthz").0, "HTTP/1.1 200 OK");
}

#[cfg(not(feature = "mtls"))]
#[test]
fn mtls_without_the_feature_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sysmon-vm.json");
    let config = serde_json::json!({"listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0",
        "security": {"mode": "mtls", "cert_dir": "/nonexistent", "tls": {"cert_file": "a.pem", "key_file": "a-key.pem", "ca_file": "root.pem"}}});
    std::fs::write(&cfg, config.to_string()).unwrap();
    let out = Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`mtls` feature") && err.contains("--features mtls"), "{err}");
}

#[cfg(feature = "mtls")]
mod mtls {
    use super::*;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A CA and, signed by it, the server's certificate (for `sysmon-vm` and 127.0.0.1) and a
    /// client's; plus a client certificate from another CA.
    fn certs(dir: &Path) -> bool {
        if !common::have("openssl") {
            return false;
        }
        for ca in ["root", "other"] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}-key.pem"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={ca} CA"),
                ],
            );
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:sysmon-vm,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ca, ext) in
            [("checkers", "root", "server.ext"), ("agent", "root", "client.ext"), ("stranger", "other", "client.ext")]
        {
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{name}-key.pem"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    &format!("{ca}.pem"),
                    "-CAkey",
                    &format!("{ca}-key.pem"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        true
    }

    fn mtls_config(dir: &Path) -> serde_json::Value {
        serde_json::json!({"listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0", "sample_interval": "200ms",
            "security": {"mode": "mtls", "role": "checker", "cert_dir": dir, "server_name": "sysmon-vm",
                "tls": {"cert_file": "checkers.pem", "key_file": "checkers-key.pem", "ca_file": "root.pem", "client_ca_file": "root.pem"}}})
    }

    #[test]
    fn a_grpcio_client_gets_the_payload_over_mtls_and_one_without_a_good_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        if !certs(dir.path()) {
            return;
        }
        let Some(py) = grpc_python() else { return };
        let server = serve(&mtls_config(dir.path()));
        let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
        let (ca, cert, key) = (p("root.pem"), p("agent.pem"), p("agent-key.pem"));
        let got = client(&py, &server.grpc, &["--ca", &ca, "--cert", &cert, "--key", &key]);
        check_status(&got, &server.http);

        let refused = client(&py, &server.grpc, &["--ca", &ca]);
        assert_eq!(refused["ok"], false, "no client certificate: {refused}");
        assert_eq!(refused["code"], "UNAVAILABLE", "{refused}");
        let (cert, key) = (p("stranger.pem"), p("stranger-key.pem"));
        let refused = client(&py, &server.grpc, &["--ca", &ca, "--cert", &cert, "--key", &key]);
        assert_eq!(refused["ok"], false, "a certificate from another CA: {refused}");
        assert_eq!(http_get(&server.http, "/healthz").0, "HTTP/1.1 200 OK");
    }

    #[test]
    fn a_stalled_tls_handshake_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        if !certs(dir.path()) {
            return;
        }
        let server = serve(&mtls_config(dir.path()));
        let mut silent = TcpStream::connect(&server.grpc).unwrap();
        // The first bytes of a ClientHello record, then nothing.
        let mut stalled = TcpStream::connect(&server.grpc).unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
        assert_eq!(http_get(&server.http, "/healthz").0, "HTTP/1.1 200 OK");
        for s in [&mut silent, &mut stalled] {
            let (_, closed) = read_frames(s, None);
            assert!(closed);
        }
    }

    #[test]
    fn missing_or_bad_certificate_files_fail_the_start_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        if !certs(dir.path()) {
            return;
        }
        std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
        for (key, file, says) in [
            ("cert_file", "missing.pem", "cannot read the certificate"),
            ("client_ca_file", "garbage.pem", "no PEM client CA"),
        ] {
            let mut cfg = mtls_config(dir.path());
            cfg["security"]["tls"][key] = file.into();
            let path = dir.path().join("bad.json");
            std::fs::write(&path, cfg.to_string()).unwrap();
            let out = Command::new(BIN).args(["--config", path.to_str().unwrap(), "serve"]).output().unwrap();
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&dir.path().join(file).display().to_string()) && err.contains(says), "{err}");
        }
    }
}
