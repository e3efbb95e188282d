//! `image fetch` against a real HTTP server on 127.0.0.1, with CHECKSUM files signed by keys made
//! with the real gpg: resume after a cut connection, servers that ignore Range, mirrors, tampered
//! bytes, signatures that do not verify, wrong keys, clearsigned files, signing subkeys. And the
//! hostile mirror: endless bodies, dripping and silent servers, an https URL redirecting to plain
//! http (a real TLS server with a CA made by the real openssl), unsigned plain-http images.

mod common;

use common::gpg::Gpg;
use common::http::{Behaviour, Server};
use sha2::Digest;
use std::time::{Duration, Instant};
use sysmonvm::image::cache::ImageCache;
use sysmonvm::image::download::{self, Limits, NoProgress};
use sysmonvm::image::{self, FetchOrigin, ImageError, ImageSource, KeySource};
use sysmonvm::workspace::Workspace;

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
        ImageCache::of(&Workspace::at(self.dir.path()))
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
    assert_eq!(again.source, FetchOrigin::Cache);
    assert_eq!(s.server.requests_for(IMAGE).len(), 1, "no second download");

    // Bytes changed behind our back: the hit is re-hashed, evicted and fetched again.
    let mut bytes = std::fs::read(&got.path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&got.path, bytes).unwrap();
    let healed = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    assert_ne!(healed.source, FetchOrigin::Cache);
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
    let url = s.server.url(IMAGE);
    std::fs::write(download::origin_path(&partial), format!("{url}\n{url}\n")).unwrap();
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
    assert!(matches!(e, ImageError::AllSourcesFailed(_)), "{msg}");
    assert!(msg.contains("checksum mismatch") && msg.contains(&sha(&s.image)) && msg.contains("discarded"), "{msg}");
    // Not asked again: the same URL would serve the same bytes.
    assert_eq!(s.server.requests_for(IMAGE).len(), 1);
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
    let cache2 = ImageCache::of(&Workspace::at(&s.dir.path().join("images2")));
    assert!(image::fetch(&src, &cache2, &NoProgress, |_| {}).await.unwrap().signature_verified);

    // Clearsigned CHECKSUM, no separate signature; a line added outside the signed part is ignored.
    let clear = s.gpg.clearsign(&sums);
    let with_junk = format!("SHA256 ({NAME}) = {}\n{clear}", sha(b"evil"));
    s.server.put("/images/CHECKSUM", with_junk, Behaviour::Normal);
    let mut src = s.source();
    src.signature_url = None;
    src.key = Some(KeySource::File(s.gpg.write_public_key(&s.dir.path().join("clear").tap_mkdir())));
    let cache3 = ImageCache::of(&Workspace::at(&s.dir.path().join("images3")));
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
    assert_eq!(got.source, FetchOrigin::Downloaded(s.server.url(&format!("/mirror/{NAME}"))));
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

/// Runs `image::fetch_with` and how long it took.
async fn fetch_timed(
    src: &ImageSource,
    cache: &ImageCache,
    limits: &Limits,
) -> (Result<image::FetchedImage, ImageError>, Duration) {
    let started = Instant::now();
    let r = image::fetch_with(src, cache, limits, &NoProgress, |_| {}).await;
    (r, started.elapsed())
}

#[tokio::test]
async fn a_digest_mismatch_moves_on_to_the_next_mirror() {
    let s = setup(1 << 18);
    s.server.set(IMAGE, Behaviour::Tamper { offset: 777 });
    s.server.put(&format!("/mirror/{NAME}"), s.image.clone(), Behaviour::Normal);
    let mut src = s.source();
    src.mirrors = vec![s.server.url("/mirror/")];
    let got = image::fetch(&src, &s.cache(), &NoProgress, |_| {}).await.unwrap();
    assert_eq!(got.source, FetchOrigin::Downloaded(s.server.url(&format!("/mirror/{NAME}"))));
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
    assert_eq!(s.server.requests_for(IMAGE).len(), 1, "a mismatching URL is not asked again");
    // The mirror started from zero: the tampered bytes were thrown away, not resumed.
    assert_eq!(s.server.requests_for(&format!("/mirror/{NAME}"))[0].range, None);
}

