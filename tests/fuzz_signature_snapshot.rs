//! Mutation fuzzing of what a mirror or the guest feeds the host, seeded with the real thing:
//! the OpenPGP verifiers (a gpg-made key, detached signatures armored and binary, a clearsigned
//! CHECKSUM; the signature packets themselves are mutated and re-armored, so the packet parser is
//! reached, not only the armor) and the collector's snapshot JSON (real samples from this machine
//! and from a fixture tree, mutated as bytes and as JSON values), run through everything the host
//! does with a snapshot (validate's checks, rows, rollups, CSV, Markdown, SVG and HTML; the
//! metric families). No panic; a signature never verifies for data it was not made for; a
//! clearsigned CHECKSUM that verifies never yields an entry the signer did not sign.
//!
//! Fixed seeds; the iteration counts are printed. `FUZZ_ITERATIONS=N` sets every count for a
//! longer local run.

mod common;

use common::gpg::Gpg;
use std::time::{Duration, Instant};
use sysmon_collector::snapshot::Snapshot;
use sysmon_collector::{Roots, Sampler, SamplerOptions};
use sysmonvm::image::{checksum, signature};
use sysmonvm::validate::checks::{self, Inputs, PhaseKind, PhaseWindow};
use sysmonvm::validate::report;

#[path = "common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Bytes that matter to OpenPGP packets and armor, and to JSON.
const JUNK: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b" ",
    b"-",
    b"- ",
    b"=",
    b"\0",
    b"\xff",
    b"\x80",
    b"\xff\xff\xff\xff",
    b"\xc2",
    b"\x88",
    b"-----BEGIN PGP SIGNATURE-----\n",
    b"-----END PGP SIGNATURE-----\n",
    b"-----BEGIN PGP SIGNED MESSAGE-----\n",
    b"Hash: SHA512\n",
    b"\n\n",
    b"{",
    b"}",
    b"[",
    b"\"",
    b",",
    b":",
    b"null",
    b"1e999",
    b"-1",
    b"18446744073709551616",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                // one bit: the smallest change a forgery could try
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 if !v.is_empty() => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let (a, b) = (a.min(b), a.max(b));
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(v.len() + 1);
                v.splice(at..at, JUNK[rng.below(JUNK.len())].iter().copied());
            }
            5 if !v.is_empty() => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                v.drain(a.min(b)..a.max(b));
            }
            _ => {}
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// OpenPGP

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// OpenPGP's armor checksum (RFC 4880 §6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// Armors (possibly mutated) signature packets, with a correct checksum so the armor is not
/// what rejects them.
fn armor_signature(packets: &[u8]) -> String {
    let body = base64(packets);
    let mut s = String::from("-----BEGIN PGP SIGNATURE-----\n\n");
    for line in body.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    let crc = crc24(packets).to_be_bytes();
    s.push_str(&format!("={}\n-----END PGP SIGNATURE-----\n", base64(&crc[1..])));
    s
}

fn dearmor(armored: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gpg")
        .args(["--batch", "--dearmor"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gpg --dearmor runs");
    child.stdin.take().unwrap().write_all(armored).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && !out.stdout.is_empty(), "gpg --dearmor failed");
    out.stdout
}

/// The signature block of a clearsigned document, split off its signed part.
fn split_clearsigned(doc: &str) -> (&str, &str) {
    let at = doc.find("-----BEGIN PGP SIGNATURE-----").expect("clearsigned document has a signature block");
    (&doc[..at], &doc[at..])
}

struct SignedMaterial {
    key: signature::TrustedKey,
    key_armored: String,
    fingerprint: String,
    data: Vec<u8>,
    /// Detached signatures: armored by the primary key, armored by the signing subkey, and both binary.
    detached: Vec<Vec<u8>>,
    clearsigned: String,
}

fn signed_material(algo: &str) -> SignedMaterial {
    let gpg = Gpg::new("Mirror Signer <mirror@example.test>", algo);
    let sub = gpg.add_signing_subkey();
    let data = format!(
        "# images\nSHA256 (disk.qcow2) = {}\n{}  other.img\n{} *binary.raw\n",
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64)
    )
    .into_bytes();
    let by_primary = gpg.detach_sign(&data, None);
    let by_subkey = gpg.detach_sign(&data, Some(&sub));
    let detached = vec![dearmor(&by_primary), dearmor(&by_subkey), by_primary, by_subkey];
    let clearsigned = gpg.clearsign(std::str::from_utf8(&data).unwrap());
    let key_armored = gpg.public_key_armored();
    let key = signature::load_key("fuzz.asc", &key_armored, Some(&gpg.fingerprint)).expect("gpg's key loads");
    // The seeds themselves verify, or the fuzzing below would prove nothing.
    for s in &detached {
        key.verify_detached(&data, s).expect("seed signature verifies");
    }
    let signed_text = key.verify_clearsigned(&clearsigned).expect("seed clearsigned verifies");
    assert_eq!(checksum::parse(&signed_text), checksum::parse(std::str::from_utf8(&data).unwrap()));
    assert_eq!(checksum::parse(&signed_text).len(), 3);
    SignedMaterial { key, key_armored, fingerprint: gpg.fingerprint.clone(), data, detached, clearsigned }
}

