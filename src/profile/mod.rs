//! VM profiles: YAML files describing a guest (arch, accelerator, sizes, firmware, image and how to
//! verify it, SSH user, forwards, seed attachment, guest family, collector settings). Built-in
//! profiles are compiled in from `profiles/`; any file can be loaded by path. Unknown keys are
//! errors that name the file, line, column and field and suggest the nearest valid key.

mod locate;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use locate::locate;

/// Profiles shipped inside the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("almalinux-9-aarch64", include_str!("../../profiles/almalinux-9-aarch64.yaml")),
    ("almalinux-9-x86_64", include_str!("../../profiles/almalinux-9-x86_64.yaml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Aarch64,
    X86_64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::X86_64 => "x86_64",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    Auto,
    Hvf,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedAttachment {
    /// A read-only virtio block device (works everywhere, including Debian's cloud kernel on q35).
    Virtio,
    /// A CD-ROM (needs AHCI/SCSI support in the guest kernel).
    Cdrom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestFamily {
    Dnf,
    Apt,
}

/// The container runtime the bootstrap installs and enables in the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRuntime {
    /// Docker: Debian's `docker.io` on apt guests, Docker CE from Docker's repository on dnf.
    #[default]
    Docker,
    Podman,
    None,
}

impl ContainerRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Firmware {
    /// `auto`: search the platform's usual edk2 locations.
    Auto(AutoKeyword),
    Paths(FirmwarePaths),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoKeyword {
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwarePaths {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Where the guest image comes from and how it is verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// http(s) URL of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A local image file instead of a URL (then `sha256` is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The CHECKSUM file listing the image's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_url: Option<String>,
    /// A fixed SHA-256 instead of a CHECKSUM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// OpenPGP signature over the CHECKSUM file (detached `.asc`); a clearsigned CHECKSUM needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_url: Option<String>,
    /// The trusted key: a built-in name (`almalinux-9`) or an armored key file (relative to the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's fingerprint, checked before the key is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Directories that hold the same image, CHECKSUM and signature, tried in order on network failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    pub user: String,
}

impl SshSpec {
    /// Whether the guest user is root, so guest commands need no `sudo`.
    pub fn is_root(&self) -> bool {
        self.user == "root"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    pub guest: u16,
    /// Host port on 127.0.0.1; absent or 0 picks a free one at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSpec {
    /// The HTTP endpoint's port in the guest (`/metrics`, `/v1/snapshot`, `/healthz`).
    pub port: u16,
    pub interval: String,
    /// The gRPC port of ServiceRadar's checker interface in the guest (its default, 50110).
    #[serde(default = "default_grpc_port")]
    pub grpc_port: u16,
}

fn default_grpc_port() -> u16 {
    50110
}

impl Default for CollectorSpec {
    fn default() -> Self {
        CollectorSpec { port: 9105, interval: "1s".into(), grpc_port: default_grpc_port() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub arch: Arch,
    pub accel: Accel,
    pub machine: String,
    pub cpu: String,
    pub smp: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub firmware: Firmware,
    pub image: ImageSpec,
    pub ssh: SshSpec,
    #[serde(default)]
    pub forwards: Vec<Forward>,
    #[serde(default = "default_seed")]
    pub seed: SeedAttachment,
    pub guest_family: GuestFamily,
    /// The container runtime the bootstrap installs (docker, podman or none).
    #[serde(default)]
    pub container_runtime: ContainerRuntime,
    /// Extra packages `sysmonvm bootstrap` installs on top of its baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    #[serde(default)]
    pub collector: CollectorSpec,
    /// Where it was loaded from (`builtin:NAME` or a path); not part of the file.
    #[serde(skip)]
    pub source: String,
    /// The directory relative paths in the profile are resolved against.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

fn default_seed() -> SeedAttachment {
    SeedAttachment::Virtio
}

/// Not `PartialEq`: `Read` keeps the `io::Error` it failed with, and nothing compares these errors;
/// tests match on the variant and its fields.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}:{line}:{column}: `{field}`: {message}{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Invalid { file: String, line: usize, column: usize, field: String, message: String, suggestion: Option<String> },
    #[error("{file}: cannot read the profile")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no profile named `{name}`{}; available: {available}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    Unknown { name: String, available: String, suggestion: Option<String> },
}

/// The closest candidate to `word`, if any is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// `unknown field `sise_gib`, expected one of `name`, `arch`` → ("sise_gib", ["name", "arch"]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, tail) = rest.split_once('`')?;
    let expected = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((field.to_string(), expected))
}

/// Parses profile text. `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let mut profile: Profile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let (line, column) = inner.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        // Strip the library's own " at line X column Y" so the position is said once.
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        // The YAML library prefixes the field path ("image: unknown field ..."); say it once.
        let message = match message.find("unknown field `") {
            Some(i) => message[i..].to_string(),
            None => message.strip_prefix(&format!("{path}: ")).map(str::to_string).unwrap_or(message),
        };
        let (field, suggestion) = match unknown_field(&message) {
            Some((bad, expected)) => {
                let parent = path.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap_or_default();
                let parent =
                    if path == "." || path.is_empty() || !path.ends_with(&bad) { format!("{path}.") } else { parent };
                let parent = parent.trim_start_matches('.').to_string();
                (format!("{parent}{bad}"), nearest(&bad, expected.iter().map(String::as_str)))
            }
            None => (if path.is_empty() || path == "." { "(top level)".to_string() } else { path }, None),
        };
        let (line, column) = if line == 0 { locate(text, &field).unwrap_or((0, 0)) } else { (line, column) };
        ProfileError::Invalid { file: file.to_string(), line, column, field, message, suggestion }
    })?;
    validate(&profile).map_err(|(field, message)| {
        let (line, column) = locate(text, &field).unwrap_or((0, 0));
        ProfileError::Invalid { file: file.to_string(), line, column, field, message, suggestion: None }
    })?;
    profile.source = file.to_string();
    Ok(profile)
}

fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A POSIX (useradd) user name: `[a-z_][a-z0-9_-]*`, at most 32 characters — never an option
/// (`-oProxyCommand=…`) or shell text once it reaches OpenSSH's argv or a guest script.
pub fn is_posix_user(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && s.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// A package name as Debian and RPM allow them (they go into a shell command unquoted, so no
/// spaces, quotes or shell metacharacters).
pub fn is_package_name(name: &str) -> bool {
    name.len() <= 128 && is_word(name, "+-._:")
}

/// A non-empty word of ASCII letters, digits and `extra`, starting with a letter or digit.
fn is_word(s: &str, extra: &str) -> bool {
    s.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || extra.as_bytes().contains(&c))
}

fn is_plain_absolute(p: &Path) -> bool {
    p.is_absolute() && !p.to_string_lossy().contains(['\n', '\r', '\0'])
}

/// Rules serde cannot express. Returns (field path, problem).
pub fn validate(p: &Profile) -> Result<(), (String, String)> {
    let bad = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
    if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return bad("name", "use letters, digits, '-', '_' and '.' only");
    }
    if p.smp == 0 || p.smp > 512 {
        return bad("smp", "must be between 1 and 512");
    }
    if p.memory_mib < 256 {
        return bad("memory_mib", "at least 256 MiB");
    }
    if p.disk_gib == 0 {
        return bad("disk_gib", "must be at least 1");
    }
    if p.accel == Accel::Hvf && p.arch != Arch::Aarch64 {
        return bad("accel", "hvf runs aarch64 guests on Apple Silicon; use kvm or tcg for x86_64");
    }
    let i = &p.image;
    match (&i.url, &i.path) {
        (Some(_), Some(_)) => return bad("image.path", "give either image.url or image.path, not both"),
        (None, None) => return bad("image", "needs image.url or image.path"),
        _ => {}
    }
    if let Some(url) = &i.url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return bad("image.url", "must be an http:// or https:// URL");
        }
        if i.checksum_url.is_none() && i.sha256.is_none() {
            return bad(
                "image",
                "a downloaded image needs image.checksum_url or image.sha256: downloads are always verified",
            );
        }
    }
    if i.path.is_some() && i.sha256.is_none() {
        return bad("image.sha256", "a local image needs its sha256");
    }
    if let Some(s) = &i.sha256
        && !is_hex_sha256(s)
    {
        return bad("image.sha256", "must be 64 hexadecimal digits");
    }
    if i.signature_url.is_some() && i.checksum_url.is_none() {
        return bad("image.signature_url", "a signature is checked over the CHECKSUM file: set image.checksum_url too");
    }
    if i.signature_url.is_some() && (i.key.is_none() || i.key_fingerprint.is_none()) {
        return bad(
            "image.key",
            "a signature needs the trusted key and its fingerprint (image.key, image.key_fingerprint)",
        );
    }
    if let Some(f) = &i.key_fingerprint {
        let hex: String = f.chars().filter(|c| !c.is_whitespace()).collect();
        if !(hex.len() == 40 || hex.len() == 64) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("image.key_fingerprint", "must be a v4 (40 hex digits) or v6 (64 hex digits) fingerprint");
        }
    }
    for (n, u) in i.mirrors.iter().enumerate() {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return bad(&format!("image.mirrors[{n}]"), "must be an http:// or https:// URL");
        }
    }
    if p.ssh.is_root() {
        return bad("ssh.user", "a non-root user name (cloud-init creates it with passwordless sudo)");
    }
    if !is_posix_user(&p.ssh.user) {
        return bad(
            "ssh.user",
            "a POSIX user name: a lowercase letter or '_', then lowercase letters, digits, '_' or '-' (at most 32)",
        );
    }
    // Fields that become QEMU words: a plain name, never something that reads as an option.
    if !is_word(&p.machine, "._-") {
        return bad("machine", "a QEMU machine type such as q35 or virt (letters, digits, '.', '_', '-')");
    }
    if !is_word(&p.cpu, "._-+=,") {
        return bad("cpu", "a QEMU CPU model such as host, max or cortex-a72, optionally with ,property=value");
    }
    if let Firmware::Paths(fw) = &p.firmware {
        if !is_plain_absolute(&fw.code) {
            return bad("firmware.code", "an absolute path (no newlines)");
        }
        if !fw.vars.as_os_str().is_empty() && !is_plain_absolute(&fw.vars) {
            return bad("firmware.vars", "an absolute path (no newlines), or \"\" for none");
        }
    }
    for (n, pkg) in p.packages.iter().enumerate() {
        if !is_package_name(pkg) {
            return bad(&format!("packages[{n}]"), "a package name (letters, digits, '+', '.', '_', '-')");
        }
    }
    for (n, f) in p.forwards.iter().enumerate() {
        if f.guest == 0 {
            return bad(&format!("forwards[{n}].guest"), "a guest port between 1 and 65535");
        }
    }
    if p.collector.port == 0 {
        return bad("collector.port", "a port between 1 and 65535");
    }
    if sysmon_collector::config::parse_duration(&p.collector.interval).is_err() {
        return bad("collector.interval", "a duration such as 1s or 250ms");
    }
    Ok(())
}

pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// Loads a profile by built-in name, by name from `extra_dir` (the workspace's profiles), or by path.
pub fn load(name_or_path: &str, extra_dir: Option<&Path>) -> Result<Profile, ProfileError> {
    let as_path = Path::new(name_or_path);
    let looks_like_path =
        name_or_path.contains('/') || name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml");
    if looks_like_path {
        return load_file(as_path);
    }
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        let mut p = parse(&format!("builtin:{name_or_path}"), text)?;
        p.source = format!("builtin:{name_or_path}");
        return Ok(p);
    }
    if let Some(dir) = extra_dir {
        let f = dir.join(format!("{name_or_path}.yaml"));
        if f.exists() {
            return load_file(&f);
        }
    }
    let mut available: Vec<String> = builtin_names().map(String::from).collect();
    available.extend(workspace_names(extra_dir));
    Err(ProfileError::Unknown {
        name: name_or_path.to_string(),
        suggestion: nearest(name_or_path, available.iter().map(String::as_str)),
        available: available.join(", "),
    })
}

pub fn load_file(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ProfileError::Read { file: path.display().to_string(), source })?;
    let mut p = parse(&path.display().to_string(), &text)?;
    p.base_dir = path.parent().map(Path::to_path_buf);
    Ok(p)
}

/// Profile names found in the workspace's profiles directory.
pub fn workspace_names(dir: Option<&Path>) -> Vec<String> {
    let Some(dir) = dir else { return Vec::new() };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".yaml").map(String::from))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        for name in builtin_names() {
            let p = load(name, None).unwrap();
            assert_eq!(p.name, name);
            assert_eq!(p.image.key.as_deref(), Some("almalinux-9"));
        }
        let a = load("almalinux-9-aarch64", None).unwrap();
        assert_eq!(
            (a.arch, a.machine.as_str(), a.cpu.as_str(), a.smp, a.memory_mib, a.disk_gib),
            (Arch::Aarch64, "virt", "host", 4, 6144, 40)
        );
    }

    #[test]
    fn typo_names_file_line_column_field_and_suggests() {
        let text = include_str!("../../profiles/almalinux-9-x86_64.yaml").replace("disk_gib: 40", "disk_gb: 40");
        let e = parse("p.yaml", &text).unwrap_err();
        let ProfileError::Invalid { line, column, field, suggestion, .. } = &e else { panic!("{e}") };
        let expected_line = text.lines().position(|l| l.starts_with("disk_gb")).unwrap() + 1;
        assert_eq!(
            (*line, *column, field.as_str(), suggestion.as_deref()),
            (expected_line, 1, "disk_gb", Some("disk_gib"))
        );
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("p.yaml:{expected_line}:1: `disk_gb`")), "{msg}");
    }

    #[test]
    fn nested_typo_and_wrong_type() {
        let text = include_str!("../../profiles/almalinux-9-x86_64.yaml").replace("  checksum_url:", "  cheksum_url:");
        let e = parse("p.yaml", &text).unwrap_err();
        let ProfileError::Invalid { field, suggestion, line, .. } = &e else { panic!() };
        assert_eq!((field.as_str(), suggestion.as_deref()), ("image.cheksum_url", Some("checksum_url")));
        assert_eq!(*line, text.lines().position(|l| l.contains("cheksum_url")).unwrap() + 1);
        let text = include_str!("../../profiles/almalinux-9-x86_64.yaml").replace("smp: 4", "smp: four");
        let e = parse("p.yaml", &text).unwrap_err().to_string();
        assert!(e.contains("`smp`"), "{e}");
    }

    #[test]
    fn fields_that_reach_an_argv_a_path_or_a_script_refuse_options_and_shell() {
        let base = include_str!("../../profiles/almalinux-9-x86_64.yaml");
        let base = parse("p.yaml", base).unwrap();
        let hostile = ["-oProxyCommand=touch /tmp/PWNED;#", "$(touch /tmp/PWNED)", "a b", "x;reboot", "`id`", ""];
        type Set = fn(&mut Profile, &str);
        let fields: &[(&str, Set)] = &[
            ("ssh.user", |p, v| p.ssh.user = v.into()),
            ("machine", |p, v| p.machine = v.into()),
            ("cpu", |p, v| p.cpu = v.into()),
            ("packages[0]", |p, v| p.packages = vec![v.into()]),
            ("name", |p, v| p.name = v.into()),
            ("collector.interval", |p, v| p.collector.interval = v.into()),
            ("firmware.code", |p, v| {
                p.firmware = Firmware::Paths(FirmwarePaths { code: v.into(), vars: "/v.fd".into() })
            }),
        ];
        for (field, set) in fields {
            for value in hostile {
                let mut p = base.clone();
                set(&mut p, value);
                let e = validate(&p).expect_err(&format!("{field} = {value:?} passed validation"));
                assert_eq!(&e.0, field, "{value:?}: {e:?}");
            }
        }
        let mut ok = base.clone();
        ok.ssh.user = "alma_user-2".into();
        ok.cpu = "max,pauth-impdef=on".into();
        ok.packages = vec!["g++".into(), "python3.11".into()];
        validate(&ok).unwrap();
    }

    #[test]
    fn semantic_rules_point_at_the_field() {
        let text = include_str!("../../profiles/almalinux-9-x86_64.yaml").replace("accel: auto", "accel: hvf");
        let e = parse("p.yaml", &text).unwrap_err();
        let ProfileError::Invalid { field, line, .. } = &e else { panic!() };
        assert_eq!(field, "accel");
        assert_eq!(*line, text.lines().position(|l| l.starts_with("accel:")).unwrap() + 1);
        let no_verify = include_str!("../../profiles/almalinux-9-x86_64.yaml")
            .lines()
            .filter(|l| !l.contains("checksum_url") && !l.contains("signature_url"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse("p.yaml", &no_verify).unwrap_err().to_string().contains("always verified"));
    }

    #[test]
    fn a_missing_file_keeps_the_io_error() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("gone.yaml");
        let e = load(missing.to_str().unwrap(), None).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: cannot read the profile", missing.display()));
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("an io::Error source");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn unknown_profile_name_suggests() {
        let e = load("almalinux-9-aarch46", None).unwrap_err();
        assert!(e.to_string().contains("did you mean `almalinux-9-aarch64`"), "{e}");
    }
}
