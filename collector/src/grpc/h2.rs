//! One HTTP/2 connection of the gRPC server, as a pure state machine over bytes: `receive` takes
//! what the socket gave, `output` is what to send. It speaks the part of RFC 9113 a unary gRPC
//! server needs (SETTINGS, PING, WINDOW_UPDATE both ways, HEADERS + CONTINUATION, DATA, RST_STREAM,
//! GOAWAY) and treats everything else as the RFC says (unknown frames ignored, PUSH_PROMISE from
//! a client a protocol error). Every size is capped: a frame at our SETTINGS_MAX_FRAME_SIZE, a
//! header block, a decoded header list, a message, the streams open at once and the bytes waiting
//! to be sent; a breach is a gRPC status on its stream or a GOAWAY, never a panic.

use super::hpack::{self, Decoder};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Our SETTINGS_MAX_FRAME_SIZE (the RFC's minimum): a larger frame is a FRAME_SIZE_ERROR.
pub const MAX_FRAME: usize = 16_384;
/// The most compressed bytes one header block (HEADERS + CONTINUATIONs) may take.
pub const MAX_HEADER_BLOCK: usize = 16_384;
/// Our SETTINGS_MAX_HEADER_LIST_SIZE: decoded names + values + 32 per field.
pub const MAX_HEADER_LIST: usize = 16_384;
/// The largest request message accepted (ServiceRadar's StatusRequest is a few dozen bytes);
/// a larger one is answered RESOURCE_EXHAUSTED without reading it.
pub const MAX_MESSAGE: usize = 16_384;
/// Our SETTINGS_MAX_CONCURRENT_STREAMS; a stream beyond it is refused (REFUSED_STREAM).
pub const MAX_STREAMS: usize = 16;
/// Bytes waiting to be sent beyond which the peer is not reading and the connection is dropped.
pub const MAX_OUTPUT: usize = 1 << 20;
/// A stream must have its whole request within this from its HEADERS (else it is cancelled).
pub const STREAM_DEADLINE: Duration = Duration::from_secs(5);

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// HTTP/2 error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NoError = 0,
    Protocol = 1,
    FlowControl = 3,
    StreamClosed = 5,
    FrameSize = 6,
    RefusedStream = 7,
    Cancel = 8,
    Compression = 9,
    EnhanceYourCalm = 0xb,
}

/// gRPC status codes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Internal = 13,
    Unimplemented = 12,
    ResourceExhausted = 8,
    Unavailable = 14,
}

/// What the service answers for one call.
pub enum Reply {
    Message(Vec<u8>),
    Status(Code, String),
}

/// The service behind the connection: a full method path and the request message's bytes.
pub trait Service {
    fn call(&mut self, path: &str, message: &[u8]) -> Reply;
}

enum StreamState {
    /// Headers in, body arriving.
    Receiving { headers: Vec<(Vec<u8>, Vec<u8>)>, body: Vec<u8> },
    /// Answer being sent: DATA still to go (held back by flow control), then the trailers.
    Sending { data: Vec<u8>, sent: usize, trailers: Vec<u8> },
}

struct Stream {
    state: StreamState,
    send_window: i64,
    /// When its HEADERS came: request and answer must be through by [`STREAM_DEADLINE`].
    opened: Instant,
}

/// A header block still waiting for its CONTINUATION frames.
struct Partial {
    stream: u32,
    block: Vec<u8>,
    end_stream: bool,
}

