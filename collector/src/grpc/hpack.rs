//! HPACK (RFC 7541), as much as a gRPC server needs: a decoder for the client's header blocks
//! (static and dynamic table, Huffman strings, table size updates) that never panics and caps
//! what it holds, and an encoder that writes literals without indexing (no state to share).

use std::collections::VecDeque;

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The Huffman code of RFC 7541 Appendix B: code and bit length of each byte value (EOS, 30
/// ones, is handled as padding).
const CODES: [u32; 256] = [
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8, 0xffffea,
    0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0,
    0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9,
    0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16,
    0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
    0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
    0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4,
    0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
    0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3,
    0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
    0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8,
    0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8,
    0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0,
    0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4,
    0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8,
    0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2,
    0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8,
    0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7,
    0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb,
    0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec,
    0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
];
const LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large")]
    Integer,
    #[error("index {0} is in neither table")]
    Index(usize),
    #[error("invalid Huffman string")]
    Huffman,
    #[error("table size update to {0} is above the {1} bytes this server allows")]
    TableSize(usize, usize),
    #[error("a table size update after the first field")]
    LateSizeUpdate,
    #[error("decoded header list is larger than {0} bytes")]
    TooLarge(usize),
}

/// Symbols sorted by (length, code), for a bit-at-a-time canonical decode.
fn huffman_sorted() -> &'static [(u8, u32, u8)] {
    static SORTED: std::sync::OnceLock<Vec<(u8, u32, u8)>> = std::sync::OnceLock::new();
    SORTED.get_or_init(|| {
        let mut v: Vec<(u8, u32, u8)> = (0..256).map(|s| (LENGTHS[s], CODES[s], s as u8)).collect();
        v.sort_unstable();
        v
    })
}

