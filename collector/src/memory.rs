//! The `memory` source: `/proc/meminfo`.

use crate::files::KernelFiles;
use crate::parse;
use crate::roots::Roots;
use crate::snapshot::Memory;
use crate::warnings::Warnings;

/// Reads /proc/meminfo. Every field is null when the file cannot be read; a key the kernel did not
/// print (or printed garbled) is null and named in a warning, never a 0.
pub fn read(roots: &Roots, files: &mut KernelFiles, w: &mut Warnings) -> Memory {
    let path = roots.proc("meminfo");
    let Some(text) = files.or_warn(&path, w) else { return Memory::default() };
    let m = parse::meminfo::parse(&text);
    if m.bad_lines > 0 {
        w.file(&path, format!("{} line(s) unreadable", m.bad_lines));
    }
    let missing: Vec<&str> = [
        ("MemTotal", m.total),
        ("MemFree", m.free),
        ("MemAvailable", m.available),
        ("Buffers", m.buffers),
        ("Cached", m.cached),
        ("SwapTotal", m.swap_total),
        ("SwapFree", m.swap_free),
    ]
    .iter()
    .filter(|(_, v)| v.is_none())
    .map(|(k, _)| *k)
    .collect();
    if !missing.is_empty() {
        w.file(&path, format!("no value for {}", missing.join(", ")));
    }
    let used = match (m.total, m.free, m.buffers, m.cached) {
        (Some(t), Some(f), Some(b), Some(c)) => {
            Some(t.saturating_sub(f).saturating_sub(b).saturating_sub(c).saturating_sub(m.sreclaimable.unwrap_or(0)))
        }
        _ => None,
    };
    Memory {
        total_bytes: m.total,
        free_bytes: m.free,
        available_bytes: m.available,
        buffers_bytes: m.buffers,
        cached_bytes: m.cached,
        used_bytes: used,
        swap_total_bytes: m.swap_total,
        swap_free_bytes: m.swap_free,
        swap_used_bytes: match (m.swap_total, m.swap_free) {
            (Some(t), Some(f)) => Some(t.saturating_sub(f)),
            _ => None,
        },
    }
}
