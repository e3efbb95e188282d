//! `sysmonvm validate`: runs load phases in the guest with stress-ng, reads the collector and
//! independent references side by side, compares only what is comparable, and reports. This
//! module holds the pure parts — the phase plan and guest commands (here), the reference and
//! perf parsers, the checks, the report — and the OTLP receiver; `commands/validate.rs` runs them.

pub mod checks;
pub mod matrix;
pub mod perfstat;
pub mod receiver;
pub mod refs;
pub mod report;
pub mod svg;

use crate::guest::command::GuestCommand;
use checks::PhaseKind;
use std::time::Duration;

/// The systemd unit (and so the cgroup) the throttle phase's load runs in.
pub const THROTTLE_UNIT: &str = "sysmonvm-validate-throttle.service";
pub const THROTTLE_CGROUP: &str = "system.slice/sysmonvm-validate-throttle.service";

/// The command that loads the guest during a phase (run as the SSH user; `sudo -n` where needed).
/// None for idle: the idle phase runs no stress-ng at all.
pub fn load_command(kind: PhaseKind, duration: Duration, quota_pct: f64) -> Option<GuestCommand> {
    let secs = format!("{}s", duration.as_secs().max(1));
    let stress = |cpus: &str| ["stress-ng", "--cpu", cpus].map(String::from);
    match kind {
        PhaseKind::Idle => None,
        PhaseKind::One => {
            Some(GuestCommand::new("stress-ng").args(["--cpu", "1", "--taskset", "0", "--timeout", &secs, "--quiet"]))
        }
        // `--cpu 0`: one worker per online CPU.
        PhaseKind::All => Some(GuestCommand::new("stress-ng").args(["--cpu", "0", "--timeout", &secs, "--quiet"])),
        // Pinned like `one`: an unpinned throttled worker migrates between CPUs, and the per-CPU
        // usage comparison then measures where the edges of two windows fell (seen on the arm64
        // guest: cpu0 48 % vs 40 %, cpu1 10 % vs 18 %, while the totals agreed).
        PhaseKind::Throttle => Some(
            GuestCommand::new("systemd-run")
                .args(["--quiet", "--wait", "--collect", &format!("--unit={THROTTLE_UNIT}")])
                .args(["-p".to_string(), format!("CPUQuota={quota_pct:.0}%")])
                .args(stress("1"))
                .args(["--taskset", "0", "--timeout", &secs, "--quiet"])
                .sudo(true),
        ),
    }
}

/// The reference loop for a phase (templates/guest/validate-refs.sh.j2), as a `sh -c` command.
pub fn refs_command(duration: Duration, interval: Duration) -> Result<GuestCommand, crate::templates::TemplateError> {
    let passes = (duration.as_secs_f64() / interval.as_secs_f64()).ceil().max(1.0) as u64 + 1;
    let script = crate::templates::render(
        "validate-refs.sh.j2",
        &serde_json::json!({ "seconds": duration.as_secs(), "passes": passes, "interval": format!("{:.3}", interval.as_secs_f64()) }),
    )?;
    Ok(GuestCommand::script(script))
}

/// `perf stat` over the phase, system-wide and per CPU (templates/guest/validate-perf.sh.j2).
pub fn perf_command(duration: Duration, interval: Duration) -> Result<GuestCommand, crate::templates::TemplateError> {
    let script = crate::templates::render(
        "validate-perf.sh.j2",
        &serde_json::json!({
            "sudo": "sudo -n ",
            "interval_ms": interval.as_millis().max(100) as u64,
            "seconds": duration.as_secs().max(1),
        }),
    )?;
    Ok(GuestCommand::script(script.trim()))
}

/// `date +%s.%N`: the guest's clock, for the offset probes.
pub fn clock_probe() -> GuestCommand {
    GuestCommand::new("date").arg("+%s.%N")
}

/// Prints `missing` when stress-ng is not installed (templates/guest/validate-stress-ng-probe.sh.j2).
pub fn stress_ng_probe() -> Result<GuestCommand, crate::templates::TemplateError> {
    let script = crate::templates::render("validate-stress-ng-probe.sh.j2", &serde_json::json!({}))?;
    Ok(GuestCommand::script(script.trim()))
}

