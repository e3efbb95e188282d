//! validate's comparison logic over recorded readings: references that vary and agree (pass),
//! that disagree (fail), that read the same file as the collector or only the constant TSC
//! (not comparable), the TCG guest with nothing comparable for frequency, usage against /proc/stat
//! and the load, the throttle step, OTLP latency, and the exit statuses.

use sysmon_collector::parse::stat::{CpuTimes, ProcStat};
use sysmon_collector::roots::Roots;
use sysmon_collector::sampler::{Sampler, SamplerOptions};
use sysmon_collector::snapshot::{Container, CpuSeconds, CpuUsage, FrequencySource, Snapshot};
use sysmonvm::validate::checks::{self, Inputs, PhaseKind, PhaseWindow, Verdict};
use sysmonvm::validate::perfstat::PerfInterval;
use sysmonvm::validate::refs::RefSample;

const T0: f64 = 1_764_000_000.0;

/// A real snapshot of this machine, reshaped into the recorded readings a test needs.
fn base() -> Snapshot {
    let mut s = Sampler::new(
        Roots::under(std::path::Path::new("/")),
        SamplerOptions { perf: false, cgroups: vec![], container: None },
    )
    .sample();
    let template = s.cpus[0].clone();
    s.cpus = (0..2u32)
        .map(|n| {
            let mut c = template.clone();
            c.cpu = format!("cpu{n}");
            c.logical_number = n;
            c
        })
        .collect();
    s.containers.clear();
    s
}

struct Recorded {
    snaps: Vec<Snapshot>,
    refs: Vec<RefSample>,
    perf: Vec<PerfInterval>,
}

fn usage(pct: f64) -> CpuUsage {
    let seconds =
        CpuSeconds { user: 0.0, nice: 0.0, system: 0.0, idle: 0.0, iowait: 0.0, irq: 0.0, softirq: 0.0, steal: 0.0 };
    CpuUsage {
        usage_pct: pct,
        user_pct: pct,
        nice_pct: 0.0,
        system_pct: 0.0,
        idle_pct: 100.0 - pct,
        iowait_pct: 0.0,
        irq_pct: 0.0,
        softirq_pct: 0.0,
        steal_pct: 0.0,
        seconds,
    }
}

fn times(busy: u64, idle: u64) -> CpuTimes {
    CpuTimes { user: busy, idle, ..Default::default() }
}

/// 30 s of a phase `one` at 1 s: cpu0 busy at `busy_pct`, cpu1 idle; the collector's frequency
/// `f(t)`, references `scaling(t)` / `cur(t)`, a constant cpuinfo, optional perf.
fn record(
    source: FrequencySource,
    detail: &str,
    f: impl Fn(f64) -> f64,
    scaling: Option<&dyn Fn(f64) -> f64>,
    perf_hz: Option<f64>,
    busy_pct: f64,
) -> Recorded {
    let b = base();
    let mut snaps = Vec::new();
    let mut refs = Vec::new();
    let mut perf = Vec::new();
    for k in 0..=30 {
        let t = T0 + k as f64;
        let mut s = b.clone();
        s.timestamp_unix_nano = (t * 1e9) as u64;
        for c in &mut s.cpus {
            c.frequency_source = source;
            c.frequency_detail = Some(detail.into());
            c.frequency_hz = Some(f(t));
            c.usage = Some(usage(if c.logical_number == 0 { busy_pct } else { 1.0 }));
        }
        s.cpu_total = Some(usage((busy_pct + 1.0) / 2.0));
        snaps.push(s);
        // /proc/stat in ticks of 1/100 s: cpu0 busy `busy_pct` of each second (one tick less, to differ).
        let b0 = (k as f64 * (busy_pct - 1.0)) as u64;
        let st = ProcStat {
            total: Some(times(b0 + k, 200 * k - b0 - k)),
            cpus: vec![(0, times(b0, 100 * k - b0)), (1, times(k, 99 * k))],
            bad_lines: 0,
        };
        let mut sysfs = Vec::new();
        if let Some(g) = scaling {
            for cpu in 0..2 {
                sysfs.push((cpu, "scaling_cur_freq".to_string(), g(t + 0.2)));
            }
        }
        refs.push(RefSample {
            time: t + 0.2,
            stat: Some(st),
            cpuinfo_hz: vec![(0, 2893.2e6), (1, 2893.2e6)],
            sysfs_hz: sysfs,
        });
        if let Some(hz) = perf_hz
            && k > 0
        {
            perf.push(PerfInterval { t: t + 0.2, cpu: 0, cycles: (hz * (busy_pct - 1.0) / 100.0) as u64 });
        }
    }
    Recorded { snaps, refs, perf }
}

