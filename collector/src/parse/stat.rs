//! `/proc/stat`: the `cpu` and `cpuN` lines (times in USER_HZ ticks), see proc(5).

/// Cumulative CPU time in ticks for one line of /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// All ticks. `guest` and `guest_nice` are already counted inside `user` and `nice`, so they are left out.
    pub fn total(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }

    /// Ticks the CPU spent doing something (not idle, not waiting for I/O).
    pub fn busy(&self) -> u64 {
        self.total().saturating_sub(self.idle).saturating_sub(self.iowait)
    }

    /// The counters that grew since `earlier`; a counter that went backwards (CPU hot-unplugged
    /// and back) gives 0 rather than a huge wrapped value.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            nice: self.nice.saturating_sub(earlier.nice),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// The aggregate `cpu` line.
    pub total: Option<CpuTimes>,
    /// `(N, times)` for each `cpuN` line, in file order (offline CPUs have no line).
    pub cpus: Vec<(u32, CpuTimes)>,
    /// Lines starting with `cpu` that could not be read.
    pub bad_lines: usize,
}

pub fn parse(text: &str) -> ProcStat {
    let mut out = ProcStat::default();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(suffix) = label.strip_prefix("cpu") else { continue };
        let numbers: Option<Vec<u64>> = fields.map(|f| f.parse::<u64>().ok()).collect();
        // Linux has printed at least user, nice, system, idle since 2.4; the rest came later.
        let times = match numbers {
            Some(n) if n.len() >= 4 => {
                let at = |i: usize| n.get(i).copied().unwrap_or(0);
                CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                }
            }
            _ => {
                out.bad_lines += 1;
                continue;
            }
        };
        if suffix.is_empty() {
            out.total = Some(times);
        } else if let Ok(n) = suffix.parse::<u32>() {
            out.cpus.push((n, times));
        } else {
            out.bad_lines += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_debian_tcg_guest_capture() {
        // Values read by hand from fixtures/debian12-tcg-guest/proc/stat.
        let s = parse(include_str!("../../tests/fixtures/debian12-tcg-guest/proc/stat"));
        assert_eq!(s.bad_lines, 0);
        let total = s.total.unwrap();
        assert_eq!((total.user, total.system, total.idle, total.iowait, total.softirq), (3918, 2842, 15381, 82, 30));
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[1].0, 1);
        assert_eq!(s.cpus[1].1.user, 1568);
        assert_eq!(s.cpus[1].1.busy(), 1568 + 1432 + 12);
    }

    #[test]
    fn old_kernels_with_four_fields_and_garbage() {
        let s = parse("cpu 1 2 3 4\ncpu0 1 2 3 4\ncpuX 1 2 3 4\ncpu1 1 2\ncpu2 a b c d\n");
        assert_eq!(s.cpus, vec![(0, CpuTimes { user: 1, nice: 2, system: 3, idle: 4, ..Default::default() })]);
        assert_eq!(s.bad_lines, 3);
    }

    #[test]
    fn counters_going_backwards_give_zero() {
        let a = CpuTimes { user: 10, idle: 5, ..Default::default() };
        let b = CpuTimes { user: 4, idle: 9, ..Default::default() };
        assert_eq!(b.since(&a), CpuTimes { idle: 4, ..Default::default() });
    }
}
