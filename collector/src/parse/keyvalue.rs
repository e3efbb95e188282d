//! Files of `key value` lines with integer values: cgroup `cpu.stat`, `memory.stat`,
//! `cpuacct.stat`, and `/proc/pressure/*` style. Keys may repeat across files, never within one.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues(pub Vec<(String, u64)>);

impl KeyValues {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

pub fn parse(text: &str) -> KeyValues {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        if let (Some(k), Some(v), None) = (it.next(), it.next(), it.next())
            && let Ok(v) = v.parse::<u64>()
        {
            out.push((k.to_string(), v));
        }
    }
    KeyValues(out)
}

/// `/etc/os-release`: `KEY=value` with optional shell quoting.
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        Some(v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v2_cpu_stat_from_the_guest_capture() {
        let kv = parse(include_str!(
            "../../tests/fixtures/debian12-tcg-guest/cgroup-v2/system.slice/docker-532ca1ad07c60006d469e6db4158b377dc2a6d0b5de2a57eef1bb493bbf1a65b.scope.t0/cpu.stat"
        ));
        assert_eq!(kv.get("usage_usec"), Some(4_557_704));
        assert_eq!(kv.get("nr_throttled"), Some(89));
        assert_eq!(kv.get("missing"), None);
    }

    #[test]
    fn os_release_quotes() {
        let t = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(os_release_field(t, "PRETTY_NAME").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release_field(t, "ID").as_deref(), Some("debian"));
    }
}