fn inputs<'a>(r: &'a Recorded, phases: &'a [PhaseWindow], otlp: &'a [(f64, f64)]) -> Inputs<'a> {
    Inputs {
        phases,
        collector: &r.snaps,
        refs: &r.refs,
        perf: &r.perf,
        perf_missing: r.perf.is_empty().then(|| "no PMU in the guest: perf stat reports cycles <not supported>".into()),
        interval: 1.0,
        warmup: 3.0,
        tolerance: 5.0,
        throttle_cgroup: "system.slice/sysmonvm-validate-throttle.service",
        throttle_quota_pct: 50.0,
        otlp,
        latency_limit: 15.0,
        host: &[],
        host_missing: Some("not sampled in this test".into()),
    }
}

fn one() -> Vec<PhaseWindow> {
    vec![PhaseWindow { kind: PhaseKind::One, start: T0, end: T0 + 30.0 }]
}

fn find<'a>(c: &'a [checks::Check], name: &str, cpu: &str, reference: &str) -> Vec<&'a checks::Check> {
    c.iter().filter(|c| c.name == name && c.cpu.as_deref() == Some(cpu) && c.reference.contains(reference)).collect()
}

fn varying(t: f64) -> f64 {
    2.0e9 + 0.4e9 * ((t - T0) / 3.0).sin()
}

#[test]
fn varying_references_that_agree_pass_and_those_that_disagree_fail() {
    let agree = |t: f64| varying(t - 0.2) * 1.02;
    let r = record(FrequencySource::Cpufreq, "cpuinfo_avg_freq", varying, Some(&agree), Some(2.0e9), 98.0);
    let p = one();
    let c = checks::frequency(&inputs(&r, &p, &[]));
    let s = find(&c, "frequency", "cpu0", "scaling_cur_freq");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].verdict, Verdict::Pass, "{s:?}");
    let e = s[0].error.as_ref().unwrap();
    assert!((e.max - 100.0 * (1.0 - 1.0 / 1.02)).abs() < 0.01, "{e:?}");
    assert_eq!(s[0].samples, 28); // t = 3 … 30 s: the 3 s warm-up drops t = 0, 1, 2
    // cpuinfo: the constant TSC rate is not comparable, with the reason.
    let ci = find(&c, "frequency", "cpu0", "/proc/cpuinfo");
    assert_eq!(ci[0].verdict, Verdict::NotComparable);
    assert!(ci[0].reason.as_ref().unwrap().contains("TSC"), "{ci:?}");
    // perf: cycles ÷ busy time says 2.0 GHz on cpu0 while the collector swings ±20 %: fail.
    let pf = find(&c, "frequency", "cpu0", "perf");
    assert_eq!(pf[0].verdict, Verdict::Fail, "{pf:?}");
    // cpu1 is idle: perf gives no reading for it, so nothing to compare in the phase.
    assert!(find(&c, "frequency", "cpu1", "perf").iter().all(|c| c.verdict == Verdict::NotComparable));
}

