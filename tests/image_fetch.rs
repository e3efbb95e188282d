//! `image fetch` against a real HTTP server on 127.0.0.1, with CHECKSUM files signed by keys made
//! with the real gpg: resume after a cut connection, servers that ignore Range, mirrors, tampered
//! bytes, signatures that do not verify, wrong keys, clearsigned files, signing subkeys.

mod common;

use common::gpg::Gpg;
use common::http::{Behaviour, Server};
use sha2::Digest;
use sysmonvm::image::cache::ImageCache;
use sysmonvm::image::download::NoProgress;
use sysmonvm::image::{self, ImageError, ImageSource, KeySource};

const IMAGE: &str = "/images/Test-GenericCloud-latest.x86_64.qcow2";
const NAME: &str = "Test-GenericCloud-latest.x86_64.qcow2";

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// AlmaLinux's layout: BSD-tagged CHECKSUM with comments, detached CHECKSUM.asc.
fn checksum_file(image: &[u8]) -> String {
    format!(
        "# {NAME}: {} bytes\nSHA256 ({NAME}) = {}\n# other.qcow2: 1 bytes\nSHA256 (other.qcow2) = {}\n",
        image.len(),
        sha(image),
        sha(b"x")
    )
}

struct Setup {
    server: Server,
    gpg: Gpg,
    key_file: std::path::PathBuf,
    dir: tempfile::TempDir,
    image: Vec<u8>,
}

fn setup(len: usize) -> Setup {
    if !common::have("gpg") {
        panic!("gpg is needed for these tests");
    }
    let server = Server::start();
    let gpg = Gpg::new("Image Signer <signer@example.test>", "ed25519");
    let dir = tempfile::tempdir().unwrap();
    let key_file = gpg.write_public_key(dir.path());
    let image = body(len);
    let sums = checksum_file(&image);
    server.put(IMAGE, image.clone(), Behaviour::Normal);
    server.put("/images/CHECKSUM", sums.clone(), Behaviour::Normal);
    server.put("/images/CHECKSUM.asc", gpg.detach_sign(sums.as_bytes(), None), Behaviour::Normal);
    Setup { server, gpg, key_file, dir, image }
}

impl Setup {
    fn source(&self) -> ImageSource {
        ImageSource {
            url: Some(self.server.url(IMAGE)),
            checksum_url: Some(self.server.url("/images/CHECKSUM")),
            signature_url: Some(self.server.url("/images/CHECKSUM.asc")),
            key: Some(KeySource::File(self.key_file.clone())),
            key_fingerprint: Some(self.gpg.fingerprint.clone()),
            ..Default::default()
        }
    }

    fn cache(&self) -> ImageCache {
        ImageCache::new(self.dir.path().join("images"))
    }
}

#[tokio::test]
async fn signed_fetch_then_a_cache_hit_that_is_rehashed() {
    let s = setup(3 << 20);
    let cache = s.cache();
    let got = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    assert!(got.signature_verified);
    assert_eq!(got.key_fingerprint.as_deref(), Some(s.gpg.fingerprint.as_str()));
    assert_eq!(got.sha256, sha(&s.image));
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(got.path.with_file_name(format!("{NAME}.json"))).unwrap()).unwrap();
    assert_eq!(meta["sha256"], sha(&s.image));
    assert_eq!(meta["signature_verified"], true);

    let again = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    assert_eq!(again.source, "cache");
    assert_eq!(s.server.requests_for(IMAGE).len(), 1, "no second download");

    // Bytes changed behind our back: the hit is re-hashed, evicted and fetched again.
    let mut bytes = std::fs::read(&got.path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&got.path, bytes).unwrap();
    let healed = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    assert_ne!(healed.source, "cache");
    assert_eq!(std::fs::read(&healed.path).unwrap(), s.image);
}