pub struct Connection {
    preface_seen: bool,
    settings_seen: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    decoder: Decoder,
    streams: BTreeMap<u32, Stream>,
    partial: Option<Partial>,
    last_stream: u32,
    peer_initial_window: i64,
    peer_max_frame: usize,
    conn_send_window: i64,
    /// Set once a GOAWAY went out or came in: no new streams; closed when nothing is left.
    going_away: bool,
    /// Set on a connection error: the GOAWAY is queued and nothing else will be read.
    failed: Option<String>,
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn response_headers(out: &mut Vec<u8>) {
    out.push(0x88); // :status 200, static index 8
    hpack::encode_literal(out, "content-type", "application/grpc");
}

fn status_block(out: &mut Vec<u8>, code: Code, message: &str) {
    hpack::encode_literal(out, "grpc-status", &(code as u8).to_string());
    if !message.is_empty() {
        hpack::encode_literal(out, "grpc-message", &percent_encode(message));
    }
}

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    pub fn new() -> Self {
        let mut output = Vec::new();
        // Our SETTINGS: MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE (the rest are the defaults:
        // a 4096-byte header table, 65535-byte windows, 16384-byte frames).
        let mut settings = Vec::new();
        for (id, value) in [(0x3u16, MAX_STREAMS as u32), (0x6, MAX_HEADER_LIST as u32), (0x2, 0)] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        frame(&mut output, SETTINGS, 0, 0, &settings);
        Connection {
            preface_seen: false,
            settings_seen: false,
            input: Vec::new(),
            output,
            decoder: Decoder::new(4096, MAX_HEADER_LIST),
            streams: BTreeMap::new(),
            partial: None,
            last_stream: 0,
            peer_initial_window: 65_535,
            peer_max_frame: 16_384,
            conn_send_window: 65_535,
            going_away: false,
            failed: None,
        }
    }

    /// Bytes to send (take them with `output_mut().drain(..n)` once written).
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    pub fn output_mut(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Whether the client has sent its preface and SETTINGS (the handshake deadline ends here).
    pub fn established(&self) -> bool {
        self.preface_seen && self.settings_seen
    }

    /// Why the connection failed (a GOAWAY is queued), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Whether the connection is finished: failed, or going away with nothing left to answer.
    pub fn done(&self) -> bool {
        self.failed.is_some() || (self.going_away && self.streams.is_empty())
    }

    /// Streams open (receiving or sending).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The output is over its cap: the peer does not read.
    pub fn output_overflowed(&self) -> bool {
        self.output.len() > MAX_OUTPUT
    }

    fn fail(&mut self, code: ErrorCode, why: impl Into<String>) {
        if self.failed.is_some() {
            return;
        }
        let why = why.into();
        let mut payload = self.last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&(code as u32).to_be_bytes());
        payload.extend_from_slice(why.as_bytes());
        frame(&mut self.output, GOAWAY, 0, 0, &payload);
        self.failed = Some(why);
        self.input.clear();
    }

    /// Sends GOAWAY(NO_ERROR): open streams are finished, no new ones taken (idle close, shutdown).
    pub fn go_away(&mut self) {
        if !self.going_away && self.failed.is_none() {
            let mut payload = self.last_stream.to_be_bytes().to_vec();
            payload.extend_from_slice(&0u32.to_be_bytes());
            frame(&mut self.output, GOAWAY, 0, 0, &payload);
        }
        self.going_away = true;
    }

    fn reset(&mut self, stream: u32, code: ErrorCode) {
        frame(&mut self.output, RST_STREAM, 0, stream, &(code as u32).to_be_bytes());
        self.streams.remove(&stream);
    }

