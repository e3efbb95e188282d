//! Choosing the accelerator. `auto` picks hvf on macOS when `kern.hv_support` says so, kvm only
//! when a real self-test passes, else tcg with a warning. The self-test matters: `/dev/kvm` can
//! exist and still fail (on kvm_pvm QEMU starts, then the firmware dies with a KVM internal error
//! within seconds, or QEMU 7.2 aborts on `-cpu host` at once).
//!
//! The self-test takes seconds, so its verdict is cached per (QEMU binary, its size and mtime,
//! host kernel release, guest arch) in the workspace ([`kvm_self_test_cached`]): a new QEMU or a
//! new kernel is tested again, and `vm argv` can show what `vm start` would resolve without
//! launching QEMU each time.

use super::argv::ResolvedAccel;
use crate::profile::{Accel, Arch};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host operating systems sysmonvm tells apart (`std::env::consts::OS` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostOs {
    Linux,
    Macos,
    Other,
}

impl HostOs {
    pub fn this() -> HostOs {
        HostOs::parse(std::env::consts::OS)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostOs::Linux => "linux",
            HostOs::Macos => "macos",
            HostOs::Other => std::env::consts::OS,
        }
    }

    pub fn parse(os: &str) -> HostOs {
        match os {
            "linux" => HostOs::Linux,
            "macos" => HostOs::Macos,
            _ => HostOs::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostFacts {
    pub os: HostOs,
    pub arch: String,
    pub kvm_device: bool,
    pub hvf_supported: bool,
}

impl std::fmt::Display for HostOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let hvf_supported = HostOs::this() == HostOs::Macos
            && std::process::Command::new("sysctl")
                .args(["-n", "kern.hv_support"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1");
        HostFacts {
            os: HostOs::this(),
            arch: std::env::consts::ARCH.to_string(),
            kvm_device: Path::new("/dev/kvm").exists(),
            hvf_supported,
        }
    }

    /// Whether the guest's architecture is the host's (hardware acceleration needs that).
    pub fn native(&self, guest: Arch) -> bool {
        self.arch == guest.as_str()
    }
}

/// Outcome of running a guest's firmware under KVM for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelfTest {
    Passed,
    Failed(String),
    NotRun(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccelError {
    #[error("accelerator {0} is not available here: {1}")]
    Unavailable(&'static str, String),
}

/// The pure choice. `requested` is the flag, else `SYSMONVM_ACCEL`, else the profile.
pub fn choose(
    requested: Accel,
    guest: Arch,
    host: &HostFacts,
    kvm_test: &SelfTest,
) -> Result<(ResolvedAccel, Option<String>), AccelError> {
    let native = host.native(guest);
    match requested {
        Accel::Tcg => Ok((ResolvedAccel::Tcg, None)),
        Accel::Hvf => {
            if host.os != HostOs::Macos || !host.hvf_supported || !native {
                return Err(AccelError::Unavailable(
                    "hvf",
                    format!(
                        "needs an {} Mac with kern.hv_support = 1 (host: {} {})",
                        guest.as_str(),
                        host.os,
                        host.arch
                    ),
                ));
            }
            Ok((ResolvedAccel::Hvf, None))
        }
        Accel::Kvm => match kvm_test {
            SelfTest::Passed => Ok((ResolvedAccel::Kvm, None)),
            SelfTest::Failed(why) | SelfTest::NotRun(why) => Err(AccelError::Unavailable("kvm", why.clone())),
        },
        Accel::Auto => {
            if host.os == HostOs::Macos && host.hvf_supported && native {
                return Ok((ResolvedAccel::Hvf, None));
            }
            match kvm_test {
                SelfTest::Passed => Ok((ResolvedAccel::Kvm, None)),
                SelfTest::Failed(why) | SelfTest::NotRun(why) => {
                    Ok((ResolvedAccel::Tcg, Some(format!("using tcg (software emulation, much slower): kvm {why}"))))
                }
            }
        }
    }
}

pub fn parse_accel(s: &str) -> Option<Accel> {
    match s {
        "auto" => Some(Accel::Auto),
        "hvf" => Some(Accel::Hvf),
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

/// What host facts alone decide about the KVM self-test: `Some(NotRun)` when it cannot apply.
pub fn self_test_precheck(guest: Arch, host: &HostFacts) -> Option<SelfTest> {
    if host.os != HostOs::Linux {
        return Some(SelfTest::NotRun("is Linux only".into()));
    }
    if !host.native(guest) {
        return Some(SelfTest::NotRun(format!("cannot run an {} guest on an {} host", guest.as_str(), host.arch)));
    }
    if !host.kvm_device {
        return Some(SelfTest::NotRun("has no /dev/kvm".into()));
    }
    None
}

/// Boots the firmware under KVM for `settle` and asks QMP whether the guest still runs.
pub async fn kvm_self_test(guest: Arch, host: &HostFacts, settle: Duration) -> SelfTest {
    if let Some(not_run) = self_test_precheck(guest, host) {
        return not_run;
    }
    run_self_test(OsStr::new(super::argv::program(guest)), guest, settle).await
}

/// How long the self-test waits for QEMU to create its QMP socket before judging.
const QEMU_START_PATIENCE: Duration = Duration::from_secs(20);

/// The self-test itself with a given QEMU binary (a name looked up on PATH, or a path).
async fn run_self_test(qemu: &OsStr, guest: Arch, settle: Duration) -> SelfTest {
    let fw = match super::firmware::find(guest, |p| p.exists()) {
        Ok(f) => f,
        Err(e) => return SelfTest::NotRun(format!("self-test skipped: {}", crate::errors::chain(&e))),
    };
    let dir = match tempfile::Builder::new().prefix("sysmonvm-kvm-test").tempdir() {
        Ok(d) => d,
        Err(e) => return SelfTest::NotRun(format!("self-test skipped: {}", crate::errors::chain(&e))),
    };
    let vars = dir.path().join("vars.fd");
    let code_size = std::fs::metadata(&fw.code).map(|m| m.len()).unwrap_or(0);
    let code = if super::firmware::needs_padding(guest, code_size) {
        let c = dir.path().join("code.fd");
        if super::firmware::copy_padded(Some(&fw.code), &c, Some(super::firmware::VIRT_PFLASH_SIZE)).is_err() {
            return SelfTest::NotRun("self-test skipped: cannot pad firmware".into());
        }
        c
    } else {
        fw.code.clone()
    };
    let vars_size = (guest == Arch::Aarch64).then_some(super::firmware::VIRT_PFLASH_SIZE);
    if super::firmware::copy_padded(Some(&fw.vars_template), &vars, vars_size).is_err() {
        return SelfTest::NotRun("self-test skipped: cannot copy the vars template".into());
    }
    let qmp = dir.path().join("self-test-qmp.sock");
    let machine = if guest == Arch::Aarch64 { "virt,accel=kvm" } else { "q35,accel=kvm" };
    let mut child = match tokio::process::Command::new(qemu)
        .args(["-nodefaults", "-display", "none", "-machine", machine, "-cpu", "host", "-m", "256M", "-serial", "none"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display()))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return SelfTest::NotRun(format!("cannot start {}: {}", qemu.to_string_lossy(), crate::errors::chain(&e)));
        }
    };
    // The firmware runs for `settle` from when QEMU is up (its QMP socket is there), not from
    // the spawn: on a loaded host QEMU itself can take seconds to start, and a QMP socket that is
    // not there yet is no verdict on KVM.
    let up_by = std::time::Instant::now() + QEMU_START_PATIENCE;
    while !qmp.exists() && std::time::Instant::now() < up_by && matches!(child.try_wait(), Ok(None)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if qmp.exists() {
        tokio::time::sleep(settle).await;
    }
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = s.read_to_string(&mut err).await;
        }
        return SelfTest::Failed(format!("self-test: QEMU exited at once ({status}): {}", qemu_error_line(&err)));
    }
    let verdict = match crate::qmp::QmpClient::connect(&qmp, Duration::from_secs(5)).await {
        Ok(mut c) => match c.query_status().await {
            Ok(s) if s.running => SelfTest::Passed,
            Ok(s) => SelfTest::Failed(format!("self-test failed: the firmware stopped with status {}", s.status)),
            Err(e) => SelfTest::Failed(format!("self-test failed: {}", crate::errors::chain(&e))),
        },
        Err(e) => SelfTest::Failed(format!("self-test failed: {}", crate::errors::chain(&e))),
    };
    let _ = child.kill().await;
    verdict
}

/// What a cached verdict is valid for: the QEMU binary (resolved on PATH, symlinks followed)
/// as it is now, the host kernel and the guest arch. Any change means testing again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestKey {
    pub qemu: PathBuf,
    pub qemu_size: u64,
    pub qemu_mtime_secs: i64,
    pub qemu_mtime_nanos: i64,
    /// `uname -r`.
    pub kernel_release: String,
    pub guest_arch: String,
}

impl SelfTestKey {
    /// The key for `qemu` (a path) as it is on disk now, on this kernel.
    pub fn for_binary(qemu: &Path, guest: Arch) -> std::io::Result<SelfTestKey> {
        use std::os::unix::fs::MetadataExt;
        let qemu = std::fs::canonicalize(qemu)?;
        let meta = std::fs::metadata(&qemu)?;
        Ok(SelfTestKey {
            qemu,
            qemu_size: meta.size(),
            qemu_mtime_secs: meta.mtime(),
            qemu_mtime_nanos: meta.mtime_nsec(),
            kernel_release: kernel_release()?,
            guest_arch: guest.as_str().to_string(),
        })
    }

    /// Whether two keys are for the same binary and arch (so the newer replaces the older).
    fn same_slot(&self, other: &SelfTestKey) -> bool {
        self.qemu == other.qemu && self.guest_arch == other.guest_arch
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> std::io::Result<String> {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated C strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `release` is NUL-terminated (uname succeeded; the struct was zeroed).
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    Ok(release.to_string_lossy().into_owned())
}

/// The first executable file named `program` in the directories of `path_var` (a PATH value).
pub fn find_on_path(program: &str, path_var: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_var)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// One remembered verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedSelfTest {
    pub key: SelfTestKey,
    pub result: SelfTest,
    /// RFC 3339 UTC.
    pub tested_at: String,
}

/// The self-test cache file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestCache {
    pub version: u32,
    pub entries: Vec<CachedSelfTest>,
}

impl SelfTestCache {
    pub const VERSION: u32 = 1;

    /// The cache from the file's bytes. Anything unreadable (corrupt, truncated, another
    /// version) is an empty cache: the worst a bad cache file may cost is a test run.
    pub fn parse(bytes: &[u8]) -> SelfTestCache {
        match serde_json::from_slice::<SelfTestCache>(bytes) {
            Ok(c) if c.version == Self::VERSION => c,
            _ => SelfTestCache { version: Self::VERSION, entries: Vec::new() },
        }
    }

    /// The cache in `file`, empty when it is missing or unreadable.
    pub fn load(file: &Path) -> SelfTestCache {
        SelfTestCache::parse(&std::fs::read(file).unwrap_or_default())
    }

    /// The verdict for exactly this key.
    pub fn lookup(&self, key: &SelfTestKey) -> Option<&CachedSelfTest> {
        self.entries.iter().find(|e| &e.key == key)
    }

    /// Remembers a verdict, replacing any older one for the same binary path and arch.
    pub fn record(&mut self, entry: CachedSelfTest) {
        self.version = Self::VERSION;
        self.entries.retain(|e| !e.key.same_slot(&entry.key));
        self.entries.push(entry);
    }
}

/// Where a self-test verdict came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SelfTestSource {
    /// The host facts decided (not Linux, no /dev/kvm, another arch, no QEMU on PATH).
    Precheck,
    /// Remembered from an earlier run with the same key.
    Cached { tested_at: String },
    /// Run now (and saved, unless `not_saved` says otherwise).
    Ran,
    /// Not run because the caller did not allow it and nothing was cached: kvm is unverified.
    Skipped,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot save the KVM self-test result to {path}")]
pub struct SelfTestCacheError {
    pub path: PathBuf,
    #[source]
    pub source: crate::workspace::WorkspaceError,
}

#[derive(Debug, Serialize)]
pub struct SelfTestOutcome {
    pub result: SelfTest,
    pub source: SelfTestSource,
    /// The test ran but its verdict could not be saved (the verdict itself is still good).
    #[serde(skip)]
    pub not_saved: Option<SelfTestCacheError>,
}

/// The KVM self-test verdict for `guest`, from `cache_file` when it holds one for the QEMU
/// binary on PATH as it is now and this kernel; else, when `allow_run`, the test is run and
/// its verdict saved. Passed and Failed are cached; a test that could not run (QEMU did not
/// start, no firmware) is not, so it runs again next time.
pub async fn kvm_self_test_cached(req: &SelfTestRequest<'_>) -> SelfTestOutcome {
    let (guest, host) = (req.guest, req.host);
    let program = super::argv::program(guest);
    let Some(qemu) = find_on_path(program, &std::env::var_os("PATH").unwrap_or_default()) else {
        if let Some(not_run) = self_test_precheck(guest, host) {
            return SelfTestOutcome { result: not_run, source: SelfTestSource::Precheck, not_saved: None };
        }
        return SelfTestOutcome {
            result: SelfTest::NotRun(format!("cannot run the self-test: {program} is not on PATH")),
            source: SelfTestSource::Precheck,
            not_saved: None,
        };
    };
    kvm_self_test_cached_with(&qemu, req).await
}

/// What the cached KVM self-test needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SelfTestRequest<'a> {
    /// The workspace's cache of verdicts.
    pub cache_file: &'a Path,
    pub guest: Arch,
    pub host: &'a HostFacts,
    /// How long the test guest must keep running to count as passed.
    pub settle: Duration,
    /// Whether the test may run when no verdict is cached (`--no-self-test`: false).
    pub allow_run: bool,
}

/// [`kvm_self_test_cached`] with the QEMU binary given by path instead of looked up on PATH.
pub async fn kvm_self_test_cached_with(qemu: &Path, req: &SelfTestRequest<'_>) -> SelfTestOutcome {
    let SelfTestRequest { cache_file, guest, host, settle, allow_run } = *req;
    if let Some(not_run) = self_test_precheck(guest, host) {
        return SelfTestOutcome { result: not_run, source: SelfTestSource::Precheck, not_saved: None };
    }
    let key = match SelfTestKey::for_binary(qemu, guest) {
        Ok(k) => k,
        Err(e) => {
            return SelfTestOutcome {
                result: SelfTest::NotRun(format!(
                    "cannot run the self-test: {}: {}",
                    qemu.display(),
                    crate::errors::chain(&e)
                )),
                source: SelfTestSource::Precheck,
                not_saved: None,
            };
        }
    };
    let mut cache = SelfTestCache::load(cache_file);
    if let Some(hit) = cache.lookup(&key) {
        return SelfTestOutcome {
            result: hit.result.clone(),
            source: SelfTestSource::Cached { tested_at: hit.tested_at.clone() },
            not_saved: None,
        };
    }
    if !allow_run {
        return SelfTestOutcome {
            result: SelfTest::NotRun("is unverified (self-test skipped and no cached result)".into()),
            source: SelfTestSource::Skipped,
            not_saved: None,
        };
    }
    let result = run_self_test(qemu.as_os_str(), guest, settle).await;
    let mut not_saved = None;
    if !matches!(result, SelfTest::NotRun(_)) {
        cache.record(CachedSelfTest { key, result: result.clone(), tested_at: sysmon_collector::host::now_rfc3339() });
        not_saved = save_cache(cache_file, &cache).err();
    }
    SelfTestOutcome { result, source: SelfTestSource::Ran, not_saved }
}

fn save_cache(file: &Path, cache: &SelfTestCache) -> Result<(), SelfTestCacheError> {
    let err = |source| SelfTestCacheError { path: file.to_path_buf(), source };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        crate::workspace::private_dir(dir).map_err(err)?;
    }
    let json = serde_json::to_vec_pretty(cache).expect("the cache serializes");
    crate::workspace::write_private(file, &json).map_err(err)
}

/// The line of QEMU's stderr that says why it stopped: its own `error:` line when there is one
/// (QEMU 10 under kvm_pvm prints "failed to set MSR 0x10a …" and then an assertion), else the last.
fn qemu_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = lines.iter().find(|l| l.contains("error")).or(lines.last()).copied().unwrap_or("(no output)");
    crate::sanitize::terminal(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_qemus_own_error_line() {
        // Recorded on this machine: QEMU 10.0.2, -cpu host, kvm_pvm.
        let err = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069\nqemu-system-x86_64: target/i386/kvm/kvm.c:3849: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        assert_eq!(qemu_error_line(err), "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069");
        assert_eq!(qemu_error_line("a\nlast\n"), "last");
        assert_eq!(qemu_error_line(""), "(no output)");
    }

    fn key(qemu: &str, size: u64, mtime: i64, kernel: &str, arch: &str) -> SelfTestKey {
        SelfTestKey {
            qemu: qemu.into(),
            qemu_size: size,
            qemu_mtime_secs: mtime,
            qemu_mtime_nanos: 0,
            kernel_release: kernel.into(),
            guest_arch: arch.into(),
        }
    }

    fn cached(key: SelfTestKey, result: SelfTest) -> CachedSelfTest {
        CachedSelfTest { key, result, tested_at: "2026-01-01T00:00:00Z".into() }
    }

    #[test]
    fn a_cached_verdict_holds_only_for_the_same_binary_kernel_and_arch() {
        let k = key("/usr/bin/qemu-system-x86_64", 100, 5, "6.1.0-1", "x86_64");
        let mut c = SelfTestCache::default();
        c.record(cached(k.clone(), SelfTest::Failed("internal-error".into())));
        assert_eq!(c.lookup(&k).unwrap().result, SelfTest::Failed("internal-error".into()));
        for other in [
            key("/usr/bin/qemu-system-x86_64", 101, 5, "6.1.0-1", "x86_64"),
            key("/usr/bin/qemu-system-x86_64", 100, 6, "6.1.0-1", "x86_64"),
            key("/usr/bin/qemu-system-x86_64", 100, 5, "6.1.0-2", "x86_64"),
            key("/usr/bin/qemu-system-x86_64", 100, 5, "6.1.0-1", "aarch64"),
            key("/usr/local/bin/qemu-system-x86_64", 100, 5, "6.1.0-1", "x86_64"),
        ] {
            assert!(c.lookup(&other).is_none(), "{other:?}");
        }
        // An upgraded QEMU at the same path replaces the old verdict; another arch sits beside it.
        let upgraded = key("/usr/bin/qemu-system-x86_64", 200, 9, "6.1.0-1", "x86_64");
        c.record(cached(upgraded.clone(), SelfTest::Passed));
        c.record(cached(key("/usr/bin/qemu-system-x86_64", 200, 9, "6.1.0-1", "aarch64"), SelfTest::Passed));
        assert_eq!(c.entries.len(), 2);
        assert!(c.lookup(&k).is_none());
        assert_eq!(c.lookup(&upgraded).unwrap().result, SelfTest::Passed);
    }

    #[test]
    fn a_corrupt_or_foreign_cache_file_is_an_empty_cache() {
        let mut c = SelfTestCache::default();
        c.record(cached(key("/q", 1, 1, "k", "x86_64"), SelfTest::Passed));
        let good = serde_json::to_vec(&c).unwrap();
        assert_eq!(SelfTestCache::parse(&good), c);
        for bad in [&b""[..], b"{", b"null", b"{\"version\":2,\"entries\":[]}", &good[..good.len() / 2]] {
            assert!(SelfTestCache::parse(bad).entries.is_empty(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_key_follows_the_binary_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("qemu-system-x86_64");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = std::env::join_paths([d.path().join("nowhere"), d.path().to_path_buf()]).unwrap();
        assert_eq!(find_on_path("qemu-system-x86_64", &path_var), Some(bin.clone()));
        assert_eq!(find_on_path("qemu-system-aarch64", &path_var), None);
        let before = SelfTestKey::for_binary(&bin, Arch::X86_64).unwrap();
        assert_eq!(before.kernel_release, std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim());
        let f = std::fs::File::options().write(true).open(&bin).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
        let after = SelfTestKey::for_binary(&bin, Arch::X86_64).unwrap();
        assert_ne!(before, after);
        assert!(before.same_slot(&after));
    }

    fn host(os: &str, arch: &str, kvm: bool, hvf: bool) -> HostFacts {
        HostFacts { os: HostOs::parse(os), arch: arch.into(), kvm_device: kvm, hvf_supported: hvf }
    }

    #[test]
    fn auto_on_apple_silicon_is_hvf() {
        let (a, w) =
            choose(Accel::Auto, Arch::Aarch64, &host("macos", "aarch64", false, true), &SelfTest::NotRun("x".into()))
                .unwrap();
        assert_eq!((a, w), (ResolvedAccel::Hvf, None));
    }

    #[test]
    fn auto_with_a_failing_kvm_is_tcg_with_a_warning() {
        let (a, w) = choose(
            Accel::Auto,
            Arch::X86_64,
            &host("linux", "x86_64", true, false),
            &SelfTest::Failed("self-test failed: internal-error".into()),
        )
        .unwrap();
        assert_eq!(a, ResolvedAccel::Tcg);
        assert!(w.unwrap().contains("internal-error"));
        let (a, _) =
            choose(Accel::Auto, Arch::X86_64, &host("linux", "x86_64", true, false), &SelfTest::Passed).unwrap();
        assert_eq!(a, ResolvedAccel::Kvm);
    }

    #[test]
    fn explicit_requests_fail_loudly() {
        assert!(
            choose(Accel::Kvm, Arch::X86_64, &host("linux", "x86_64", true, false), &SelfTest::Failed("x".into()))
                .is_err()
        );
        assert!(choose(Accel::Hvf, Arch::Aarch64, &host("linux", "aarch64", true, false), &SelfTest::Passed).is_err());
        assert!(choose(Accel::Hvf, Arch::X86_64, &host("macos", "aarch64", false, true), &SelfTest::Passed).is_err());
        assert_eq!(
            choose(Accel::Tcg, Arch::Aarch64, &host("linux", "x86_64", false, false), &SelfTest::Passed).unwrap().0,
            ResolvedAccel::Tcg
        );
    }
}
