//! What `validate` writes to `--report DIR`: `report.json` (schema in docs/validate-report.md),
//! `report.md`, a self-contained `report.html` with SVG charts, `samples.csv` (one row per
//! reading), `rollups.csv` (per phase and per 5-minute bucket: avg, p95, max), and one summary
//! line appended to `runs.jsonl`. Rows and rollups are pure functions of the readings.

use super::checks::{Check, ErrorStats, Inputs, PhaseWindow, Verdict, snapshot_time};
use super::svg::{Band, Series, line_chart};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const SCHEMA: &str = "sysmonvm-validate/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub phases: Vec<String>,
    pub duration_per_phase_s: f64,
    pub interval_s: f64,
    pub warmup_s: f64,
    pub tolerance_pct: f64,
    pub latency_limit_s: f64,
    pub throttle_quota_pct: f64,
    pub require_frequency: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub not_comparable: usize,
    pub info: usize,
    pub exit_status: i32,
    /// `pass`, `fail` or `nothing comparable`.
    pub verdict: String,
}

impl Summary {
    pub fn of(checks: &[Check], exit_status: i32) -> Summary {
        let n = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
        Summary {
            pass: n(Verdict::Pass),
            fail: n(Verdict::Fail),
            not_comparable: n(Verdict::NotComparable),
            info: n(Verdict::Info),
            exit_status,
            verdict: match exit_status {
                0 => "pass",
                1 => "fail",
                _ => "nothing comparable",
            }
            .into(),
        }
    }
}

/// One reading: what `samples.csv` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Unix seconds (guest clock for guest readings, host clock for OTLP arrivals).
    pub time: f64,
    pub phase: String,
    pub cpu: String,
    pub metric: String,
    pub source: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// `phase` or `5min`.
    pub by: String,
    /// The phase, or the bucket's start (Unix seconds, a multiple of 300).
    pub key: String,
    pub metric: String,
    pub source: String,
    pub cpu: String,
    pub n: usize,
    pub avg: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub run_id: String,
    pub started: String,
    pub finished: String,
    pub vm: String,
    pub profile: String,
    pub accel: String,
    pub settings: Settings,
    pub phases: Vec<PhaseWindow>,
    /// Guest clock minus host clock, measured over SSH in this run, and its uncertainty (RTT/2).
    pub clock_offset_s: f64,
    pub clock_offset_uncertainty_s: f64,
    pub checks: Vec<Check>,
    pub summary: Summary,
    pub rollups: Vec<Rollup>,
    /// What the collector's snapshots showed of itself over the run; empty in older reports.
    #[serde(default)]
    pub collector: CollectorSeen,
}

/// What the collector reported about its own view during a run: how it ran, which frequency
/// sources it named, and which of its sources failed (a family it could not read), with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorSeen {
    /// `native`, `container`, `container-sys-ro` or `privileged`.
    pub mode: String,
    pub snapshots: usize,
    /// Every `frequency_source` a CPU had in any snapshot, sorted.
    pub frequency_sources: Vec<String>,
    /// Sources that failed in at least one snapshot, in the collector's read order.
    pub sources_failed: Vec<FailedSource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedSource {
    pub source: String,
    /// In how many of the run's snapshots it failed.
    pub failed: usize,
    /// The first warning it gave (source: message), as the collector wrote it.
    pub why: String,
}

/// The most characters of a failing source's first warning a report keeps.
const WHY_MAX: usize = 512;

