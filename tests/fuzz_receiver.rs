//! Mutation fuzzing of validate's OTLP receiver (fixed seeds, iteration counts printed;
//! `FUZZ_ITERATIONS` raises them): its head parser and blank-line search on mutated real
//! requests, then mutated requests sent to the real receiver over TCP, which must answer each one
//! (or drop it) and still count a real delivery with the token afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use sysmon_collector::export::otlp::{self, ResourceIdentity};
use sysmonvm::validate::receiver::{self, head_end, parse_head};

#[path = "common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

use fuzz_rng::iterations;

/// Flips, inserts, deletes, duplicates and cuts bytes; the junk is what HTTP parsers trip on.
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    const JUNK: [&[u8]; 14] = [
        b"\r\n",
        b"\n",
        b"\r",
        b":",
        b" ",
        b"\0",
        b"\xff",
        b"Content-Length: ",
        b"99999999999999999999",
        b"Transfer-Encoding: chunked\r\n",
        b"Authorization: Bearer ",
        b"\r\n\r\n",
        b"HTTP/1.1",
        b"-1",
    ];
    let mut s = base.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(5) {
            0 if !s.is_empty() => {
                let i = at.min(s.len() - 1);
                s[i] ^= 1 << rng.below(8);
            }
            1 => {
                let j = JUNK[rng.below(JUNK.len())];
                s.splice(at..at, j.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(s.len());
                s.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(s.len());
                let dup = s[at..end].to_vec();
                s.splice(at..at, dup);
            }
            _ => s.truncate(at),
        }
    }
    s
}

fn corpus(token: &str) -> Vec<Vec<u8>> {
    vec![
        // What ureq sends for the collector's push (header order and casing as it writes them).
        format!("POST /v1/metrics HTTP/1.1\r\nhost: 10.0.2.2:4318\r\ncontent-type: application/x-protobuf\r\nauthorization: Bearer {token}\r\ncontent-length: 5\r\n\r\n\n\x03abc").into_bytes(),
        b"GET /v1/metrics?x=1 HTTP/1.0\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
    ]
}

#[test]
fn the_head_parser_survives_mutated_requests() {
    let n = iterations(20_000);
    let mut rng = Rng(0x005e_ed0f_0714_0001);
    let (mut parsed, mut refused) = (0usize, 0usize);
    for base in corpus(&"ab".repeat(32)) {
        for _ in 0..n / 3 {
            let bytes = mutate(&mut rng, &base);
            // The incremental search, fed in random pieces, finds what one pass over the whole finds.
            let whole = head_end(&bytes, 0);
            let mut fed = 0;
            let mut found = None;
            while fed < bytes.len() && found.is_none() {
                let next = (fed + 1 + rng.below(40)).min(bytes.len());
                found = head_end(&bytes[..next], fed);
                fed = next;
            }
            assert_eq!(found, whole, "{:?}", String::from_utf8_lossy(&bytes));
            let head = &bytes[..whole.unwrap_or(bytes.len())];
            match parse_head(head) {
                Ok(h) => {
                    parsed += 1;
                    assert!(h.path.starts_with('/') && !h.method.is_empty());
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    eprintln!("receiver head parser: {n} mutated heads (seed 0x005eed0f07140001): {parsed} parsed, {refused} refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_receiver_answers_mutated_requests_and_still_counts_a_real_one() {
    let n = iterations(300);
    let recv = receiver::start_with(receiver::Limits { deadline: Duration::from_secs(2), ..Default::default() })
        .await
        .unwrap();
    let (port, token) = (recv.port, recv.token().to_string());
    let answered = tokio::task::spawn_blocking(move || {
        let mut rng = Rng(0x005e_ed0f_0714_0002);
        let corpus = corpus(&token);
        let mut answered = 0usize;
        for i in 0..n {
            let bytes = mutate(&mut rng, &corpus[i % corpus.len()]);
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            if reply.starts_with(b"HTTP/1.1 ") {
                answered += 1;
            }
        }
        answered
    })
    .await
    .unwrap();
    eprintln!(
        "real receiver: {n} mutated requests (seed 0x005eed0f07140002): {answered} answered, {:?}",
        recv.counts()
    );
    assert!(recv.arrivals().len() <= n);

    // Still serving: a real delivery with the token counts.
    let identity = ResourceIdentity { service_name: "s".into(), host_id: None, vm_id: None, host_name: None };
    let mut sampler = sysmon_collector::Sampler::new(sysmon_collector::Roots::default(), Default::default());
    let snap = sampler.sample();
    let body = otlp::encode(&otlp::request(&sysmon_collector::metrics::families(&snap), &identity, 1, 1));
    let before = recv.arrivals().len();
    let (port, auth) = (recv.port, recv.authorization());
    let status = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "POST /v1/metrics HTTP/1.1\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n", body.len())
            .unwrap();
        s.write_all(&body).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.lines().next().unwrap_or("").to_string()
    })
    .await
    .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(recv.arrivals().len(), before + 1);
}
