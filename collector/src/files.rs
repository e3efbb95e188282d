//! Reading kernel files. procfs, sysfs and cgroupfs files regenerate their content on every read
//! from offset 0, so [`KernelFiles`] keeps the files a sampler reads every time open and re-reads
//! them with `pread` — one syscall per file per sample instead of open, read, read, close. Syscalls
//! are the collector's main cost inside a VM.

use crate::warnings::Warnings;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Reads a kernel file. procfs and sysfs report a size of 0 or 4096 whatever the content, so
/// asking for the size first (as `std::fs::read` does) is a wasted syscall: read until EOF.
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a small kernel file to a string. Errors are rendered for a warning.
pub fn read_text(path: &Path) -> Result<String, String> {
    match read_bytes(path) {
        Ok(bytes) => Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("not found".into()),
        Err(e) => Err(format!("unreadable: {e}")),
    }
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
    fn read_from(file: &File, buf: &mut Vec<u8>) -> std::io::Result<String> {
        buf.resize(BUFFER, 0);
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(buf.len() * 2, 0);
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
        if let Some(f) = self.open.get(path) {
            match Self::read_from(f, &mut self.buf) {
                Ok(s) => return Ok(s),
                // The file went away (a container stopped, a CPU went offline): forget it and retry once.
                Err(_) => {
                    self.open.remove(path);
                }
            }
        }
        let f = File::open(path)?;
        let text = Self::read_from(&f, &mut self.buf)?;
        if self.open.len() < MAX_OPEN {
            self.open.insert(path.to_path_buf(), f);
        }
        Ok(text)
    }

    pub fn optional(&mut self, path: &Path) -> Option<String> {
        self.read(path).ok()
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
    fn live_proc_files_reread_through_pread() {
        let mut k = KernelFiles::default();
        let a = k.read(Path::new("/proc/stat")).unwrap();
        let b = k.read(Path::new("/proc/stat")).unwrap();
        assert!(a.starts_with("cpu ") && b.starts_with("cpu "));
        assert!(k.read(Path::new("/proc/self/statm")).unwrap().split_whitespace().count() >= 2);
    }
}