fn error_text(e: &signature::SignatureError) -> String {
    let text = sysmonvm::errors::chain(e);
    assert!(!text.is_empty());
    text
}

fn fuzz_signatures(algo: &str, seed: u64, rounds: usize) {
    // Printed first, so a failure's captured output names what reproduces it.
    eprintln!("fuzz signatures ({algo}): seed {seed:#018x}, {rounds} rounds");
    let started = Instant::now();
    let m = signed_material(algo);
    let made = started.elapsed();
    let signed_entries = checksum::parse(std::str::from_utf8(&m.data).unwrap());
    let mut rng = Rng(seed);
    let (mut verified, mut rejected) = (0usize, 0usize);
    let (clear_text, clear_sig) = split_clearsigned(&m.clearsigned);
    let clear_packets = dearmor(clear_sig.as_bytes());
    for round in 0..rounds {
        // Detached: the signature mutated (binary, armored, or its packets re-armored), the data
        // mutated, or both. It verifies only for the very bytes that were signed.
        let sig_seed = &m.detached[rng.below(m.detached.len())];
        let sig = match rng.below(4) {
            0 => sig_seed.clone(),
            1 if !sig_seed.starts_with(b"-----") => armor_signature(&mutate(&mut rng, sig_seed)).into_bytes(),
            _ => mutate(&mut rng, sig_seed),
        };
        let data = if rng.below(3) == 0 { m.data.clone() } else { mutate(&mut rng, &m.data) };
        match m.key.verify_detached(&data, &sig) {
            Ok(()) => {
                verified += 1;
                assert_eq!(data, m.data, "{algo} round {round}: a signature verified for data it was not made for");
            }
            Err(e) => {
                rejected += 1;
                let _ = error_text(&e);
            }
        }

        // Clearsigned: the text, the armor, or the signature packets (re-armored) mutated. What
        // verifies must hold exactly the signed entries (OpenPGP ignores trailing whitespace and
        // line endings in cleartext, nothing else).
        let doc = match rng.below(3) {
            0 => String::from_utf8_lossy(&mutate(&mut rng, m.clearsigned.as_bytes())).into_owned(),
            1 => format!("{clear_text}{}", armor_signature(&mutate(&mut rng, &clear_packets))),
            _ => format!("{}{clear_sig}", String::from_utf8_lossy(&mutate(&mut rng, clear_text.as_bytes()))),
        };
        let _ = signature::is_clearsigned(&doc);
        match m.key.verify_clearsigned(&doc) {
            Ok(text) => {
                verified += 1;
                assert_eq!(
                    checksum::parse(&text),
                    signed_entries,
                    "{algo} round {round}: a clearsigned CHECKSUM verified with other entries than were signed:\n{text}"
                );
            }
            Err(e) => {
                rejected += 1;
                let _ = error_text(&e);
            }
        }

        // The trusted key itself, as a mirror or a profile's key file could garble it. A key that
        // still loads with the pinned fingerprint is the same key: it must not verify changed data.
        if round % 4 == 0 {
            let key_text = String::from_utf8_lossy(&mutate(&mut rng, m.key_armored.as_bytes())).into_owned();
            match signature::load_key("fuzz.asc", &key_text, Some(&m.fingerprint)) {
                Ok(k) => {
                    assert_eq!(k.fingerprint, signature::normalize_fingerprint(&m.fingerprint));
                    let mut changed = m.data.clone();
                    changed[0] ^= 1;
                    assert!(k.verify_detached(&changed, &m.detached[0]).is_err(), "{algo} round {round}");
                }
                Err(e) => {
                    let _ = error_text(&e);
                }
            }
        }
    }
    eprintln!(
        "fuzz signatures ({algo}): seed {seed:#018x}, {rounds} rounds ({} verifications: {verified} verified, {rejected} rejected) in {:.1} s (gpg's key and signatures {:.1} s)",
        rounds * 2,
        started.elapsed().as_secs_f64(),
        made.as_secs_f64()
    );
}

