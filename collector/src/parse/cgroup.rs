//! cgroup files that are not plain `key value` lists: `cpu.max`, `io.stat` (v2),
//! `blkio.throttle.io_service_bytes` (v1) and single values that may read `max`.

/// `cpu.max`: `max 100000` or `50000 100000` → (quota µs or None for no limit, period µs).
pub fn cpu_max(text: &str) -> Option<(Option<u64>, u64)> {
    let mut it = text.split_ascii_whitespace();
    let quota = match it.next()? {
        "max" => None,
        q => Some(q.parse().ok()?),
    };
    let period: u64 = it.next()?.parse().ok()?;
    (period > 0).then_some((quota, period))
}

/// A value that may be `max` (no limit). Returns `Some(None)` for `max`.
pub fn limit(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        v => v.parse().ok().map(Some),
    }
}

/// Bytes read and written, summed over devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoBytes {
    pub read: u64,
    pub write: u64,
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device. Lines with no
/// stats at all (a device name only) occur on real systems and are skipped.
pub fn io_stat(text: &str) -> IoBytes {
    let mut out = IoBytes::default();
    for line in text.lines() {
        for field in line.split_ascii_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("rbytes", v)) => out.read = out.read.saturating_add(v.parse().unwrap_or(0)),
                Some(("wbytes", v)) => out.write = out.write.saturating_add(v.parse().unwrap_or(0)),
                _ => {}
            }
        }
    }
    out
}

/// v1 `blkio.throttle.io_service_bytes`: `8:0 Read 123` … `Total 456`.
pub fn blkio_service_bytes(text: &str) -> IoBytes {
    let mut out = IoBytes::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if let [_, op, v] = f[..] {
            let v = v.parse::<u64>().unwrap_or(0);
            match op {
                "Read" => out.read = out.read.saturating_add(v),
                "Write" => out.write = out.write.saturating_add(v),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_forms() {
        assert_eq!(cpu_max("50000 100000\n"), Some((Some(50_000), 100_000)));
        assert_eq!(cpu_max("max 100000"), Some((None, 100_000)));
        assert_eq!(cpu_max("max 0"), None);
        assert_eq!(cpu_max("max"), None);
    }

    #[test]
    fn io_stat_real_captures() {
        // fixtures/cgroup-v2/io.stat.ubuntu-devices-without-stats-prefix-a-line
        let t = include_str!("../../tests/fixtures/cgroup-v2/io.stat.ubuntu-devices-without-stats-prefix-a-line");
        let io = io_stat(t);
        let expect_read: u64 =
            t.split_ascii_whitespace().filter_map(|f| f.strip_prefix("rbytes=")?.parse::<u64>().ok()).sum();
        assert_eq!(io.read, expect_read);
        assert!(io.read > 0);
    }

    #[test]
    fn blkio_v1_docker_capture() {
        let io = blkio_service_bytes(include_str!(
            "../../tests/fixtures/cgroup-v1/docker-container.blkio.throttle.io_service_bytes"
        ));
        assert!(io.read > 0 || io.write > 0);
    }

    #[test]
    fn limits() {
        assert_eq!(limit("max\n"), Some(None));
        assert_eq!(limit("123"), Some(Some(123)));
        assert_eq!(limit("-1"), None);
    }
}
