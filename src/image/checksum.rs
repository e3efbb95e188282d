//! CHECKSUM files in both common forms, with comments and blank lines:
//! GNU coreutils `<hex>  <name>` (or `<hex> *<name>` in binary mode) and BSD-tagged
//! `SHA256 (<name>) = <hex>` — AlmaLinux publishes the tagged form. Entries are picked by file name.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub digest: String,
}

fn hex_ok(s: &str, alg: Algorithm) -> bool {
    s.len() == alg.hex_len() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn tagged(line: &str) -> Option<Entry> {
    let (tag, rest) = line.split_once(" (")?;
    let algorithm = match tag.trim() {
        "SHA256" => Algorithm::Sha256,
        "SHA512" => Algorithm::Sha512,
        _ => return None,
    };
    let (file, digest) = rest.rsplit_once(") = ")?;
    let digest = digest.trim();
    hex_ok(digest, algorithm).then(|| Entry { file: file.to_string(), algorithm, digest: digest.to_ascii_lowercase() })
}

fn gnu(line: &str) -> Option<Entry> {
    let (digest, rest) = line.split_once(char::is_whitespace)?;
    let algorithm = match digest.len() {
        64 => Algorithm::Sha256,
        128 => Algorithm::Sha512,
        _ => return None,
    };
    if !hex_ok(digest, algorithm) {
        return None;
    }
    let file = rest.trim_start_matches([' ', '\t']);
    let file = file.strip_prefix('*').unwrap_or(file).trim_end();
    (!file.is_empty()).then(|| Entry { file: file.to_string(), algorithm, digest: digest.to_ascii_lowercase() })
}

/// Every entry the text holds; lines that are neither form are ignored.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| tagged(l).or_else(|| gnu(l)))
        .collect()
}

/// The SHA-256 entry for `file` (SHA-512 entries are listed by `parse` but not used for images).
pub fn sha256_for<'a>(entries: &'a [Entry], file: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| e.algorithm == Algorithm::Sha256 && (e.file == file || e.file.rsplit('/').next() == Some(file)))
}

/// The size a `# <name>: <n> bytes` comment gives for `file` (AlmaLinux writes one above each
/// entry); `None` when the text has no such comment for it.
pub fn size_for(text: &str, file: &str) -> Option<u64> {
    text.lines().map(str::trim).find_map(|l| {
        let (name, size) = l.strip_prefix('#')?.trim().rsplit_once(": ")?;
        let name = name.trim();
        if name != file && name.rsplit('/').next() != Some(file) {
            return None;
        }
        size.trim().strip_suffix("bytes")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6c1e1c3b03d5b2b1c0a1b1bd4c6e2f6a7a4c9a7d6f2d0e4a6c9b0e8f7a6d5c4b";

    #[test]
    fn almalinux_tagged_form_with_comments() {
        // The layout of AlmaLinux's cloud image CHECKSUM (BSD-tagged, `#` comment lines).
        let text = format!(
            "# AlmaLinux-9-GenericCloud-9.5-20241120.aarch64.qcow2: 553648128 bytes\nSHA256 (AlmaLinux-9-GenericCloud-9.5-20241120.aarch64.qcow2) = {A}\n# AlmaLinux-9-GenericCloud-latest.aarch64.qcow2: 553648128 bytes\nSHA256 (AlmaLinux-9-GenericCloud-latest.aarch64.qcow2) = {}\n",
            A.to_uppercase()
        );
        let e = parse(&text);
        assert_eq!(e.len(), 2);
        let latest = sha256_for(&e, "AlmaLinux-9-GenericCloud-latest.aarch64.qcow2").unwrap();
        assert_eq!(latest.digest, A);
        assert!(sha256_for(&e, "other.qcow2").is_none());
        assert_eq!(size_for(&text, "AlmaLinux-9-GenericCloud-latest.aarch64.qcow2"), Some(553648128));
        assert_eq!(size_for(&text, "other.qcow2"), None);
        assert_eq!(size_for("# x.qcow2: many bytes\n# x.qcow2 1 bytes\n", "x.qcow2"), None);
    }

    #[test]
    fn gnu_text_and_binary_modes_and_names_with_spaces() {
        let text = format!("{A}  debian 12.qcow2\n{A} *bin.img\nnot a line\n{}  short\n", &A[..10]);
        let e = parse(&text);
        assert_eq!(e.iter().map(|e| e.file.as_str()).collect::<Vec<_>>(), vec!["debian 12.qcow2", "bin.img"]);
    }

    #[test]
    fn wrong_length_or_unknown_tag_is_ignored() {
        assert!(parse(&format!("MD5 (x) = {}\nSHA256 (x) = abc\n", &A[..32])).is_empty());
    }
}