#[tokio::test]
async fn a_cut_connection_resumes_with_range_and_the_digest_covers_every_byte() {
    let s = setup(2 << 20);
    let cut_at = 300_000;
    // Cut more times than one run retries: the first run fails and keeps the partial file.
    s.server.set(IMAGE, Behaviour::CutAfter { bytes: cut_at, times: 3 });
    let cache = s.cache();
    let e = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap_err();
    assert!(matches!(e, ImageError::AllSourcesFailed(_)), "{e}");
    let partial = cache.partial_path(&sha(&s.image), NAME);
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept >= cut_at as u64, "partial kept: {kept}");
    // Each retry in the first run already asked for the rest with Range.
    let first_run = s.server.requests_for(IMAGE);
    assert_eq!(first_run[0].range, None);
    assert_eq!(first_run[1].range.as_deref(), Some(format!("bytes={cut_at}-").as_str()));
    assert_eq!(first_run[1].status, 206);

    // The next run resumes from what is on disk and ends with the right digest.
    let got = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    let last = s.server.requests_for(IMAGE).pop().unwrap();
    assert_eq!(last.range.as_deref(), Some(format!("bytes={kept}-").as_str()));
    assert_eq!(last.status, 206);
    assert_eq!(got.sha256, sha(&s.image));
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
    assert!(!partial.exists());
}

#[tokio::test]
async fn a_server_that_ignores_range_restarts_from_zero() {
    let s = setup(1 << 20);
    let cache = s.cache();
    let partial = cache.partial_path(&sha(&s.image), NAME);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, &s.image[..1000]).unwrap();
    s.server.set(IMAGE, Behaviour::IgnoreRange);
    let got = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    let req = s.server.requests_for(IMAGE);
    assert_eq!((req[0].range.as_deref(), req[0].status), (Some("bytes=1000-"), 200));
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image, "a 200 replaced the partial instead of being appended");
}

#[tokio::test]
async fn tampered_bytes_never_become_the_cached_image() {
    let s = setup(1 << 20);
    s.server.set(IMAGE, Behaviour::Tamper { offset: 12345 });
    let cache = s.cache();
    let e = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Mismatch { .. }), "{msg}");
    assert!(msg.contains(&sha(&s.image)) && msg.contains("discarded"), "{msg}");
    assert!(cache.lookup(&sha(&s.image), NAME).is_none());
    assert!(!cache.partial_path(&sha(&s.image), NAME).exists());
    assert!(cache.list().is_empty());
}