#[tokio::test]
async fn a_partial_from_another_url_is_never_resumed_from_this_one() {
    let s = setup(1 << 20);
    let cut_at = 200_000;
    // The first URL cuts every time and the run moves on to the mirror with a partial on disk.
    s.server.set(IMAGE, Behaviour::CutAfter { bytes: cut_at, times: 100 });
    s.server.put(&format!("/mirror/{NAME}"), s.image.clone(), Behaviour::Normal);
    let mut src = s.source();
    src.mirrors = vec![s.server.url("/mirror/")];
    let cache = s.cache();
    let got = image::fetch(&src, &cache, &NoProgress, |_| {}).await.unwrap();
    let first = s.server.requests_for(IMAGE);
    assert_eq!(first.len(), 3);
    assert_eq!(first[2].range.as_deref(), Some(format!("bytes={}-", 2 * cut_at).as_str()), "same URL: resumed");
    let mirror = s.server.requests_for(&format!("/mirror/{NAME}"));
    assert_eq!((mirror.len(), mirror[0].range.as_deref()), (1, None), "another URL: started over");
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
    let partial = cache.partial_path(&sha(&s.image), NAME);
    assert!(!partial.exists() && !download::origin_path(&partial).exists());

    // A partial recorded as another URL's, or with no record at all, is not resumed either.
    let cache = ImageCache::of(&Workspace::at(&s.dir.path().join("images-unknown")));
    let partial = cache.partial_path(&sha(&s.image), NAME);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![0u8; 5000]).unwrap();
    let other = s.server.url("/elsewhere/img");
    std::fs::write(download::origin_path(&partial), format!("{other}\n{other}\n")).unwrap();
    let before = s.server.requests_for(IMAGE).len();
    s.server.set(IMAGE, Behaviour::Normal);
    let got = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    assert_eq!(s.server.requests_for(IMAGE)[before].range, None);
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);

    let cache = ImageCache::of(&Workspace::at(&s.dir.path().join("images-unrecorded")));
    let partial = cache.partial_path(&sha(&s.image), NAME);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![0u8; 5000]).unwrap();
    let before = s.server.requests_for(IMAGE).len();
    let got = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    assert_eq!(s.server.requests_for(IMAGE)[before].range, None);
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
}

#[tokio::test]
async fn a_resume_redirected_to_another_server_starts_over() {
    let s = setup(1 << 20);
    let other = Server::start();
    other.put("/img", s.image.clone(), Behaviour::Normal);
    let cache = s.cache();
    let partial = cache.partial_path(&sha(&s.image), NAME);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    // 1000 wrong bytes that came from this URL directly: now it redirects elsewhere.
    std::fs::write(&partial, vec![0u8; 1000]).unwrap();
    let url = s.server.url(IMAGE);
    std::fs::write(download::origin_path(&partial), format!("{url}\n{url}\n")).unwrap();
    s.server.set(IMAGE, Behaviour::Redirect { location: other.url("/img") });
    let got = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap();
    let asked = other.requests_for("/img");
    assert_eq!(asked[0].range.as_deref(), Some("bytes=1000-"));
    assert_eq!(asked.last().unwrap().range, None, "{asked:?}");
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
    assert_eq!(got.source, FetchOrigin::Downloaded(other.url("/img")), "the source is where the bytes came from");
    assert_eq!(got.url.as_deref(), Some(url.as_str()));
}

