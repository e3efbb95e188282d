//! Facts about the machine and about the collector's own process.

use crate::parse::keyvalue::os_release_field;
use crate::roots::Roots;
use crate::warnings::{Warnings, read_or_warn};

#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
}

pub fn read(roots: &Roots, warnings: &mut Warnings) -> HostFacts {
    let mut one_line =
        |rel: &str| read_or_warn(&roots.proc(rel), warnings).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let hostname = one_line("sys/kernel/hostname");
    let kernel = one_line("sys/kernel/osrelease");
    let os_release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(roots.rootfs.join(p)).ok());
    let os = os_release.and_then(|t| os_release_field(&t, "PRETTY_NAME").or_else(|| os_release_field(&t, "NAME")));
    HostFacts { hostname, os, kernel }
}

/// The collector's own resident memory and CPU time. Always the live process, whatever --procfs says.
pub fn own_usage(files: &mut crate::files::KernelFiles) -> (Option<u64>, Option<f64>) {
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