#[test]
fn a_reference_read_from_the_collectors_own_file_is_not_comparable() {
    let same = |t: f64| varying(t - 0.2);
    let r = record(FrequencySource::Cpufreq, "scaling_cur_freq", varying, Some(&same), None, 98.0);
    let p = one();
    let c = checks::frequency(&inputs(&r, &p, &[]));
    let s = find(&c, "frequency", "cpu0", "scaling_cur_freq");
    assert_eq!(s[0].verdict, Verdict::NotComparable);
    assert!(s[0].reason.as_ref().unwrap().contains("same file"));
    let pf = find(&c, "frequency", "cpu0", "perf");
    assert!(pf[0].reason.as_ref().unwrap().contains("no PMU"));
    // cpuinfo_cur_freq was never there: no cpufreq reference of that name.
    let cur = find(&c, "frequency", "cpu0", "cpuinfo_cur_freq");
    assert!(cur[0].reason.as_ref().unwrap().contains("does not expose cpuinfo_cur_freq"));
}

#[test]
fn a_tcg_guest_has_nothing_comparable_for_frequency_but_usage_passes() {
    let r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 98.0);
    let p = one();
    let mut c = checks::all(&inputs(&r, &p, &[(T0 + 11.5, T0 + 10.0)]));
    assert!(c.iter().filter(|c| c.name == "frequency").all(|c| c.verdict == Verdict::NotComparable));
    let u = find(&c, "usage-vs-proc-stat", "cpu0", "/proc/stat");
    assert_eq!(u[0].verdict, Verdict::Pass, "{u:?}");
    assert!(u[0].error.as_ref().unwrap().max < 1.5, "{u:?}");
    let l = find(&c, "usage-vs-load", "cpu0", "expected 100");
    assert_eq!(l[0].verdict, Verdict::Pass, "{l:?}");
    assert_eq!(checks::exit_status(&mut c.clone(), false), 0);
    assert_eq!(checks::exit_status(&mut c, true), 1);
    assert!(c.iter().any(|c| c.reason.as_deref().is_some_and(|r| r.starts_with("--require-frequency"))));
}

#[test]
fn usage_far_from_the_load_fails_and_nothing_comparable_is_its_own_status() {
    // The load reached 98 % by /proc/stat but the collector says 60 %: the collector is wrong.
    let mut r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 98.0);
    for s in &mut r.snaps {
        s.cpus[0].usage = Some(usage(60.0));
    }
    let p = one();
    let c = checks::usage(&inputs(&r, &p, &[]));
    let l = find(&c, "usage-vs-load", "cpu0", "expected 100");
    assert_eq!(l[0].verdict, Verdict::Fail);
    assert_eq!(find(&c, "usage-vs-proc-stat", "cpu0", "/proc/stat")[0].verdict, Verdict::Fail);
    // The load itself only reached 60 % (by /proc/stat) and the collector agrees: judged against
    // the load as the kernel saw it, so it passes, and the reason says so.
    let r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 60.0);
    let c = checks::usage(&inputs(&r, &p, &[]));
    let l = find(&c, "usage-vs-load", "cpu0", "expected 100");
    assert_eq!(l[0].verdict, Verdict::Pass, "{l:?}");
    assert!(l[0].reason.as_ref().unwrap().contains("/proc/stat saw"));
    assert!(l[0].tolerance > 40.0, "{l:?}");
    assert_eq!(find(&c, "usage-vs-proc-stat", "cpu0", "/proc/stat")[0].verdict, Verdict::Pass);
    let mut only_nc = checks::frequency(&inputs(&r, &p, &[]));
    assert_eq!(checks::exit_status(&mut only_nc, false), 3);
}

