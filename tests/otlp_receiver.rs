//! validate's OTLP receiver against hostile peers, over real TCP on 127.0.0.1: a delivery counts
//! only with the run's token (the collector's real push loop, configured with it, is counted;
//! the same request without it is refused 401 and not counted); an endless header line is cut
//! at the head cap; a silent or dripping peer is dropped at the deadline; connections beyond the
//! limit are refused at once; bodies over the cap are refused before they are read.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysmon_collector::export::otlp::{self, ResourceIdentity};
use sysmon_collector::server::{Latest, Published};
use sysmonvm::validate::receiver::{self, Limits, Receiver};

fn identity() -> ResourceIdentity {
    ResourceIdentity {
        service_name: "sysmon-collector".into(),
        host_id: None,
        vm_id: Some("lab".into()),
        host_name: None,
    }
}

/// A real sample of this machine, as the collector's push loop would send it.
fn real_body() -> Vec<u8> {
    let mut sampler = sysmon_collector::Sampler::new(sysmon_collector::Roots::default(), Default::default());
    let snap = sampler.sample();
    let families = sysmon_collector::metrics::families(&snap);
    otlp::encode(&otlp::request(&families, &identity(), snap.timestamp_unix_nano, snap.timestamp_unix_nano))
}

/// Sends one request and reads the answer's status line ("" when the connection ended without one).
fn post(port: u16, extra_headers: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/metrics HTTP/1.1\r\nHost: 10.0.2.2\r\nContent-Type: application/x-protobuf\r\n{extra_headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    status_line(&mut s)
}

fn status_line(s: &mut TcpStream) -> String {
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp).lines().next().unwrap_or("").to_string()
}