#[tokio::test]
async fn an_endless_body_stops_at_the_size_the_checksum_lists_and_the_next_mirror_is_tried() {
    let s = setup(1 << 20);
    s.server.set(IMAGE, Behaviour::Endless { content_length: None });
    s.server.put(&format!("/mirror/{NAME}"), s.image.clone(), Behaviour::Normal);
    let mut src = s.source();
    src.mirrors = vec![s.server.url("/mirror/")];
    let (got, took) = fetch_timed(&src, &s.cache(), &Limits::default()).await;
    let got = got.unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), s.image);
    assert_eq!(s.server.requests_for(IMAGE).len(), 1, "an oversized body is not asked again");
    assert!(took < Duration::from_secs(60), "{took:?}");

    // No mirror: the error says which cap and how far it got; nothing is kept.
    let cache = ImageCache::of(&Workspace::at(&s.dir.path().join("images-endless")));
    let e = image::fetch(&s.source(), &cache, &NoProgress, |_| {}).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("larger than the {} bytes the CHECKSUM lists", s.image.len())), "{msg}");
    let partial = cache.partial_path(&sha(&s.image), NAME);
    assert!(!partial.exists(), "the oversized partial was kept");
}

#[tokio::test]
async fn without_a_size_comment_the_absolute_cap_ends_an_endless_body() {
    let s = setup(1 << 16);
    // A signed GNU-form CHECKSUM: no size comment.
    let sums = format!("{}  {NAME}\n", sha(&s.image));
    s.server.put("/images/CHECKSUM", sums.clone(), Behaviour::Normal);
    s.server.put("/images/CHECKSUM.asc", s.gpg.detach_sign(sums.as_bytes(), None), Behaviour::Normal);
    s.server.set(IMAGE, Behaviour::Endless { content_length: None });
    let limits = Limits { max_image_bytes: 8 << 20, ..Limits::default() };
    let direct = ImageSource { url: Some(s.server.url(IMAGE)), sha256: Some(sha(&s.image)), ..Default::default() };
    let (e, took) = fetch_timed(&direct, &s.cache(), &limits).await;
    let e = e.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("larger than the {} bytes allowed for any image", 8 << 20)), "{msg}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    // What the client read stopped within one chunk of the cap.
    let ImageError::AllSourcesFailed(errors) = &e else { panic!("{e:?}") };
    let received: u64 = errors[0]
        .split("stopped after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", errors[0]));
    assert!(received > 8 << 20 && received <= (8 << 20) + (1 << 20), "{received}");
    // And the server was stopped soon after (what it wrote includes the socket buffers).
    assert!(s.server.bytes_sent(IMAGE) < 64 << 20, "{}", s.server.bytes_sent(IMAGE));

    // The same through the signed CHECKSUM path, and a Content-Length above the cap is refused
    // before any body byte is stored.
    s.server.set(IMAGE, Behaviour::Endless { content_length: Some(1 << 40) });
    let (e, _) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("allowed for any image (stopped after 0 bytes"), "{msg}");
}

#[tokio::test]
async fn a_checksum_that_never_ends_or_never_finishes_is_cut_by_its_cap_and_deadline() {
    let s = setup(1 << 12);
    let limits = Limits { small_file_bytes: 1 << 20, small_file_deadline: Duration::from_secs(2), ..Limits::default() };
    s.server.put("/images/CHECKSUM", Vec::new(), Behaviour::Endless { content_length: None });
    let (e, took) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("larger than the 1048576 bytes allowed for a CHECKSUM or signature"), "{msg}");
    assert!(took < Duration::from_secs(30), "{took:?}");

    // A byte every 200 ms never trips a per-read timeout; the whole-fetch deadline ends it.
    s.server.put(
        "/images/CHECKSUM",
        checksum_file(&s.image).repeat(10),
        Behaviour::Drip { every: Duration::from_millis(200) },
    );
    let (e, took) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("the whole fetch did not finish within 2s"), "{msg}");
    assert!(took < Duration::from_secs(2 + 10), "{took:?}");

    // Headers that never come.
    s.server.put("/images/CHECKSUM", Vec::new(), Behaviour::Silent);
    let (e, took) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("did not finish within 2s"), "{msg}");
    assert!(took < Duration::from_secs(2 + 10), "{took:?}");
    assert!(s.server.requests_for(IMAGE).is_empty());
}