impl CollectorSeen {
    /// Over a run's snapshots. Validate names `throttle_cgroup` in the collector's config, and
    /// it exists only during the throttle phase: the collector's "named but not found" for it
    /// is validate's doing, not a family the collector cannot read, so it is not counted.
    pub fn of(mode: &str, snapshots: &[sysmon_collector::Snapshot], throttle_cgroup: &str) -> CollectorSeen {
        let validates_own = |w: &sysmon_collector::warnings::Warning| {
            w.source == format!("cgroup {throttle_cgroup}") && w.message.contains("not found")
        };
        let mut frequency_sources: Vec<String> =
            snapshots.iter().flat_map(|s| s.cpus.iter().map(|c| c.frequency_source.as_str().to_string())).collect();
        frequency_sources.sort();
        frequency_sources.dedup();
        let mut sources_failed: Vec<FailedSource> = Vec::new();
        for snap in snapshots {
            for st in snap.sources.iter().filter(|st| !st.success) {
                let mine = |w: &&sysmon_collector::warnings::Warning| {
                    w.subsystem.as_deref() == Some(st.source.as_str()) && !validates_own(w)
                };
                if !snap.warnings.iter().any(|w| mine(&w)) {
                    continue;
                }
                let why = || {
                    // Guest text: kept to a line's worth in every report that carries it.
                    let w = snap.warnings.iter().find(mine);
                    w.map(|w| format!("{}: {}", w.source, w.message).chars().take(WHY_MAX).collect())
                        .unwrap_or_default()
                };
                match sources_failed.iter_mut().find(|f| f.source == st.source) {
                    Some(f) => f.failed += 1,
                    None => sources_failed.push(FailedSource { source: st.source.clone(), failed: 1, why: why() }),
                }
            }
        }
        // The collector's read order; a name it does not have (a newer collector's) last.
        let order =
            |name: &str| sysmon_collector::Source::ALL.iter().position(|s| s.name() == name).unwrap_or(usize::MAX);
        sources_failed.sort_by_key(|f| order(&f.source));
        CollectorSeen { mode: mode.to_string(), snapshots: snapshots.len(), frequency_sources, sources_failed }
    }
}

fn phase_of(phases: &[PhaseWindow], t: f64) -> String {
    phases
        .iter()
        .find(|p| t >= p.start && t <= p.end)
        .map(|p| p.kind.as_str().to_string())
        .unwrap_or_else(|| "between".into())
}

/// Every reading as a row: the collector's frequency and usage per CPU, the references, the
/// throttled cgroup's usage, the expected load, and OTLP latencies.
pub fn rows(i: &Inputs) -> Vec<Row> {
    let mut out = Vec::new();
    let mut push = |time: f64, cpu: &str, metric: &str, source: &str, value: f64| {
        if value.is_finite() {
            out.push(Row {
                time,
                phase: phase_of(i.phases, time),
                cpu: cpu.into(),
                metric: metric.into(),
                source: source.into(),
                value,
            });
        }
    };
    for s in i.collector {
        let t = snapshot_time(s);
        for c in &s.cpus {
            if let Some(hz) = c.frequency_hz {
                push(t, &c.cpu, "frequency_hz", &format!("collector {}", c.frequency_source.as_str()), hz);
            }
            if let Some(u) = c.usage {
                push(t, &c.cpu, "usage_pct", "collector", u.usage_pct);
            }
        }
        if let Some(u) = s.cpu_total {
            push(t, "total", "usage_pct", "collector", u.usage_pct);
        }
        for c in s.containers.iter().filter(|c| c.id == i.throttle_cgroup) {
            if let Some(u) = c.cpu_usage_pct {
                push(t, &c.id, "cgroup_usage_pct", "collector", u);
            }
        }
    }
    for (k, r) in i.refs.iter().enumerate() {
        for (cpu, hz) in &r.cpuinfo_hz {
            push(r.time, &format!("cpu{cpu}"), "frequency_hz", "/proc/cpuinfo cpu MHz", *hz);
        }
        for (cpu, file, hz) in &r.sysfs_hz {
            push(r.time, &format!("cpu{cpu}"), "frequency_hz", &format!("sysfs {file}"), *hz);
        }
        let prev = k.checked_sub(1).and_then(|p| i.refs[p].stat.as_ref());
        if let (Some(a), Some(b)) = (prev, r.stat.as_ref()) {
            if let (Some(ta), Some(tb)) = (a.total, b.total) {
                let d = tb.since(&ta);
                if d.total() > 0 {
                    push(r.time, "total", "usage_pct", "/proc/stat", d.busy() as f64 / d.total() as f64 * 100.0);
                }
            }
            for (cpu, tb) in &b.cpus {
                if let Some((_, ta)) = a.cpus.iter().find(|(c, _)| c == cpu) {
                    let d = tb.since(ta);
                    if d.total() > 0 {
                        push(
                            r.time,
                            &format!("cpu{cpu}"),
                            "usage_pct",
                            "/proc/stat",
                            d.busy() as f64 / d.total() as f64 * 100.0,
                        );
                    }
                }
            }
        }
    }
    for p in i.phases {
        let (cpu, want) = match p.kind {
            super::checks::PhaseKind::Idle => ("total", 0.0),
            super::checks::PhaseKind::One => ("cpu0", 100.0),
            super::checks::PhaseKind::All => ("total", 100.0),
            super::checks::PhaseKind::Throttle => (i.throttle_cgroup, i.throttle_quota_pct),
        };
        push(p.start, cpu, "expected_usage_pct", "load", want);
        push(p.end, cpu, "expected_usage_pct", "load", want);
    }
    for h in i.host {
        push(h.time, &h.name, "host_frequency_hz", &h.source, h.hz);
    }
    for (arrived, taken) in i.otlp {
        push(*arrived, "", "otlp_latency_s", "collector OTLP push", arrived - taken);
    }
    out.sort_by(|a, b| a.time.total_cmp(&b.time));
    out
}