#[test]
fn the_throttle_step_must_show_in_the_cgroup_readings() {
    let mut r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 98.0);
    let cg = "system.slice/sysmonvm-validate-throttle.service";
    let phases = vec![
        PhaseWindow { kind: PhaseKind::One, start: T0, end: T0 + 14.0 },
        PhaseWindow { kind: PhaseKind::Throttle, start: T0 + 15.0, end: T0 + 30.0 },
    ];
    let container = |k: usize, usage: f64, limit: Option<f64>| Container {
        id: cg.into(),
        runtime: "cgroup".into(),
        cgroup_path: cg.into(),
        cgroup_version: 2,
        cpu_seconds: Some(k as f64 * usage / 100.0),
        cpu_usage_cores: Some(usage / 100.0),
        cpu_usage_pct: Some(usage),
        cpu_limit_cores: limit,
        cpu_throttled_periods: Some(k as u64 * 5),
        cpu_throttled_seconds: Some(k as f64 * 0.05),
        memory_bytes: None,
        memory_limit_bytes: None,
        io_read_bytes: None,
        io_write_bytes: None,
        pids: Some(2),
    };
    for (k, s) in r.snaps.iter_mut().enumerate().skip(15) {
        s.containers = vec![container(k, 49.0 + (k % 3) as f64, Some(0.5))];
    }
    let c = checks::throttle(&inputs(&r, &phases, &[]));
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|c| c.verdict == Verdict::Pass), "{c:?}");
    assert!(c[1].reason.as_ref().unwrap().contains("throttled"), "{c:?}");
    // No quota reported (the cgroup ran unlimited): the drop is not visible, so it fails.
    for (k, s) in r.snaps.iter_mut().enumerate().skip(15) {
        s.containers = vec![container(k, 99.0, None)];
    }
    let c = checks::throttle(&inputs(&r, &phases, &[]));
    assert!(c.iter().all(|c| c.verdict == Verdict::Fail), "{c:?}");
    // Never seen at all.
    for s in &mut r.snaps {
        s.containers.clear();
    }
    let c = checks::throttle(&inputs(&r, &phases, &[]));
    assert!(c[0].reason.as_ref().unwrap().contains("never reported"));
}

#[test]
fn otlp_latency_under_the_limit_passes_and_late_or_missing_fails() {
    let r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 98.0);
    let p = one();
    let ok = checks::latency(&inputs(&r, &p, &[(T0 + 2.0, T0 + 1.0), (T0 + 13.0, T0 + 11.8)]));
    assert_eq!(ok[0].verdict, Verdict::Pass);
    assert_eq!(ok[0].samples, 2);
    let late = checks::latency(&inputs(&r, &p, &[(T0 + 30.0, T0 + 10.0)]));
    assert_eq!(late[0].verdict, Verdict::Fail);
    let none = checks::latency(&inputs(&r, &p, &[]));
    assert_eq!(none[0].verdict, Verdict::Fail);
    assert!(none[0].reason.as_ref().unwrap().contains("no OTLP request"));
}

#[test]
fn the_report_files_are_written_and_read_back() {
    use sysmonvm::validate::report;
    let r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 98.0);
    let p = one();
    let i = inputs(&r, &p, &[(T0 + 2.0, T0 + 1.0)]);
    let mut c = checks::all(&i);
    let status = checks::exit_status(&mut c, false);
    let rows = report::rows(&i);
    let rep = report::Report {
        schema: report::SCHEMA.into(),
        run_id: "t".into(),
        started: "2026-11-24T00:00:00Z".into(),
        finished: "2026-11-24T00:01:00Z".into(),
        vm: "lab".into(),
        profile: "p".into(),
        accel: "tcg".into(),
        settings: report::Settings {
            phases: vec!["one".into()],
            duration_per_phase_s: 30.0,
            interval_s: 1.0,
            warmup_s: 3.0,
            tolerance_pct: 5.0,
            latency_limit_s: 15.0,
            throttle_quota_pct: 50.0,
            require_frequency: false,
        },
        phases: p.clone(),
        clock_offset_s: 0.1,
        clock_offset_uncertainty_s: 0.01,
        summary: report::Summary::of(&c, status),
        rollups: report::rollups(&rows),
        checks: c,
        collector: Default::default(),
    };
    let d = tempfile::tempdir().unwrap();
    report::write(d.path(), &rep, &rows).unwrap();
    report::write(d.path(), &rep, &rows).unwrap();
    let back: report::Report =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(back.summary.verdict, "pass");
    let csv = std::fs::read_to_string(d.path().join("samples.csv")).unwrap();
    assert!(csv.starts_with("time,phase,cpu,metric,source,value\n") && csv.contains(",one,cpu0,usage_pct,collector,"));
    let roll = std::fs::read_to_string(d.path().join("rollups.csv")).unwrap();
    assert!(roll.contains("phase,one,usage_pct,collector,cpu0,"), "{roll}");
    assert!(roll.lines().any(|l| l.starts_with("5min,")));
    assert_eq!(std::fs::read_to_string(d.path().join("runs.jsonl")).unwrap().lines().count(), 2);
    let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("not comparable"));
}

