//! The `network` source: interfaces from `/proc/net/dev`, with byte rates against the previous sample.

use crate::disk::rate;
use crate::files::KernelFiles;
use crate::parse::netdev;
use crate::roots::Roots;
use crate::snapshot::Network;
use crate::warnings::Warnings;
use std::collections::HashMap;

/// Received and sent bytes of one interface, kept for the next sample's rates.
pub type ByteCounters = (u64, u64);

/// Reads /proc/net/dev. Returns the interfaces and this sample's byte counters by interface.
pub fn read(
    roots: &Roots,
    files: &mut KernelFiles,
    previous: Option<&HashMap<String, ByteCounters>>,
    secs: Option<f64>,
    w: &mut Warnings,
) -> (Vec<Network>, HashMap<String, ByteCounters>) {
    let path = roots.host_view("net/dev");
    let stats = files.or_warn(&path, w).map(|t| netdev::parse(&t)).unwrap_or_default();
    if stats.bad_lines > 0 {
        w.file(&path, format!("{} line(s) unreadable", stats.bad_lines));
    }
    let networks = stats
        .interfaces
        .iter()
        .map(|n| {
            let b = previous.and_then(|p| p.get(&n.interface));
            Network {
                interface: n.interface.clone(),
                rx_bytes: n.rx_bytes,
                tx_bytes: n.tx_bytes,
                rx_packets: n.rx_packets,
                tx_packets: n.tx_packets,
                rx_errors: n.rx_errors,
                tx_errors: n.tx_errors,
                rx_dropped: n.rx_dropped,
                tx_dropped: n.tx_dropped,
                rx_bytes_per_second: rate(n.rx_bytes, b.map(|b| b.0), secs),
                tx_bytes_per_second: rate(n.tx_bytes, b.map(|b| b.1), secs),
            }
        })
        .collect();
    let counters = stats.interfaces.iter().map(|n| (n.interface.clone(), (n.rx_bytes, n.tx_bytes))).collect();
    (networks, counters)
}
