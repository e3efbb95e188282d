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

/// The top-level commands as of this writing: `sysmonvm --help` must list at least these, so the
/// checks below, which take their reference from `--help`, cannot pass on an empty listing.
const COMMANDS: &[&str] = &[
    "profile",
    "image",
    "vm",
    "up",
    "bootstrap",
    "collector",
    "validate",
    "host",
    "completions",
    "man",
    "down",
    "doctor",
    "cidata",
];

const SHELLS: &[&str] = &["bash", "zsh", "fish", "elvish", "powershell"];

/// Not a command: no script may offer it and no parent path of that name may have entries.
const MADE_UP: &str = "frobnicate";

/// The subcommands clap lists under `Commands:` in `sysmonvm PATH… --help` (empty for a leaf):
/// the reference every completion script and the man page are held to.
fn subcommands_in_help(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let o = sysmonvm(&args, &[]);
    assert!(o.status.success(), "sysmonvm {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let help = String::from_utf8(o.stdout).unwrap();
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if in_commands {
            // An entry is `  name  description`; a wrapped description is indented further.
            match line.strip_prefix("  ") {
                Some(entry) if !entry.starts_with(' ') => names.push(entry.split_whitespace().next().unwrap().into()),
                Some(_) => {}
                None => break,
            }
        }
    }
    names
}

/// The names a completion script offers as subcommands after `sysmonvm PATH…`, read from the
/// form that shell's script gives a subcommand entry under that parent (never a bare substring:
/// "sysmonvm" contains "vm", and every script contains "up" and "man" somewhere).
fn completion_entries(shell: &str, script: &str, path: &[&str]) -> Vec<String> {
    let lines: Vec<&str> = script.lines().collect();
    // The block that follows the first line (trimmed) equal to `opening`, up to `closing`.
    let block = |opening: &str, closing: &str| -> Vec<&str> {
        let Some(at) = lines.iter().position(|l| l.trim() == opening) else { return Vec::new() };
        lines[at + 1..].iter().map(|l| l.trim()).take_while(|l| !l.starts_with(closing)).collect()
    };
    let mut names: Vec<String> = match shell {
        // The case arm of the parent's internal name (`sysmonvm__subcmd__vm)`), whose `opts=`
        // word list is what compgen offers; its words that are not flags are the subcommands.
        "bash" => {
            let id: String =
                std::iter::once("sysmonvm".to_string()).chain(path.iter().map(|p| format!("__subcmd__{p}"))).collect();
            let arm = block(&format!("{id})"), "COMPREPLY");
            let opts = arm.first().and_then(|l| l.strip_prefix("opts=\"")).and_then(|l| l.strip_suffix('"'));
            opts.unwrap_or("").split_whitespace().filter(|w| !w.starts_with('-')).map(String::from).collect()
        }
        // `'name:description' \` lines of the parent's `_describe` list.
        "zsh" => {
            let id: String =
                std::iter::once("_sysmonvm".to_string()).chain(path.iter().map(|p| format!("__subcmd__{p}"))).collect();
            block(&format!("{id}_commands() {{"), "_describe")
                .iter()
                .filter_map(|l| l.strip_prefix('\'')?.split_once(':').map(|(name, _)| name.to_string()))
                .collect()
        }
        // `complete -c sysmonvm -n "CONDITION" -f -a "name"`, where the condition says no
        // subcommand of the parent has been typed yet.
        "fish" => {
            let condition = match path {
                [] => "\"__fish_sysmonvm_needs_command\"".to_string(),
                [parent] => {
                    format!("\"__fish_sysmonvm_using_subcommand {parent}; and not __fish_seen_subcommand_from ")
                }
                _ => panic!("fish entries are read for the top level and one level down only"),
            };
            let prefix = format!("complete -c sysmonvm -n {condition}");
            lines
                .iter()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.split_once(" -f -a \"")?.1.split_once('"').map(|(name, _)| name.to_string()))
                .collect()
        }
        // `cand name 'description'` in the parent's `&'sysmonvm;vm'= {` block.
        "elvish" => {
            let key = std::iter::once("sysmonvm").chain(path.iter().copied()).collect::<Vec<_>>().join(";");
            block(&format!("&'{key}'= {{"), "}")
                .iter()
                .filter_map(|l| l.strip_prefix("cand ")?.split_once(' ').map(|(name, _)| name))
                .filter(|name| !name.starts_with('-'))
                .map(String::from)
                .collect()
        }
        // `[CompletionResult]::new('name', 'name', [CompletionResultType]::ParameterValue, …)`
        // in the parent's `'sysmonvm;vm' {` switch arm.
        "powershell" => {
            let key = std::iter::once("sysmonvm").chain(path.iter().copied()).collect::<Vec<_>>().join(";");
            block(&format!("'{key}' {{"), "break")
                .iter()
                .filter_map(|l| {
                    let (name, rest) = l.strip_prefix("[CompletionResult]::new('")?.split_once('\'')?;
                    rest.starts_with(&format!(", '{name}', [CompletionResultType]::ParameterValue,"))
                        .then(|| name.to_string())
                })
                .filter(|name| !name.starts_with('-'))
                .collect()
        }
        other => panic!("no entry form known for {other}"),
    };
    names.sort();
    names
}