    /// Cancels streams not through within [`STREAM_DEADLINE`] of their HEADERS: a request that
    /// did not arrive, or an answer the client's flow-control window holds back.
    pub fn expire(&mut self, now: Instant) {
        let late: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| now.duration_since(s.opened) >= STREAM_DEADLINE)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.reset(id, ErrorCode::Cancel);
        }
    }

    /// The earliest instant at which [`Connection::expire`] has something to do.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.streams.values().map(|s| s.opened + STREAM_DEADLINE).min()
    }

    /// Takes bytes from the socket, answers every complete frame, and queues what can be sent.
    pub fn receive(&mut self, bytes: &[u8], now: Instant, service: &mut dyn Service) {
        if self.failed.is_some() {
            return;
        }
        self.input.extend_from_slice(bytes);
        if !self.preface_seen {
            let n = self.input.len().min(PREFACE.len());
            if self.input[..n] != PREFACE[..n] {
                self.fail(ErrorCode::Protocol, "not an HTTP/2 connection preface");
                return;
            }
            if n < PREFACE.len() {
                return;
            }
            self.input.drain(..PREFACE.len());
            self.preface_seen = true;
        }
        let mut pos = 0;
        while self.failed.is_none() && self.input.len() - pos >= 9 {
            let h = &self.input[pos..pos + 9];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            if len > MAX_FRAME {
                self.fail(ErrorCode::FrameSize, format!("a frame of {len} bytes (at most {MAX_FRAME})"));
                return;
            }
            if self.input.len() - pos < 9 + len {
                break;
            }
            let payload = self.input[pos + 9..pos + 9 + len].to_vec();
            pos += 9 + len;
            if !self.settings_seen && kind != SETTINGS {
                self.fail(ErrorCode::Protocol, "the client's first frame is not SETTINGS");
                return;
            }
            self.frame(kind, flags, stream, &payload, now, service);
        }
        if self.failed.is_none() {
            self.input.drain(..pos);
        }
        self.flush();
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8], now: Instant, service: &mut dyn Service) {
        if let Some(p) = &self.partial
            && (kind != CONTINUATION || stream != p.stream)
        {
            self.fail(ErrorCode::Protocol, "a header block interrupted before its END_HEADERS");
            return;
        }
        match kind {
            SETTINGS => self.settings(flags, stream, payload),
            PING => {
                if stream != 0 || payload.len() != 8 {
                    return self.fail(ErrorCode::FrameSize, "a PING must be 8 bytes on stream 0");
                }
                if flags & ACK == 0 {
                    frame(&mut self.output, PING, ACK, 0, payload);
                }
            }
            WINDOW_UPDATE => self.window_update(stream, payload),
            HEADERS => self.headers(flags, stream, payload, now, service),
            CONTINUATION => {
                let Some(mut p) = self.partial.take() else {
                    return self.fail(ErrorCode::Protocol, "CONTINUATION without a header block");
                };
                p.block.extend_from_slice(payload);
                if p.block.len() > MAX_HEADER_BLOCK {
                    return self.fail(ErrorCode::EnhanceYourCalm, "header block too large");
                }
                if flags & END_HEADERS != 0 {
                    self.header_block(p.stream, &p.block, p.end_stream, now, service);
                } else {
                    self.partial = Some(p);
                }
            }
            DATA => self.data(flags, stream, payload, service),
            RST_STREAM => {
                if stream == 0 || payload.len() != 4 {
                    return self.fail(ErrorCode::Protocol, "a malformed RST_STREAM");
                }
                self.streams.remove(&stream);
            }
            PRIORITY if stream == 0 || payload.len() != 5 => self.fail(ErrorCode::FrameSize, "a malformed PRIORITY"),
            GOAWAY => self.going_away = true,
            PUSH_PROMISE => self.fail(ErrorCode::Protocol, "PUSH_PROMISE from a client"),
            _ => {} // unknown frame types are ignored (RFC 9113 §4.1)
        }
    }

    fn settings(&mut self, flags: u8, stream: u32, payload: &[u8]) {
        if stream != 0 {
            return self.fail(ErrorCode::Protocol, "SETTINGS on a stream");
        }
        if flags & ACK != 0 {
            if !payload.is_empty() {
                self.fail(ErrorCode::FrameSize, "a SETTINGS ACK with a payload");
            }
            return;
        }
        if !payload.len().is_multiple_of(6) {
            return self.fail(ErrorCode::FrameSize, "SETTINGS not a multiple of 6 bytes");
        }
        for p in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([p[0], p[1]]);
            let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            match id {
                0x2 if value > 1 => return self.fail(ErrorCode::Protocol, "ENABLE_PUSH above 1"),
                0x4 => {
                    if value > 0x7fff_ffff {
                        return self.fail(ErrorCode::FlowControl, "INITIAL_WINDOW_SIZE above 2^31-1");
                    }
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                    }
                }
                0x5 => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return self.fail(ErrorCode::Protocol, "MAX_FRAME_SIZE out of range");
                    }
                    self.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        self.settings_seen = true;
        frame(&mut self.output, SETTINGS, ACK, 0, &[]);
    }

    fn window_update(&mut self, stream: u32, payload: &[u8]) {
        if payload.len() != 4 {
            return self.fail(ErrorCode::FrameSize, "WINDOW_UPDATE not 4 bytes");
        }
        let inc = i64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff);
        if stream == 0 {
            if inc == 0 {
                return self.fail(ErrorCode::Protocol, "WINDOW_UPDATE of 0");
            }
            self.conn_send_window += inc;
            if self.conn_send_window > 0x7fff_ffff {
                self.fail(ErrorCode::FlowControl, "connection window above 2^31-1");
            }
        } else if let Some(s) = self.streams.get_mut(&stream) {
            s.send_window += inc;
            if inc == 0 || s.send_window > 0x7fff_ffff {
                self.reset(stream, if inc == 0 { ErrorCode::Protocol } else { ErrorCode::FlowControl });
            }
        }
    }

    /// Strips padding (and the priority fields of HEADERS); None when the padding is malformed.
    fn unpad(flags: u8, payload: &[u8], priority: bool) -> Option<&[u8]> {
        let mut body = payload;
        let mut pad = 0usize;
        if flags & PADDED != 0 {
            pad = usize::from(*body.first()?);
            body = &body[1..];
        }
        if priority && flags & PRIORITY_FLAG != 0 {
            body = body.get(5..)?;
        }
        body.get(..body.len().checked_sub(pad)?)
    }

    fn headers(&mut self, flags: u8, stream: u32, payload: &[u8], now: Instant, service: &mut dyn Service) {
        if stream == 0 || stream.is_multiple_of(2) {
            return self.fail(ErrorCode::Protocol, "HEADERS on stream 0 or an even stream");
        }
        let Some(block) = Self::unpad(flags, payload, true) else {
            return self.fail(ErrorCode::Protocol, "HEADERS with padding longer than the frame");
        };
        let p = Partial { stream, block: block.to_vec(), end_stream: flags & END_STREAM != 0 };
        if p.block.len() > MAX_HEADER_BLOCK {
            return self.fail(ErrorCode::EnhanceYourCalm, "header block too large");
        }
        if flags & END_HEADERS != 0 {
            self.header_block(stream, &p.block, p.end_stream, now, service);
        } else {
            self.partial = Some(p);
        }
    }

    fn header_block(&mut self, stream: u32, block: &[u8], end_stream: bool, now: Instant, service: &mut dyn Service) {
        // Decoded even when the stream is refused: the table is shared by the connection.
        let fields = match self.decoder.decode(block) {
            Ok(f) => f,
            Err(e) => return self.fail(ErrorCode::Compression, format!("header block: {e}")),
        };
        if let Some(s) = self.streams.get_mut(&stream) {
            // Trailers from the client end its request.
            if let StreamState::Receiving { .. } = s.state {
                if !end_stream {
                    return self.fail(ErrorCode::Protocol, "trailers without END_STREAM");
                }
                self.dispatch(stream, service);
            }
            return;
        }
        if stream <= self.last_stream {
            return self.fail(ErrorCode::StreamClosed, "HEADERS on a closed stream");
        }
        self.last_stream = stream;
        if self.going_away || self.streams.len() >= MAX_STREAMS {
            frame(&mut self.output, RST_STREAM, 0, stream, &(ErrorCode::RefusedStream as u32).to_be_bytes());
            return;
        }
        self.streams.insert(
            stream,
            Stream {
                state: StreamState::Receiving { headers: fields, body: Vec::new() },
                send_window: self.peer_initial_window,
                opened: now,
            },
        );
        if end_stream {
            self.dispatch(stream, service);
        }
    }

    fn data(&mut self, flags: u8, stream: u32, payload: &[u8], service: &mut dyn Service) {
        if stream == 0 {
            return self.fail(ErrorCode::Protocol, "DATA on stream 0");
        }
        if stream > self.last_stream {
            return self.fail(ErrorCode::Protocol, "DATA on an idle stream");
        }
        // Give the connection window back at once: what a stream may hold is capped below.
        if !payload.is_empty() {
            frame(&mut self.output, WINDOW_UPDATE, 0, 0, &(payload.len() as u32).to_be_bytes());
        }
        let Some(body) = Self::unpad(flags, payload, false) else {
            return self.fail(ErrorCode::Protocol, "DATA with padding longer than the frame");
        };
        let Some(s) = self.streams.get_mut(&stream) else { return };
        let StreamState::Receiving { body: held, .. } = &mut s.state else {
            return; // a request that was already answered: ignore the rest
        };
        held.extend_from_slice(body);
        if held.len() >= 5 {
            let declared = u32::from_be_bytes([held[1], held[2], held[3], held[4]]) as usize;
            if declared > MAX_MESSAGE {
                let why = format!("grpc: received message larger than max ({declared} vs. {MAX_MESSAGE})");
                self.answer(stream, Reply::Status(Code::ResourceExhausted, why));
                // Tell the client to stop sending the rest (RFC 9113 §8.1).
                frame(&mut self.output, RST_STREAM, 0, stream, &(ErrorCode::NoError as u32).to_be_bytes());
                return;
            }
            if held.len() > 5 + declared {
                self.answer(stream, Reply::Status(Code::Unimplemented, "more than one request message".into()));
                return;
            }
        }
        if flags & END_STREAM != 0 {
            self.dispatch(stream, service);
        }
    }

    fn dispatch(&mut self, stream: u32, service: &mut dyn Service) {
        let Some(Stream { state: StreamState::Receiving { headers, body, .. }, .. }) = self.streams.get(&stream) else {
            return;
        };
        let get = |name: &[u8]| headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v));
        let method = get(b":method").unwrap_or_default();
        let path = get(b":path").unwrap_or_default().into_owned();
        let content_type = get(b"content-type").unwrap_or_default();
        let reply = if method != "POST" {
            Reply::Status(Code::Unimplemented, format!("method {method} is not POST"))
        } else if !content_type.starts_with("application/grpc") {
            Reply::Status(Code::Internal, format!("content-type {content_type:?} is not application/grpc"))
        } else if body.len() < 5 {
            Reply::Status(Code::Internal, "grpc: the request has no complete message".into())
        } else if body[0] != 0 {
            Reply::Status(Code::Unimplemented, "grpc: compressed messages are not supported".into())
        } else {
            let declared = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            if body.len() != 5 + declared {
                Reply::Status(Code::Internal, "grpc: the message is shorter than its length prefix".into())
            } else {
                let message = body[5..].to_vec();
                service.call(&path, &message)
            }
        };
        self.answer(stream, reply);
    }

    fn answer(&mut self, stream: u32, reply: Reply) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        let mut head = Vec::new();
        response_headers(&mut head);
        match reply {
            Reply::Message(m) => {
                frame(&mut self.output, HEADERS, END_HEADERS, stream, &head);
                let mut data = Vec::with_capacity(5 + m.len());
                data.push(0);
                data.extend_from_slice(&(m.len() as u32).to_be_bytes());
                data.extend_from_slice(&m);
                let mut trailers = Vec::new();
                status_block(&mut trailers, Code::Ok, "");
                s.state = StreamState::Sending { data, sent: 0, trailers };
            }
            Reply::Status(code, message) => {
                // Trailers-only: one HEADERS with the status, ending the stream.
                status_block(&mut head, code, &message);
                frame(&mut self.output, HEADERS, END_HEADERS | END_STREAM, stream, &head);
                self.streams.remove(&stream);
            }
        }
    }

    /// Sends what the flow-control windows allow of every answer, then its trailers.
    fn flush(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let mut finished = Vec::new();
        for (&id, s) in self.streams.iter_mut() {
            let StreamState::Sending { data, sent, trailers } = &mut s.state else { continue };
            while *sent < data.len() {
                let allowed = self.conn_send_window.min(s.send_window).min(self.peer_max_frame as i64);
                if allowed <= 0 {
                    break;
                }
                let n = (data.len() - *sent).min(allowed as usize);
                frame(&mut self.output, DATA, 0, id, &data[*sent..*sent + n]);
                *sent += n;
                self.conn_send_window -= n as i64;
                s.send_window -= n as i64;
            }
            if *sent == data.len() {
                frame(&mut self.output, HEADERS, END_HEADERS | END_STREAM, id, trailers);
                finished.push(id);
            }
        }
        for id in finished {
            self.streams.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Service for Echo {
        fn call(&mut self, path: &str, message: &[u8]) -> Reply {
            match path {
                "/t.S/Echo" => Reply::Message(message.to_vec()),
                "/t.S/Big" => Reply::Message(vec![7u8; 100_000]),
                _ => Reply::Status(Code::Unimplemented, format!("unknown method {path}")),
            }
        }
    }

    /// Frames of a byte string: (type, flags, stream, payload).
    fn frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while b.len() >= 9 {
            let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
            v.push((b[3], b[4], u32::from_be_bytes([b[5], b[6], b[7], b[8]]), b[9..9 + len].to_vec()));
            b = &b[9 + len..];
        }
        v
    }

    fn request(path: &str, message: &[u8], stream: u32) -> Vec<u8> {
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        hpack::encode_literal(&mut block, ":path", path);
        hpack::encode_literal(&mut block, "content-type", "application/grpc");
        let mut out = Vec::new();
        frame(&mut out, HEADERS, END_HEADERS, stream, &block);
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        frame(&mut out, DATA, END_STREAM, stream, &body);
        out
    }

    fn connected() -> Connection {
        let mut c = Connection::new();
        let mut hello = PREFACE.to_vec();
        frame(&mut hello, SETTINGS, 0, 0, &[]);
        c.receive(&hello, Instant::now(), &mut Echo);
        assert!(c.established());
        c.output_mut().clear();
        c
    }

    fn trailer_status(c: &mut Connection, stream: u32) -> Option<String> {
        let out = std::mem::take(c.output_mut());
        let mut d = Decoder::new(4096, 1 << 20);
        for (kind, flags, id, payload) in frames(&out) {
            if kind == HEADERS && id == stream && flags & END_STREAM != 0 {
                let f = d.decode(&payload).unwrap();
                return f.iter().find(|(n, _)| n == b"grpc-status").map(|(_, v)| String::from_utf8_lossy(v).into());
            } else if kind == HEADERS {
                d.decode(&payload).unwrap();
            }
        }
        None
    }

    #[test]
    fn a_unary_call_and_an_unknown_method() {
        let mut c = connected();
        c.receive(&request("/t.S/Echo", b"hello", 1), Instant::now(), &mut Echo);
        let f = frames(c.output());
        let data: Vec<_> = f.iter().filter(|f| f.0 == DATA).collect();
        assert_eq!(data.len(), 1);
        assert_eq!(&data[0].3[5..], b"hello");
        assert_eq!(trailer_status(&mut c, 1).as_deref(), Some("0"));
        c.receive(&request("/t.S/Nope", b"", 3), Instant::now(), &mut Echo);
        assert_eq!(trailer_status(&mut c, 3).as_deref(), Some("12"));
        assert_eq!(c.open_streams(), 0);
    }

    #[test]
    fn an_answer_larger_than_the_window_waits_for_window_updates() {
        let mut c = connected();
        c.receive(&request("/t.S/Big", b"", 1), Instant::now(), &mut Echo);
        let sent: usize = frames(c.output()).iter().filter(|f| f.0 == DATA).map(|f| f.3.len()).sum();
        assert_eq!(sent, 65_535, "the initial window, no more");
        assert_eq!(trailer_status(&mut c, 1), None);
        // A client that never opens its window does not hold the answer past the deadline.
        let mut starved = connected();
        let t0 = Instant::now();
        starved.receive(&request("/t.S/Big", b"", 1), t0, &mut Echo);
        assert_eq!(starved.open_streams(), 1);
        starved.expire(t0 + STREAM_DEADLINE);
        assert_eq!(starved.open_streams(), 0);
        let mut more = Vec::new();
        frame(&mut more, WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes());
        frame(&mut more, WINDOW_UPDATE, 0, 1, &100_000u32.to_be_bytes());
        c.receive(&more, Instant::now(), &mut Echo);
        let sent: usize = frames(c.output()).iter().filter(|f| f.0 == DATA).map(|f| f.3.len()).sum();
        assert_eq!(sent, 100_005 - 65_535);
        assert_eq!(trailer_status(&mut c, 1).as_deref(), Some("0"));
    }

    #[test]
    fn oversize_messages_and_malformed_frames() {
        let mut c = connected();
        let mut out = Vec::new();
        let mut block = vec![0x83, 0x86];
        hpack::encode_literal(&mut block, ":path", "/t.S/Echo");
        hpack::encode_literal(&mut block, "content-type", "application/grpc");
        frame(&mut out, HEADERS, END_HEADERS, 1, &block);
        let mut body = vec![0];
        body.extend_from_slice(&(1u32 << 30).to_be_bytes());
        frame(&mut out, DATA, 0, 1, &body);
        c.receive(&out, Instant::now(), &mut Echo);
        assert_eq!(trailer_status(&mut c, 1).as_deref(), Some("8"));

        for bad in [
            {
                let mut b = Vec::new();
                frame(&mut b, PING, 0, 0, &[0; 7]);
                b
            },
            vec![0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
            {
                let mut b = Vec::new();
                frame(&mut b, HEADERS, END_HEADERS, 3, &[0x80]);
                b
            },
            {
                let mut b = Vec::new();
                frame(&mut b, HEADERS, 0, 3, &[0x82]);
                frame(&mut b, PING, 0, 0, &[0; 8]);
                b
            },
        ] {
            let mut c = connected();
            c.receive(&bad, Instant::now(), &mut Echo);
            assert!(c.failure().is_some() && c.done());
            assert!(frames(c.output()).iter().any(|f| f.0 == GOAWAY));
        }
        let mut c = Connection::new();
        c.receive(b"GET / HTTP/1.1\r\n", Instant::now(), &mut Echo);
        assert!(c.done());
    }

    /// Mutated valid conversations, cut at random points and fed in random pieces: the
    /// connection never panics, and whatever it queues is whole frames.
    #[test]
    fn mutated_conversations_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = PREFACE.to_vec();
        frame(&mut valid, SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
        valid.extend(request("/t.S/Echo", b"hello", 1));
        frame(&mut valid, WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes());
        frame(&mut valid, PING, 0, 0, &[1; 8]);
        valid.extend(request("/t.S/Big", b"", 3));
        let iterations = 20_000;
        for _ in 0..iterations {
            let mut bytes = valid.clone();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[i] = next() as u8,
                    1 => bytes.insert(i, next() as u8),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            let mut c = Connection::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize) % rest.len();
                c.receive(&rest[..n], Instant::now(), &mut Echo);
                rest = &rest[n..];
            }
            c.expire(Instant::now() + STREAM_DEADLINE);
            let out = c.output();
            let mut pos = 0;
            while pos < out.len() {
                let len = (usize::from(out[pos]) << 16) | (usize::from(out[pos + 1]) << 8) | usize::from(out[pos + 2]);
                pos += 9 + len;
            }
            assert_eq!(pos, out.len(), "output is whole frames");
        }
        eprintln!("h2: {iterations} mutated conversations, seed 0x9e3779b97f4a7c15");
    }

    #[test]
    fn slow_requests_are_cancelled_and_extra_streams_refused() {
        let mut c = connected();
        let t0 = Instant::now();
        let mut block = vec![0x83, 0x86];
        hpack::encode_literal(&mut block, ":path", "/t.S/Echo");
        let mut out = Vec::new();
        for i in 0..=MAX_STREAMS as u32 {
            frame(&mut out, HEADERS, END_HEADERS, 1 + 2 * i, &block);
        }
        c.receive(&out, t0, &mut Echo);
        assert_eq!(c.open_streams(), MAX_STREAMS);
        let refused = frames(c.output()).iter().filter(|f| f.0 == RST_STREAM).count();
        assert_eq!(refused, 1);
        assert_eq!(c.next_expiry(), Some(t0 + STREAM_DEADLINE));
        c.expire(t0 + STREAM_DEADLINE);
        assert_eq!(c.open_streams(), 0);
    }
}
