//! The collector's settings: defaults, then a config file (JSON or YAML), then command-line
//! flags. A bad file names the key and the problem; unknown keys are errors, so a typo is never
//! silently ignored.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `sysmonvm collector install` puts the config in the guest.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/serviceradar/checkers/sysmon-vm.json";
/// The HTTP endpoint's address when neither flag nor config names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9105";
/// ServiceRadar's default checker address (`listen_addr`), as its own sysmon-vm checker has it.
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:50110";
/// Above this ServiceRadar's own checker would clamp `sample_interval` (ours keeps it, with a warning).
pub const SERVICERADAR_MAX_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_millis(250);
pub const DEFAULT_SERVE_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_QUEUE_BATCHES: usize = 60;
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: at `{key}`: {problem}")]
    Invalid { path: PathBuf, key: String, problem: String },
}

/// `250ms`, `1s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected a number and a unit such as 250ms or 10s"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "" => return Err(format!("invalid duration {text:?}: missing unit (ms, s, m or h)")),
        u => return Err(format!("invalid duration {text:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn check_interval(d: Duration) -> Result<Duration, String> {
    if d < MIN_INTERVAL || d > MAX_INTERVAL {
        return Err(format!("interval {d:?} out of range ({MIN_INTERVAL:?} to {MAX_INTERVAL:?})"));
    }
    Ok(d)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_duration(&s).and_then(check_interval).map_err(serde::de::Error::custom)).transpose()
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub procfs: Option<PathBuf>,
    pub sysfs: Option<PathBuf>,
    pub cgroupfs: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    pub host_procfs: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Base URL (`http://127.0.0.1:4318`) or the full `/v1/metrics` URL.
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub push_interval: Option<Duration>,
    pub service_name: Option<String>,
    pub host_id: Option<String>,
    pub vm_id: Option<String>,
    /// Batches kept while the endpoint is down; the oldest is dropped beyond this.
    pub queue_batches: Option<usize>,
    /// Extra HTTP headers sent with every push (`Authorization: Bearer …` for a receiver that
    /// takes deliveries only with a token, as `sysmonvm validate`'s does).
    #[serde(default, deserialize_with = "headers")]
    pub headers: Option<BTreeMap<String, String>>,
}

/// Why an OTLP header name or value cannot be sent.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!(
            "header name {name:?} is not an HTTP field name (letters, digits and !#$%&'*+-.^_`|~ only)"
        ));
    }
    if ["content-type", "content-length", "host", "transfer-encoding", "connection"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
    {
        return Err(format!("header {name:?} is set by the collector itself and cannot be configured"));
    }
    if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return Err(format!(
            "the value of header {name:?} holds a control or non-ASCII character (a line break would start a new header)"
        ));
    }
    Ok(())
}

fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let h: Option<BTreeMap<String, String>> = Option::deserialize(d)?;
    if let Some(h) = &h {
        for (name, value) in h {
            check_header(name, value).map_err(serde::de::Error::custom)?;
        }
    }
    Ok(h)
}

/// ServiceRadar's `models.TLSConfig`: file names, relative to `cert_dir` unless absolute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    pub client_ca_file: Option<String>,
}

/// ServiceRadar's `models.SecurityConfig`, as its checkers read it. `mode` is `none` or `mtls`
/// here; `role`, `server_name`, `trust_domain` and `workload_socket` are accepted (a ServiceRadar
/// config carries them) and not used by a server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub mode: Option<String>,
    pub cert_dir: Option<PathBuf>,
    pub server_name: Option<String>,
    pub role: Option<String>,
    pub tls: Option<TlsFiles>,
    pub trust_domain: Option<String>,
    pub workload_socket: Option<String>,
}

/// The three files an mTLS server needs, resolved against `cert_dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct MtlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// What `security` asks of the gRPC endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum GrpcSecurity {
    None,
    Mtls(MtlsFiles),
}