pub fn rollups(rows: &[Row]) -> Vec<Rollup> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(String, String, String, String, String), Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.metric != "expected_usage_pct") {
        let bucket = format!("{}", (r.time / 300.0).floor() as i64 * 300);
        for (by, key) in [("phase", r.phase.clone()), ("5min", bucket)] {
            groups
                .entry((by.into(), key, r.metric.clone(), r.source.clone(), r.cpu.clone()))
                .or_default()
                .push(r.value);
        }
    }
    groups
        .into_iter()
        .filter_map(|((by, key, metric, source, cpu), v)| {
            let ErrorStats { mean, p95, max } = ErrorStats::of(&v)?;
            Some(Rollup { by, key, metric, source, cpu, n: v.len(), avg: mean, p95, max })
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

pub fn samples_csv(rows: &[Row]) -> String {
    let mut s = String::from("time,phase,cpu,metric,source,value\n");
    for r in rows {
        s += &format!(
            "{:.3},{},{},{},{},{}\n",
            r.time,
            csv_field(&r.phase),
            csv_field(&r.cpu),
            csv_field(&r.metric),
            csv_field(&r.source),
            r.value
        );
    }
    s
}

pub fn rollups_csv(rollups: &[Rollup]) -> String {
    let mut s = String::from("by,key,metric,source,cpu,n,avg,p95,max\n");
    for r in rollups {
        s += &format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.by,
            csv_field(&r.key),
            r.metric,
            csv_field(&r.source),
            csv_field(&r.cpu),
            r.n,
            r.avg,
            r.p95,
            r.max
        );
    }
    s
}

/// One line on what the collector showed of itself: its mode, frequency sources, failing sources.
pub fn collector_line(c: &CollectorSeen) -> String {
    let failing = if c.sources_failed.is_empty() {
        "every source read in every snapshot".to_string()
    } else {
        let list: Vec<String> = c
            .sources_failed
            .iter()
            .map(|f| format!("{} ({}/{}: {})", f.source, f.failed, c.snapshots, crate::sanitize::line(&f.why)))
            .collect();
        format!("failing sources: {}", list.join("; "))
    };
    format!(
        "Collector ({} mode, {} snapshots): frequency source {}; {failing}.",
        c.mode,
        c.snapshots,
        if c.frequency_sources.is_empty() { "none".to_string() } else { c.frequency_sources.join(", ") }
    )
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::NotComparable => "not comparable",
        Verdict::Info => "info",
    }
}