#[tokio::test]
async fn a_checksum_whose_signature_does_not_verify_stops_before_any_download() {
    let s = setup(1 << 20);
    let forged = checksum_file(&s.image).replace(&sha(&s.image), &sha(b"evil"));
    s.server.put("/images/CHECKSUM", forged, Behaviour::Normal);
    let e = image::fetch(&s.source(), &s.cache(), &NoProgress, |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert!(s.server.requests_for(IMAGE).is_empty());
}

#[tokio::test]
async fn a_key_with_another_fingerprint_is_refused() {
    let s = setup(1 << 10);
    let mut src = s.source();
    src.key_fingerprint = Some("0".repeat(40));
    let e = image::fetch(&src, &s.cache(), &NoProgress, |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("profile expects"), "{e}");
    // A signature by another key does not verify either.
    let other = Gpg::new("Someone Else <else@example.test>", "ed25519");
    let sums = checksum_file(&s.image);
    s.server.put("/images/CHECKSUM.asc", other.detach_sign(sums.as_bytes(), None), Behaviour::Normal);
    let e = image::fetch(&s.source(), &s.cache(), &NoProgress, |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[tokio::test]
async fn rsa_keys_signing_subkeys_and_clearsigned_files_verify() {
    let s = setup(1 << 16);
    // RSA, as AlmaLinux's key is.
    let rsa = Gpg::new("RSA Signer <rsa@example.test>", "rsa2048");
    let sums = checksum_file(&s.image);
    s.server.put("/images/CHECKSUM.asc", rsa.detach_sign(sums.as_bytes(), None), Behaviour::Normal);
    let mut src = s.source();
    src.key = Some(KeySource::File(rsa.write_public_key(&s.dir.path().join("rsa").tap_mkdir())));
    src.key_fingerprint = Some(rsa.fingerprint.clone());
    assert!(image::fetch(&src, &s.cache(), &NoProgress, |_| {}).await.unwrap().signature_verified);

    // A signing subkey of the trusted primary key.
    let sub = s.gpg.add_signing_subkey();
    s.server.put("/images/CHECKSUM.asc", s.gpg.detach_sign(sums.as_bytes(), Some(&sub)), Behaviour::Normal);
    let mut src = s.source();
    src.key = Some(KeySource::File(s.gpg.write_public_key(&s.dir.path().join("sub").tap_mkdir())));
    let cache2 = ImageCache::new(s.dir.path().join("images2"));
    assert!(image::fetch(&src, &cache2, &NoProgress, |_| {}).await.unwrap().signature_verified);

    // Clearsigned CHECKSUM, no separate signature; a line added outside the signed part is ignored.
    let clear = s.gpg.clearsign(&sums);
    let with_junk = format!("SHA256 ({NAME}) = {}\n{clear}", sha(b"evil"));
    s.server.put("/images/CHECKSUM", with_junk, Behaviour::Normal);
    let mut src = s.source();
    src.signature_url = None;
    src.key = Some(KeySource::File(s.gpg.write_public_key(&s.dir.path().join("clear").tap_mkdir())));
    let cache3 = ImageCache::new(s.dir.path().join("images3"));
    let got = image::fetch(&src, &cache3, &NoProgress, |_| {}).await.unwrap();
    assert!(got.signature_verified);
    assert_eq!(got.sha256, sha(&s.image));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test]
async fn a_missing_image_moves_on_to_the_next_mirror() {
    let s = setup(1 << 16);
    s.server.set(IMAGE, Behaviour::NotFound);
    s.server.put(&format!("/mirror/{NAME}"), s.image.clone(), Behaviour::Normal);
    let mut src = s.source();
    src.mirrors = vec![s.server.url("/down"), s.server.url("/mirror/")];
    let got = image::fetch(&src, &s.cache(), &NoProgress, |_| {}).await.unwrap();
    assert_eq!(got.source, s.server.url(&format!("/mirror/{NAME}")));
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
}

#[tokio::test]
async fn plain_gnu_checksum_and_a_pinned_digest() {
    let s = setup(1 << 12);
    s.server.put("/gnu/SUMS", format!("{}  {NAME}\n", sha(&s.image)), Behaviour::Normal);
    let src = ImageSource {
        url: Some(s.server.url(IMAGE)),
        checksum_url: Some(s.server.url("/gnu/SUMS")),
        sha256: Some(sha(&s.image)),
        ..Default::default()
    };
    let got = image::fetch(&src, &s.cache(), &NoProgress, |_| {}).await.unwrap();
    assert!(!got.signature_verified);
    // A pinned digest that disagrees with the CHECKSUM file is an error, not a choice.
    let src = ImageSource { sha256: Some(sha(b"other")), ..src };
    assert!(image::fetch(&src, &s.cache(), &NoProgress, |_| {}).await.unwrap_err().to_string().contains("pins"));
}

#[test]
fn the_cli_prints_json_with_path_sha256_size_and_signature() {
    let s = setup(1 << 16);
    let ws = s.dir.path().join("ws");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
        .args(["--workspace", ws.to_str().unwrap(), "image", "fetch", "--json", "--url", &s.server.url(IMAGE)])
        .args([
            "--checksum-url",
            &s.server.url("/images/CHECKSUM"),
            "--signature-url",
            &s.server.url("/images/CHECKSUM.asc"),
        ])
        .args(["--keyring", s.key_file.to_str().unwrap(), "--key-fingerprint", &s.gpg.fingerprint])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sha256"], sha(&s.image));
    assert_eq!(v["size"], s.image.len());
    assert_eq!(v["signature_verified"], true);
    assert!(std::path::Path::new(v["path"].as_str().unwrap()).starts_with(&ws));

    let list = std::process::Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
        .args(["--workspace", ws.to_str().unwrap(), "image", "list", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
        .args(["--workspace", ws.to_str().unwrap(), "image", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success());

    // A plain-http URL with no checksum is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
        .args(["--workspace", ws.to_str().unwrap(), "image", "fetch", "--url", &s.server.url(IMAGE)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("always verified"));
}
