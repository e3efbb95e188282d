//! `image prune` over a real workspace: images committed to the cache the way `image fetch` does,
//! VMs made by the real `vm::create` (a qcow2 overlay by `qemu-img` whose backing file is the cached
//! image, the real `state.json`), interrupted creates, broken state files, and locks held by
//! another process (`flock(1)`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use sysmonvm::image::FetchedImage;
use sysmonvm::image::cache::{
    BackingImageError, CachedImage, ImageCache, ImageMeta, ImageUse, InUseError, KeepReason, PruneRequest, VmImage,
    images_in_use,
};
use sysmonvm::workspace::Workspace;

struct Lab {
    _dir: tempfile::TempDir,
    ws: Workspace,
    cache: ImageCache,
    profile: sysmonvm::profile::Profile,
}

fn lab() -> Option<Lab> {
    if !common::have("qemu-img") || !common::have("qemu-system-x86_64") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::at(&dir.path().join("ws"));
    let yaml = "name: fw\narch: x86_64\naccel: tcg\nmachine: q35\ncpu: max\nsmp: 1\nmemory_mib: 256\ndisk_gib: 1\nfirmware: auto\nimage:\n  path: /nonexistent.qcow2\n  sha256: 0000000000000000000000000000000000000000000000000000000000000000\nssh:\n  user: tester\nseed: virtio\nguest_family: apt\n";
    let profile_file = dir.path().join("profile.yaml");
    std::fs::write(&profile_file, yaml).unwrap();
    let profile = sysmonvm::profile::load(profile_file.to_str().unwrap(), None).unwrap();
    Some(Lab { cache: ImageCache::of(&ws), ws, _dir: dir, profile })
}

