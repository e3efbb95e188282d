//! The seed ISO read back by the real tools: xorriso and isoinfo (names through Rock Ridge and
//! Joliet, volume id, contents), blkid (the label cloud-init looks for), and the user-data checked
//! by `cloud-init schema` from Debian's cloud-init package.

mod common;

use std::process::Command;

fn build(ws: &std::path::Path, out: &std::path::Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
        .args([
            "--workspace",
            ws.to_str().unwrap(),
            "cidata",
            "--profile",
            "almalinux-9-aarch64",
            "--name",
            "lab-1",
            "--json",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn isoinfo_and_xorriso_read_back_names_volume_id_and_contents() {
    let d = tempfile::tempdir().unwrap();
    let iso = d.path().join("seed.iso");
    let ws = d.path().join("ws");
    let info = build(&ws, &iso);
    assert_eq!(info["volume_id"], "cidata");
    let iso_s = iso.to_str().unwrap();

    if common::have("isoinfo") {
        let pvd = run("isoinfo", &["-d", "-i", iso_s]);
        assert!(pvd.contains("Volume id: cidata"), "{pvd}");
        assert!(pvd.contains("Rock Ridge signatures"), "{pvd}");
        assert!(pvd.contains("Joliet"), "{pvd}");
        for ext in ["-R", "-J"] {
            let names = run("isoinfo", &[ext, "-f", "-i", iso_s]);
            let mut names: Vec<&str> = names.lines().collect();
            names.sort();
            assert_eq!(names, vec!["/meta-data", "/network-config", "/user-data"], "{ext}");
        }
        let meta = run("isoinfo", &["-R", "-i", iso_s, "-x", "/meta-data"]);
        assert_eq!(
            meta,
            format!("instance-id: \"{}\"\nlocal-hostname: \"lab-1\"\n", info["instance_id"].as_str().unwrap())
        );
    }
    if common::have("xorriso") {
        let listing = run("xorriso", &["-indev", iso_s, "-ls", "/"]);
        for n in ["'meta-data'", "'network-config'", "'user-data'"] {
            assert!(listing.contains(n), "{listing}");
        }
        let out = d.path().join("extract");
        run("xorriso", &["-osirrox", "on", "-indev", iso_s, "-extract", "/", out.to_str().unwrap()]);
        let user_data = std::fs::read_to_string(out.join("user-data")).unwrap();
        assert!(user_data.starts_with("#cloud-config\n"));
        // The user key and the VM's host key are the workspace's own.
        let user_pub = std::fs::read_to_string(ws.join("keys/id_ed25519.pub")).unwrap();
        assert!(user_data.contains(user_pub.trim()));
        let host_pub = std::fs::read_to_string(ws.join("vms/lab-1/ssh_host_ed25519_key.pub")).unwrap();
        assert!(user_data.contains(&format!("ed25519_public: \"{}\"", host_pub.trim())));
        let pinned = std::fs::read_to_string(ws.join("vms/lab-1/known_hosts")).unwrap();
        assert_eq!(
            pinned,
            format!("sysmonvm-lab-1 {}\n", host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        );
    }
    if common::have("blkid") {
        let label = run("blkid", &["-o", "value", "-s", "LABEL", iso_s]);
        assert_eq!(label.trim(), "cidata");
    }
}

#[test]
fn cloud_init_accepts_the_user_data() {
    if !common::have("cloud-init") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let iso = d.path().join("seed.iso");
    build(&d.path().join("ws"), &iso);
    let out = d.path().join("x");
    if !common::have("xorriso") {
        return;
    }
    run("xorriso", &["-osirrox", "on", "-indev", iso.to_str().unwrap(), "-extract", "/", out.to_str().unwrap()]);
    let o = Command::new("cloud-init")
        .args(["schema", "--config-file", out.join("user-data").to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "cloud-init schema rejected user-data:\n{text}");
    assert!(text.contains("Valid") || text.contains("valid"), "{text}");
}

#[test]
fn rebuilding_the_same_vm_gives_the_same_seed_documents() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    let a = build(&ws, &d.path().join("a.iso"));
    let b = build(&ws, &d.path().join("b.iso"));
    assert_eq!(a["instance_id"], b["instance_id"], "keys are reused, so the instance id is stable");
}
