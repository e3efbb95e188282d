//! ARCHITECTURE.md's architecture invariants, checked on the source tree. Each list here is
//! also written out in ARCHITECTURE.md; the last test keeps the two in step.

use std::path::{Path, PathBuf};

/// What `src/commands/` must not name: processes, sockets, HTTP clients and the SSH/QMP/QGA
/// clients belong in the library's operations.
const FORBIDDEN_IN_COMMANDS: &[&str] = &[
    "std::process",
    "tokio::process",
    "Command::new",
    "TcpStream",
    "TcpListener",
    "UnixStream",
    "UdpSocket",
    "tokio::net",
    "reqwest",
    "ureq",
    "SshSession",
    "QmpClient",
    "QgaClient",
];

/// What the library (everything but `src/main.rs` and `src/commands/`) must not use: it
/// reports through events and reports, it prints nothing.
const FORBIDDEN_IN_LIBRARY: &[&str] =
    &["println!", "eprintln!", "print!(", "eprint!(", "io::stdout", "io::stderr", "dbg!"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The code of a file without comments and without its `#[cfg(test)]` module (tests may print).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string ("http://…") is code; a line's own comment is not.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn violations(files: &[PathBuf], forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let c = code(f);
        for (n, line) in c.lines().enumerate() {
            for word in forbidden {
                if line.contains(word) {
                    found.push(format!("{}:{}: `{word}` in: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn commands_only_parse_call_and_render() {
    let files = rust_files(&root().join("src/commands"));
    assert!(files.len() >= 8, "src/commands/ looks empty: {files:?}");
    let found = violations(&files, FORBIDDEN_IN_COMMANDS);
    assert!(found.is_empty(), "src/commands/ must call an operation instead:\n{}", found.join("\n"));
}

#[test]
fn no_command_module_calls_another() {
    // `render` is the one shared module; `mod.rs` only dispatches.
    let mut found = Vec::new();
    for f in rust_files(&root().join("src/commands")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "mod.rs" || name == "render.rs" {
            continue;
        }
        for (n, line) in code(&f).lines().enumerate() {
            if reaches_into_another_command(line) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "a command module reaches into another:\n{}", found.join("\n"));
}

/// A path from a command module to a sibling other than `render`, by `super::` or through
/// `commands::` (`crate::commands::…`, `crate::{commands::…}`).
fn reaches_into_another_command(line: &str) -> bool {
    ["super::", "commands::"]
        .iter()
        .any(|prefix| line.match_indices(prefix).any(|(i, _)| !line[i + prefix.len()..].starts_with("render")))
}

#[test]
fn the_sibling_scan_sees_both_spellings() {
    assert!(reaches_into_another_command("use super::vm::up;"));
    assert!(reaches_into_another_command("crate::commands::guest::install(ws)"));
    assert!(reaches_into_another_command("use crate::{commands::vm, Exit};"));
    assert!(!reaches_into_another_command("use super::render::{Terminal, print_json};"));
    assert!(!reaches_into_another_command("use crate::commands::render::safe;"));
    assert!(!reaches_into_another_command("use crate::{Exit, VmCommand};"));
}

#[test]
fn the_library_prints_nothing() {
    let files = library_files();
    assert!(files.iter().any(|p| p.ends_with("src/ops/up.rs")), "the scan must cover the operations");
    let found = violations(&files, FORBIDDEN_IN_LIBRARY);
    assert!(found.is_empty(), "the library reports through events instead:\n{}", found.join("\n"));
}

/// The workspace's file and directory names, which only `src/workspace.rs` may spell.
const WORKSPACE_NAMES: &[&str] = &[
    "\"state.json\"",
    "\"disk.qcow2",
    "\"efi-vars.fd\"",
    "\"efi-code.fd\"",
    "\"cidata.iso\"",
    "\"ssh_host_ed25519_key",
    "\"known_hosts\"",
    "\"qemu.pid\"",
    "\"qmp.sock\"",
    "\"qga.sock\"",
    "\"serial.log\"",
    "\"accel-selftest.json\"",
    "\"id_ed25519",
    "\"locks\"",
    "\"images\"",
    "\"vms\"",
    "\"profiles\"",
    "\"keys\"",
];

/// How the library sends a command to a guest; the argument must not be built at the call.
const GUEST_EXEC_CALLS: &[&str] =
    &["exec(", "exec_with(", "exec_streaming(", "exec_streaming_with(", "exec_conversation("];

fn library_files() -> Vec<PathBuf> {
    rust_files(&root().join("src"))
        .into_iter()
        .filter(|p| !p.starts_with(root().join("src/commands")) && !p.ends_with("src/main.rs"))
        .collect()
}

/// Lines that call a guest exec with a `format!` argument (a shell line assembled by hand
/// instead of a `GuestCommand` or a template).
fn hand_built_guest_commands(files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        // Joined so that a call split over lines (`exec_with(\n  &format!(…)`) is seen too.
        let c = code(f).split_whitespace().collect::<Vec<_>>().join(" ");
        for call in GUEST_EXEC_CALLS {
            for (i, _) in c.match_indices(&format!(".{call}")) {
                let arg = c[i + call.len() + 1..].trim_start_matches(['&', ' ']);
                if arg.starts_with("format!") {
                    found.push(format!("{}: .{call}{}", f.display(), &arg[..arg.len().min(60)]));
                }
            }
        }
    }
    found
}

#[test]
fn one_place_knows_the_workspace_layout() {
    let files: Vec<PathBuf> = library_files().into_iter().filter(|p| !p.ends_with("src/workspace.rs")).collect();
    let found = violations(&files, WORKSPACE_NAMES);
    assert!(found.is_empty(), "ask `workspace` for these paths:\n{}", found.join("\n"));
    let layout = std::fs::read_to_string(root().join("src/workspace.rs")).unwrap();
    for name in WORKSPACE_NAMES {
        assert!(layout.contains(name), "src/workspace.rs no longer names {name}: update the list");
    }
}

#[test]
fn guest_commands_are_built_not_formatted() {
    let found = hand_built_guest_commands(&library_files());
    assert!(found.is_empty(), "build these with guest::command::GuestCommand or a template:\n{}", found.join("\n"));
}

#[test]
fn the_scan_sees_what_it_forbids() {
    // The checks above must be able to fail: a file naming a forbidden type is caught, and
    // a comment or a test module naming it is not.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("x.rs");
    std::fs::write(&f, "// std::process in a comment\nfn a() { let _ = std::process::id(); }\n#[cfg(test)]\nmod tests { fn b() { println!(); } }\n").unwrap();
    let found = violations(std::slice::from_ref(&f), FORBIDDEN_IN_COMMANDS);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(":2:"), "{found:?}");
    assert!(violations(&[f], FORBIDDEN_IN_LIBRARY).is_empty());

    let g = d.path().join("g.rs");
    std::fs::write(
        &g,
        "async fn a(s: &S) { s.exec_with(\n    &format!(\"rm {x}\"), o).await; s.exec(&cmd.render()).await; }\n",
    )
    .unwrap();
    let found = hand_built_guest_commands(std::slice::from_ref(&g));
    assert_eq!(found.len(), 1, "{found:?}");
    let w = d.path().join("w.rs");
    std::fs::write(&w, "fn p(d: &Path) -> PathBuf { d.join(\"state.json\") }\n").unwrap();
    assert_eq!(violations(&[w], WORKSPACE_NAMES).len(), 1);
}

#[test]
fn architecture_md_lists_the_forbidden_names() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = doc.split("## Architecture invariants").nth(1).expect("ARCHITECTURE.md has an invariants section");
    for word in FORBIDDEN_IN_COMMANDS.iter().chain(FORBIDDEN_IN_LIBRARY) {
        assert!(section.contains(&format!("`{word}`")), "ARCHITECTURE.md's invariants do not name `{word}`");
    }
}
