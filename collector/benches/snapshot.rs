//! One full snapshot (every reader, both samples' worth of state) on this machine and on 8- and
//! 64-CPU fixture trees, and the Prometheus rendering of a 64-CPU snapshot.
//! Run: `cargo bench -p sysmon-collector --bench snapshot`.

#[path = "../tests/common/mod.rs"]
mod common;

use divan::Bencher;
use sysmon_collector::{Roots, Sampler, SamplerOptions, export, metrics};

fn main() {
    divan::main();
}

#[divan::bench(args = [8, 64])]
fn fixture_snapshot(bencher: Bencher, cpus: u32) {
    let tree = common::synthetic_machine(cpus);
    let mut s = Sampler::new(tree.roots(), SamplerOptions { perf: false, cgroups: vec![], ..Default::default() });
    let snap = s.sample();
    assert_eq!(snap.cpus.len(), cpus as usize);
    assert!(snap.cpus.iter().all(|c| c.frequency_hz.is_some()));
    bencher.bench_local(|| s.sample());
}

#[divan::bench]
fn live_snapshot(bencher: Bencher) {
    let mut s = Sampler::new(Roots::default(), SamplerOptions::default());
    s.sample();
    bencher.bench_local(|| s.sample());
}

#[divan::bench]
fn prometheus_render_64_cpus(bencher: Bencher) {
    let tree = common::synthetic_machine(64);
    let mut s = Sampler::new(tree.roots(), SamplerOptions { perf: false, cgroups: vec![], ..Default::default() });
    s.sample();
    let snap = s.sample();
    bencher.bench_local(|| export::prometheus::render(&metrics::families(&snap)));
}