fn error_text(c: &Check) -> String {
    c.error
        .as_ref()
        .map(|e| {
            format!(
                "mean {:.2} / p95 {:.2} / max {:.2} {} (tolerance {:.1} {})",
                e.mean, e.p95, e.max, c.unit, c.tolerance, c.unit
            )
        })
        .unwrap_or_default()
}

pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# sysmonvm validate: {}\n\nVM `{}` ({}, accelerator {}), run {} → {}. Phases: {}, {:.0} s each, readings every {:.1} s, tolerance ±{} % (frequency: relative error; usage: percentage points).\n\n",
        r.summary.verdict.to_uppercase(),
        r.vm,
        r.profile,
        r.accel,
        r.started,
        r.finished,
        r.settings.phases.join(", "),
        r.settings.duration_per_phase_s,
        r.settings.interval_s,
        r.settings.tolerance_pct
    );
    s += &format!(
        "**{} pass, {} fail, {} not comparable.** Exit status {}. Guest–host clock offset {:+.3} s (±{:.3} s).\n\n",
        r.summary.pass,
        r.summary.fail,
        r.summary.not_comparable,
        r.summary.exit_status,
        r.clock_offset_s,
        r.clock_offset_uncertainty_s
    );
    if r.collector.snapshots > 0 {
        s += &format!("{}\n\n", collector_line(&r.collector));
    }
    s += "| check | phase | cpu | collector | reference | n | error | verdict | why |\n|---|---|---|---|---|---|---|---|---|\n";
    for c in &r.checks {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.name,
            c.phase.as_deref().unwrap_or("all"),
            c.cpu.as_deref().unwrap_or(""),
            c.source,
            c.reference,
            c.samples,
            error_text(c),
            verdict_word(c.verdict),
            c.reason.as_deref().unwrap_or("").replace('|', "\\|")
        );
    }
    s += "\nVerdicts: **pass** — within tolerance against an independent reference; **FAIL** — outside it (or no readings); **not comparable** — the reference is missing in this guest, reads the same source as the collector, or is a constant (the TSC rate), so agreement would prove nothing; **info** — shown, not judged (the host's own clocks: a different quantity). Details: README.md, \"sysmonvm validate\".\n";
    s
}

/// The charts of the HTML report, as SVG documents (also written beside it).
pub fn charts(r: &Report, rows: &[Row]) -> Vec<(String, String)> {
    let t0 = r.phases.first().map(|p| p.start).unwrap_or(0.0);
    let bands: Vec<Band> =
        r.phases.iter().map(|p| Band { label: p.kind.as_str().into(), from: p.start - t0, to: p.end - t0 }).collect();
    let series =
        |metric: &str, keep: &dyn Fn(&Row) -> bool, label: &dyn Fn(&Row) -> String, dashed: &dyn Fn(&Row) -> bool| {
            let mut by: std::collections::BTreeMap<String, (Series, String)> = std::collections::BTreeMap::new();
            for row in rows.iter().filter(|x| x.metric == metric && keep(x)) {
                let l = label(row);
                let (series, last_phase) = by.entry(l.clone()).or_insert_with(|| {
                    (Series { label: l, points: Vec::new(), dashed: dashed(row) }, row.phase.clone())
                });
                // The expected load is a level per phase, not a line from one phase to the next.
                if row.source == "load" && *last_phase != row.phase {
                    series.points.push((f64::NAN, f64::NAN));
                }
                *last_phase = row.phase.clone();
                series.points.push((row.time - t0, row.value));
            }
            by.into_values().map(|(s, _)| s).collect::<Vec<_>>()
        };
    let freq = series("frequency_hz", &|_| true, &|x| format!("{} {}", x.cpu, x.source), &|x| {
        !x.source.starts_with("collector")
    });
    let usage = series(
        "usage_pct",
        &|x| x.cpu == "total" || x.source == "collector",
        &|x| format!("{} {}", x.cpu, x.source),
        &|x| x.source != "collector",
    )
    .into_iter()
    .chain(series(
        "expected_usage_pct",
        &|x| x.cpu == "total" || x.cpu.starts_with("cpu"),
        &|x| format!("expected {}", x.cpu),
        &|_| true,
    ))
    .collect::<Vec<_>>();
    // The step: one unthrottled worker on cpu0 (phase `one`), then one worker under the quota.
    let throttle = series(
        "usage_pct",
        &|x| x.phase == "one" && x.cpu == "cpu0" && x.source == "collector",
        &|_| "unthrottled worker: cpu0 (collector)".into(),
        &|_| false,
    )
    .into_iter()
    .chain(series("cgroup_usage_pct", &|_| true, &|_| "throttled worker: its cgroup (collector)".into(), &|_| false))
    .chain(std::iter::once(Series {
        label: format!("quota {:.0} %", r.settings.throttle_quota_pct),
        points: r
            .phases
            .iter()
            .filter(|p| p.kind == super::checks::PhaseKind::Throttle)
            .flat_map(|p| [(p.start - t0, r.settings.throttle_quota_pct), (p.end - t0, r.settings.throttle_quota_pct)])
            .collect(),
        dashed: true,
    }))
    .collect::<Vec<_>>();
    vec![
        (
            "frequency.svg".into(),
            line_chart("Per-CPU frequency: collector (solid) vs references (dashed)", "Hz", &freq, &bands),
        ),
        (
            "usage.svg".into(),
            line_chart("CPU usage per phase: collector vs /proc/stat and the load", "%", &usage, &bands),
        ),
        (
            "throttle.svg".into(),
            line_chart(
                "Throttle step: one worker unthrottled, then under its CPU quota",
                "% of one CPU",
                &throttle,
                &bands,
            ),
        ),
    ]
}

