//! The cached KVM self-test with the real QEMU on this machine: the first call runs the test
//! (on kvm_pvm it fails — a real verdict, cached like a pass), the next ones answer from the cache
//! without launching QEMU, a changed binary is tested again, a corrupt cache file is ignored, and
//! with running not allowed and nothing cached the verdict is "unverified".

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use sysmonvm::profile::Arch;
use sysmonvm::qemu::accel::{
    HostFacts, SelfTest, SelfTestCache, SelfTestOutcome, SelfTestRequest, SelfTestSource, kvm_self_test_cached_with,
};

const SETTLE: Duration = Duration::from_secs(3);

fn run(qemu: &Path, cache: &Path, host: &HostFacts, allow_run: bool) -> (SelfTestOutcome, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let start = Instant::now();
    let outcome = rt.block_on(kvm_self_test_cached_with(
        qemu,
        &SelfTestRequest { cache_file: cache, guest: Arch::X86_64, host, settle: SETTLE, allow_run },
    ));
    (outcome, start.elapsed())
}

/// A private copy of the system QEMU, so the test can change "the binary" without touching it.
fn qemu_copy(dir: &Path) -> Option<PathBuf> {
    if !common::have("qemu-system-x86_64") {
        return None;
    }
    let system = sysmonvm::qemu::accel::find_on_path("qemu-system-x86_64", &std::env::var_os("PATH").unwrap())?;
    let copy = dir.join("qemu-system-x86_64");
    std::fs::copy(&system, &copy).unwrap();
    Some(copy)
}

#[test]
fn the_self_test_verdict_is_cached_per_binary_and_retested_when_it_changes() {
    let host = HostFacts::detect();
    if !host.kvm_device || host.arch != "x86_64" || host.os != sysmonvm::qemu::accel::HostOs::Linux {
        eprintln!("SKIPPED: no /dev/kvm on an x86_64 Linux host");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let Some(qemu) = qemu_copy(d.path()) else { return };
    let cache = d.path().join("ws/cache/accel-selftest.json");

    // Nothing cached and running not allowed: unverified, and QEMU was not started.
    let (skipped, _) = run(&qemu, &cache, &host, false);
    assert_eq!(skipped.source, SelfTestSource::Skipped);
    assert!(matches!(&skipped.result, SelfTest::NotRun(why) if why.contains("unverified")), "{:?}", skipped.result);
    assert!(!cache.exists());

    let (first, took) = run(&qemu, &cache, &host, true);
    eprintln!("first run ({took:?}): {:?}", first.result);
    assert_eq!(first.source, SelfTestSource::Ran);
    assert!(!matches!(first.result, SelfTest::NotRun(_)), "a real verdict: {:?}", first.result);
    assert!(first.not_saved.is_none(), "{:?}", first.not_saved);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o600);

    // Answered from the cache without launching QEMU: with the binary not executable (a mode
    // change is not part of the key) a launch would be "cannot start … permission denied".
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o644)).unwrap();
    for allow_run in [true, false] {
        let (again, took) = run(&qemu, &cache, &host, allow_run);
        assert!(matches!(again.source, SelfTestSource::Cached { .. }), "{:?}", again.source);
        assert_eq!(again.result, first.result);
        assert!(took < SETTLE, "{took:?}");
    }
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A new QEMU at the same path (an upgrade changes mtime and usually size): tested again.
    let f = std::fs::File::options().write(true).open(&qemu).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(86_400)).unwrap();
    drop(f);
    let (stale, _) = run(&qemu, &cache, &host, false);
    assert_eq!(stale.source, SelfTestSource::Skipped, "the old verdict is not used for a changed binary");
    let (retested, _) = run(&qemu, &cache, &host, true);
    assert_eq!(retested.source, SelfTestSource::Ran);
    let saved = SelfTestCache::load(&cache);
    assert_eq!(saved.entries.len(), 1, "the new verdict replaced the old one for this binary");

    // A corrupt cache file costs one test run, never an error.
    std::fs::write(&cache, b"{\"version\": 1, \"entries\": [").unwrap();
    let (after_corrupt, _) = run(&qemu, &cache, &host, true);
    assert_eq!(after_corrupt.source, SelfTestSource::Ran);
    assert_eq!(
        std::mem::discriminant(&after_corrupt.result),
        std::mem::discriminant(&retested.result),
        "{:?} then {:?}",
        retested.result,
        after_corrupt.result
    );
    assert_eq!(SelfTestCache::load(&cache).entries.len(), 1, "rewritten whole");
}

#[test]
fn host_facts_that_rule_kvm_out_need_no_qemu_and_no_cache() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("accel-selftest.json");
    let host = HostFacts {
        os: sysmonvm::qemu::accel::HostOs::Linux,
        arch: "x86_64".into(),
        kvm_device: false,
        hvf_supported: false,
    };
    let (outcome, _) = run(Path::new("/nonexistent/qemu"), &cache, &host, true);
    assert_eq!(outcome.source, SelfTestSource::Precheck);
    assert_eq!(outcome.result, SelfTest::NotRun("has no /dev/kvm".into()));
    assert!(!cache.exists());
}
