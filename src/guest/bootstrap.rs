//! The bootstrap plan: what a fresh cloud guest needs before the collector and `validate` can
//! trust it — baseline tools, cpupower, perf and stress-ng, `kernel.perf_event_paranoid=1`, time
//! sync, the profile's container runtime (enabled), and the cpufreq governor where a driver
//! exists. Rendered from `templates/guest/bootstrap-{apt,dnf}.steps.j2` for the profile's guest
//! family.

use super::steps::{Plan, PlanError};
use crate::profile::{ContainerRuntime, GuestFamily, Profile};
use serde::Serialize;

/// The baseline every guest gets, by each family's names: the runbook's tools, the frequency
/// references `validate` reads, and stress-ng.
pub fn base_packages(family: GuestFamily) -> &'static [&'static str] {
    match family {
        // Debian's names; Ubuntu ships cpupower and perf in linux-tools-* instead.
        GuestFamily::Apt => &["git", "curl", "vim", "jq", "linux-cpupower", "linux-perf", "stress-ng", "chrony"],
        GuestFamily::Dnf => &["git", "curl", "vim-enhanced", "jq", "kernel-tools", "perf", "stress-ng", "chrony"],
    }
}

/// The packages of the profile's container runtime: Debian's own `docker.io`, with `apparmor`
/// (only recommended, but on a kernel with AppArmor on, dockerd cannot start a container without
/// its parser: seen on the Debian test guest); on dnf guests Docker CE from Docker's repository
/// (the `docker-repo` step adds it with its key pinned).
pub fn runtime_packages(family: GuestFamily, runtime: ContainerRuntime) -> &'static [&'static str] {
    match (family, runtime) {
        (_, ContainerRuntime::None) => &[],
        (_, ContainerRuntime::Podman) => &["podman"],
        (GuestFamily::Apt, ContainerRuntime::Docker) => &["docker.io", "apparmor"],
        (GuestFamily::Dnf, ContainerRuntime::Docker) => &["docker-ce", "docker-ce-cli", "containerd.io"],
    }
}

/// Docker's repository for RHEL-family guests and the fingerprint of the key its packages are
/// signed with, as Docker publishes it in its install guide: the key is fetched over HTTPS and
/// imported only when it is this key alone.
pub const DOCKER_RPM_REPO: &str = "https://download.docker.com/linux/centos";
pub const DOCKER_RPM_KEY_FINGERPRINT: &str = "060A61C51B558A7F742B77AAC52FEB6B621E9F35";

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
    container_runtime: &'a str,
    docker_repo: &'a str,
    docker_key_fingerprint: &'a str,
}

