//! `serve`'s gRPC endpoint: ServiceRadar's `monitoring.AgentService` (see `proto/monitoring.proto`),
//! answered from the latest sample like the HTTP endpoint. Its own small HTTP/2 server rather
//! than tonic + tokio: one poll(2) loop on one thread holds every connection (ARCHITECTURE.md
//! says why), and every connection has deadlines:
//!
//! - the handshake (TLS when configured, then the HTTP/2 preface and SETTINGS) within
//!   [`HANDSHAKE_DEADLINE`] from accept, so a client that connects and never sends, or stalls its
//!   TLS handshake, is dropped;
//! - each call (request in, answer out) within [`h2::STREAM_DEADLINE`] from its HEADERS (else
//!   RST_STREAM CANCEL), so neither a request that never ends nor a window never opened holds it;
//! - output that the client does not read within [`WRITE_DEADLINE`] (or beyond
//!   [`h2::MAX_OUTPUT`]) drops it;
//! - a connection with no request for [`IDLE_TIMEOUT`] gets GOAWAY and is closed.
//!
//! At most [`MAX_CONNECTIONS`] are held; beyond that a new one is closed at once.

pub mod h2;
pub mod hpack;
pub mod proto;
#[cfg(feature = "mtls")]
pub mod tls;

use crate::server::Latest;
use h2::{Code, Connection, Reply, Service};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 64;
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How connections are secured: plaintext, or TLS with client certificates (feature `mtls`).
#[derive(Clone)]
pub enum Security {
    Plaintext,
    #[cfg(feature = "mtls")]
    Mtls(Arc<rustls::ServerConfig>),
}

enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "mtls")]
    Tls(TcpStream, Box<rustls::ServerConnection>),
}

pub(crate) enum ReadOutcome {
    Bytes,
    Eof,
}

impl Transport {
    fn fd(&self) -> i32 {
        match self {
            Transport::Plain(s) => s.as_raw_fd(),
            #[cfg(feature = "mtls")]
            Transport::Tls(s, _) => s.as_raw_fd(),
        }
    }

