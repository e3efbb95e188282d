//! VM and image locks with real processes: a lock held by another process (`flock(1)`, the same
//! flock(2) lock sysmonvm takes), a waiter in a thread, the real `vm::destroy` removing the VM's
//! directory meanwhile; and a current-thread tokio runtime that keeps running its other tasks
//! while one of them waits for a lock.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use sysmonvm::lock::{self, LockError};
use sysmonvm::workspace::Workspace;

use common::{hold_lock_in_another_process as hold_in_another_process, release};

#[test]
fn a_waiter_on_a_vm_lock_is_not_broken_by_vm_destroy() {
    let d = tempfile::tempdir().unwrap();
    let ws = Workspace::at(d.path());
    let vm = ws.vm("lab").unwrap();
    std::fs::create_dir_all(&vm.dir).unwrap();
    std::fs::write(&vm.state, b"{}").unwrap();
    std::fs::write(&vm.disk, b"not really a disk").unwrap();
    let Some(holder) = hold_in_another_process(&vm.lock) else { return };

    let (told_tx, told_rx) = std::sync::mpsc::channel();
    let lock_path = vm.lock.clone();
    let waiter = std::thread::spawn(move || {
        lock::acquire(&lock_path, "VM lab", Duration::from_secs(30), |who| told_tx.send(who.to_string()).unwrap())
    });
    let who = told_rx.recv_timeout(Duration::from_secs(10)).expect("the waiter says it waits");
    assert_eq!(who, "another sysmonvm process", "flock writes no name into the file");

    // The VM is destroyed (by the holder, say) while the waiter waits.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(sysmonvm::vm::destroy(&vm)).unwrap();
    assert!(!vm.dir.exists(), "destroy removed the VM dir");
    assert!(vm.lock.exists(), "and left the lock file, which lives in {}", ws.vm_locks_dir().display());

    release(holder);
    let held = waiter.join().unwrap().expect("the waiter gets the lock once the holder is gone");
    // Still one lock: a newcomer must see the waiter as the holder, not take a fresh file.
    match lock::acquire(&vm.lock, "VM lab", Duration::ZERO, |_| {}) {
        Err(LockError::Held { holder, .. }) => {
            assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
        }
        other => panic!("a second owner of VM lab: {other:?}"),
    }
    let Some(newcomer) = hold_in_another_process_nonblocking(&vm.lock) else { return };
    assert!(!newcomer, "flock in another process took the lock the waiter holds");
    drop(held);
}

/// Whether another process can take the lock at `path` right now.
fn hold_in_another_process_nonblocking(path: &Path) -> Option<bool> {
    if !common::have("flock") {
        return None;
    }
    Some(Command::new("flock").args(["--exclusive", "--nonblock"]).arg(path).arg("true").status().unwrap().success())
}

#[test]
fn waiting_for_a_lock_does_not_stop_a_current_thread_runtime() {
    let d = tempfile::tempdir().unwrap();
    let ws = Workspace::at(d.path());
    let path = ws.vm("lab").unwrap().lock;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ticks = Arc::new(AtomicU32::new(0));
    {
        let ticks = ticks.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    // acquire_async: the ticker keeps ticking while the lock is held elsewhere for ~600 ms.
    let Some(holder) = hold_in_another_process(&path) else { return };
    let (waited, ticked) = rt.block_on(async {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            release(holder);
        });
        let before = ticks.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut told = false;
        let lock = lock::acquire_async(&path, "VM lab", Duration::from_secs(30), |_| told = true).await.unwrap();
        assert!(told, "the caller is told it waits");
        drop(lock);
        (start.elapsed(), ticks.load(Ordering::Relaxed) - before)
    });
    assert!(waited >= Duration::from_millis(500), "it did wait: {waited:?}");
    eprintln!("acquire_async waited {waited:?}; the other task ticked {ticked} times");
    assert!(ticked >= 10, "the other task ran only {ticked} times in {waited:?}");

    // The measure tells the two apart: the blocking acquire stops every other task meanwhile.
    let Some(holder) = hold_in_another_process(&path) else { return };
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        release(holder);
    });
    let ticked_blocking = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let before = ticks.load(Ordering::Relaxed);
        let lock = lock::acquire(&path, "VM lab", Duration::from_secs(30), |_| {}).unwrap();
        let after = ticks.load(Ordering::Relaxed);
        drop(lock);
        after - before
    });
    releaser.join().unwrap();
    assert_eq!(ticked_blocking, 0, "the blocking acquire let other tasks run?");
}
