//! Mutation fuzzing of `export::otlp::summarize`, which a receiver runs on bodies any peer
//! sends: mutations of real encoded requests (this machine's sample and a 16-CPU fixture guest's) must
//! decode or be refused, never panic, and what a decode reports stays bounded by the input.
//! Fixed seed, iteration count printed; `FUZZ_ITERATIONS` raises it.

mod common;

use sysmon_collector::export::otlp::{self, ResourceIdentity};

#[path = "../../tests/common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

fn body(snap: &sysmon_collector::Snapshot) -> Vec<u8> {
    let id = ResourceIdentity {
        service_name: "sysmon-collector".into(),
        host_id: Some("h".into()),
        vm_id: Some("lab".into()),
        host_name: None,
    };
    otlp::encode(&otlp::request(&sysmon_collector::metrics::families(snap), &id, snap.timestamp_unix_nano, 1))
}

#[test]
fn summarize_survives_mutated_real_requests() {
    let n: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let mut sampler = sysmon_collector::Sampler::new(sysmon_collector::Roots::default(), Default::default());
    let live = body(&sampler.sample());
    let guest = common::synthetic_machine(16);
    let fixture = body(&sysmon_collector::Sampler::new(guest.roots(), Default::default()).sample());
    let corpus = [live, fixture, Vec::new()];
    let mut rng = Rng(0x005e_ed0f_0714_0003);
    let (mut decoded, mut refused) = (0usize, 0usize);
    for base in &corpus {
        let (newest, names) = otlp::summarize(base).expect("a real request decodes");
        assert!(base.is_empty() || newest.is_some());
        assert!(names.len() * 2 <= base.len());
        for _ in 0..n / corpus.len() {
            let mut s = base.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(s.len() + 1);
                match rng.below(5) {
                    0 if !s.is_empty() => {
                        let i = at.min(s.len() - 1);
                        s[i] ^= 1 << rng.below(8);
                    }
                    // A varint that claims a huge length or field number.
                    1 => s.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]).for_each(drop),
                    2 => s.truncate(at),
                    3 => {
                        let end = (at + rng.below(256)).min(s.len());
                        let dup = s[at..end].to_vec();
                        s.splice(at..at, dup).for_each(drop);
                    }
                    _ => {
                        let end = (at + rng.below(32)).min(s.len());
                        s.drain(at..end);
                    }
                }
            }
            match otlp::summarize(&s) {
                Ok((_, names)) => {
                    decoded += 1;
                    // Each metric costs at least its tag and length byte on the wire.
                    assert!(names.len() * 2 <= s.len(), "{} names from {} bytes", names.len(), s.len());
                }
                Err(_) => refused += 1,
            }
        }
    }
    eprintln!("otlp::summarize: {n} mutated requests (seed 0x005eed0f07140003): {decoded} decoded, {refused} refused");
}
