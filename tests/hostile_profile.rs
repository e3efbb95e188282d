//! A profile is user input that reaches argv, paths and guest scripts: the reproduction from the
//! hostile-guest review (`ssh.user: "-oProxyCommand=touch /tmp/PWNED;#"` made `vm ssh` run that
//! command on the host) and its shell-looking cousins are refused by the real binary at load,
//! with the file, line and field, before anything runs.

mod common;

#[test]
fn an_option_looking_ssh_user_is_refused_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("PWNED");
    let base = include_str!("../profiles/almalinux-9-x86_64.yaml");
    for user in [format!("-oProxyCommand=touch {};#", marker.display()), format!("$(touch {})", marker.display())] {
        let line =
            base.lines().position(|l| l.trim_start().starts_with("user:")).expect("the profile names a user") + 1;
        let text = base
            .lines()
            .map(|l| if l.trim_start().starts_with("user:") { format!("  user: {user:?}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        let file = d.path().join("hostile.yaml");
        std::fs::write(&file, text).unwrap();
        let ws = d.path().join("ws");
        for args in [
            vec!["vm", "create", "--profile", file.to_str().unwrap(), "--name", "h"],
            vec!["profile", "show", file.to_str().unwrap()],
            vec!["cidata", "--profile", file.to_str().unwrap(), "--out", "/dev/null"],
        ] {
            let (code, _, err) = common::sysmonvm_json(&ws, &args);
            assert_eq!(code, sysmonvm::exit::ERROR, "{args:?}: {err}");
            assert!(
                err.contains(&format!("hostile.yaml:{line}:")) && err.contains("`ssh.user`") && err.contains("POSIX"),
                "{args:?}: {err}"
            );
        }
        assert!(!marker.exists(), "the profile's user ran a command on the host");
    }
}
