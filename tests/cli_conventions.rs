//! CLI conventions: shell completions and the man page come from the clap definitions (so they
//! list every command), NO_COLOR turns colour off even when CLICOLOR_FORCE asks for it, usage
//! errors exit 2, and a closed pipe ends the program quietly.

use std::process::Command;

fn sysmonvm(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysmonvm"));
    c.args(args).env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

const COMMANDS: &[&str] =
    &["up", "down", "vm", "image", "bootstrap", "collector", "validate", "host", "doctor", "completions", "man"];

#[test]
fn completions_for_every_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let o = sysmonvm(&["completions", shell], &[]);
        assert!(o.status.success());
        let text = String::from_utf8(o.stdout).unwrap();
        for cmd in COMMANDS {
            assert!(text.contains(cmd), "{shell} completion lacks {cmd}");
        }
        if shell == "bash" {
            let check = Command::new("bash").args(["-n", "-c", &text]).output().unwrap();
            assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
        }
    }
}

#[test]
fn the_man_page_renders_every_command() {
    let o = sysmonvm(&["man"], &[]);
    assert!(o.status.success());
    let roff = String::from_utf8(o.stdout).unwrap();
    assert!(roff.contains(".TH sysmonvm 1"));
    for cmd in COMMANDS {
        assert!(roff.contains(cmd), "man page lacks {cmd}");
    }
}

#[test]
fn no_color_wins_over_clicolor_force() {
    let forced = sysmonvm(&["--help"], &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.stdout.contains(&0x1b), "CLICOLOR_FORCE should colour the help (else this test proves nothing)");
    let plain = sysmonvm(&["--help"], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!plain.stdout.contains(&0x1b), "NO_COLOR must turn colour off");
}

#[test]
fn usage_errors_exit_2_and_other_errors_exit_1() {
    assert_eq!(sysmonvm(&["vm", "--no-such-flag"], &[]).status.code(), Some(2));
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().display().to_string();
    let o = sysmonvm(&["--workspace", &ws, "vm", "status", "nope"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "));
}

/// Every concrete `sysmonvm …` command in a code block of the README and docs/ is a valid
/// invocation (the subcommand path and every flag parse; `--help` stops before anything runs).
/// What they do is exercised by the e2e suite; this keeps the docs from drifting from the CLI.
#[test]
fn every_command_in_the_docs_parses() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/README.md")];
    for e in std::fs::read_dir(format!("{root}/docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            files.push(e.path().display().to_string());
        }
    }
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            let cmd = line.split(" #").next().unwrap().trim();
            let Some(rest) = cmd.strip_prefix("sysmonvm ").or_else(|| cmd.strip_prefix("sudo sysmonvm ")) else {
                continue;
            };
            // Usage lines with placeholders ([VM], A|B, …) describe syntax; examples are concrete.
            if !in_code || rest.contains(['[', '|', '…', '\\', '<']) {
                continue;
            }
            let mut args: Vec<&str> = rest.split_whitespace().collect();
            args.push("--help");
            let o = sysmonvm(&args, &[]);
            assert!(o.status.success(), "{f}: `{cmd}` does not parse: {}", String::from_utf8_lossy(&o.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} commands found in the docs");
}
