//! No panic on any input: the CHECKSUM parser, the profile loader (arbitrary text and mutations
//! of the real profiles), the field locator, Content-Range parsing, the signature checker, the
//! powermetrics plist parser (mutations of real captures), validate's reference and perf-stat
//! parsers, the guest-address and systemctl parsers, and the runner's marker lines.

use proptest::prelude::*;
use sysmonvm::image::{checksum, download, signature};
use sysmonvm::profile;

fn everything(text: &str) {
    let entries = checksum::parse(text);
    for e in &entries {
        assert!(e.digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let _ = checksum::sha256_for(&entries, &e.file);
        let _ = checksum::size_for(text, &e.file);
    }
    if let Err(e) = profile::parse("fuzz.yaml", text) {
        let _ = e.to_string();
    }
    let _ = profile::locate(text, "image.mirrors[2]");
    let _ = download::parse_content_range(text);
    let _ = signature::is_clearsigned(text);
    let _ = signature::load_key("fuzz", text, None);
    let _ = sysmonvm::validate::refs::parse(text);
    let _ = sysmonvm::validate::perfstat::parse(text);
    let _ = sysmonvm::guest::collector::parse_guest_address(text);
    let _ = sysmonvm::guest::collector::parse_properties(text);
    let mut markers = sysmonvm::guest::steps::MarkerLines::new("5f0c9a7e21d34b68");
    for line in text.lines() {
        let _ = sysmonvm::guest::steps::parse_marker(line, "5f0c9a7e21d34b68");
        markers.line(line, &mut |_| {});
    }
    markers.finish(&mut |_| {});
    let _ = sysmonvm::host::powermetrics::parse_stream(text.as_bytes());
    if let Some((ps, c)) = sysmonvm::host::parse_vm_stat(text) {
        let _ = sysmonvm::host::vm_stat_used_bytes(ps, &c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in ".{0,300}") {
        everything(&text);
    }

    #[test]
    fn checksum_shaped_lines(lines in prop::collection::vec("(SHA256|SHA512|MD5|#)? ?\\(?[a-zA-Z0-9._ -]{0,20}\\)? ?=? ?[0-9a-fA-F]{0,130} {0,2}\\*?[a-z.]{0,10}", 0..8)) {
        everything(&lines.join("\n"));
    }
}

#[path = "common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

#[test]
fn mutated_real_profiles_and_checksums() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let corpus = [
        include_str!("fixtures/powermetrics/m1-macbookpro17_1-cpu_power-plist-sample-a.plist").to_string(),
        include_str!("fixtures/powermetrics/m2-two-samples.stream").to_string(),
        include_str!("../profiles/almalinux-9-aarch64.yaml").to_string(),
        include_str!("../profiles/almalinux-9-x86_64.yaml").to_string(),
        format!("# c\nSHA256 (a.qcow2) = {}\n{}  b.img\n", "a".repeat(64), "b".repeat(64)),
    ];
    let junk: [&str; 14] =
        [":", "\n", "  ", "- ", "[", "{", "\"", "0x", "é", "~", "\0", "<real>", "</dict>", "<integer>-1"];
    for base in &corpus {
        for _ in 0..iterations {
            let mut s: Vec<char> = base.chars().collect();
            for _ in 0..=rng.below(3) {
                match rng.below(3) {
                    0 if !s.is_empty() => {
                        let at = rng.below(s.len());
                        s.remove(at);
                    }
                    1 => {
                        let at = rng.below(s.len() + 1);
                        for (k, c) in junk[rng.below(junk.len())].chars().enumerate() {
                            s.insert(at + k, c);
                        }
                    }
                    _ => s.truncate(rng.below(s.len() + 1)),
                }
            }
            everything(&s.into_iter().collect::<String>());
        }
    }
}