/// The plan for `profile`, installing `extra` packages on top of the baseline and the profile's own.
pub fn plan(profile: &Profile, extra: &[String]) -> Result<Plan, PlanError> {
    let family = profile.guest_family;
    let base = base_packages(family).iter().chain(runtime_packages(family, profile.container_runtime));
    let mut packages: Vec<String> = base.map(|s| s.to_string()).collect();
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
    let context = Context {
        arch: profile.arch.as_str(),
        packages,
        container_runtime: profile.container_runtime.as_str(),
        docker_repo: DOCKER_RPM_REPO,
        docker_key_fingerprint: DOCKER_RPM_KEY_FINGERPRINT,
    };
    super::steps::from_template("bootstrap", template, &context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;

    fn names(p: &Plan) -> Vec<&str> {
        p.steps.iter().map(|s| s.name.as_str()).collect()
    }

    /// The apt plan's packages check, and its `want='…'` list (for tests to swap for their own).
    fn apt_packages_check() -> (String, String) {
        let mut deb = profile::load("almalinux-9-x86_64", None).unwrap();
        deb.guest_family = GuestFamily::Apt;
        let check = plan(&deb, &[]).unwrap().step("packages").unwrap().check.clone().unwrap();
        let start = check.find("want='").unwrap();
        let end = start + 6 + check[start + 6..].find('\'').unwrap() + 1;
        let list = check[start..end].to_string();
        (check, list)
    }

    #[test]
    fn dnf_on_aarch64_loads_cpufreq_dt_and_apt_on_x86_64_does_not() {
        let alma = profile::load("almalinux-9-aarch64", None).unwrap();
        let p = plan(&alma, &[]).unwrap();
        assert_eq!(
            names(&p),
            [
                "cloud-init",
                "docker-repo",
                "packages",
                "perf-event-paranoid",
                "chronyd",
                "docker",
                "cpufreq-dt",
                "governor-performance"
            ]
        );
        let pk = p.step("packages").unwrap();
        assert_eq!(
            pk.run,
            "dnf -y -q install git curl vim-enhanced jq kernel-tools perf stress-ng chrony docker-ce docker-ce-cli containerd.io"
        );
        assert!(p.step("governor-performance").unwrap().skip_note.as_ref().unwrap().contains("no cpufreq driver"));

        let mut deb = alma.clone();
        deb.guest_family = GuestFamily::Apt;
        deb.arch = profile::Arch::X86_64;
        let p = plan(&deb, &["htop".into()]).unwrap();
        assert_eq!(
            names(&p),
            [
                "cloud-init",
                "dpkg-recover",
                "packages",
                "perf-event-paranoid",
                "chrony",
                "docker",
                "governor-performance"
            ]
        );
        assert!(
            p.step("packages")
                .unwrap()
                .run
                .ends_with("linux-cpupower linux-perf stress-ng chrony docker.io apparmor htop")
        );
        assert!(p.step("perf-event-paranoid").unwrap().run.contains("kernel.perf_event_paranoid = 1"));
    }

    /// Each runtime brings its packages and, with a daemon, the step that enables it; Docker CE on
    /// dnf guests comes from Docker's repository with its key pinned (untested here: no dnf guest
    /// and no route to Docker's servers, so its steps are compared with a reviewed golden file).
    #[test]
    fn the_container_runtime_brings_its_packages_and_steps() {
        let mut p = profile::load("almalinux-9-x86_64", None).unwrap();
        for (family, runtime, packages, steps) in [
            (GuestFamily::Apt, ContainerRuntime::Docker, "docker.io apparmor", vec!["docker"]),
            (GuestFamily::Apt, ContainerRuntime::Podman, "podman", vec![]),
            (GuestFamily::Apt, ContainerRuntime::None, "chrony", vec![]),
            (
                GuestFamily::Dnf,
                ContainerRuntime::Docker,
                "docker-ce docker-ce-cli containerd.io",
                vec!["docker-repo", "docker"],
            ),
            (GuestFamily::Dnf, ContainerRuntime::Podman, "podman", vec![]),
            (GuestFamily::Dnf, ContainerRuntime::None, "chrony", vec![]),
        ] {
            p.guest_family = family;
            p.container_runtime = runtime;
            let plan = plan(&p, &[]).unwrap();
            assert!(plan.step("packages").unwrap().run.ends_with(&format!(" {packages}")), "{family:?} {runtime:?}");
            let docker: Vec<_> = names(&plan).into_iter().filter(|n| n.starts_with("docker")).collect();
            assert_eq!(docker, steps, "{family:?} {runtime:?}");
        }
        p.guest_family = GuestFamily::Dnf;
        p.container_runtime = ContainerRuntime::Docker;
        let plan = plan(&p, &[]).unwrap();
        let repo = plan.step("docker-repo").unwrap();
        assert!(repo.check.as_deref().unwrap().contains("rpm -q gpg-pubkey-621e9f35"), "{repo:?}");
        assert!(
            repo.run.contains("--proto '=https'") && repo.run.contains(&format!("{DOCKER_RPM_KEY_FINGERPRINT}'!'"))
        );
        let got = serde_yaml::to_string(&plan.steps).unwrap();
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bootstrap-dnf-docker.yaml");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&file, &got).unwrap();
        }
        let want = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            got,
            want,
            "the dnf+docker bootstrap changed; if intended, UPDATE_GOLDEN=1 and review {}",
            file.display()
        );
    }

    /// The same awk on a status file that holds the states a host rarely has: held, removed with
    /// its config left, half-installed, unpacked, and one package on two architectures.
    #[test]
    fn the_apt_packages_check_reads_every_dpkg_state() {
        let status = "Package: p-ii\nStatus: install ok installed\nArchitecture: amd64\n\n\
                      Package: p-hi\nStatus: hold ok installed\nArchitecture: amd64\n\n\
                      Package: p-rc\nStatus: deinstall ok config-files\nArchitecture: amd64\n\n\
                      Package: p-half\nStatus: install reinstreq half-installed\nArchitecture: amd64\n\n\
                      Package: p-unpacked\nStatus: install ok unpacked\nArchitecture: amd64\n\n\
                      Package: p-ma\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\n\n\
                      Package: p-ma\nArchitecture: i386\nStatus: deinstall ok config-files\nMulti-Arch: same\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status");
        std::fs::write(&file, status).unwrap();
        let (check, list) = apt_packages_check();
        for (names, installed) in [
            ("p-ii", true),
            ("p-hi", true),
            ("p-ii p-hi p-ma p-ma:amd64", true),
            ("p-rc", false),
            ("p-half", false),
            ("p-unpacked", false),
            ("p-ma:i386", false),
            ("p-ii nosuch", false),
        ] {
            let script = check
                .replace(&list, &format!("want='{names}'"))
                .replace("/var/lib/dpkg/status", &file.display().to_string());
            let ok = std::process::Command::new("sh").args(["-c", &script]).status().unwrap().success();
            assert_eq!(ok, installed, "{names}");
        }
    }

    /// The docker-repo step's key filter, run by sh on keys gpg makes here, with the pinned
    /// fingerprint swapped for one of them: that key alone leaves a file that also holds another,
    /// and a file without it leaves nothing.
    #[test]
    fn the_docker_key_filter_lets_the_pinned_key_alone_through() {
        if std::process::Command::new("gpg").arg("--version").output().is_err() {
            eprintln!("SKIPPED: no gpg on this host");
            return;
        }
        let mut p = profile::load("almalinux-9-x86_64", None).unwrap();
        p.container_runtime = ContainerRuntime::Docker;
        let run = plan(&p, &[]).unwrap().step("docker-repo").unwrap().run.clone();
        let (start, end) = (run.find("ring=$(mktemp -d)").unwrap(), run.find("mv -f \"$key.pinned\"").unwrap());
        let filter = &run[start..end];
        let home = tempfile::tempdir().unwrap();
        let gpg = |args: &[&str]| {
            let o = std::process::Command::new("gpg")
                .arg("--homedir")
                .arg(home.path())
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            o.stdout
        };
        gpg(&["--quick-gen-key", "one@example.invalid", "ed25519", "sign", "never"]);
        gpg(&["--quick-gen-key", "two@example.invalid", "ed25519", "sign", "never"]);
        let listed = String::from_utf8(gpg(&["--with-colons", "--list-keys", "one@example.invalid"])).unwrap();
        let one = listed.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        // What leaves the filter for a downloaded file with these keys: the fingerprints in it.
        let filtered = |keys: &[&str]| -> (bool, String) {
            let key = dir.path().join("docker-ce.gpg");
            std::fs::write(key.with_extension("gpg.part"), gpg(&[&["--export"][..], keys].concat())).unwrap();
            let script = format!("key={}\n{}", key.display(), filter.replace(DOCKER_RPM_KEY_FINGERPRINT, &one));
            let ok = std::process::Command::new("sh").args(["-c", &script]).status().unwrap().success();
            let pinned = key.with_extension("gpg.pinned");
            let out = std::process::Command::new("gpg")
                .args(["--show-keys", "--with-colons"])
                .arg(&pinned)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let _ = std::fs::remove_file(&pinned);
            let pubs = out.lines().filter(|l| l.starts_with("pub:")).count();
            (
                ok,
                format!(
                    "{pubs} {}",
                    out.lines().find(|l| l.starts_with("fpr:")).and_then(|l| l.split(':').nth(9)).unwrap_or("")
                ),
            )
        };
        assert_eq!(filtered(&["one@example.invalid"]), (true, format!("1 {one}")));
        assert_eq!(
            filtered(&["two@example.invalid", "one@example.invalid"]),
            (true, format!("1 {one}")),
            "the other key stays behind"
        );
        assert_eq!(filtered(&["two@example.invalid"]), (false, "0 ".into()), "no pinned key: nothing");
        assert_ne!(one, DOCKER_RPM_KEY_FINGERPRINT);
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
        let (check, list) = apt_packages_check();
        assert!(list.contains(" chrony docker.io apparmor'"), "{list}");
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