#[test]
fn mutated_signatures_clearsigned_checksums_and_keys_never_panic_or_verify_what_was_not_signed() {
    if !common::have("gpg") {
        return;
    }
    // ed25519: what a modern mirror signs with. RSA: AlmaLinux's key type (slower to check, so
    // fewer rounds).
    fuzz_signatures("ed25519", 0x5167_0000_0000_0001, iterations(400));
    fuzz_signatures("rsa2048", 0x5167_0000_0000_0002, iterations(120));
}

// ---------------------------------------------------------------------------------------------
// Snapshot JSON

/// Real snapshots: two samples of this machine (the second has rates and usage), and one of a
/// fixture tree that has what a CI machine may lack (cpufreq policies, thermal zones, hwmon, a
/// Docker scope on cgroup v2).
fn real_snapshots() -> Vec<String> {
    let mut live = Sampler::new(Roots::default(), SamplerOptions { perf: false, cgroups: vec![], container: None });
    let first = live.sample();
    std::thread::sleep(Duration::from_millis(50));
    let second = live.sample();

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("collector/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, content: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    for f in ["stat", "cpuinfo", "meminfo", "diskstats", "net/dev", "mounts", "loadavg"] {
        put(&format!("proc/{f}"), &std::fs::read_to_string(fixtures.join("debian12-tcg-guest/proc").join(f)).unwrap());
    }
    put("proc/sys/kernel/hostname", "guest\n");
    put("proc/sys/kernel/osrelease", "6.1.0-27-amd64\n");
    put("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n");
    for cpu in 0..2 {
        let p = format!("sys/devices/system/cpu/cpu{cpu}/cpufreq");
        put(&format!("{p}/scaling_cur_freq"), "2893313\n");
        put(&format!("{p}/cpuinfo_min_freq"), "400000\n");
        put(&format!("{p}/cpuinfo_max_freq"), "4700000\n");
        put(&format!("{p}/scaling_governor"), "powersave\n");
        put(&format!("{p}/scaling_driver"), "intel_pstate\n");
    }
    put("sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
    put("sys/class/thermal/thermal_zone0/temp", "45000\n");
    put("sys/class/hwmon/hwmon1/name", "coretemp\n");
    put("sys/class/hwmon/hwmon1/temp2_input", "51500\n");
    put("sys/class/hwmon/hwmon1/temp2_label", "Core 0\n");
    let id = "532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b";
    put("sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    let scope = fixtures.join(format!("debian12-tcg-guest/cgroup-v2/system.slice/docker-{id}.scope.t0"));
    for e in std::fs::read_dir(&scope).unwrap().flatten() {
        let content = std::fs::read_to_string(e.path()).unwrap();
        put(&format!("sys/fs/cgroup/system.slice/docker-{id}.scope/{}", e.file_name().to_string_lossy()), &content);
    }
    let mut tree =
        Sampler::new(Roots::under(dir.path()), SamplerOptions { perf: false, cgroups: vec![], container: None });
    let _ = tree.sample();
    std::thread::sleep(Duration::from_millis(20));
    let fixture = tree.sample();
    assert!(!fixture.containers.is_empty() && !fixture.temperatures.is_empty(), "{fixture:?}");

    [first, second, fixture].iter().map(|s| serde_json::to_string(s).unwrap()).collect()
}

/// Values a hostile or broken guest could put anywhere in the document.
fn hostile_value(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(16) {
        0 => json!(null),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1.7976931348623157e308),
        5 => json!(-1.7976931348623157e308),
        6 => json!(5e-324),
        7 => json!(0.0),
        8 => json!(""),
        9 => json!("\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m<script>|x|\r\n"),
        10 => json!("x".repeat(10_000)),
        11 => json!([]),
        12 => json!({}),
        13 => json!(true),
        14 => json!("cpu99999999999"),
        _ => json!(4_294_967_296u64),
    }
}

/// Replaces, removes or duplicates one random node of a JSON document.
fn mutate_value(rng: &mut Rng, v: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let mut node = v;
    // Walk down a random path, stopping at a random depth.
    loop {
        let children = match &*node {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        if children == 0 || rng.below(4) == 0 {
            break;
        }
        let k = rng.below(children);
        node = match node {
            Value::Array(a) => &mut a[k],
            Value::Object(o) => o.values_mut().nth(k).unwrap(),
            _ => unreachable!(),
        };
    }
    // Two in three keep the node's type, so the document still parses and the host's code runs
    // on the extreme value; the rest put any value anywhere.
    if rng.below(3) != 0 {
        match &mut *node {
            Value::Number(n) if n.is_u64() => {
                *node = json!([0u64, 1, u64::MAX, u64::from(u32::MAX) + 1, 1 << 53][rng.below(5)]);
                return;
            }
            Value::Number(n) if n.is_f64() => {
                *node = json!([0.0, -1.0, 1e308, -1e308, 5e-324, 1e-300, 4.2e17][rng.below(7)]);
                return;
            }
            Value::String(_) => {
                *node = json!(
                    [
                        "",
                        "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m<script>|x|\r\n",
                        "cpu4294967295",
                        "\u{202e}evil",
                        "1970-01-01T00:00:00Z",
                        "none",
                        "perf"
                    ][rng.below(7)]
                );
                return;
            }
            Value::Bool(b) => {
                *b = !*b;
                return;
            }
            _ => {}
        }
    }
    match (rng.below(4), &mut *node) {
        (0, Value::Object(o)) if !o.is_empty() => {
            let k = o.keys().nth(rng.below(o.len())).unwrap().clone();
            o.remove(&k);
        }
        (1, Value::Array(a)) if !a.is_empty() => {
            // many copies of one element: a guest with a thousand CPUs or containers
            let e = a[rng.below(a.len())].clone();
            a.extend(std::iter::repeat_n(e, 1 + rng.below(1000)));
        }
        (2, Value::Object(o)) => {
            o.insert("unknown_field".into(), hostile_value(rng));
        }
        _ => *node = hostile_value(rng),
    }
}

/// Everything the host does with the snapshots it polled (`ops::validate`): the checks, the
/// report's rows, rollups, CSV files, Markdown, charts and HTML; and the metric families.
fn host_uses(snapshots: &[Snapshot]) {
    let t0 = snapshots.first().map(checks::snapshot_time).unwrap_or(0.0);
    let phases: Vec<PhaseWindow> = [PhaseKind::Idle, PhaseKind::One, PhaseKind::All, PhaseKind::Throttle]
        .iter()
        .enumerate()
        .map(|(k, kind)| PhaseWindow { kind: *kind, start: t0 - 1.0 + k as f64, end: t0 + k as f64 + 0.5 })
        .collect();
    let host = [checks::HostPoint { time: t0, name: "cpu0".into(), source: "host cpuinfo".into(), hz: 2.0e9 }];
    let inputs = Inputs {
        phases: &phases,
        collector: snapshots,
        refs: &[],
        perf: &[],
        perf_missing: Some("no PMU".into()),
        interval: 1.0,
        warmup: 0.0,
        tolerance: 5.0,
        throttle_cgroup: "system.slice/throttle.service",
        throttle_quota_pct: 50.0,
        otlp: &[(t0 + 1.0, t0)],
        latency_limit: 3.0,
        host: &host,
        host_missing: None,
    };
    let mut found = checks::all(&inputs);
    let exit_status = checks::exit_status(&mut found, false);
    let rows = report::rows(&inputs);
    let rollups = report::rollups(&rows);
    let _ = report::samples_csv(&rows);
    let _ = report::rollups_csv(&rollups);
    let r = report::Report {
        schema: report::SCHEMA.into(),
        run_id: "fuzz".into(),
        started: "2026-01-01T00:00:00Z".into(),
        finished: "2026-01-01T00:01:00Z".into(),
        vm: "fuzz".into(),
        profile: "debian-12-x86_64".into(),
        accel: "tcg".into(),
        settings: report::Settings {
            phases: phases.iter().map(|p| p.kind.as_str().to_string()).collect(),
            duration_per_phase_s: 1.0,
            interval_s: 1.0,
            warmup_s: 0.0,
            tolerance_pct: 5.0,
            latency_limit_s: 3.0,
            throttle_quota_pct: 50.0,
            require_frequency: false,
        },
        phases: phases.clone(),
        clock_offset_s: 0.0,
        clock_offset_uncertainty_s: 0.001,
        summary: report::Summary::of(&found, exit_status),
        checks: found,
        rollups,
        collector: report::CollectorSeen::of("container", snapshots, sysmonvm::validate::THROTTLE_CGROUP),
    };
    let _ = report::markdown(&r);
    let charts = report::charts(&r, &rows);
    let html = report::html(&r, &charts);
    assert!(!html.contains("<script>"), "guest text reached the HTML report unescaped");
    // The matrix's row of it, its table and its page: guest text (the failing sources' warnings)
    // escaped there too.
    use sysmonvm::validate::matrix;
    let spec =
        matrix::CellSpec { smp: 2, mode: sysmonvm::guest::collector_mode::CollectorMode::Container, governor: None };
    let cell = matrix::cell_of(spec, &r, "2026-01-01T00:00:00Z");
    let m = matrix::MatrixReport {
        schema: matrix::SCHEMA.into(),
        vm: "fuzz".into(),
        profile: r.profile.clone(),
        accel: r.accel.clone(),
        started: r.started.clone(),
        finished: None,
        complete: false,
        axes: matrix::Axes { smp: vec![2], mode: vec![cell.spec.mode], governor: vec![] },
        settings: r.settings.clone(),
        restore: matrix::Restore { smp: 2, mode: Default::default(), governors: vec![] },
        governor_axis: vec![],
        summary: matrix::MatrixSummary::of(std::slice::from_ref(&cell)),
        cells: vec![cell],
    };
    let _ = matrix::markdown(&m);
    let page = matrix::html(&m, &Default::default());
    assert!(!page.contains("<script>"), "guest text reached the matrix page unescaped");
    let _ = serde_json::to_string(&r).expect("the report serialises");
    for s in snapshots {
        let families = sysmon_collector::metrics::families(s);
        let _ = sysmon_collector::export::prometheus::render(&families);
    }
}

#[test]
fn mutated_snapshot_json_never_panics_the_host() {
    let started = Instant::now();
    let seed = 0x5a4a_0000_0000_0003;
    let rounds = iterations(1500);
    eprintln!("fuzz snapshot JSON: seed {seed:#018x}, {rounds} rounds");
    let mut rng = Rng(seed);
    let corpus = real_snapshots();
    let originals: Vec<Snapshot> = corpus.iter().map(|j| serde_json::from_str(j).unwrap()).collect();
    host_uses(&originals);
    let (mut parsed, mut refused) = (0usize, 0usize);
    for round in 0..rounds {
        let base = &corpus[rng.below(corpus.len())];
        let bytes = if rng.below(3) == 0 {
            mutate(&mut rng, base.as_bytes())
        } else {
            let mut v: serde_json::Value = serde_json::from_str(base).unwrap();
            for _ in 0..=rng.below(3) {
                mutate_value(&mut rng, &mut v);
            }
            serde_json::to_vec(&v).unwrap()
        };
        // What ops::validate does with a response body.
        match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(s) => {
                parsed += 1;
                // What parsed serialises and parses back to itself: the host can store and
                // re-read it (report files, --json output).
                let again = serde_json::to_string(&s).expect("a parsed snapshot serialises");
                // (Not bit-for-bit: serde_json's default float parsing may differ in the last digit.)
                let back: Snapshot = serde_json::from_str(&again).unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!((back.cpus.len(), back.warnings.len()), (s.cpus.len(), s.warnings.len()), "round {round}");
                let mut polled = originals.clone();
                polled.push(s);
                host_uses(&polled);
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // Nesting deeper than serde_json's limit is an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(serde_json::from_str::<Snapshot>(&deep).is_err());
    assert!(parsed > rounds / 8, "the mutations should leave many documents parsable: {parsed} of {rounds}");
    eprintln!(
        "fuzz snapshot JSON: seed {seed:#018x}, {rounds} rounds ({parsed} parsed, {refused} refused) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