#[tokio::test]
async fn a_dripping_or_silent_image_server_ends_within_its_deadlines() {
    let s = setup(1 << 16);
    let limits = Limits {
        stall_window: Duration::from_secs(1),
        stall_min_bytes: 1000,
        response_deadline: Duration::from_secs(1),
        ..Limits::default()
    };
    s.server.set(IMAGE, Behaviour::Drip { every: Duration::from_millis(100) });
    let (e, took) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("fewer than 1000 bytes arrived in 1s"), "{msg}");
    // Three attempts of about one window each.
    assert!(took < Duration::from_secs(3 + 10), "{took:?}");
    assert_eq!(s.server.requests_for(IMAGE).len(), 3);

    s.server.set(IMAGE, Behaviour::Silent);
    let (e, took) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("the response headers did not finish within 1s"), "{msg}");
    assert!(took < Duration::from_secs(3 + 10), "{took:?}");

    // Fast enough never to stall, too slow for the whole-download deadline.
    let limits = Limits { stall_min_bytes: 1, download_deadline: Duration::from_secs(2), ..limits };
    s.server.set(IMAGE, Behaviour::Drip { every: Duration::from_millis(50) });
    let (e, took) = fetch_timed(&s.source(), &s.cache(), &limits).await;
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("the download did not finish within 2s"), "{msg}");
    assert!(took < Duration::from_secs(3 * 2 + 10), "{took:?}");
}

