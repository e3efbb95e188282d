//! `/proc/net/dev`: two header lines, then `iface: 16 counters`.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDevs {
    pub interfaces: Vec<NetDev>,
    pub bad_lines: usize,
}

pub fn parse(text: &str) -> NetDevs {
    let mut out = NetDevs::default();
    for line in text.lines() {
        if line.contains('|') || line.trim().is_empty() {
            continue; // header
        }
        let Some((name, rest)) = line.split_once(':') else {
            out.bad_lines += 1;
            continue;
        };
        let n: Option<Vec<u64>> = rest.split_ascii_whitespace().map(|f| f.parse().ok()).collect();
        match n {
            Some(n) if n.len() >= 16 => out.interfaces.push(NetDev {
                interface: name.trim().to_string(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            }),
            _ => out.bad_lines += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_capture() {
        // "enp0s2:   16501     125 0 0 0 0 0 0    17875      99 0 0 0 0 0 0"
        let d = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/net/dev"));
        assert_eq!(d.bad_lines, 0);
        let e = d.interfaces.iter().find(|i| i.interface == "enp0s2").unwrap();
        assert_eq!((e.rx_bytes, e.rx_packets, e.tx_bytes, e.tx_packets), (16501, 125, 17875, 99));
        assert_eq!(d.interfaces.len(), 2);
    }
}
