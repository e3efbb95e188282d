//! `/proc/mounts` (fstab format, octal escapes such as `\040` for a space).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4]).ok().and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            Some(Mount { device: unescape(f.next()?), mountpoint: unescape(f.next()?), fstype: f.next()?.to_string() })
        })
        .collect()
}

/// Filesystems that hold no user data; statvfs on them is noise (node_exporter's default exclusions).
pub fn is_pseudo(fstype: &str) -> bool {
    matches!(
        fstype,
        "autofs"
            | "binfmt_misc"
            | "bpf"
            | "cgroup"
            | "cgroup2"
            | "configfs"
            | "debugfs"
            | "devpts"
            | "devtmpfs"
            | "fusectl"
            | "hugetlbfs"
            | "iso9660"
            | "mqueue"
            | "nsfs"
            | "overlay"
            | "proc"
            | "procfs"
            | "pstore"
            | "rpc_pipefs"
            | "securityfs"
            | "selinuxfs"
            | "squashfs"
            | "sysfs"
            | "tracefs"
            | "tmpfs"
            | "ramfs"
            | "efivarfs"
            | "fuse.lxcfs"
            | "fuse.portal"
            | "fuse.gvfsd-fuse"
            | "nfsd"
            | "erofs"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_capture_root_is_real_and_pseudo_are_marked() {
        let m = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/mounts"));
        let root = m.iter().find(|m| m.mountpoint == "/").unwrap();
        assert_eq!((root.device.as_str(), root.fstype.as_str()), ("/dev/vda2", "ext4"));
        assert!(!is_pseudo("ext4"));
        assert!(m.iter().filter(|m| m.fstype == "sysfs").all(|m| is_pseudo(&m.fstype)));
    }

    #[test]
    fn octal_escapes() {
        let m = parse("/dev/sdb1 /media/my\\040disk vfat rw 0 0\nbad\n/dev/x /y\\04 ext4 rw 0 0");
        assert_eq!(m[0].mountpoint, "/media/my disk");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mountpoint, "/y\\04");
    }
}
