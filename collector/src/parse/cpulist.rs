//! Kernel CPU lists such as `0-3,8,10-11` (`online`, `related_cpus` uses spaces instead).

/// Larger than any real machine; stops `0-4294967295` from allocating the world.
const MAX_CPUS: u32 = 16_384;

pub fn parse(text: &str) -> Option<Vec<u32>> {
    // Ranges are merged before they are expanded: `0-16383,` repeated a million times is a
    // million ranges, not sixteen billion CPU numbers.
    let mut ranges = Vec::new();
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
        ranges.push((lo, hi));
    }
    ranges.sort_unstable();
    let mut out: Vec<u32> = Vec::new();
    for (lo, hi) in ranges {
        let from = out.last().map_or(lo, |&last| lo.max(last + 1));
        out.extend(from..=hi);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{MAX_CPUS, parse};

    #[test]
    fn ranges_commas_and_spaces() {
        assert_eq!(parse("0-2,5\n"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse("3 4 5 6"), Some(vec![3, 4, 5, 6]));
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(parse("5-1"), None);
        assert_eq!(parse("0-4294967295"), None);
        assert_eq!(parse("x"), None);
        assert_eq!(parse("4-6,0-1,5-9,2,3,9"), Some((0..=9).collect()));
    }

    #[test]
    fn overlapping_ranges_are_merged_not_expanded_each() {
        // 1 MiB of full ranges: expanded one by one this would be 2^31 CPU numbers (8 GiB).
        let text = "0-16383,".repeat(128 << 10);
        assert_eq!(parse(&text), Some((0..MAX_CPUS).collect()));
    }
}
