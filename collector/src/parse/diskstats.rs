//! `/proc/diskstats` (Documentation/admin-guide/iostats.rst). Sectors are always 512 bytes here.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStat {
    pub name: String,
    pub reads: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub io_ms: u64,
}

pub const SECTOR_BYTES: u64 = 512;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub disks: Vec<DiskStat>,
    pub bad_lines: usize,
}

pub fn parse(text: &str) -> DiskStats {
    let mut out = DiskStats::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        // major minor name + at least the 11 fields every kernel since 2.6 prints.
        let n = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        match (fields.get(2), n(3), n(5), n(6), n(7), n(9), n(10), n(12)) {
            (Some(name), Some(reads), Some(sr), Some(rms), Some(writes), Some(sw), Some(wms), Some(io)) => {
                out.disks.push(DiskStat {
                    name: name.to_string(),
                    reads,
                    sectors_read: sr,
                    read_ms: rms,
                    writes,
                    sectors_written: sw,
                    write_ms: wms,
                    io_ms: io,
                });
            }
            _ => out.bad_lines += 1,
        }
    }
    out
}

/// Whole disks only, as node_exporter's default device exclusion: partitions, RAM disks, loop and
/// floppy devices are left out so that bytes are not counted twice.
pub fn is_whole_disk(name: &str) -> bool {
    fn ends_in_digits_after(name: &str, prefix_ok: impl Fn(&str) -> bool) -> bool {
        let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
        stem.len() < name.len() && prefix_ok(stem)
    }
    let letters = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase());
    if ["ram", "zram", "loop", "fd"].iter().any(|p| ends_in_digits_after(name, |s| s == *p)) {
        return false;
    }
    // sda1, vdb2, hda3, xvda1
    if ends_in_digits_after(name, |s| ["sd", "vd", "hd", "xvd"].iter().any(|p| s.strip_prefix(p).is_some_and(letters)))
    {
        return false;
    }
    // nvme0n1p2, mmcblk0p1
    if let Some((disk, part)) = name.rsplit_once('p')
        && !part.is_empty()
        && part.chars().all(|c| c.is_ascii_digit())
        && (disk.starts_with("nvme") || disk.starts_with("mmcblk"))
        && disk.ends_with(|c: char| c.is_ascii_digit())
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_capture_first_disk() {
        // fixtures/debian12-tcg-guest/proc/diskstats: "254 0 vda 2613 798 188978 2886 440 787 73024 20157 0 2992 23215 ..."
        let d = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/diskstats"));
        let vda = d.disks.iter().find(|d| d.name == "vda").unwrap();
        assert_eq!((vda.reads, vda.sectors_read, vda.read_ms), (2613, 188_978, 2886));
        assert_eq!((vda.writes, vda.sectors_written, vda.write_ms, vda.io_ms), (440, 73_024, 20_157, 2992));
        assert_eq!(d.bad_lines, 0);
    }

    #[test]
    fn whole_disks() {
        for yes in ["vda", "sda", "nvme0n1", "mmcblk0", "dm-0", "md0", "xvdb", "sr0"] {
            assert!(is_whole_disk(yes), "{yes}");
        }
        for no in ["vda1", "sda12", "nvme0n1p2", "mmcblk0p1", "loop0", "ram1", "zram0", "fd0", "xvda1"] {
            assert!(!is_whole_disk(no), "{no}");
        }
    }
}