/// Decodes a Huffman string; padding must be at most 7 one bits (RFC 7541 §5.2).
pub fn huffman_decode(input: &[u8]) -> Result<Vec<u8>, HpackError> {
    let table = huffman_sorted();
    let mut out = Vec::with_capacity(input.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0u8);
    for &byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len > 30 {
                return Err(HpackError::Huffman);
            }
            if len < 5 {
                continue;
            }
            if let Ok(i) = table.binary_search_by(|&(l, c, _)| (l, c).cmp(&(len, code))) {
                out.push(table[i].2);
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be a prefix of EOS: fewer than 8 bits, all ones.
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

pub fn huffman_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in input {
        acc = (acc << LENGTHS[b as usize]) | u64::from(CODES[b as usize]);
        bits += u32::from(LENGTHS[b as usize]);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
    out
}

/// Decodes an HPACK integer with an N-bit prefix at `buf[*pos]`.
fn integer(buf: &[u8], pos: &mut usize, prefix_bits: u8) -> Result<usize, HpackError> {
    let first = *buf.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let max = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        if shift > 28 {
            return Err(HpackError::Integer);
        }
        value = value.checked_add(usize::from(b & 0x7f) << shift).ok_or(HpackError::Integer)?;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

fn string(buf: &[u8], pos: &mut usize) -> Result<Vec<u8>, HpackError> {
    let huffman = buf.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(buf, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = buf.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if huffman { huffman_decode(raw) } else { Ok(raw.to_vec()) }
}

/// A decoded header field: name and value, as bytes.
pub type Field = (Vec<u8>, Vec<u8>);

/// One connection's decoding state: the dynamic table, capped at what our SETTINGS announce.
pub struct Decoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the most a size update may ask for.
    limit: usize,
    /// The most decoded bytes (name + value + 32 per field) one header block may hold.
    max_list: usize,
}

impl Decoder {
    pub fn new(limit: usize, max_list: usize) -> Self {
        Decoder { table: VecDeque::new(), size: 0, max_size: limit, limit, max_list }
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + 32;
        if size > self.max_size {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.size += size;
        self.table.push_front((name, value));
        self.evict();
    }

    fn get(&self, index: usize) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        match index {
            0 => Err(HpackError::Index(0)),
            1..=61 => {
                let (n, v) = STATIC[index - 1];
                Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            }
            _ => self.table.get(index - 62).cloned().ok_or(HpackError::Index(index)),
        }
    }

    /// Decodes one complete header block into (name, value) pairs.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut pos = 0;
        let mut fields = Vec::new();
        let mut total = 0usize;
        while pos < block.len() {
            let b = block[pos];
            let field = if b & 0x80 != 0 {
                let index = integer(block, &mut pos, 7)?;
                self.get(index)?
            } else if b & 0xc0 == 0x40 {
                let index = integer(block, &mut pos, 6)?;
                let name = if index == 0 { string(block, &mut pos)? } else { self.get(index)?.0 };
                let value = string(block, &mut pos)?;
                self.insert(name.clone(), value.clone());
                (name, value)
            } else if b & 0xe0 == 0x20 {
                if !fields.is_empty() {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = integer(block, &mut pos, 5)?;
                if size > self.limit {
                    return Err(HpackError::TableSize(size, self.limit));
                }
                self.max_size = size;
                self.evict();
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001): 4-bit prefix.
                let index = integer(block, &mut pos, 4)?;
                let name = if index == 0 { string(block, &mut pos)? } else { self.get(index)?.0 };
                (name, string(block, &mut pos)?)
            };
            total = total.saturating_add(field.0.len() + field.1.len() + 32);
            if total > self.max_list {
                return Err(HpackError::TooLarge(self.max_list));
            }
            fields.push(field);
        }
        Ok(fields)
    }
}

fn put_integer(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Appends one field as a literal without indexing with a literal name: no encoder state, so
/// nothing the peer could get out of step with.
pub fn encode_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    put_integer(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    put_integer(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
        // RFC 7541 C.4.1: "www.example.com"
        let encoded = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        assert_eq!(huffman_encode(b"www.example.com"), encoded);
        assert_eq!(huffman_decode(&encoded).unwrap(), b"www.example.com");
        // Padding of zeros, or of 8 or more bits, is an error.
        assert_eq!(huffman_decode(&[0x00]), Err(HpackError::Huffman));
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]), Err(HpackError::Huffman));
    }

    #[test]
    fn rfc_7541_c3_requests_without_huffman() {
        let mut d = Decoder::new(4096, 16384);
        let first = hex("828684410f7777772e6578616d706c652e636f6d");
        let f = d.decode(&first).unwrap();
        assert_eq!(f[3], (b":authority".to_vec(), b"www.example.com".to_vec()));
        assert_eq!(d.size, 57);
        let second = hex("828684be58086e6f2d6361636865");
        let f = d.decode(&second).unwrap();
        assert_eq!(f[3], (b":authority".to_vec(), b"www.example.com".to_vec()));
        assert_eq!(f[4], (b"cache-control".to_vec(), b"no-cache".to_vec()));
        assert_eq!(d.size, 110);
    }

    #[test]
    fn hostile_blocks_are_errors() {
        let mut d = Decoder::new(4096, 100);
        assert_eq!(d.decode(&[0x80]), Err(HpackError::Index(0)));
        assert_eq!(d.decode(&[0xff, 0x3f]), Err(HpackError::Index(190)));
        assert_eq!(d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(HpackError::Integer));
        assert_eq!(d.decode(&[0x3f, 0xe2, 0x1f]), Err(HpackError::TableSize(4097, 4096)));
        assert_eq!(d.decode(&[0x82, 0x20]), Err(HpackError::LateSizeUpdate));
        assert_eq!(d.decode(&[0x00, 0x05, b'a']), Err(HpackError::Truncated));
        let mut big = vec![0x00, 0x7f, 0x00];
        big.extend(std::iter::repeat_n(b'a', 127));
        big.push(0);
        assert_eq!(d.decode(&big), Err(HpackError::TooLarge(100)));
    }

    #[test]
    fn literals_decode_back() {
        let mut out = Vec::new();
        encode_literal(&mut out, "grpc-message", &"x".repeat(300));
        let f = Decoder::new(4096, 16384).decode(&out).unwrap();
        assert_eq!(f, vec![(b"grpc-message".to_vec(), vec![b'x'; 300])]);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
