//! The `network` source's families: bytes, packets, errors and drops per interface.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let ndir = |d: &'static str| s("network.io.direction", d);
    for (otel, prom, unit, help, get) in [
        (
            "system.network.io",
            "system_network_io_bytes_total",
            "By",
            "Bytes received and sent per interface.",
            (|n: &crate::snapshot::Network| (n.rx_bytes, n.tx_bytes)) as fn(&crate::snapshot::Network) -> (u64, u64),
        ),
        (
            "system.network.packets",
            "system_network_packets_total",
            "{packet}",
            "Packets received and sent per interface.",
            |n| (n.rx_packets, n.tx_packets),
        ),
        (
            "system.network.errors",
            "system_network_errors_total",
            "{error}",
            "Receive and transmit errors per interface.",
            |n| (n.rx_errors, n.tx_errors),
        ),
        ("system.network.dropped", "system_network_dropped_total", "{packet}", "Packets dropped per interface.", |n| {
            (n.rx_dropped, n.tx_dropped)
        }),
    ] {
        let p = b.family(otel, prom, unit, Kind::Counter, help);
        for n in &snap.networks {
            let (rx, tx) = get(n);
            p.push(Point {
                labels: vec![s("network.interface.name", &n.interface), ndir("receive")],
                value: rx as f64,
            });
            p.push(Point {
                labels: vec![s("network.interface.name", &n.interface), ndir("transmit")],
                value: tx as f64,
            });
        }
    }

    b.finish()
}