impl SecurityConfig {
    /// The mode and, for mTLS, the files (`client_ca_file` falls back to `ca_file`, as
    /// ServiceRadar's does). An error names the key.
    pub fn resolve(&self) -> Result<GrpcSecurity, (String, String)> {
        match self.mode.as_deref().unwrap_or("none") {
            "none" | "" => Ok(GrpcSecurity::None),
            "mtls" => {
                let dir = self.cert_dir.clone().unwrap_or_default();
                let tls = self.tls.clone().unwrap_or_default();
                let path = |key: &str, v: Option<String>| -> Result<PathBuf, (String, String)> {
                    let v = v.filter(|v| !v.is_empty()).ok_or_else(|| {
                        (
                            format!("security.tls.{key}"),
                            "missing: mode mtls needs cert_file, key_file and ca_file (or client_ca_file)".into(),
                        )
                    })?;
                    let p = PathBuf::from(v);
                    Ok(if p.is_absolute() { p } else { dir.join(p) })
                };
                Ok(GrpcSecurity::Mtls(MtlsFiles {
                    cert: path("cert_file", tls.cert_file)?,
                    key: path("key_file", tls.key_file)?,
                    client_ca: path("client_ca_file", tls.client_ca_file.or(tls.ca_file))?,
                }))
            }
            other => {
                Err(("security.mode".into(), format!("{other:?} is not supported here (use \"none\" or \"mtls\")")))
            }
        }
    }
}

/// The file format: ServiceRadar's sysmon-vm checker config (`listen_addr` is the gRPC checker
/// address, `sample_interval`, `security`) plus our own keys (`http_listen_addr`, `perf`,
/// `cgroups`, `paths`, `otlp`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The gRPC checker address (ServiceRadar's meaning). In a config of the earlier form (no
    /// `http_listen_addr`, no `security`) it is the HTTP address, read so with a warning.
    pub listen_addr: Option<String>,
    /// The HTTP endpoint (`/metrics`, `/v1/snapshot`, `/healthz`).
    pub http_listen_addr: Option<String>,
    pub security: Option<SecurityConfig>,
    #[serde(default, deserialize_with = "duration")]
    pub sample_interval: Option<Duration>,
    pub perf: Option<bool>,
    /// Extra cgroups reported as containers (`runtime: cgroup`), relative to the cgroup root.
    pub cgroups: Option<Vec<String>>,
    pub paths: Option<PathsConfig>,
    pub otlp: Option<OtlpConfig>,
}

fn invalid(path: &Path, key: String, problem: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key: if key.is_empty() || key == "." { "(top level)".into() } else { key },
        problem,
    }
}

/// Parses a config file's text; YAML unless the name ends in `.json`. (JSON is valid YAML, but
/// the JSON parser gives better positions for JSON files.)
/// A deserialiser error with the key path where it happened, either format.
fn at_key<E: std::fmt::Display>(path: &Path, e: serde_path_to_error::Error<E>) -> ConfigError {
    let key = e.path().to_string();
    invalid(path, key, e.into_inner().to_string())
}

pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    if path.extension().is_some_and(|e| e == "json") {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| at_key(path, e))
    } else if text.trim().is_empty() {
        Ok(FileConfig::default())
    } else {
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| at_key(path, e))
    }
}

/// Where `serve` listens, and what it warns about, from a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub http: Option<String>,
    /// None: no gRPC endpoint.
    pub grpc: Option<String>,
    pub security: GrpcSecurity,
    pub warnings: Vec<String>,
}

impl FileConfig {
    /// The earlier form (`listen_addr` meant the HTTP address): `listen_addr` set, and neither
    /// `http_listen_addr` nor `security`.
    pub fn is_legacy(&self) -> bool {
        self.listen_addr.is_some() && self.http_listen_addr.is_none() && self.security.is_none()
    }

