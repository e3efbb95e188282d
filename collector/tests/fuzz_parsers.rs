//! Every parser must survive any input: property tests over arbitrary text, and a bounded
//! mutation fuzzer over the real captures (bytes flipped, lines cut, chunks duplicated). Runs in
//! CI on every change; `FUZZ_ITERATIONS` raises the count for a longer local run.

mod common;

use proptest::prelude::*;
use sysmon_collector::parse::{
    cgroup, cpuinfo, cpulist, diskstats, keyvalue, loadavg, meminfo, mounts, netdev, stat, throttle,
};
use sysmon_collector::{Sampler, SamplerOptions};

/// Every parser in one place, so adding a parser without fuzzing it is a visible omission.
fn all_parsers(text: &str) {
    let s = stat::parse(text);
    for (_, t) in &s.cpus {
        let _ = t.busy();
        let _ = t.since(&stat::CpuTimes::default());
    }
    let _ = cpuinfo::parse(text);
    let _ = cpulist::parse(text);
    let _ = diskstats::parse(text);
    let _ = diskstats::is_whole_disk(text);
    let _ = keyvalue::parse(text);
    let _ = keyvalue::os_release_field(text, "PRETTY_NAME");
    let _ = loadavg::parse(text);
    let _ = meminfo::parse(text);
    let _ = mounts::parse(text);
    let _ = netdev::parse(text);
    let _ = throttle::parse(text);
    let _ = cgroup::cpu_max(text);
    let _ = cgroup::limit(text);
    let _ = cgroup::io_stat(text);
    let _ = cgroup::blkio_service_bytes(text);
    let _ = sysmon_collector::parse::single_u64(text);
    let _ = sysmon_collector::config::parse_duration(text);
    let _ = sysmon_collector::config::parse(std::path::Path::new("f.json"), text);
    let _ = sysmon_collector::config::parse(std::path::Path::new("f.yaml"), text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in ".{0,400}") {
        all_parsers(&text);
    }

    #[test]
    fn kernel_shaped_text(lines in prop::collection::vec("(cpu[0-9]{0,3}|[a-zA-Z_]{1,12}:?|[0-9]{1,4}) ( ?[-0-9a-fx.]{0,22}){0,18}", 0..12)) {
        all_parsers(&lines.join("\n"));
    }
}

#[path = "../../tests/common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if !v.is_empty() => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let (a, b) = (a.min(b), a.max(b));
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            3 => {
                let at = rng.below(v.len() + 1);
                let junk: &[u8] =
                    [b"\n".as_slice(), b" ", b"-1", b"18446744073709551616", b"\0", b":", b"=", b"\xff\xfe", b"max"]
                        [rng.below(9)];
                v.splice(at..at, junk.iter().copied());
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = b"0123456789 \n:"[rng.below(13)];
            }
            _ => {}
        }
    }
    v
}

const CORPUS: &[&str] = &[
    "debian12-tcg-guest/proc/stat",
    "debian12-tcg-guest/proc/cpuinfo",
    "debian12-tcg-guest/proc/meminfo",
    "debian12-tcg-guest/proc/diskstats",
    "debian12-tcg-guest/proc/net/dev",
    "debian12-tcg-guest/proc/mounts",
    "debian12-tcg-guest/proc/loadavg",
    "proc-stat/node-exporter-fixture-8cpu.stat",
    "proc-stat/gopsutil-testdata-424.stat",
    "proc-cpuinfo/aarch64-apple-m1-asahi-baremetal.cpuinfo",
    "proc-cpuinfo/armv7-aarch32-on-arm64-gopsutil-testdata.cpuinfo",
    "proc-cpuinfo/x86_64-intel-i7-1165G7-kernel6.2.cpuinfo",
    "cgroup-v1/docker-container.blkio.throttle.io_service_bytes",
    "cgroup-v1/docker-container.memory.stat",
    "cgroup-v2/io.stat.ubuntu2-trailing-devices-without-stats",
    "cgroup-v2/session-scope.cpu.stat",
    "cgroup-v2/session-scope.cpu.max",
];

#[test]
fn mutated_real_captures() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for name in CORPUS {
        let original = std::fs::read(common::fixtures().join(name)).unwrap();
        for _ in 0..iterations {
            let m = mutate(&mut rng, &original);
            all_parsers(&String::from_utf8_lossy(&m));
        }
    }
}

#[test]
fn sampler_over_a_garbled_tree_never_panics_and_always_returns_a_sample() {
    let mut rng = Rng(0xfeed_0000_0000_0042);
    let files = [
        ("proc/stat", "debian12-tcg-guest/proc/stat"),
        ("proc/cpuinfo", "debian12-tcg-guest/proc/cpuinfo"),
        ("proc/meminfo", "debian12-tcg-guest/proc/meminfo"),
        ("proc/diskstats", "debian12-tcg-guest/proc/diskstats"),
        ("proc/net/dev", "debian12-tcg-guest/proc/net/dev"),
        ("proc/mounts", "debian12-tcg-guest/proc/mounts"),
        ("proc/loadavg", "debian12-tcg-guest/proc/loadavg"),
    ];
    let t = common::Tree::new();
    t.write("proc/net/dev", "");
    t.write("sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1000000\n");
    t.write("sys/fs/cgroup/cgroup.controllers", "cpu memory io pids\n");
    let scope =
        "sys/fs/cgroup/system.slice/docker-532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b.scope";
    let mut s = Sampler::new(
        t.roots(),
        SamplerOptions { perf: false, cgroups: vec!["system.slice".into()], ..Default::default() },
    );
    for round in 0..150 {
        for (dest, src) in files {
            let m = mutate(&mut rng, common::fixture(src).as_bytes());
            std::fs::write(t.path(dest), m).unwrap();
        }
        for (f, v) in [
            ("cpu.stat", "usage_usec 100\nnr_throttled 1\n"),
            ("cpu.max", "50000 100000\n"),
            ("memory.max", "max\n"),
            ("io.stat", "8:0 rbytes=1 wbytes=2\n"),
        ] {
            t.write(&format!("{scope}/{f}"), &String::from_utf8_lossy(&mutate(&mut rng, v.as_bytes())));
        }
        t.write(
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
            &String::from_utf8_lossy(&mutate(&mut rng, b"1000000\n")),
        );
        let snap = s.sample();
        let json = serde_json::to_string(&snap).unwrap();
        assert!(json.contains("\"warnings\""), "round {round}");
        let _ = sysmon_collector::export::prometheus::render(&sysmon_collector::metrics::families(&snap));
    }
}
