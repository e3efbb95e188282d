//! Every command's `--json` is the typed report docs/json.md documents: the commands that need
//! no running VM are run here against a real workspace (an image downloaded from a real HTTP
//! server on 127.0.0.1, a VM created on it with the real qemu-img) and their keys compared with
//! the doc. The same workspace plays the `image prune` data-loss scenario: a stopped VM keeps its
//! backing image, and only a confirmed `--all` removes it, after which `vm start` says so.

mod common;

use common::http::{Behaviour, Server};
use common::json_doc;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md")).unwrap()
}

use common::sysmonvm_json as sysmonvm;

/// Runs the command and checks its report against the doc; returns the report.
fn checked(ws: &Path, doc_name: &str, args: &[&str]) -> Value {
    let (code, v, err) = sysmonvm(ws, args);
    assert!(!v.is_null(), "`sysmonvm {}` printed no JSON (exit {code}): {err}", args.join(" "));
    if let Err(e) = json_doc::check(&doc(), doc_name, &v) {
        panic!("{e}\n{}", serde_json::to_string_pretty(&v).unwrap());
    }
    v
}

#[test]
fn every_documented_command_has_a_table() {
    let doc = doc();
    for cmd in [
        "up",
        "vm start",
        "vm argv",
        "vm create",
        "vm stop",
        "vm status",
        "vm destroy",
        "bootstrap",
        "collector build",
        "collector install",
        "collector status",
        "validate",
        "validate --matrix",
        "doctor",
        "host monitor",
        "host install",
        "image fetch",
        "image list",
        "image verify",
        "image prune",
        "profile list",
        "profile show",
        "cidata",
    ] {
        assert!(json_doc::documented(&doc, cmd).is_some(), "docs/json.md has no table for `sysmonvm {cmd}`");
    }
    // `host install`/`uninstall` run on macOS only (none here): their report type is checked
    // against its table as serialised, each action as the table spells it.
    use sysmonvm::ops::host::{DaemonAction, DaemonReport};
    for (action, spelled) in [
        (DaemonAction::Installed, "installed"),
        (DaemonAction::Removed, "removed"),
        (DaemonAction::NotInstalled, "not installed"),
    ] {
        let r = DaemonReport { plist: "/Library/LaunchDaemons/x.plist".into(), action, log_dir: "/var/log/x".into() };
        let v = serde_json::to_value(&r).unwrap();
        json_doc::check(&doc, "host install", &v).unwrap();
        assert_eq!(v["action"], spelled);
        assert!(doc.contains(&format!("`{spelled}`")), "docs/json.md does not name action `{spelled}`");
    }
    // The checker can fail: a report with an undocumented key is refused.
    assert!(json_doc::check(&doc, "vm destroy", &serde_json::json!({"destroyed": "x", "was_running": false})).is_ok());
    assert!(json_doc::check(&doc, "vm destroy", &serde_json::json!({"destroyed": "x"})).is_err());
    assert!(
        json_doc::check(&doc, "vm destroy", &serde_json::json!({"destroyed": "x", "was_running": false, "extra": 1}))
            .is_err()
    );
}

#[test]
fn reports_without_a_vm() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path();
    checked(ws, "profile list", &["profile", "list"]);
    checked(ws, "profile show", &["profile", "show", "almalinux-9-x86_64"]);
    checked(ws, "image list", &["image", "list"]);
    checked(ws, "image verify", &["image", "verify"]);
    checked(ws, "image prune", &["image", "prune"]);
    checked(ws, "vm status", &["vm", "list"]);
    let iso = ws.join("seed.iso");
    let v = checked(ws, "cidata", &["cidata", "--profile", "almalinux-9-x86_64", "--out", iso.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&iso).unwrap().permissions().mode() & 0o777, 0o600, "{v}");
    if common::have("qemu-system-x86_64") && common::have("/usr/share/OVMF/OVMF_CODE_4M.fd") {
        checked(ws, "doctor", &["doctor", "--profile", "almalinux-9-x86_64"]);
        let v = checked(ws, "vm argv", &["vm", "argv", "--profile", "almalinux-9-x86_64", "--no-self-test"]);
        assert_eq!(v["accel"]["verified"], Value::Bool(false), "{v}");
        assert!(!v["placeholders"].as_array().unwrap().is_empty(), "no VM exists: its ports are placeholders: {v}");
    }
}