#[test]
fn host_clocks_are_context_never_judged() {
    let r = record(FrequencySource::Cpuinfo, "cpu MHz", |_| 2893.2e6, None, None, 98.0);
    let p = one();
    let host: Vec<checks::HostPoint> = (0..30)
        .map(|k| checks::HostPoint {
            time: T0 + k as f64,
            name: "P-Cluster".into(),
            source: "host powermetrics".into(),
            hz: 3.2e9,
        })
        .collect();
    let mut i = inputs(&r, &p, &[]);
    i.host = &host;
    let c = checks::host(&i);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].verdict, Verdict::Info);
    assert!(
        c[0].reason.as_ref().unwrap().contains("3.20 GHz") && c[0].reason.as_ref().unwrap().contains("not a reference")
    );
    let none = checks::host(&inputs(&r, &p, &[]));
    assert!(none[0].reason.as_ref().unwrap().contains("not sampled in this test"));
}

/// The arm64 TCG guest (../shared/notes/guest-image-arm64-probe.md): no cpufreq, no `cpu MHz`,
/// and a PMU whose cycles count 1.0e9 per CPU per wall second whether the CPU idles or works.
/// The collector reports `perf-synthetic` with no value; perf stat's cycles ÷ busy time would say
/// 1 GHz ÷ busy share, so validate must judge its own reference by the same rule.
#[test]
fn an_emulated_constant_rate_counter_is_no_reference_and_every_check_says_why() {
    let b = base();
    let (mut snaps, mut refs, mut perf) = (Vec::new(), Vec::new(), Vec::new());
    let (mut busy0, mut busy1) = (0u64, 0u64);
    for k in 0..=30u64 {
        let t = T0 + k as f64;
        // cpu0 idles (1 %) for the first 15 s, then works (98 %); cpu1 the other way round.
        let (d0, d1) = if k == 0 {
            (0, 0)
        } else if k <= 15 {
            (1, 98)
        } else {
            (98, 1)
        };
        busy0 += d0;
        busy1 += d1;
        let mut s = b.clone();
        s.timestamp_unix_nano = (t * 1e9) as u64;
        for c in &mut s.cpus {
            c.frequency_source = FrequencySource::PerfSynthetic;
            c.frequency_detail = Some("cycles/wall".into());
            c.frequency_hz = None;
            c.counter_rate_hz = Some(1.0e9);
        }
        snaps.push(s);
        refs.push(RefSample {
            time: t + 0.2,
            stat: Some(ProcStat {
                total: Some(times(busy0 + busy1, 200 * k - busy0 - busy1)),
                cpus: vec![(0, times(busy0, 100 * k - busy0)), (1, times(busy1, 100 * k - busy1))],
                bad_lines: 0,
            }),
            cpuinfo_hz: vec![],
            sysfs_hz: vec![],
        });
        if k > 0 {
            for cpu in 0..2 {
                perf.push(PerfInterval { t: t + 0.2, cpu, cycles: 1_000_000_000 });
            }
        }
    }
    let r = Recorded { snaps, refs, perf };
    let p = vec![PhaseWindow { kind: PhaseKind::All, start: T0, end: T0 + 30.0 }];
    let c = checks::frequency(&inputs(&r, &p, &[]));
    assert!(!c.is_empty());
    for check in &c {
        assert_eq!(check.verdict, Verdict::NotComparable, "{check:?}");
        let why = check.reason.as_deref().unwrap();
        assert!(why.contains("perf-synthetic") && why.contains("1.000 GHz per wall second"), "{why}");
    }
    let pf = find(&c, "frequency", "cpu0", "perf");
    let why = pf[0].reason.as_deref().unwrap();
    assert!(why.contains("emulated constant-rate counter, not a clock") && why.contains("2 of 2 CPUs"), "{why}");
}