impl Lab {
    /// A real (tiny) qcow2 image put in the cache as `image fetch` does: partial, then commit.
    fn image(&self, label: &str) -> CachedImage {
        let src = self.ws.cache.join(format!("{label}.src.qcow2"));
        std::fs::create_dir_all(&self.ws.cache).unwrap();
        // A distinct virtual size per image gives each its own bytes, so its own digest.
        static NEXT_MIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(16);
        let mib = NEXT_MIB.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&src)
            .arg(format!("{mib}M"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let (sha256, size) = sysmonvm::image::download::hash_file(&src).unwrap();
        let file_name = format!("{label}.qcow2");
        let _lock = self.cache.lock(&sha256, Duration::ZERO, |_| {}).unwrap();
        std::fs::rename(&src, self.cache.partial_path(&sha256, &file_name)).unwrap();
        self.cache
            .commit(ImageMeta {
                file_name,
                url: None,
                checksum_url: None,
                sha256,
                size,
                signature_verified: false,
                key_fingerprint: None,
                fetched_at: sysmon_collector::host::now_rfc3339(),
            })
            .unwrap()
    }

    /// A VM made by the real `vm::create` on a cached image.
    fn vm(&self, name: &str, image: &CachedImage) {
        let fetched = FetchedImage {
            path: image.path.clone(),
            sha256: image.meta.sha256.clone(),
            size: image.meta.size,
            signature_verified: false,
            key_fingerprint: None,
            source: sysmonvm::image::FetchOrigin::Cache,
            url: None,
            warnings: Vec::new(),
        };
        sysmonvm::vm::create(&self.ws, name, &self.profile, &fetched).unwrap();
    }

    fn uses(&self) -> Vec<ImageUse> {
        images_in_use(&self.ws).unwrap()
    }
}

fn usage(pairs: &[(&str, &CachedImage)]) -> Vec<ImageUse> {
    let mut v: Vec<ImageUse> =
        pairs.iter().map(|(vm, i)| ImageUse { vm: vm.to_string(), sha256: i.meta.sha256.clone() }).collect();
    v.sort();
    v
}

fn backing_chain_ok(disk: &Path) -> bool {
    Command::new("qemu-img")
        .args(["info", "--backing-chain"])
        .arg(disk)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

use common::{hold_lock_in_another_process as hold, release};

#[test]
fn prune_keeps_the_image_a_stopped_vm_uses_and_says_which_vm() {
    let Some(lab) = lab() else { return };
    let used = lab.image("used");
    let unused = lab.image("unused");
    lab.vm("lab", &used);
    // A leftover partial beside the used image, and an entry holding only an interrupted download.
    let stale_partial = lab.cache.partial_path(&used.meta.sha256, "older.qcow2");
    std::fs::write(&stale_partial, b"half").unwrap();
    let orphan_sha = "e".repeat(64);
    std::fs::create_dir_all(lab.cache.entry_dir(&orphan_sha)).unwrap();
    let orphan_partial = lab.cache.partial_path(&orphan_sha, "x.qcow2");
    std::fs::write(&orphan_partial, b"half").unwrap();

    let in_use = lab.uses();
    assert_eq!(in_use, usage(&[("lab", &used)]));
    let request = PruneRequest::keeping(in_use);
    let plan = lab.cache.plan_prune(&request).unwrap();
    let mut planned: Vec<&str> = plan.remove.iter().map(|i| i.sha256.as_str()).collect();
    planned.sort();
    let mut expected = vec![unused.meta.sha256.as_str(), orphan_sha.as_str()];
    expected.sort();
    assert_eq!(planned, expected);
    assert_eq!(plan.kept.len(), 1);
    assert_eq!(
        (&plan.kept[0].path, &plan.kept[0].used_by, &plan.kept[0].reason),
        (&used.path, &vec!["lab".to_string()], &KeepReason::InUse)
    );
    assert!(lab.cache.entry_dir(&unused.meta.sha256).exists(), "planning removes nothing");

    let report = lab.cache.prune_images(&request).unwrap();
    assert_eq!(report.kept, plan.kept);
    assert_eq!(report.removed.len(), 2);
    let mut partials = report.partials_removed.clone();
    partials.sort();
    let mut want = vec![stale_partial.clone(), orphan_partial.clone()];
    want.sort();
    assert_eq!(partials, want);
    assert!(used.path.is_file() && !stale_partial.exists());
    assert!(!lab.cache.entry_dir(&unused.meta.sha256).exists() && !lab.cache.entry_dir(&orphan_sha).exists());
    // The VM still boots from its disk: the backing chain is whole, and start/up's check agrees.
    let vm = lab.ws.vm("lab").unwrap();
    assert!(backing_chain_ok(&vm.disk));
    VmImage::read(&vm).unwrap().unwrap().check_present().unwrap();
    // Lock files stay, for whoever may wait on them.
    for sha in [&used.meta.sha256, &unused.meta.sha256, &orphan_sha] {
        assert!(lab.cache.lock_path(sha).exists(), "lock of {sha} removed");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["kept"][0]["used_by"][0], "lab");
    assert_eq!(json["kept"][0]["reason"], "in_use");
}

#[test]
fn all_removes_in_use_images_only_for_confirmed_vms_and_start_then_names_what_is_gone() {
    let Some(lab) = lab() else { return };
    let shared = lab.image("shared");
    let own = lab.image("own");
    lab.vm("lab", &shared);
    lab.vm("web", &shared);
    lab.vm("db", &own);
    let in_use = lab.uses();
    assert_eq!(in_use, usage(&[("db", &own), ("lab", &shared), ("web", &shared)]));

    let mut request = PruneRequest { all: true, ..PruneRequest::keeping(in_use) };
    let plan = lab.cache.plan_prune(&request).unwrap();
    assert!(plan.remove.is_empty());
    assert_eq!(plan.vms_to_confirm(), ["db", "lab", "web"]);
    let report = lab.cache.prune_images(&request).unwrap();
    assert!(report.removed.is_empty() && shared.path.is_file() && own.path.is_file(), "nothing confirmed: {report:?}");

    request.confirmed_vms = vec!["db".into(), "lab".into()];
    assert_eq!(lab.cache.plan_prune(&request).unwrap().vms_to_confirm(), ["lab", "web"], "the shared image needs both");
    let report = lab.cache.prune_images(&request).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].used_by, ["db"]);
    assert!(!own.path.exists() && shared.path.is_file(), "web was not confirmed, so the shared image stays");

