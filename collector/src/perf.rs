//! Per-CPU hardware cycle counters through `perf_event_open(2)`, called directly: one counter per
//! CPU for all processes (`pid = -1, cpu = N`), all opened at once so a sample costs one read per
//! CPU rather than one window per CPU. In VMs the usual answer is "no PMU", which is a normal
//! outcome with a reason, not an error.

// Only Linux has perf_event_open; elsewhere the counters report "not available" and these items go unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};

/// `struct perf_event_attr` as of PERF_ATTR_SIZE_VER0 (64 bytes); the kernel accepts this size
/// and zero-fills the rest, so no generated bindings are needed.
#[repr(C)]
#[derive(Default)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
const PERF_FORMAT_TOTAL_TIME_ENABLED: u64 = 1;
const PERF_FORMAT_TOTAL_TIME_RUNNING: u64 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// Why a counter could not be opened, in terms of what it means for the frequency source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// ENOENT, ENODEV, EOPNOTSUPP: the (virtual) CPU has no PMU or no cycles event.
    NoPmu(String),
    /// EACCES, EPERM: `perf_event_paranoid` or missing CAP_PERFMON.
    Denied(String),
    /// ENOSYS: the syscall is not there (seccomp filters, qemu-user).
    NoSyscall,
    /// Turned off in the configuration.
    Disabled,
    Other(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoPmu(e) => write!(f, "no hardware cycle counter ({e})"),
            Unavailable::Denied(e) => write!(
                f,
                "cycle counter not permitted ({e}): needs kernel.perf_event_paranoid <= 0, CAP_PERFMON or root"
            ),
            Unavailable::NoSyscall => write!(f, "perf_event_open is not available (ENOSYS)"),
            Unavailable::Disabled => write!(f, "perf counters disabled in the configuration"),
            Unavailable::Other(e) => write!(f, "cycle counter failed: {e}"),
        }
    }
}

fn classify_errno(errno: i32) -> Unavailable {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let name = match errno {
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOSYS => return Unavailable::NoSyscall,
        _ => return Unavailable::Other(text),
    };
    match errno {
        libc::EACCES | libc::EPERM => Unavailable::Denied(name.into()),
        _ => Unavailable::NoPmu(name.into()),
    }
}

/// A running cycles counter for one CPU.
#[derive(Debug)]
pub struct CycleCounter {
    file: File,
}

/// One read of a counter: raw count and the times it was enabled and actually on the PMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterValue {
    pub value: u64,
    pub time_enabled: u64,
    pub time_running: u64,
}

impl CounterValue {
    /// Counts grown since `earlier`, scaled up when the PMU was multiplexed; None when the counter
    /// never ran in between.
    pub fn cycles_since(&self, earlier: &CounterValue) -> Option<f64> {
        let value = self.value.checked_sub(earlier.value)?;
        let enabled = self.time_enabled.checked_sub(earlier.time_enabled)?;
        let running = self.time_running.checked_sub(earlier.time_running)?;
        if running == 0 {
            return None;
        }
        Some(value as f64 * (enabled as f64 / running as f64))
    }
}

impl CycleCounter {
    #[cfg(not(target_os = "linux"))]
    pub fn open(_cpu: u32) -> Result<CycleCounter, Unavailable> {
        Err(Unavailable::NoSyscall)
    }

    #[cfg(target_os = "linux")]
    pub fn open(cpu: u32) -> Result<CycleCounter, Unavailable> {
        let attr = PerfEventAttrV0 {
            type_: PERF_TYPE_HARDWARE,
            size: std::mem::size_of::<PerfEventAttrV0>() as u32,
            config: PERF_COUNT_HW_CPU_CYCLES,
            read_format: PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING,
            ..Default::default()
        };
        // SAFETY: attr is a valid, initialised perf_event_attr of the size it declares; the kernel
        // only reads it. pid -1 with a CPU number counts every process on that CPU.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttrV0,
                -1 as libc::pid_t,
                cpu as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(classify_errno(errno));
        }
        // SAFETY: the syscall returned a new file descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(CycleCounter { file: File::from(owned) })
    }

    pub fn read(&mut self) -> Option<CounterValue> {
        let mut buf = [0u8; 24];
        self.file.read_exact(&mut buf).ok()?;
        let word = |i: usize| u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Some(CounterValue { value: word(0), time_enabled: word(1), time_running: word(2) })
    }
}

/// Counters for a set of CPUs, or the reason there are none.
#[derive(Debug)]
pub struct CycleCounters {
    counters: Vec<(u32, CycleCounter)>,
    pub unavailable: Option<Unavailable>,
}

impl CycleCounters {
    pub fn disabled() -> Self {
        CycleCounters { counters: Vec::new(), unavailable: Some(Unavailable::Disabled) }
    }

    /// Opens one counter per CPU. If the first CPU fails, the reason stands for all of them
    /// (the PMU is per machine); a later failure leaves only that CPU without a counter.
    pub fn open(cpus: &[u32]) -> Self {
        let mut counters = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            match CycleCounter::open(cpu) {
                Ok(c) => counters.push((cpu, c)),
                Err(e) if counters.is_empty() => return CycleCounters { counters: Vec::new(), unavailable: Some(e) },
                Err(_) => {}
            }
        }
        CycleCounters { counters, unavailable: None }
    }

    pub fn cpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.counters.iter().map(|(c, _)| *c)
    }

    pub fn read_all(&mut self) -> Vec<(u32, CounterValue)> {
        self.counters.iter_mut().filter_map(|(cpu, c)| Some((*cpu, c.read()?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_is_the_v0_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttrV0>(), 64);
    }

    #[test]
    fn errno_meanings() {
        assert_eq!(classify_errno(libc::ENOENT), Unavailable::NoPmu("ENOENT".into()));
        assert_eq!(classify_errno(libc::EOPNOTSUPP), Unavailable::NoPmu("EOPNOTSUPP".into()));
        assert_eq!(classify_errno(libc::EACCES), Unavailable::Denied("EACCES".into()));
        assert_eq!(classify_errno(libc::ENOSYS), Unavailable::NoSyscall);
    }

    #[test]
    fn scaling_for_multiplexed_counters() {
        let a = CounterValue { value: 1_000, time_enabled: 100, time_running: 100 };
        let b = CounterValue { value: 2_000, time_enabled: 300, time_running: 200 };
        assert_eq!(b.cycles_since(&a), Some(2_000.0));
        let never_ran = CounterValue { value: 1_000, time_enabled: 300, time_running: 100 };
        assert_eq!(never_ran.cycles_since(&a), None);
        assert_eq!(a.cycles_since(&b), None);
    }

    #[test]
    fn opening_on_this_machine_either_works_or_says_why() {
        // This machine has no PMU (ENOENT); a machine with one opens it. Both are normal outcomes.
        let c = CycleCounters::open(&[0]);
        match &c.unavailable {
            None => assert_eq!(c.cpus().collect::<Vec<_>>(), vec![0]),
            Some(reason) => assert!(!reason.to_string().is_empty()),
        }
    }
}