pub fn html(r: &Report, charts: &[(String, String)]) -> String {
    let md = markdown(r);
    let mut rows_html = String::new();
    for c in &r.checks {
        let class = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            _ => "nc",
        };
        rows_html += &format!(
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.name),
            esc(c.phase.as_deref().unwrap_or("all")),
            esc(c.cpu.as_deref().unwrap_or("")),
            esc(&c.source),
            esc(&c.reference),
            c.samples,
            esc(&error_text(c)),
            verdict_word(c.verdict),
            esc(c.reason.as_deref().unwrap_or(""))
        );
    }
    let head = md.split("| check").next().unwrap_or("");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sysmonvm validate {}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}tr.pass td:nth-child(8){{color:#070}}tr.fail td:nth-child(8){{color:#b00;font-weight:bold}}tr.nc td:nth-child(8){{color:#777}}</style></head><body>\n<pre style=\"white-space:pre-wrap\">{}</pre>\n{}\n<table><tr><th>check</th><th>phase</th><th>cpu</th><th>collector</th><th>reference</th><th>n</th><th>error</th><th>verdict</th><th>why</th></tr>\n{}</table></body></html>\n",
        esc(&r.run_id),
        esc(head.trim()),
        charts.iter().map(|(_, svg)| format!("<figure>{svg}</figure>")).collect::<String>(),
        rows_html
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Writes every file of the report into `dir` and appends the run to `dir/runs.jsonl`.
pub fn write(dir: &Path, r: &Report, rows: &[Row]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let charts = charts(r, rows);
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r)? + "\n")?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    std::fs::write(dir.join("report.html"), html(r, &charts))?;
    for (name, svg) in &charts {
        std::fs::write(dir.join(name), svg)?;
    }
    std::fs::write(dir.join("samples.csv"), samples_csv(rows))?;
    std::fs::write(dir.join("rollups.csv"), rollups_csv(&r.rollups))?;
    let line = serde_json::json!({
        "run_id": r.run_id, "started": r.started, "finished": r.finished, "vm": r.vm, "profile": r.profile,
        "accel": r.accel, "verdict": r.summary.verdict, "exit_status": r.summary.exit_status,
        "pass": r.summary.pass, "fail": r.summary.fail, "not_comparable": r.summary.not_comparable,
        "tolerance_pct": r.settings.tolerance_pct, "phases": r.settings.phases,
    });
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("runs.jsonl"))?;
    writeln!(f, "{line}")
}
