//! Mutation fuzzing of the terminal sanitizer (fixed seed, counts printed): whatever a guest
//! prints, what reaches the terminal holds no escape, no C1 and no C0 control but newline and tab,
//! sanitising again changes nothing, and plain text passes unchanged.

#[path = "common/fuzz_rng.rs"]
mod fuzz_rng;
use fuzz_rng::Rng;

/// Pieces real hostile output is made of: sequences that start, end or nest badly.
const PIECES: &[&str] = &[
    "\u{1b}[",
    "\u{1b}]",
    "\u{1b}P",
    "\u{1b}\\",
    "\u{7}",
    "\u{9b}",
    "\u{9d}",
    "\u{9c}",
    "\u{90}",
    "\u{1b}",
    "0;title",
    "2J",
    "H",
    "31m",
    "\r",
    "\n",
    "\t",
    "\u{0}",
    "\u{8}",
    "\u{7f}",
    "ok",
    "ü",
    "中",
    "@@sysmonvm begin x",
    ";",
    "[",
];

#[test]
fn the_sanitizer_leaves_no_control_function() {
    let seed = 0x5a71_715e_0014_0001u64;
    let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    println!("fuzz_sanitize: seed {seed:#x}, {iterations} iterations");
    let mut rng = Rng(seed);
    for i in 0..iterations {
        let mut text = String::new();
        for _ in 0..rng.below(40) {
            if rng.below(4) == 0 {
                text.push(char::from_u32(rng.below(0x110) as u32).unwrap_or('?'));
            } else {
                text.push_str(PIECES[rng.below(PIECES.len())]);
            }
        }
        for out in [sysmonvm::sanitize::terminal(&text), sysmonvm::sanitize::line(&text)] {
            let bad = out.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t');
            assert!(bad.is_none(), "iteration {i}: {bad:?} left in {out:?} from {text:?}");
            assert_eq!(sysmonvm::sanitize::terminal(&out), out, "iteration {i}: not idempotent for {text:?}");
        }
        assert!(!sysmonvm::sanitize::line(&text).contains('\n'), "iteration {i}: {text:?}");
    }
    let plain = "Debian GNU/Linux 12 (bookworm) — sysmon-collector 0.1.0 ✓\n\tnext line";
    assert_eq!(sysmonvm::sanitize::terminal(plain), plain);
}
