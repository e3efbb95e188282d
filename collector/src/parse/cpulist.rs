//! Kernel CPU lists such as `0-3,8,10-11` (`online`, `related_cpus` uses spaces instead).

/// Larger than any real machine; stops `0-4294967295` from allocating the world.
const MAX_CPUS: u32 = 16_384;

pub fn parse(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi >= MAX_CPUS {
            return None;
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn ranges_commas_and_spaces() {
        assert_eq!(parse("0-2,5\n"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse("3 4 5 6"), Some(vec![3, 4, 5, 6]));
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(parse("5-1"), None);
        assert_eq!(parse("0-4294967295"), None);
        assert_eq!(parse("x"), None);
    }
}