async fn start(limits: Limits) -> Receiver {
    receiver::start_with(limits).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_deliveries_with_the_run_token_count() {
    let recv = receiver::start().await.unwrap();
    let port = recv.port;
    let body = real_body();

    // A local process that is not this run's collector: no token, a wrong one, another scheme.
    let (b, token) = (body.clone(), recv.token().to_string());
    let refused = tokio::task::spawn_blocking(move || {
        let wrong = format!("Authorization: Bearer {}\r\n", "0".repeat(64));
        let basic = format!("Authorization: Basic {token}\r\n");
        [post(port, "", &b), post(port, &wrong, &b), post(port, &basic, &b)]
    })
    .await
    .unwrap();
    assert!(refused.iter().all(|s| s == "HTTP/1.1 401 Unauthorized"), "{refused:?}");
    assert!(recv.arrivals().is_empty());
    assert_eq!(recv.counts().unauthorized, 3);

    // The collector's own push loop, configured with the token as validate configures it.
    let latest = Arc::new(Latest::default());
    let mut sampler = sysmon_collector::Sampler::new(sysmon_collector::Roots::default(), Default::default());
    latest.set(Published::new(sampler.sample()));
    let settings = sysmon_collector::push::PushSettings {
        url: format!("http://127.0.0.1:{port}/v1/metrics"),
        interval: Duration::from_millis(200),
        identity: identity(),
        queue_batches: 4,
        headers: vec![("Authorization".into(), recv.authorization())],
    };
    {
        let latest = latest.clone();
        std::thread::spawn(move || sysmon_collector::push::run(settings, latest, 0));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while recv.arrivals().len() < 2 {
        assert!(Instant::now() < until, "no delivery from the push loop: {:?}", recv.counts());
        latest.set(Published::new(sampler.sample()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let a = recv.arrivals()[0];
    assert!(a.metrics > 5, "{a:?}");
    assert!((a.arrived_unix - a.newest_reading_unix).abs() < 600.0, "{a:?}");
    assert_eq!(recv.counts().unauthorized, 3, "the push loop's deliveries were all accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_header_line_is_cut_at_the_head_cap() {
    let recv = receiver::start().await.unwrap();
    let port = recv.port;
    let started = Instant::now();
    let sent = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(b"POST /v1/metrics HTTP/1.1\r\nX-Long: ").unwrap();
        // The reproduction sent 4.2 GB in one header line; the receiver must stop far earlier.
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 4200 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    })
    .await
    .unwrap();
    let counts = recv.counts();
    eprintln!("cut after the peer sent {sent} bytes in {:?}; {counts:?}", started.elapsed());
    assert!(sent < 64 << 20, "the receiver took {sent} bytes of one header line");
    let cap = Limits::default().max_head_bytes;
    assert!(
        counts.largest_head_buffered <= cap + 4096,
        "buffered {} for a head (cap {cap})",
        counts.largest_head_buffered
    );
    assert_eq!(counts.too_large, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_dripping_peers_end_at_the_deadline() {
    let deadline = Duration::from_secs(2);
    let recv = start(Limits { deadline, ..Limits::default() }).await;
    let port = recv.port;
    let started = Instant::now();
    let (silent, dripping) = tokio::task::spawn_blocking(move || {
        let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut dripping = TcpStream::connect(("127.0.0.1", port)).unwrap();
        dripping.set_nonblocking(true).unwrap();
        let _ = dripping.write_all(b"POST /v1/metrics HTTP/1.1\r\n");
        let bound = deadline + Duration::from_secs(10);
        // A byte every 200 ms: a deadline per read would never fire.
        let mut reply = Vec::new();
        loop {
            let mut b = [0u8; 512];
            match dripping.read(&mut b) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            assert!(started.elapsed() < bound, "a dripping peer was still connected after {:?}", started.elapsed());
            let _ = dripping.write(b"X");
            std::thread::sleep(Duration::from_millis(200));
        }
        silent.set_read_timeout(Some(bound)).unwrap();
        (status_line(&mut silent), String::from_utf8_lossy(&reply).lines().next().unwrap_or("").to_string())
    })
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!("silent: {silent:?}, dripping: {dripping:?}, after {took:?}");
    assert!(took < deadline + Duration::from_secs(10), "{took:?}");
    assert_eq!(silent, "HTTP/1.1 408 Request Timeout");
    // Its answer may be lost to the reset a close with its last drip unread sends; the end is not.
    assert!(dripping.is_empty() || dripping == "HTTP/1.1 408 Request Timeout", "{dripping:?}");
    assert_eq!(recv.counts().timed_out, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_at_once() {
    let deadline = Duration::from_secs(3);
    let recv = start(Limits { max_connections: 4, deadline, ..Limits::default() }).await;
    let (port, auth, body) = (recv.port, format!("Authorization: {}\r\n", recv.authorization()), real_body());
    let (extra, late) = tokio::task::spawn_blocking(move || {
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300)); // accepted, each holding a slot
        let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
        extra.set_read_timeout(Some(deadline + Duration::from_secs(10))).unwrap();
        let extra = status_line(&mut extra);
        drop(idle); // their slots come back as their tasks see the end
        std::thread::sleep(Duration::from_millis(300));
        (extra, post(port, &auth, &body))
    })
    .await
    .unwrap();
    assert_eq!(extra, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(late, "HTTP/1.1 200 OK");
    assert!(recv.counts().too_many_connections >= 1, "{:?}", recv.counts());
    assert_eq!(recv.arrivals().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_cap_and_garbage_are_refused() {
    let recv = start(Limits { max_body_bytes: 1024, ..Limits::default() }).await;
    let (port, auth) = (recv.port, format!("Authorization: {}\r\n", recv.authorization()));
    let statuses = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // Declares 4 GB and sends none of it: refused from the head alone.
        write!(s, "POST /v1/metrics HTTP/1.1\r\n{auth}Content-Length: 4200000000\r\n\r\n").unwrap();
        let huge = status_line(&mut s);
        let garbage = post(port, &auth, &[0xff; 64]);
        let chunked = {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(s, "POST /v1/metrics HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n").unwrap();
            status_line(&mut s)
        };
        let wrong_path = {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(s, "POST /v1/traces HTTP/1.1\r\n{auth}Content-Length: 0\r\n\r\n").unwrap();
            status_line(&mut s)
        };
        [huge, garbage, chunked, wrong_path]
    })
    .await
    .unwrap();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 413 Payload Too Large",
            "HTTP/1.1 400 Bad Request",
            "HTTP/1.1 400 Bad Request",
            "HTTP/1.1 404 Not Found"
        ]
    );
    assert!(recv.arrivals().is_empty());
    assert_eq!(recv.counts().too_large, 1);
}
