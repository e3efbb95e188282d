//! The one list of system packages and its install plan (pure; no package is installed here).

use sysmonvm::system_packages::*;

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn bookworm() -> OsRelease {
    OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n")
}

#[test]
fn every_package_is_listed_once_with_a_role_and_a_reason() {
    let mut names: Vec<&str> = PACKAGES.iter().map(|p| p.name).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "a package is listed twice");
    for p in PACKAGES {
        assert!(!p.roles.is_empty() && !p.why.is_empty() && !p.provides.is_empty(), "{p:?}");
    }
}

#[test]
fn on_bookworm_only_qemu_comes_from_backports_in_its_own_install() {
    let missing = selected(&[Role::Vm], None);
    let plan = install_plan(&bookworm(), false, &missing).unwrap();
    assert_eq!(plan[0], InstallAction::WriteFile { path: BACKPORTS_SOURCE_FILE, contents: BACKPORTS_SOURCE });
    assert_eq!(plan[1], InstallAction::Run(argv(&["apt-get", "update", "-qq"])));
    let InstallAction::Run(bp) = &plan[2] else { panic!("{plan:?}") };
    assert_eq!(
        bp.join(" "),
        "apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-system-arm qemu-utils"
    );
    let InstallAction::Run(rest) = &plan[3] else { panic!("{plan:?}") };
    assert!(!rest.contains(&"-t".to_string()) && rest.contains(&"ovmf".to_string()), "{rest:?}");
    assert!(!rest.iter().any(|p| p.starts_with("qemu-system")), "{rest:?}");
    // A configured backports source is not written again.
    let plan = install_plan(&bookworm(), true, &missing).unwrap();
    assert!(matches!(plan[0], InstallAction::Run(_)));
}

#[test]
fn elsewhere_everything_comes_from_the_release() {
    let ubuntu = OsRelease::parse("ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n");
    let plan = install_plan(&ubuntu, false, &selected(&[Role::Vm], Some(ForGuest::Aarch64))).unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    let InstallAction::Run(a) = &plan[1] else { panic!() };
    assert!(a.contains(&"qemu-system-arm".to_string()) && !a.contains(&"qemu-system-x86".to_string()));
    assert!(!a.contains(&"-t".to_string()));
    let fedora = OsRelease::parse("ID=fedora\n");
    let e = install_plan(&fedora, false, &selected(&[Role::Vm], None)).unwrap_err();
    assert!(e.to_string().contains("qemu-system-x86"), "{e}");
    assert_eq!(install_plan(&fedora, false, &[]), Ok(vec![]));
}

#[test]
fn a_missing_tool_names_its_package() {
    assert_eq!(
        missing_tool_message("isoinfo"),
        "isoinfo is not installed (Debian package genisoimage: apt-get install genisoimage)"
    );
    assert!(
        missing_tool_message("qemu-system-aarch64").contains("apt-get install -t bookworm-backports qemu-system-arm")
    );
    assert_eq!(missing_tool_message("no-such-tool"), "no-such-tool is not installed");
    assert_eq!(Role::parse("guest-image"), Some(Role::GuestImage));
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn the_readme_quotes_the_list_and_ci_installs_from_it() {
    let readme = repo_file("README.md");
    let section = readme.split("### System packages").nth(1).expect("README has a System packages section");
    let section = section.split("\n## ").next().unwrap();
    for p in PACKAGES {
        assert!(section.contains(&format!("`{}`", p.name)), "README's System packages section lacks {}", p.name);
    }
    let ci = repo_file(".ci/run");
    assert!(ci.contains("cargo xtask deps --install"), ".ci/run installs from the list");
    for p in PACKAGES {
        // No second list: .ci/run names no package of the table in an apt-get line.
        for line in ci.lines().filter(|l| l.contains("apt-get install")) {
            assert!(!line.split_whitespace().any(|w| w == p.name), ".ci/run installs {} by itself: {line}", p.name);
        }
    }
}
