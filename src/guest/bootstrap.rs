//! The bootstrap plan: what a fresh cloud guest needs before the collector and `validate` can
//! trust it — baseline tools, cpupower, perf and stress-ng, `kernel.perf_event_paranoid=1`, time
//! sync, and the cpufreq governor where a driver exists. Rendered from
//! `templates/guest/bootstrap-{apt,dnf}.steps.j2` for the profile's guest family.

use super::steps::{Plan, PlanError};
use crate::profile::{GuestFamily, Profile};
use serde::Serialize;

/// The baseline every guest gets, by each family's names: the runbook's tools, the frequency
/// references `validate` reads, stress-ng, and podman for containers.
pub fn base_packages(family: GuestFamily) -> &'static [&'static str] {
    match family {
        // Debian's names; Ubuntu ships cpupower and perf in linux-tools-* instead.
        GuestFamily::Apt => {
            &["git", "curl", "vim", "jq", "linux-cpupower", "linux-perf", "stress-ng", "chrony", "podman"]
        }
        GuestFamily::Dnf => {
            &["git", "curl", "vim-enhanced", "jq", "kernel-tools", "perf", "stress-ng", "chrony", "podman"]
        }
    }
}

/// Package names go into a shell command unquoted, so only the characters Debian and RPM allow
/// in names are accepted (no spaces, quotes or shell metacharacters).
pub fn check_package_name(name: &str) -> Result<(), PlanError> {
    if crate::profile::is_package_name(name) {
        Ok(())
    } else {
        Err(PlanError::Input(format!("{name:?} is not a valid package name")))
    }
}

#[derive(Serialize)]
struct Context<'a> {
    arch: &'a str,
    packages: Vec<String>,
}

/// The plan for `profile`, installing `extra` packages on top of the baseline and the profile's own.
pub fn plan(profile: &Profile, extra: &[String]) -> Result<Plan, PlanError> {
    let mut packages: Vec<String> = base_packages(profile.guest_family).iter().map(|s| s.to_string()).collect();
    for p in profile.packages.iter().chain(extra) {
        check_package_name(p)?;
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }
    let template = match profile.guest_family {
        GuestFamily::Apt => "bootstrap-apt.steps.j2",
        GuestFamily::Dnf => "bootstrap-dnf.steps.j2",
    };
    super::steps::from_template("bootstrap", template, &Context { arch: profile.arch.as_str(), packages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;

    fn names(p: &Plan) -> Vec<&str> {
        p.steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn dnf_on_aarch64_loads_cpufreq_dt_and_apt_on_x86_64_does_not() {
        let alma = profile::load("almalinux-9-aarch64", None).unwrap();
        let p = plan(&alma, &[]).unwrap();
        assert_eq!(
            names(&p),
            ["cloud-init", "packages", "perf-event-paranoid", "chronyd", "cpufreq-dt", "governor-performance"]
        );
        let pk = p.step("packages").unwrap();
        assert_eq!(pk.run, "dnf -y -q install git curl vim-enhanced jq kernel-tools perf stress-ng chrony podman");
        assert!(p.step("governor-performance").unwrap().skip_note.as_ref().unwrap().contains("no cpufreq driver"));

        let mut deb = alma.clone();
        deb.guest_family = GuestFamily::Apt;
        deb.arch = profile::Arch::X86_64;
        let p = plan(&deb, &["htop".into()]).unwrap();
        assert_eq!(
            names(&p),
            ["cloud-init", "dpkg-recover", "packages", "perf-event-paranoid", "chrony", "governor-performance"]
        );
        assert!(p.step("packages").unwrap().run.ends_with("linux-cpupower linux-perf stress-ng chrony podman htop"));
        assert!(p.step("perf-event-paranoid").unwrap().run.contains("kernel.perf_event_paranoid = 1"));
    }

    #[test]
    fn hostile_package_names_are_refused() {
        let alma = profile::load("almalinux-9-x86_64", None).unwrap();
        for bad in ["", "a b", "x;reboot", "$(id)", "-y", "a'b"] {
            assert!(plan(&alma, &[bad.to_string()]).is_err(), "{bad:?}");
        }
        assert!(plan(&alma, &["python3.11".into(), "g++".into(), "epel-release".into()]).is_ok());
    }

    /// The apt packages check reads dpkg's database with awk: on a Debian host its verdict for
    /// any list is dpkg-query's (every name known and `ii`), for installed, unknown and
    /// removed-but-configured packages alike.
    #[test]
    fn the_apt_packages_check_agrees_with_dpkg_query() {
        if !std::path::Path::new("/var/lib/dpkg/status").is_file() {
            eprintln!("SKIPPED: no dpkg database on this host");
            return;
        }
        let mut deb = profile::load("almalinux-9-x86_64", None).unwrap();
        deb.guest_family = GuestFamily::Apt;
        let p = plan(&deb, &[]).unwrap();
        let check = p.step("packages").unwrap().check.clone().unwrap();
        let list = format!("want='{}'", base_packages(GuestFamily::Apt).join(" "));
        assert!(check.contains(&list), "{check}");
        let sh = |script: &str| std::process::Command::new("sh").args(["-c", script]).output().unwrap();
        let listed = sh("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n'");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let with = |abbrev: &str| -> Vec<String> {
            listed
                .lines()
                .filter(|l| l.starts_with(abbrev))
                .filter_map(|l| l.split(' ').nth(2))
                .map(String::from)
                .collect()
        };
        let (installed, removed) = (with("ii"), with("rc"));
        assert!(installed.len() > 20, "{listed}");
        let mut lists: Vec<Vec<String>> = vec![installed[..20].to_vec(), installed[20..21].to_vec()];
        lists.push(vec![installed[0].clone(), "no-such-package-sysmonvm".into()]);
        if let Some(r) = removed.first() {
            lists.push(vec![installed[0].clone(), r.clone()]);
        }
        for names in lists {
            let words = names.join(" ");
            let awk = sh(&check.replace(&list, &format!("want='{words}'"))).status.success();
            let oracle = format!(
                "st=$(dpkg-query -W -f='${{db:Status-Abbrev}}\n' {words} 2>/dev/null) && ! printf '%s\n' \"$st\" | grep -qv '^ii'"
            );
            assert_eq!(awk, sh(&oracle).status.success(), "{words}");
        }
    }

    #[test]
    fn the_rendered_script_is_valid_shell() {
        for name in ["almalinux-9-aarch64", "almalinux-9-x86_64"] {
            let mut p = profile::load(name, None).unwrap();
            for family in [GuestFamily::Apt, GuestFamily::Dnf] {
                p.guest_family = family;
                let script = plan(&p, &[]).unwrap().script("0123456789abcdef").unwrap();
                let out = std::process::Command::new("sh").args(["-n", "-c", &script]).output().unwrap();
                assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}