    /// The addresses and security the file asks for. A config of the earlier form serves HTTP
    /// on `listen_addr` and no gRPC, with a warning naming `http_listen_addr`; a config with
    /// `http_listen_addr` or `security` serves gRPC on `listen_addr` (default 0.0.0.0:50110); one
    /// with none of the three serves HTTP only.
    pub fn endpoints(&self, path: &Path) -> Result<Endpoints, ConfigError> {
        let mut warnings = Vec::new();
        if let Some(d) = self.sample_interval
            && d > SERVICERADAR_MAX_INTERVAL
        {
            warnings.push(format!(
                "{}: sample_interval {d:?} is above 5s: ServiceRadar's own sysmon-vm checker would clamp it to 5s (this collector keeps it)",
                path.display()
            ));
        }
        let security = match &self.security {
            None => GrpcSecurity::None,
            Some(s) => s.resolve().map_err(|(key, problem)| invalid(path, key, problem))?,
        };
        if self.is_legacy() {
            warnings.push(format!(
                "{}: listen_addr is read as the HTTP address, as configs of the earlier form meant it; move it to http_listen_addr (listen_addr is now ServiceRadar's gRPC checker address); `sysmonvm collector install` rewrites this file",
                path.display()
            ));
            return Ok(Endpoints { http: self.listen_addr.clone(), grpc: None, security, warnings });
        }
        // ServiceRadar's form (`http_listen_addr` or `security` present): gRPC on listen_addr,
        // default 0.0.0.0:50110 as ServiceRadar's checker has it. A config naming no address at
        // all serves HTTP only.
        let serviceradar_form = self.http_listen_addr.is_some() || self.security.is_some();
        let grpc = if serviceradar_form {
            Some(self.listen_addr.clone().unwrap_or_else(|| DEFAULT_GRPC_LISTEN.into()))
        } else {
            None
        };
        Ok(Endpoints { http: self.http_listen_addr.clone(), grpc, security, warnings })
    }
}

pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse(path, &text)
}