#[tokio::test]
async fn a_plain_http_image_with_an_unsigned_checksum_is_refused_before_any_request() {
    let s = setup(1 << 12);
    let unsigned = ImageSource {
        url: Some(s.server.url(IMAGE)),
        checksum_url: Some(s.server.url("/images/CHECKSUM")),
        ..Default::default()
    };
    let e = image::fetch(&unsigned, &s.cache(), &NoProgress, |_| {}).await.unwrap_err();
    assert!(matches!(e, ImageError::UnverifiedPlainHttp { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&s.server.url(IMAGE)) && msg.contains(&s.server.url("/images/CHECKSUM")), "{msg}");
    assert!(msg.contains("pin the image's sha256") && msg.contains("signed CHECKSUM"), "{msg}");
    assert!(s.server.log().is_empty(), "{:?}", s.server.log());
    // A plain-http mirror counts as much as the URL itself.
    let mirrored = ImageSource {
        url: Some(format!("https://127.0.0.1:1/{NAME}")),
        mirrors: vec![s.server.url("/m")],
        ..unsigned.clone()
    };
    let e = image::fetch(&mirrored, &s.cache(), &NoProgress, |_| {}).await.unwrap_err();
    assert!(
        matches!(e, ImageError::UnverifiedPlainHttp { ref url, .. } if url.starts_with(&s.server.url("/m"))),
        "{e:?}"
    );
    // Pinned or signed: fetched, and nothing is left unverified.
    let pinned = ImageSource { sha256: Some(sha(&s.image)), ..unsigned };
    let got = image::fetch(&pinned, &s.cache(), &NoProgress, |_| {}).await.unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    let signed =
        image::fetch(&s.source(), &ImageCache::of(&Workspace::at(&s.dir.path().join("i2"))), &NoProgress, |_| {})
            .await
            .unwrap();
    assert!(signed.signature_verified && signed.warnings.is_empty(), "{:?}", signed.warnings);
}

/// A sha256 pinned in the profile is the stronger verification: it comes from the user, not from
/// any server, so a fetch with it and no signature (no CHECKSUM at all, or an unsigned one) warns
/// about nothing, even over plain http. The pin is what is checked: bytes that do not match it
/// are refused. (README, "Security notes", says this is intended.)
#[tokio::test]
async fn a_pinned_sha256_needs_no_signature_and_gives_no_unsigned_warning() {
    let s = setup(1 << 12);
    let pin_only = ImageSource { url: Some(s.server.url(IMAGE)), sha256: Some(sha(&s.image)), ..Default::default() };
    let got = image::fetch(&pin_only, &s.cache(), &NoProgress, |_| {}).await.unwrap();
    assert!(!got.signature_verified && got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(got.sha256, sha(&s.image));
    // With an unsigned CHECKSUM beside the pin: it must agree, and still nothing is unverified.
    let with_sums = ImageSource { checksum_url: Some(s.server.url("/images/CHECKSUM")), ..pin_only.clone() };
    let got = image::fetch(&with_sums, &ImageCache::of(&Workspace::at(&s.dir.path().join("i3"))), &NoProgress, |_| {})
        .await
        .unwrap();
    assert!(!got.signature_verified && got.warnings.is_empty(), "{:?}", got.warnings);
    // Without the pin, the same unsigned CHECKSUM is refused over plain http (see above): the
    // pin is what makes it safe, not the CHECKSUM.
    let unpinned = ImageSource { sha256: None, ..with_sums };
    let e =
        image::fetch(&unpinned, &ImageCache::of(&Workspace::at(&s.dir.path().join("i4"))), &NoProgress, |_| {}).await;
    assert!(matches!(e, Err(ImageError::UnverifiedPlainHttp { .. })), "{e:?}");
    // Tampered bytes under the pin: refused, nothing cached.
    s.server.put("/images/tampered.qcow2", s.image.clone(), Behaviour::Tamper { offset: 100 });
    let tampered = ImageSource { url: Some(s.server.url("/images/tampered.qcow2")), ..pin_only };
    let cache = ImageCache::of(&Workspace::at(&s.dir.path().join("i5")));
    let e = image::fetch(&tampered, &cache, &NoProgress, |_| {}).await.unwrap_err();
    assert!(e.to_string().contains(&sha(&s.image)), "{e}");
}

/// A CA and a certificate for 127.0.0.1 it signs, made by the real openssl: (CA PEM, chain PEM, key PEM).
fn tls_material(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    assert!(common::have("openssl"), "openssl is needed for the https tests");
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA"]]
        .concat());
    run(&[&["req"], &ec[..], &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (dir.join("ca.pem"), std::fs::read(dir.join("leaf.pem")).unwrap(), std::fs::read(dir.join("leaf.key")).unwrap())
}

#[test]
fn an_https_url_redirected_to_plain_http_is_refused_naming_both_urls() {
    let s = setup(1 << 16);
    let tls_dir = s.dir.path().join("tls").tap_mkdir();
    let (ca, chain, key) = tls_material(&tls_dir);
    let https = Server::start_tls(&chain, &key);
    https.put(&format!("/img/{NAME}"), s.image.clone(), Behaviour::Normal);
    https.put("/img/CHECKSUM", checksum_file(&s.image), Behaviour::Normal);
    let ws = s.dir.path().join("ws");
    let fetch = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sysmonvm"))
            .args(["--workspace", ws.to_str().unwrap(), "image", "fetch", "--json", "--url", url])
            .args(["--checksum-url", &https.url("/img/CHECKSUM")])
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap()
    };

    // Over https with an unsigned CHECKSUM: fetched, with a warning naming what was not verified.
    let out = fetch(&https.url(&format!("/img/{NAME}")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], https.url(&format!("/img/{NAME}")));
    let warning = v["warnings"][0].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(warning.contains("not signed") && warning.contains(&https.url("/img/CHECKSUM")), "{warning}");
    assert!(stderr.contains(warning), "the warning is not on stderr: {stderr}");

    // The same file name elsewhere, over https that redirects to plain http.
    let moved = format!("/moved/{NAME}");
    https.put(&moved, Vec::new(), Behaviour::Redirect { location: s.server.url(IMAGE) });
    std::fs::remove_dir_all(&ws).unwrap();
    let out = fetch(&https.url(&moved));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{} redirected to {}", https.url(&moved), s.server.url(IMAGE))), "{stderr}");
    assert!(stderr.contains("never continued over plain http"), "{stderr}");
    assert!(s.server.requests_for(IMAGE).is_empty(), "the plain-http URL was asked: {:?}", s.server.log());
    assert_eq!(https.requests_for(&moved).len(), 1, "a refused redirect is not asked again");
}
