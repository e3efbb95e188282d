//! Exclusive locks on a VM or a cache entry, so two sysmonvm processes never race on the same
//! files. The holder writes who it is into the lock file; a second process waits (saying for whom)
//! or, past its patience, fails naming the holder. Locks are released by the OS when the holder
//! exits, even after `kill -9`.
//!
//! A lock file must never be deleted while anyone may hold or wait on it: the waiter keeps the
//! old (deleted) file open and would lock it, while a newcomer creates a fresh file of the same
//! name and locks that — two owners. So lock files live in the workspace's `locks/` directories
//! (see `workspace`), which nothing removes, and this module never deletes one.
//!
//! Async callers use [`acquire_async`], which waits with `tokio::time::sleep` between attempts,
//! so a task waiting for a lock never blocks a runtime worker thread.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a waiter sleeps between attempts.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is locked by {holder} ({path}); waited {waited:?}")]
    Held { what: String, holder: String, path: PathBuf, waited: Duration },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io { path: path.to_path_buf(), source }
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() { "another sysmonvm process".to_string() } else { s.to_string() }
}

/// Opens (creating it and its private parent directory if needed) the lock file.
fn open(path: &Path) -> Result<File, LockError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io_error(parent))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

/// One attempt: `Ok(None)` when taken, `Ok(Some(holder))` when someone else holds it.
fn attempt(file: &mut File, path: &Path) -> Result<Option<String>, LockError> {
    match file.try_lock() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(holder(file))),
        Err(TryLockError::Error(e)) => Err(io_error(path)(e)),
    }
}

/// Writes who holds the lock into it, for waiters to show.
fn stamp(mut file: File, path: &Path) -> Result<Lock, LockError> {
    let me = format!("sysmonvm pid {} ({})", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    file.set_len(0).map_err(io_error(path))?;
    file.rewind().map_err(io_error(path))?;
    file.write_all(me.as_bytes()).map_err(io_error(path))?;
    Ok(Lock { _file: file, path: path.to_path_buf() })
}

/// What a wait loop does after a failed attempt: give up, or tell the caller once and go on.
struct Wait<'a, F: FnMut(&str)> {
    path: &'a Path,
    what: &'a str,
    patience: Duration,
    start: Instant,
    told: bool,
    on_wait: F,
}

impl<F: FnMut(&str)> Wait<'_, F> {
    fn after_busy(&mut self, who: String) -> Result<(), LockError> {
        if self.start.elapsed() >= self.patience {
            return Err(LockError::Held {
                what: self.what.to_string(),
                holder: who,
                path: self.path.to_path_buf(),
                waited: self.start.elapsed(),
            });
        }
        if !self.told {
            (self.on_wait)(&who);
            self.told = true;
        }
        Ok(())
    }
}

/// Takes the lock at `path`, waiting up to `patience` and calling `on_wait` once with the holder.
/// Blocks the calling thread while it waits: from async code use [`acquire_async`].
pub fn acquire(path: &Path, what: &str, patience: Duration, on_wait: impl FnMut(&str)) -> Result<Lock, LockError> {
    let mut file = open(path)?;
    let mut wait = Wait { path, what, patience, start: Instant::now(), told: false, on_wait };
    while let Some(who) = attempt(&mut file, path)? {
        wait.after_busy(who)?;
        std::thread::sleep(POLL);
    }
    stamp(file, path)
}

/// [`acquire`] for async callers: between attempts it sleeps with `tokio::time::sleep`, so other
/// tasks (on a current-thread runtime too) keep running while this one waits.
pub async fn acquire_async(
    path: &Path,
    what: &str,
    patience: Duration,
    on_wait: impl FnMut(&str),
) -> Result<Lock, LockError> {
    let mut file = open(path)?;
    let mut wait = Wait { path, what, patience, start: Instant::now(), told: false, on_wait };
    while let Some(who) = attempt(&mut file, path)? {
        wait.after_busy(who)?;
        tokio::time::sleep(POLL).await;
    }
    stamp(file, path)
}

/// Who holds the lock at `path` right now, without waiting and without creating the file:
/// `None` when nobody does (or the file does not exist). For checks such as "is this VM being
/// changed?"; the answer can change the moment it is returned.
pub fn holder_of(path: &Path) -> Result<Option<String>, LockError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    // Dropping `file` releases the probe's lock at once when it got it.
    attempt(&mut file, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_names_the_first() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let first = acquire(&p, "vm x", Duration::ZERO, |_| {}).unwrap();
        let mut seen = String::new();
        let e = acquire(&p, "vm x", Duration::from_millis(250), |who| seen = who.to_string()).unwrap_err();
        assert!(seen.contains(&format!("pid {}", std::process::id())), "{seen}");
        assert!(e.to_string().contains("vm x is locked by sysmonvm pid"), "{e}");
        assert_eq!(holder_of(&p).unwrap().as_deref(), Some(seen.as_str()));
        drop(first);
        assert_eq!(holder_of(&p).unwrap(), None);
        acquire(&p, "vm x", Duration::ZERO, |_| {}).unwrap();
    }

    #[test]
    fn the_locks_directory_is_made_private_and_a_missing_file_has_no_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("locks/vm-a.lock");
        assert_eq!(holder_of(&p).unwrap(), None);
        assert!(!p.exists(), "probing creates nothing");
        let _l = acquire(&p, "VM a", Duration::ZERO, |_| {}).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