/// The JSON written to [`DEFAULT_CONFIG_PATH`] by `sysmonvm collector install`, with every default spelled out.
pub fn example_json() -> String {
    serde_json::json!({
        "listen_addr": DEFAULT_GRPC_LISTEN,
        "http_listen_addr": DEFAULT_LISTEN,
        "security": { "mode": "none" },
        "sample_interval": "1s",
        "perf": true,
        "cgroups": [],
        "paths": { "procfs": "/proc", "sysfs": "/sys", "cgroupfs": "/sys/fs/cgroup", "rootfs": "/", "host_procfs": null },
        "otlp": {
            "endpoint": null,
            "push_interval": "10s",
            "service_name": "sysmon-collector",
            "host_id": null,
            "vm_id": null,
            "queue_batches": DEFAULT_QUEUE_BATCHES,
            "headers": {}
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(check_interval(Duration::from_millis(1)).is_err());
    }

    #[test]
    fn example_parses_back() {
        let c = parse(Path::new("x.json"), &example_json()).unwrap();
        assert_eq!(c.sample_interval, Some(Duration::from_secs(1)));
        assert_eq!(c.otlp.unwrap().queue_batches, Some(DEFAULT_QUEUE_BATCHES));
    }

    #[test]
    fn servicradar_form_and_the_earlier_form() {
        let p = Path::new("sysmon-vm.json");
        // ServiceRadar's own checker config, as its packages ship it.
        let sr = parse(
            p,
            r#"{"listen_addr":"0.0.0.0:50110","sample_interval":"250ms","security":{"mode":"mtls","role":"checker","cert_dir":"/etc/serviceradar/certs","server_name":"sysmon-vm","tls":{"cert_file":"checkers.pem","key_file":"checkers-key.pem","ca_file":"root.pem","client_ca_file":"root.pem"}}}"#,
        )
        .unwrap();
        let e = sr.endpoints(p).unwrap();
        assert_eq!(e.grpc.as_deref(), Some("0.0.0.0:50110"));
        assert_eq!(e.http, None);
        let GrpcSecurity::Mtls(files) = e.security else { panic!("mtls") };
        assert_eq!(files.cert, Path::new("/etc/serviceradar/certs/checkers.pem"));
        assert_eq!(files.client_ca, Path::new("/etc/serviceradar/certs/root.pem"));
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);

        // Written by an earlier `collector install`: listen_addr was the HTTP address.
        let old = parse(p, r#"{"listen_addr":"10.0.2.15:9105","sample_interval":"1s","perf":true}"#).unwrap();
        let e = old.endpoints(p).unwrap();
        assert_eq!((e.http.as_deref(), e.grpc.as_deref()), (Some("10.0.2.15:9105"), None));
        assert!(e.warnings.iter().any(|w| w.contains("http_listen_addr")), "{:?}", e.warnings);

        let slow = parse(p, r#"{"http_listen_addr":"127.0.0.1:0","sample_interval":"10s"}"#).unwrap();
        let e = slow.endpoints(p).unwrap();
        assert_eq!(e.grpc.as_deref(), Some(DEFAULT_GRPC_LISTEN));
        let none = parse(p, r#"{"perf":false}"#).unwrap().endpoints(p).unwrap();
        assert_eq!((none.http, none.grpc), (None, None));
        assert!(e.warnings.iter().any(|w| w.contains("clamp")), "{:?}", e.warnings);

        for (bad, says) in [
            (r#"{"security":{"mode":"spiffe"}}"#, "security.mode"),
            (r#"{"security":{"mode":"mtls","tls":{"cert_file":"a","key_file":"b"}}}"#, "security.tls.client_ca_file"),
            (r#"{"security":{"mode":"mtls","tls":{"cert":"a"}}}"#, "cert"),
            (r#"{"security":{"mode":"none","certdir":"/x"}}"#, "certdir"),
        ] {
            let e = parse(p, bad).and_then(|c| c.endpoints(p).map(|_| ())).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse(p, r#"{"sample_interval":"2h"}"#).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn typo_names_the_key() {
        let e = parse(Path::new("c.yaml"), "otlp:\n  endpont: http://x\n").unwrap_err().to_string();
        assert!(e.contains("c.yaml") && e.contains("endpont") && e.contains("otlp"), "{e}");
        let e = parse(Path::new("c.json"), r#"{"sample_interval": "fast"}"#).unwrap_err().to_string();
        assert!(e.contains("sample_interval") && e.contains("invalid duration"), "{e}");
        let e = parse(Path::new("c.json"), r#"{"perf": "yes"}"#).unwrap_err().to_string();
        assert!(e.contains("`perf`"), "{e}");
    }

    #[test]
    fn otlp_headers_are_checked_where_they_are_read() {
        let ok = parse(Path::new("c.yaml"), "otlp:\n  headers:\n    Authorization: Bearer 0123abcd\n").unwrap();
        let headers = ok.otlp.unwrap().headers.unwrap();
        assert_eq!(headers["Authorization"], "Bearer 0123abcd");
        for (bad, says) in [
            (r#"{"otlp": {"headers": {"X-A": "a\r\nX-Injected: 1"}}}"#, "control or non-ASCII"),
            (r#"{"otlp": {"headers": {"X A": "a"}}}"#, "not an HTTP field name"),
            (r#"{"otlp": {"headers": {"": "a"}}}"#, "not an HTTP field name"),
            (r#"{"otlp": {"headers": {"Content-Length": "1"}}}"#, "set by the collector"),
            (r#"{"otlp": {"headers": {"X-A": 1}}}"#, "string"),
        ] {
            let e = parse(Path::new("c.json"), bad).unwrap_err().to_string();
            assert!(e.contains("otlp.headers") && e.contains(says), "{bad}: {e}");
        }
    }
}