    // db's disk has lost its backing file; start/up's check says which VM, file and digest.
    let db = lab.ws.vm("db").unwrap();
    assert!(!backing_chain_ok(&db.disk), "qemu-img agrees the chain is broken");
    let err = VmImage::read(&db).unwrap().unwrap().check_present().unwrap_err();
    assert!(matches!(&err, BackingImageError::Missing { vm, .. } if vm == "db"), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&own.path.display().to_string()) && msg.contains(&own.meta.sha256), "{msg}");
    assert!(msg.contains("sysmonvm up db"), "{msg}");
    // And a later prune reports the image as missing rather than failing.
    let report = lab.cache.prune_images(&PruneRequest::keeping(lab.uses())).unwrap();
    assert_eq!(report.missing.len(), 1);
    assert_eq!(
        (report.missing[0].sha256.as_str(), report.missing[0].used_by.as_slice()),
        (own.meta.sha256.as_str(), &["db".to_string()][..])
    );
}

#[test]
fn a_state_json_that_does_not_parse_stops_prune_and_names_the_file() {
    let Some(lab) = lab() else { return };
    let image = lab.image("img");
    lab.vm("good", &image);
    lab.vm("bad", &image);
    let bad = lab.ws.vm("bad").unwrap();
    let text = std::fs::read_to_string(&bad.state).unwrap();
    std::fs::write(&bad.state, &text[..text.len() / 2]).unwrap();
    let err = images_in_use(&lab.ws).unwrap_err();
    assert!(matches!(&err, InUseError::BadState { vm, .. } if vm == "bad"), "{err:?}");
    assert!(err.to_string().contains(&bad.state.display().to_string()), "{err}");
    assert!(err.to_string().contains("nothing is pruned"), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "the JSON error rides along");

    let garbled = text.replace(&image.meta.sha256, "not-a-digest");
    std::fs::write(&bad.state, garbled).unwrap();
    let err = images_in_use(&lab.ws).unwrap_err();
    assert!(matches!(&err, InUseError::BadSha { value, .. } if value == "not-a-digest"), "{err:?}");

    std::fs::write(&bad.state, text).unwrap();
    assert_eq!(lab.uses(), usage(&[("bad", &image), ("good", &image)]));
}

#[test]
fn an_interrupted_create_keeps_its_image_by_the_disks_backing_file() {
    let Some(lab) = lab() else { return };
    let image = lab.image("img");
    let other = lab.image("other");
    let half = lab.ws.vm("half").unwrap();
    std::fs::create_dir_all(&half.dir).unwrap();
    // The overlay was made, state.json not yet (killed in between): the disk says which image.
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&image.path)
        .arg(&half.disk)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(lab.uses(), usage(&[("half", &image)]));
    let report = lab.cache.prune_images(&PruneRequest::keeping(lab.uses())).unwrap();
    assert!(image.path.is_file() && !other.path.exists(), "{report:?}");
    assert!(backing_chain_ok(&half.disk));

    // While a create holds the VM's lock and has no state.json yet, the answer is unknown.
    if let Some(holder) = hold(&half.lock) {
        let err = images_in_use(&lab.ws).unwrap_err();
        assert!(matches!(&err, InUseError::Busy { vm, .. } if vm == "half"), "{err:?}");
        release(holder);
    }
    // A disk whose backing file cannot be read is doubt too.
    std::fs::write(&half.disk, b"not a qcow2").unwrap();
    let err = images_in_use(&lab.ws).unwrap_err();
    assert!(matches!(&err, InUseError::UnknownBacking { vm, .. } if vm == "half"), "{err:?}");
    assert!(err.to_string().contains(&half.disk.display().to_string()), "{err}");
}

#[test]
fn an_entry_being_downloaded_is_left_alone_with_its_lock() {
    let Some(lab) = lab() else { return };
    let busy = lab.image("busy");
    let partial = lab.cache.partial_path(&busy.meta.sha256, "next.qcow2");
    std::fs::write(&partial, b"downloading").unwrap();
    let Some(holder) = hold(&lab.cache.lock_path(&busy.meta.sha256)) else { return };
    let report = lab.cache.prune_images(&PruneRequest::keeping(vec![])).unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(matches!(report.kept[0].reason, KeepReason::Busy { .. }), "{report:?}");
    assert!(busy.path.is_file() && partial.is_file());
    release(holder);
    let report = lab.cache.prune_images(&PruneRequest::keeping(vec![])).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.partials_removed, [partial]);
    assert!(!lab.cache.entry_dir(&busy.meta.sha256).exists());
    assert!(lab.cache.lock_path(&busy.meta.sha256).exists(), "the lock file is never removed");
}