    /// Reads what the socket has (decrypted) into `into`; Err on a failed connection.
    fn read(&mut self, into: &mut Vec<u8>) -> std::io::Result<ReadOutcome> {
        let mut chunk = [0u8; 8192];
        match self {
            Transport::Plain(s) => loop {
                match s.read(&mut chunk) {
                    Ok(0) => return Ok(ReadOutcome::Eof),
                    Ok(n) => {
                        into.extend_from_slice(&chunk[..n]);
                        if into.len() >= 64 * 1024 {
                            return Ok(ReadOutcome::Bytes);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(ReadOutcome::Bytes),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            #[cfg(feature = "mtls")]
            Transport::Tls(s, tls) => tls::read(s, tls, into),
        }
    }

    /// Writes as much of `out` as the socket takes; the rest stays for POLLOUT.
    fn write(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => {
                while !out.is_empty() {
                    match s.write(out) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            out.drain(..n);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            #[cfg(feature = "mtls")]
            Transport::Tls(s, tls) => tls::write(s, tls, out),
        }
    }

    fn pending(&self, out: &[u8]) -> bool {
        match self {
            Transport::Plain(_) => !out.is_empty(),
            #[cfg(feature = "mtls")]
            Transport::Tls(_, tls) => !out.is_empty() || tls.wants_write(),
        }
    }
}

/// The service: GetStatus from the latest sample, the other two methods UNIMPLEMENTED.
pub struct AgentService {
    latest: Arc<Latest>,
    host_ip: crate::serviceradar::HostIp,
}

impl AgentService {
    pub fn new(latest: Arc<Latest>) -> Self {
        AgentService { latest, host_ip: crate::serviceradar::HostIp::default() }
    }
}

impl Service for AgentService {
    fn call(&mut self, path: &str, message: &[u8]) -> Reply {
        use prost::Message;
        let start = Instant::now();
        if path == proto::GET_STATUS {
            let request = match proto::StatusRequest::decode(message) {
                Ok(r) => r,
                Err(e) => return Reply::Status(Code::Internal, format!("grpc: error unmarshalling request: {e}")),
            };
            let latest = self.latest.get();
            let host_ip = self.host_ip.get();
            let response = crate::serviceradar::status_response(latest.as_deref(), &request, &host_ip, start);
            return Reply::Message(response.encode_to_vec());
        }
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", path));
        if service == proto::SERVICE && proto::UNIMPLEMENTED.contains(&method) {
            Reply::Status(Code::Unimplemented, format!("method {method} not implemented"))
        } else if service == proto::SERVICE {
            Reply::Status(Code::Unimplemented, format!("unknown method {method} for service {service}"))
        } else {
            Reply::Status(Code::Unimplemented, format!("unknown service {service}"))
        }
    }
}

struct Conn {
    transport: Transport,
    h2: Connection,
    accepted: Instant,
    last_request: Instant,
    /// When the output last drained to empty (or moved on).
    last_write_progress: Instant,
}

impl Conn {
    fn deadline(&self) -> Instant {
        let mut d =
            if self.h2.established() { self.last_request + IDLE_TIMEOUT } else { self.accepted + HANDSHAKE_DEADLINE };
        if let Some(e) = self.h2.next_expiry() {
            d = d.min(e);
        }
        if self.transport.pending(self.h2.output()) {
            d = d.min(self.last_write_progress + WRITE_DEADLINE);
        }
        d
    }

    /// Reads, answers and writes as far as the socket allows; false when the connection is over.
    fn progress(&mut self, readable: bool, service: &mut dyn Service) -> bool {
        if readable {
            let mut buf = Vec::new();
            let r = self.transport.read(&mut buf);
            if !buf.is_empty() {
                let now = Instant::now();
                let before = self.h2.open_streams();
                self.h2.receive(&buf, now, service);
                if self.h2.open_streams() != before || !self.h2.output().is_empty() {
                    self.last_request = now;
                }
            }
            match r {
                Ok(ReadOutcome::Bytes) => {}
                Ok(ReadOutcome::Eof) | Err(_) => {
                    // Best effort: what is queued (a GOAWAY, an alert) goes if it can.
                    let _ = self.transport.write(self.h2.output_mut());
                    return false;
                }
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> bool {
        let before = self.h2.output().len();
        if self.transport.write(self.h2.output_mut()).is_err() || self.h2.output_overflowed() {
            return false;
        }
        if self.h2.output().len() < before || self.h2.output().is_empty() {
            self.last_write_progress = Instant::now();
        }
        !self.h2.done() || self.transport.pending(self.h2.output())
    }
}

/// Serves gRPC until the listener fails, on the calling thread.
pub fn run(listener: TcpListener, latest: Arc<Latest>, security: Security) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut service = AgentService::new(latest);
    let mut conns: Vec<Conn> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        fds.clear();
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            let mut events = libc::POLLIN;
            if c.transport.pending(c.h2.output()) {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd { fd: c.transport.fd(), events, revents: 0 });
        }
        if !crate::server::poll_until(&mut fds, conns.iter().map(|c| c.deadline()))? {
            continue;
        }
        let mut keep = Vec::with_capacity(conns.len());
        for (i, mut c) in conns.drain(..).enumerate() {
            let revents = fds[i + 1].revents;
            let open = if revents != 0 {
                c.progress(revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0, &mut service)
            } else {
                true
            };
            if open {
                keep.push(c);
            }
        }
        conns = keep;
        let now = Instant::now();
        conns.retain_mut(|c| {
            c.h2.expire(now);
            if c.h2.established() && c.h2.open_streams() == 0 && now >= c.last_request + IDLE_TIMEOUT {
                c.h2.go_away();
            }
            let pending = c.transport.pending(c.h2.output());
            if !c.h2.established() && now >= c.accepted + HANDSHAKE_DEADLINE {
                return false;
            }
            if pending && now >= c.last_write_progress + WRITE_DEADLINE {
                return false;
            }
            c.flush()
        });
        if fds[0].revents != 0 {
            accept_ready(&listener, &mut conns, &security, &mut service);
        }
    }
}

fn accept_ready(listener: &TcpListener, conns: &mut Vec<Conn>, security: &Security, service: &mut dyn Service) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err() {
                    continue; // dropped: closed at once
                }
                let _ = stream.set_nodelay(true);
                let transport = match security {
                    Security::Plaintext => Transport::Plain(stream),
                    #[cfg(feature = "mtls")]
                    Security::Mtls(config) => match rustls::ServerConnection::new(config.clone()) {
                        Ok(tls) => Transport::Tls(stream, Box::new(tls)),
                        Err(_) => continue,
                    },
                };
                let now = Instant::now();
                let mut c = Conn {
                    transport,
                    h2: Connection::new(),
                    accepted: now,
                    last_request: now,
                    last_write_progress: now,
                };
                // The preface is often there already: answer without another round of poll.
                if c.progress(true, service) {
                    conns.push(c);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        }
    }
}
