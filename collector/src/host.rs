//! The `host` source: facts about the machine (hostname, kernel, OS name) and about the
//! collector's own process (resident memory, CPU time); plus the time helpers.

use crate::files::{KernelFiles, read_field};
use crate::parse::keyvalue::os_release_field;
use crate::roots::Roots;
use crate::warnings::{Warning, Warnings};

#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
}

pub fn read_facts(roots: &Roots, warnings: &mut Warnings) -> HostFacts {
    // One-value fields, under the field cap: a hostname is at most 64 bytes, a release a few dozen.
    let mut one_line = |rel: &str| {
        let path = roots.proc(rel);
        read_field(&path).unwrap_or_else(|e| {
            warnings.file(&path, e);
            None
        })
    };
    let hostname = one_line("sys/kernel/hostname");
    let kernel = one_line("sys/kernel/osrelease");
    const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];
    // With the host's procfs, the host init's root comes first (a container image may carry an
    // os-release of its own, which is not the host's), unless --rootfs names the host's root;
    // then the other (a container that may not follow the init's root, with the host's
    // os-release mounted in its own /etc).
    let own: Vec<std::path::PathBuf> = OS_RELEASE.iter().map(|p| roots.rootfs.join(p)).collect();
    let host: Vec<std::path::PathBuf> =
        roots.host_init("root").map(|r| OS_RELEASE.iter().map(|p| r.join(p)).collect()).unwrap_or_default();
    let tried: Vec<std::path::PathBuf> = if roots.rootfs == std::path::Path::new("/") {
        host.into_iter().chain(own).collect()
    } else {
        own.into_iter().chain(host).collect()
    };
    // Through the collector's reader, so an endless file in its place is refused, not read forever.
    let os_release = tried.iter().find_map(|p| crate::files::read_text(p).ok());
    let os = match os_release {
        Some(t) => {
            let os = os_release_field(&t, "PRETTY_NAME").or_else(|| os_release_field(&t, "NAME"));
            if os.is_none() {
                warnings.push("os-release", "has neither PRETTY_NAME nor NAME");
            }
            os
        }
        None => {
            let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            warnings.push("os-release", format!("none of {} is readable", tried.join(", ")));
            None
        }
    };
    HostFacts { hostname, os, kernel }
}

/// The machine's id (`/etc/machine-id`, else dbus's copy): the OTLP `host.id` when the config
/// names none. Read under the field cap (it is 32 hex digits), so a huge or endless file in its
/// place is skipped, not carried into every export; None when neither holds one.
pub fn machine_id(roots: &Roots) -> Option<String> {
    ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| crate::files::field_optional(&roots.rootfs.join(p)))
}

/// Hostname, kernel and OS name are read again every this many samples.
pub const REFRESH_FACTS_EVERY: u64 = 60;

/// What the host source keeps between samples (owned by the sampler).
#[derive(Debug, Default)]
pub struct HostState {
    pub facts: Option<HostFacts>,
    /// Warnings from the last facts read, repeated in every sample until the next read.
    pub facts_warnings: Vec<Warning>,
}

/// The collector's own process over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OwnUsage {
    pub rss_bytes: Option<u64>,
    /// Cumulative CPU seconds (user + system).
    pub cpu_seconds: Option<f64>,
    /// Percent of one core over the interval; None without a previous sample.
    pub cpu_pct: Option<f64>,
}

/// The host source's read: the machine facts (re-read when `refresh` or not yet read) and the
/// collector's own usage, with CPU percent against `previous_cpu_seconds` over `secs`.
pub fn read(
    state: &mut HostState,
    roots: &Roots,
    refresh: bool,
    files: &mut KernelFiles,
    previous_cpu_seconds: Option<f64>,
    secs: Option<f64>,
    w: &mut Warnings,
) -> (HostFacts, OwnUsage) {
    if refresh || state.facts.is_none() {
        let mut found = Warnings::default();
        state.facts = Some(read_facts(roots, &mut found));
        state.facts_warnings = found.into_vec();
    }
    w.repeat(&state.facts_warnings);
    let (rss_bytes, cpu_seconds) = own_usage(files);
    if rss_bytes.is_none() {
        w.push("/proc/self/statm", "unreadable: no resident memory for the collector");
    }
    if cpu_seconds.is_none() {
        w.push("getrusage", "failed: no CPU time for the collector");
    }
    let cpu_pct = match (cpu_seconds, previous_cpu_seconds, secs) {
        (Some(now), Some(b), Some(s)) => Some((now - b).max(0.0) / s * 100.0),
        _ => None,
    };
    (state.facts.clone().unwrap_or_default(), OwnUsage { rss_bytes, cpu_seconds, cpu_pct })
}

/// The collector's own resident memory and CPU time. Always the live process, whatever --procfs says.
pub fn own_usage(files: &mut KernelFiles) -> (Option<u64>, Option<f64>) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let rss = files
        .optional(std::path::Path::new("/proc/self/statm"))
        .and_then(|t| t.split_ascii_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page.max(1) as u64);
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: usage is writable memory of the right size.
    let cpu = if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0 {
        // SAFETY: getrusage returned 0, so the struct is filled.
        let u = unsafe { usage.assume_init() };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(secs(u.ru_utime) + secs(u.ru_stime))
    } else {
        None
    };
    (rss, cpu)
}

/// USER_HZ: the unit of /proc/stat times (100 on every Linux in practice).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    rfc3339(nanos.min(u128::from(u64::MAX)) as u64)
}

/// RFC 3339 UTC with milliseconds, from Unix nanoseconds (days-to-civil after H. Hinnant).
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1795534980.250` → 2026-11-24T15:43:00.250Z
        assert_eq!(rfc3339(1_795_534_980_250_000_000), "2026-11-24T15:43:00.250Z");
        // a leap day: `date -u -d @951782400` → 2000-02-29T00:00:00Z
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }
}