fn completion_script(shell: &str) -> String {
    let o = sysmonvm(&["completions", shell], &[]);
    assert!(o.status.success(), "completions {shell}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every shell's script offers exactly the subcommands `--help` lists, at the top level and under
/// every command that has subcommands (`vm` → `ssh`, …), in that shell's own entry form.
#[test]
fn completions_for_every_shell_offer_every_subcommand() {
    let top = subcommands_in_help(&[]);
    for cmd in COMMANDS {
        assert!(top.iter().any(|c| c == cmd), "`sysmonvm --help` does not list {cmd}: {top:?}");
    }
    // `help` takes command names, not `--help`; its entries are the top-level ones again.
    let parents: Vec<(String, Vec<String>)> = top
        .iter()
        .filter(|c| *c != "help")
        .map(|c| (c.clone(), subcommands_in_help(&[c])))
        .filter(|(_, subs)| !subs.is_empty())
        .collect();
    let vm = parents.iter().find(|(p, _)| p == "vm").map(|(_, subs)| subs.clone()).unwrap_or_default();
    assert!(vm.iter().any(|s| s == "ssh"), "`sysmonvm vm --help` does not list ssh: {vm:?}");

    let scripts: Vec<(&str, String)> = SHELLS.iter().map(|&shell| (shell, completion_script(shell))).collect();
    for (shell, script) in &scripts {
        let mut want = top.clone();
        want.sort();
        assert_eq!(completion_entries(shell, script, &[]), want, "{shell}: top-level entries");
        for (parent, subs) in &parents {
            let mut want = subs.clone();
            want.sort();
            assert_eq!(completion_entries(shell, script, &[parent]), want, "{shell}: entries under `{parent}`");
        }
        // The reader is keyed by the parent and by the shell's own form, so it can come up empty.
        assert!(completion_entries(shell, script, &[MADE_UP]).is_empty(), "{shell}: entries under a made-up parent");
        // A script whose `vm` entry is gone still contains "vm" (the old substring check passed
        // on it); the entry reader must miss it.
        let without_vm: Vec<String> = script
            .lines()
            .filter(|l| !l.contains("VM lifecycle"))
            .map(|l| if l.trim_start().starts_with("opts=") { l.replace(" vm ", " ") } else { l.to_string() })
            .collect();
        let without_vm = without_vm.join("\n");
        assert!(without_vm.contains("vm"));
        let found = completion_entries(shell, &without_vm, &[]);
        assert!(!found.iter().any(|c| c == "vm"), "{shell}: `vm` read from a script without its entry");
        for (other, _) in scripts.iter().filter(|(other, _)| other != shell) {
            let found = completion_entries(other, script, &[]);
            assert!(found.is_empty(), "the {other} entry form found {found:?} in the {shell} script");
        }
    }
}

/// The bash script, sourced into a real bash: it registers itself for `sysmonvm`, and its
/// function completes a partly typed subcommand, top level and nested, and nothing for a made-up one.
#[test]
fn bash_completes_subcommands_when_sourced() {
    let script = completion_script("bash");
    let check = Command::new("bash").args(["-n", "-c", &script]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("sysmonvm.bash");
    std::fs::write(&path, &script).unwrap();
    // `complete` with `-F` calls the function with the command, the current and the previous word.
    let complete = |words: &[&str]| -> Vec<String> {
        let cword = words.len() - 1;
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source '{}' && complete -p sysmonvm && COMP_WORDS=({}) && COMP_CWORD={cword} && _sysmonvm sysmonvm '{}' '{}' && for w in \"${{COMPREPLY[@]}}\"; do echo \"$w\"; done",
            path.display(),
            quoted.join(" "),
            words[cword],
            words[cword - 1],
        );
        let o = Command::new("bash").args(["-c", &program]).output().unwrap();
        assert!(o.status.success(), "bash: {}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        let mut lines = out.lines();
        let registered = lines.next().unwrap_or("");
        assert!(
            registered.starts_with("complete ")
                && registered.contains(" -F _sysmonvm ")
                && registered.ends_with(" sysmonvm"),
            "{registered}"
        );
        let mut offered: Vec<String> = lines.map(String::from).collect();
        offered.sort();
        offered
    };
    assert_eq!(complete(&["sysmonvm", "v"]), ["validate", "vm"]);
    assert_eq!(complete(&["sysmonvm", "vm", "s"]), ["ssh", "start", "status", "stop"]);
    assert_eq!(complete(&["sysmonvm", "collector", "un"]), ["uninstall"]);
    assert_eq!(complete(&["sysmonvm", "frob"]), Vec::<String>::new());
}

/// The man page's SUBCOMMANDS section has one `.TP` entry `sysmonvm\-NAME(1)` per subcommand that
/// `--help` lists, and no other. (`sysmonvm man` renders the top-level page only; clap_mangen
/// puts nested commands on pages of their own, which this command does not print.)
#[test]
fn the_man_page_has_an_entry_for_every_command() {
    let o = sysmonvm(&["man"], &[]);
    assert!(o.status.success());
    let roff = String::from_utf8(o.stdout).unwrap();
    assert!(roff.lines().any(|l| l.starts_with(".TH sysmonvm 1 ")), "no .TH title line");
    let lines: Vec<&str> = roff.lines().collect();
    let section = lines.iter().position(|l| *l == ".SH SUBCOMMANDS").expect("no SUBCOMMANDS section");
    let mut entries: Vec<String> = Vec::new();
    for pair in lines[section + 1..].iter().take_while(|l| !l.starts_with(".SH ")).collect::<Vec<_>>().windows(2) {
        if *pair[0] == ".TP" {
            let name = pair[1].strip_prefix("sysmonvm\\-").and_then(|n| n.strip_suffix("(1)"));
            entries.push(name.unwrap_or_else(|| panic!("a .TP entry that names no subcommand: {}", pair[1])).into());
        }
    }
    let mut want = subcommands_in_help(&[]);
    for cmd in COMMANDS {
        assert!(want.iter().any(|c| c == cmd), "`sysmonvm --help` does not list {cmd}");
    }
    want.sort();
    entries.sort();
    assert_eq!(entries, want, "man page SUBCOMMANDS entries");
    assert!(!entries.iter().any(|e| e == MADE_UP));
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
    assert_eq!(sysmonvm(&["vm", "--no-such-flag"], &[]).status.code(), Some(sysmonvm::exit::USAGE));
    assert_eq!(sysmonvm(&["--version"], &[]).status.code(), Some(sysmonvm::exit::OK));
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().display().to_string();
    let o = sysmonvm(&["--workspace", &ws, "vm", "status", "nope"], &[]);
    assert_eq!(o.status.code(), Some(sysmonvm::exit::ERROR));
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