/// The failure seen once under heavy host load (collector 55.1 % vs /proc/stat 60.7 % on a
/// `usage-vs-proc-stat` check): the guest's real busy share changed during the phase (cpu0 at
/// 50 % while the host was busiest, 70 % once it eased, at T0 + 17 s), and the collector's
/// snapshots the polling saw (its requests timing out under the load after T0 + 20 s) covered a
/// different stretch than the reference's first-to-last readings. Both are right about their own
/// intervals; compared over the same intervals (the reference's counters interpolated to each
/// snapshot's window) they agree.
#[test]
fn usage_is_compared_over_the_same_intervals_whichever_snapshots_the_polling_saw() {
    // cpu0's cumulative busy ticks (USER_HZ 100) since T0, plus where the counters stood at T0.
    let busy = |t: f64| {
        let s = t - T0;
        100.0 * (0.50 * s.min(17.0) + 0.70 * (s - 17.0).max(0.0))
    };
    let (busy0, idle0) = (812_345.0, 4_020_000.0);
    // What /proc/stat shows at `t`: whole ticks, cpu1 1 % busy.
    let stat = |t: f64| {
        let s = t - T0;
        let b = (busy0 + busy(t)).floor() as u64;
        let all = (busy0 + idle0 + 100.0 * s).floor() as u64;
        let cpu0 = times(b, all - b);
        let cpu1 = times((busy0 + s).floor() as u64, all - (busy0 + s).floor() as u64);
        ProcStat {
            total: Some(times(cpu0.busy() + cpu1.busy(), cpu0.idle + cpu1.idle)),
            cpus: vec![(0, cpu0), (1, cpu1)],
            bad_lines: 0,
        }
    };
    let pct = |d: CpuTimes| d.busy() as f64 / d.total() as f64 * 100.0;
    let b = base();
    let mut snaps = Vec::new();
    // The collector samples every second; the polling saw the snapshots up to T0 + 20 s.
    for k in 1..=20 {
        let t = T0 + k as f64;
        let (now, before) = (stat(t), stat(t - 1.0));
        let mut s = b.clone();
        s.timestamp_unix_nano = (t * 1e9) as u64;
        s.interval_seconds = Some(1.0);
        for c in &mut s.cpus {
            let n = c.logical_number as usize;
            c.usage = Some(usage(pct(now.cpus[n].1.since(&before.cpus[n].1))));
        }
        s.cpu_total = Some(usage(pct(now.total.unwrap().since(&before.total.unwrap()))));
        snaps.push(s);
    }
    // The reference loop read /proc/stat every second, 0.37 s after the collector, all phase long.
    let refs: Vec<RefSample> = (0..=30)
        .map(|k| {
            let t = T0 + k as f64 + 0.37;
            RefSample { time: t, stat: Some(stat(t)), ..Default::default() }
        })
        .collect();
    let r = Recorded { snaps, refs, perf: vec![] };
    let p = one();
    let i = inputs(&r, &p, &[]);

    // The comparison as it was: the mean of the snapshots seen against the reference's first to
    // last settled readings. It reproduces the failure.
    let seen: Vec<f64> = r
        .snaps
        .iter()
        .filter(|s| p[0].settled(checks::snapshot_time(s), i.warmup))
        .map(|s| s.cpus[0].usage.unwrap().usage_pct)
        .collect();
    let naive_collector = seen.iter().sum::<f64>() / seen.len() as f64;
    let settled: Vec<&RefSample> = r.refs.iter().filter(|s| p[0].settled(s.time, i.warmup)).collect();
    let (first, last) = (settled[0].stat.as_ref().unwrap(), settled[settled.len() - 1].stat.as_ref().unwrap());
    let naive_reference = pct(last.cpus[0].1.since(&first.cpus[0].1));
    assert!(
        (naive_reference - naive_collector).abs() > i.tolerance,
        "collector {naive_collector:.1} % vs /proc/stat {naive_reference:.1} %: the old comparison would pass"
    );

    // Over the same intervals they agree, per CPU and in total.
    let c = checks::usage(&i);
    for cpu in ["cpu0", "cpu1", "total"] {
        let u = find(&c, "usage-vs-proc-stat", cpu, "/proc/stat");
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].verdict, Verdict::Pass, "{u:?}");
        assert!(u[0].error.as_ref().unwrap().max < 0.5, "{u:?}");
        assert_eq!(u[0].samples, 18, "t = 3 … 20 s: the snapshots seen after the warm-up");
        assert!(u[0].reason.as_ref().unwrap().contains("over the same 18 collector intervals"), "{u:?}");
    }
    let pairs = checks::matched_usage(&i, &p[0], Some(0));
    let collector = pairs.iter().map(|x| x.0).sum::<f64>() / pairs.len() as f64;
    assert!((collector - naive_collector).abs() < 1e-9, "the collector's side is what it reported");
}

