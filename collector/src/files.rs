//! Reading kernel files. procfs, sysfs and cgroupfs files regenerate their content on every read
//! from offset 0, so [`KernelFiles`] keeps the files a sampler reads every time open and re-reads
//! them with `pread` — one syscall per file per sample instead of open, read, read, close. Syscalls
//! are the collector's main cost inside a VM.

use crate::warnings::Warnings;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// No file the collector reads comes near this (/proc/stat of 1024 CPUs is ~150 KiB, /proc/mounts
/// of a busy Kubernetes node a few MiB). A longer one is not what its path says (an endless device
/// such as /dev/zero in its place, a file growing as fast as it is read) and is refused with an
/// error instead of being read until memory runs out.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// The cap for one-value text fields (a governor, a driver or sensor name, a frequency, a
/// temperature, the hostname, the machine id): a few dozen bytes in every kernel; a sysfs
/// attribute is at most one page. A longer one is refused rather than carried into every sample.
pub const MAX_FIELD_BYTES: usize = 4 << 10;

fn too_large(cap: usize) -> std::io::Error {
    let what = if cap >= 1 << 20 {
        format!("longer than {} MiB, which no kernel file is", cap >> 20)
    } else {
        format!("longer than {} KiB, which no one-value kernel field is", cap >> 10)
    };
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// Opens a file for reading without waiting: a FIFO in place of a kernel file would otherwise
/// block the open until some writer appears (forever). procfs, sysfs, cgroupfs and regular files
/// ignore `O_NONBLOCK`.
fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

/// Reads a kernel file. procfs and sysfs report a size of 0 or 4096 whatever the content, so
/// asking for the size first (as `std::fs::read` does) is a wasted syscall: read until EOF (at
/// most [`MAX_FILE_BYTES`]).
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    read_bytes_capped(path, MAX_FILE_BYTES)
}