/// Parses `--phases idle,one,all,throttle`.
pub fn parse_phases(s: &str) -> Result<Vec<PhaseKind>, String> {
    s.split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| PhaseKind::parse(p).ok_or_else(|| format!("unknown phase {p:?}: use idle, one, all, throttle")))
        .collect()
}

/// Parses a percentage (`5%`, `5`, `0.5%`).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().trim_end_matches('%').trim().parse().map_err(|_| format!("{s:?} is not a percentage"))?;
    if v.is_finite() && v > 0.0 && v <= 100.0 { Ok(v) } else { Err(format!("{s:?}: use a value in (0, 100]")) }
}

/// Guest clock minus host clock from (host before, guest, host after) probes: the probe with the
/// shortest round trip wins; its half round trip is the uncertainty.
pub fn clock_offset(probes: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    probes
        .iter()
        .filter(|(a, g, b)| a.is_finite() && g.is_finite() && b.is_finite() && b >= a)
        .min_by(|x, y| (x.2 - x.0).total_cmp(&(y.2 - y.0)))
        .map(|(a, g, b)| (g - (a + b) / 2.0, (b - a) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_commands() {
        let d = Duration::from_secs(30);
        assert_eq!(load_command(PhaseKind::Idle, d, 50.0), None);
        assert_eq!(
            load_command(PhaseKind::One, d, 50.0).unwrap().render(),
            "stress-ng --cpu 1 --taskset 0 --timeout 30s --quiet"
        );
        assert!(load_command(PhaseKind::All, d, 50.0).unwrap().render().starts_with("stress-ng --cpu 0 "));
        let t = load_command(PhaseKind::Throttle, d, 50.0).unwrap().render();
        assert!(
            t.starts_with("sudo -n systemd-run ")
                && t.contains(
                    "--unit=sysmonvm-validate-throttle.service -p CPUQuota=50% stress-ng --cpu 1 --taskset 0"
                ),
            "{t}"
        );
        let perf = perf_command(d, Duration::from_secs(1)).unwrap();
        assert_eq!(perf.argv()[..2], ["sh".to_string(), "-c".to_string()]);
        assert_eq!(
            perf.argv()[2],
            "sudo -n perf stat -x, -a -A -e cycles -I 1000 -- sleep 30 2>&1 || echo '@@perf-missing'"
        );
        let refs = refs_command(d, Duration::from_secs(1)).unwrap().render();
        assert!(refs.starts_with("sh -c '") && refs.contains("-lt 31 ]"), "{refs}");
        let out = std::process::Command::new("sh").args(["-n", "-c", &refs[7..refs.len() - 1]]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn the_reference_loop_runs_here_and_parses() {
        // The loop itself, on this machine's kernel: two passes, 0.1 s apart.
        let cmd = refs_command(Duration::from_millis(100), Duration::from_millis(100)).unwrap().render();
        let out = std::process::Command::new("sh").args(["-c", &cmd]).output().unwrap();
        let samples = refs::parse(&String::from_utf8_lossy(&out.stdout));
        assert!(samples.len() >= 2, "{}", String::from_utf8_lossy(&out.stdout));
        assert!(samples.iter().all(|s| s.stat.as_ref().is_some_and(|st| !st.cpus.is_empty())));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((samples[0].time - now).abs() < 60.0, "{} vs {now}", samples[0].time);
    }

    #[test]
    fn options_and_offsets() {
        assert_eq!(parse_phases("idle, all").unwrap(), [PhaseKind::Idle, PhaseKind::All]);
        assert!(parse_phases("idle,burn").is_err());
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert!(parse_percent("0").is_err() && parse_percent("x").is_err() && parse_percent("NaN").is_err());
        let (off, unc) = clock_offset(&[(10.0, 15.2, 10.4), (20.0, 25.05, 20.1)]).unwrap();
        assert!((off - 5.0).abs() < 1e-9 && (unc - 0.05).abs() < 1e-9);
        assert_eq!(clock_offset(&[(1.0, f64::NAN, 2.0)]), None);
    }
}