/// What a run's snapshots say of the collector: its frequency sources and the sources that
/// failed, with the first warning; validate's own throttle cgroup, absent outside its phase, is
/// not a missing family.
#[test]
fn collector_seen_counts_failing_sources_but_not_validates_own_absent_cgroup() {
    use sysmon_collector::snapshot::SourceStatus;
    use sysmon_collector::warnings::Warning;
    use sysmonvm::validate::report::CollectorSeen;
    let throttle = "system.slice/sysmonvm-validate-throttle.service";
    let with = |failing: &[(&str, &str, &str)]| {
        let mut s = base();
        s.sources = sysmon_collector::Source::ALL
            .iter()
            .map(|src| SourceStatus {
                source: src.name().into(),
                success: !failing.iter().any(|f| f.0 == src.name()),
                duration_seconds: 0.001,
            })
            .collect();
        s.warnings = failing
            .iter()
            .map(|(sub, source, message)| Warning {
                source: source.to_string(),
                message: message.to_string(),
                subsystem: Some(sub.to_string()),
            })
            .collect();
        s
    };
    let absent = format!("cgroup {throttle}");
    let snaps = vec![
        with(&[("containers", &absent, "named in the configuration but not found")]),
        with(&[("filesystems", "/host/proc/1/root/", "statvfs failed: Permission denied (os error 13)")]),
        with(&[
            ("filesystems", "/host/proc/1/root/", "statvfs failed again"),
            ("containers", &absent, "named in the configuration but not found"),
        ]),
        with(&[]),
    ];
    let seen = CollectorSeen::of("container-sys-ro", &snaps, throttle);
    assert_eq!((seen.mode.as_str(), seen.snapshots), ("container-sys-ro", 4));
    assert_eq!(seen.frequency_sources, [base().cpus[0].frequency_source.as_str()]);
    assert_eq!(seen.sources_failed.len(), 1, "{:?}", seen.sources_failed);
    let f = &seen.sources_failed[0];
    assert_eq!((f.source.as_str(), f.failed), ("filesystems", 2));
    assert_eq!(f.why, "/host/proc/1/root/: statvfs failed: Permission denied (os error 13)");
    // Any other cgroup named and not found is the collector's to report.
    let other =
        vec![with(&[("containers", "cgroup system.slice/mine.service", "named in the configuration but not found")])];
    assert_eq!(CollectorSeen::of("native", &other, throttle).sources_failed[0].source, "containers");
}
