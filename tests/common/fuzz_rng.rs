//! The fuzzers' one random-number stream: xorshift64, seeded, so a failing iteration is found
//! again from the seed and count each fuzzer prints. Included by path from the CLI's and the
//! collector's fuzz tests (`#[path = …] mod fuzz_rng;`).
#![allow(dead_code)]

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = 0x9e37_79b9_7f4a_7c15; // xorshift never leaves 0
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `FUZZ_ITERATIONS` when set, else the fuzzer's default.
pub fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