/// [`read_bytes`] with its own cap: more than `cap` bytes is an error, and at most one chunk
/// past the cap is ever held.
fn read_bytes_capped(path: &Path, cap: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open(path)?;
    let mut out = Vec::with_capacity(cap.min(4096));
    let mut chunk = [0u8; 8192];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > cap => return Err(too_large(cap)),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn text_of(r: std::io::Result<Vec<u8>>) -> Result<String, String> {
    match r {
        Ok(bytes) => Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("not found".into()),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

/// Reads a small kernel file to a string. Errors are rendered for a warning.
pub fn read_text(path: &Path) -> Result<String, String> {
    text_of(read_bytes(path))
}

/// Reads a one-value field (at most [`MAX_FIELD_BYTES`]), trimmed; an empty one is None.
/// Errors are rendered for a warning.
pub fn read_field(path: &Path) -> Result<Option<String>, String> {
    let text = text_of(read_bytes_capped(path, MAX_FIELD_BYTES))?;
    let t = text.trim();
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// A one-value field, or None when it is missing, empty, unreadable or too long.
pub fn field_optional(path: &Path) -> Option<String> {
    read_field(path).ok().flatten()
}

/// Reads a file once, recording a warning and returning None when it cannot be read.
pub fn read_or_warn(path: &Path, warnings: &mut Warnings) -> Option<String> {
    match read_text(path) {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.file(path, e);
            None
        }
    }
}

/// The text of a file, or None when it cannot be read (for optional files).
pub fn read_optional(path: &Path) -> Option<String> {
    read_text(path).ok()
}

/// Enough for /proc/stat on a few hundred CPUs in one read; larger files take more reads.
const BUFFER: usize = 64 * 1024;
/// Open files kept at most (a 256-CPU machine with cpufreq and a few dozen containers fits).
const MAX_OPEN: usize = 1024;

/// Files kept open between samples, read from offset 0 each time.
#[derive(Default)]
pub struct KernelFiles {
    open: HashMap<PathBuf, File>,
    buf: Vec<u8>,
}

fn render(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound { "not found".into() } else { format!("unreadable: {e}") }
}

impl KernelFiles {
    fn read_from(file: &File, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<String> {
        // One byte past the cap tells a file of exactly `cap` bytes from a longer one.
        buf.resize(BUFFER.min(cap + 1), 0);
        let mut len = 0;
        loop {
            if len == buf.len() {
                if len > cap {
                    // A refused file's bytes are not kept for the collector's lifetime.
                    if buf.len() > BUFFER {
                        *buf = Vec::new();
                    }
                    return Err(too_large(cap));
                }
                buf.resize((buf.len() * 2).min(cap + 1), 0);
            }
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    // A short read of a kernel file is its end: seq_file and sysfs fill the buffer
                    // until they run out. This saves the second, empty read.
                    if len < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    pub fn read(&mut self, path: &Path) -> std::io::Result<String> {
        self.read_capped(path, MAX_FILE_BYTES)
    }

    fn read_capped(&mut self, path: &Path, cap: usize) -> std::io::Result<String> {
        if let Some(f) = self.open.get(path) {
            match Self::read_from(f, &mut self.buf, cap) {
                Ok(s) => return Ok(s),
                // The file went away (a container stopped, a CPU went offline): forget it and retry once.
                Err(_) => {
                    self.open.remove(path);
                }
            }
        }
        let f = open(path)?;
        let text = Self::read_from(&f, &mut self.buf, cap)?;
        if self.open.len() < MAX_OPEN {
            self.open.insert(path.to_path_buf(), f);
        }
        Ok(text)
    }

    pub fn optional(&mut self, path: &Path) -> Option<String> {
        self.read(path).ok()
    }

    /// A one-value field (at most [`MAX_FIELD_BYTES`]), trimmed; None when it is missing,
    /// empty, unreadable or longer.
    pub fn field(&mut self, path: &Path) -> Option<String> {
        let text = self.read_capped(path, MAX_FIELD_BYTES).ok()?;
        let t = text.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    pub fn or_warn(&mut self, path: &Path, warnings: &mut Warnings) -> Option<String> {
        match self.read(path) {
            Ok(s) => Some(s),
            Err(e) => {
                warnings.file(path, render(&e));
                None
            }
        }
    }

    /// Forgets files below `dir` (a container whose cgroup disappeared).
    pub fn forget_under(&mut self, dir: &Path) {
        self.open.retain(|p, _| !p.starts_with(dir));
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_see_new_content_and_removed_files_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one\n").unwrap();
        let mut k = KernelFiles::default();
        assert_eq!(k.read(&p).unwrap(), "one\n");
        std::fs::write(&p, "two, longer\n").unwrap();
        assert_eq!(k.read(&p).unwrap(), "two, longer\n");
        std::fs::write(&p, "3\n").unwrap();
        assert_eq!(k.read(&p).unwrap(), "3\n");
        assert_eq!(k.open_count(), 1);
        let big = "x".repeat(200_000);
        std::fs::write(&p, &big).unwrap();
        assert_eq!(k.read(&p).unwrap().len(), 200_000);
        std::fs::remove_file(&p).unwrap();
        // An unlinked regular file stays readable through the fd; kernel files fail instead. Either way no panic.
        let _ = k.read(&p);
        assert!(k.read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn an_endless_device_is_refused_and_a_fifo_does_not_block() {
        let mut k = KernelFiles::default();
        let e = k.read(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("longer than 16 MiB"), "{e}");
        assert!(read_text(Path::new("/dev/urandom")).unwrap_err().contains("longer than 16 MiB"));
        // The refused read's buffer is not kept.
        assert_eq!(k.read(Path::new("/proc/self/statm")).map(|s| s.is_empty()).ok(), Some(false));
        assert!(k.buf.capacity() <= 4 * BUFFER, "{}", k.buf.capacity());

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: an empty read, or an error for pread on a pipe; either way it returns.
        assert_eq!(read_text(&fifo).unwrap(), "");
        assert!(k.read(&fifo).is_err());

        // A file of exactly the cap is still read whole, by both readers.
        let exact = dir.path().join("exact");
        std::fs::write(&exact, vec![b'7'; MAX_FILE_BYTES]).unwrap();
        assert_eq!(k.read(&exact).unwrap().len(), MAX_FILE_BYTES);
        assert_eq!(read_bytes(&exact).unwrap().len(), MAX_FILE_BYTES);
        std::fs::write(&exact, vec![b'7'; MAX_FILE_BYTES + 1]).unwrap();
        assert!(k.read(&exact).is_err() && read_bytes(&exact).is_err());
    }

    #[test]
    fn one_value_fields_have_their_own_small_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scaling_governor");
        let mut k = KernelFiles::default();
        std::fs::write(&p, "  schedutil\n").unwrap();
        assert_eq!((k.field(&p).as_deref(), field_optional(&p).as_deref()), (Some("schedutil"), Some("schedutil")));
        std::fs::write(&p, "\n").unwrap();
        assert_eq!((k.field(&p), read_field(&p)), (None, Ok(None)));
        // Exactly the cap is read whole; one byte more is refused, by both readers.
        std::fs::write(&p, vec![b'g'; MAX_FIELD_BYTES]).unwrap();
        assert_eq!(k.field(&p).map(|s| s.len()), Some(MAX_FIELD_BYTES));
        assert_eq!(field_optional(&p).map(|s| s.len()), Some(MAX_FIELD_BYTES));
        std::fs::write(&p, vec![b'g'; MAX_FIELD_BYTES + 1]).unwrap();
        assert_eq!(k.field(&p), None);
        assert_eq!(read_field(&p), Err("unreadable: longer than 4 KiB, which no one-value kernel field is".into()));
        // The whole-file reader still takes it, and an endless device is refused at the field cap.
        assert_eq!(k.read(&p).unwrap().len(), MAX_FILE_BYTES.min(MAX_FIELD_BYTES + 1));
        assert_eq!(k.field(Path::new("/dev/zero")), None);
        assert!(read_field(Path::new("/dev/zero")).unwrap_err().contains("longer than 4 KiB"));
    }

    #[test]
    fn live_proc_files_reread_through_pread() {
        let mut k = KernelFiles::default();
        let a = k.read(Path::new("/proc/stat")).unwrap();
        let b = k.read(Path::new("/proc/stat")).unwrap();
        assert!(a.starts_with("cpu ") && b.starts_with("cpu "));
        assert!(k.read(Path::new("/proc/self/statm")).unwrap().split_whitespace().count() >= 2);
    }
}
