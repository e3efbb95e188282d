//! Exclusive locks on a VM or a cache entry, so two sysmonvm processes never race on the same
//! files. The holder writes who it is into the lock file; a second process waits (saying for whom)
//! or, past its patience, fails naming the holder. Locks are released by the OS when the holder
//! exits, even after `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is locked by {holder} ({path}); waited {waited:?}")]
    Held { what: String, holder: String, path: PathBuf, waited: Duration },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() { "another sysmonvm process".to_string() } else { s.to_string() }
}

/// Takes the lock at `path`, waiting up to `patience` and calling `on_wait` once with the holder.
pub fn acquire(path: &Path, what: &str, patience: Duration, mut on_wait: impl FnMut(&str)) -> Result<Lock, LockError> {
    let io = |source| LockError::Io { path: path.to_path_buf(), source };
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path).map_err(io)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let who = holder(&mut file);
                if start.elapsed() >= patience {
                    return Err(LockError::Held {
                        what: what.to_string(),
                        holder: who,
                        path: path.to_path_buf(),
                        waited: start.elapsed(),
                    });
                }
                if !told {
                    on_wait(&who);
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    let me = format!("sysmonvm pid {} ({})", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(me.as_bytes()).map_err(io)?;
    Ok(Lock { _file: file, path: path.to_path_buf() })
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
        drop(first);
        acquire(&p, "vm x", Duration::ZERO, |_| {}).unwrap();
    }
}
