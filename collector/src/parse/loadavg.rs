//! `/proc/loadavg`: `0.20 0.18 0.12 1/80 11206`.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

pub fn parse(text: &str) -> Option<LoadAvg> {
    let mut it = text.split_ascii_whitespace().map(|f| f.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0));
    Some(LoadAvg { load1: it.next()??, load5: it.next()??, load15: it.next()?? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_capture_and_garbage() {
        let l = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/loadavg")).unwrap();
        assert!(l.load1 >= 0.0);
        assert_eq!(parse("0.5 0.25 0.125 1/2 3"), Some(LoadAvg { load1: 0.5, load5: 0.25, load15: 0.125 }));
        assert_eq!(parse("0.5 x 0.1"), None);
        assert_eq!(parse("NaN 1 1"), None);
        assert_eq!(parse(""), None);
    }
}