#[test]
fn prune_keeps_what_a_stopped_vm_uses() {
    if !common::have("qemu-img")
        || !common::have("qemu-system-x86_64")
        || !common::have("/usr/share/OVMF/OVMF_CODE_4M.fd")
    {
        common::skip("prune_keeps_what_a_stopped_vm_uses needs qemu-utils, qemu-system-x86 and ovmf");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    // A real (tiny) qcow2 image served over HTTP, so it lands in the cache like a real one.
    let img = d.path().join("tiny.qcow2");
    assert!(
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&img).arg("64M").status().unwrap().success()
    );
    let bytes = std::fs::read(&img).unwrap();
    let (sha, _) = sysmonvm::image::download::hash_file(&img).unwrap();
    let server = Server::start();
    server.put("/tiny.qcow2", bytes.clone(), Behaviour::Normal);
    let profile = d.path().join("tiny.yaml");
    std::fs::write(
        &profile,
        format!(
            "name: tiny\narch: x86_64\naccel: tcg\nmachine: q35\ncpu: max\nsmp: 1\nmemory_mib: 256\ndisk_gib: 1\nfirmware: auto\n\
             image:\n  url: {}\n  sha256: {sha}\nssh:\n  user: tester\nforwards:\n  - guest: 9105\nseed: virtio\nguest_family: apt\n",
            server.url("/tiny.qcow2")
        ),
    )
    .unwrap();
    let p = profile.to_str().unwrap();
    let fetched = checked(&ws, "image fetch", &["image", "fetch", "--profile", p]);
    let image_path = fetched["path"].as_str().unwrap().to_string();
    let state = checked(&ws, "vm create", &["vm", "create", "--profile", p, "--name", "keeper"]);
    assert_eq!(state["image_sha256"], sha.as_str());
    checked(&ws, "vm status", &["vm", "status", "keeper"]);
    checked(&ws, "vm stop", &["vm", "stop", "keeper"]);
    let argv = checked(&ws, "vm argv", &["vm", "argv", "--profile", p, "--name", "keeper", "--accel", "tcg"]);
    assert!(argv["placeholders"].as_array().unwrap().is_empty(), "the VM exists: {argv}");

    // The bug: prune removed the stopped VM's backing image. Now it keeps it and says why.
    let pruned = checked(&ws, "image prune", &["image", "prune"]);
    assert!(Path::new(&image_path).is_file(), "prune removed the backing image of VM keeper: {pruned}");
    assert_eq!(pruned["kept"][0]["used_by"][0], "keeper", "{pruned}");
    assert_eq!(pruned["kept"][0]["sha256"], sha.as_str(), "{pruned}");

    // --all without a terminal and without --yes refuses, deleting nothing.
    let (code, _, err) = sysmonvm(&ws, &["image", "prune", "--all"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(Path::new(&image_path).is_file());

    // Confirmed, it goes; `vm start` then names the VM, the path and the digest.
    checked(&ws, "image prune", &["image", "prune", "--all", "--yes"]);
    assert!(!Path::new(&image_path).exists());
    let (code, _, err) = sysmonvm(&ws, &["vm", "start", "keeper", "--accel", "tcg", "--no-wait"]);
    assert_ne!(code, 0);
    assert!(err.contains("backing image") && err.contains(&sha) && err.contains("keeper"), "{err}");

    // A source that now serves other bytes does not become the VM's backing file: `up` says no
    // source offers the recorded digest, names `vm destroy`, and changes nothing.
    let mut other = std::fs::read(&img).unwrap();
    other.extend_from_slice(&[0u8; 512]);
    server.put("/tiny.qcow2", other, Behaviour::Normal);
    let (code, _, err) = sysmonvm(&ws, &["up", "--profile", p, "--name", "keeper", "--accel", "tcg", "--no-wait"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("no source of profile tiny gave those bytes again")
            && err.contains("checksum mismatch")
            && err.contains("vm destroy keeper"),
        "{err}"
    );
    assert!(!Path::new(&image_path).exists(), "a mismatching image must not be committed: {err}");
    assert!(ws.join("vms/keeper/disk.qcow2").is_file(), "the failed up lost the VM's disk");

    // Served again, `up` fetches it by the recorded digest and QEMU opens the disk (it stops at
    // the boot: --no-wait; the tiny image has no OS, so the boot itself is the e2e's).
    server.put("/tiny.qcow2", bytes, Behaviour::Normal);
    let (code, up, err) = sysmonvm(&ws, &["up", "--profile", p, "--name", "keeper", "--accel", "tcg", "--no-wait"]);
    assert_eq!(code, 0, "{err}");
    assert!(Path::new(&image_path).is_file(), "up did not fetch the backing image again: {err}");
    json_doc::check(&doc(), "up", &up).unwrap();
    let status = checked(&ws, "vm status", &["vm", "status", "keeper"]);
    assert_eq!(status["state"], "running", "QEMU did not keep running on the re-fetched backing image: {status}");
    let (code, _, err) = sysmonvm(&ws, &["vm", "stop", "keeper", "--force"]);
    assert_eq!(code, 0, "{err}");
    checked(&ws, "vm destroy", &["vm", "destroy", "keeper", "--yes"]);
}
