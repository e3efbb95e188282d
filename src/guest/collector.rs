//! Delivering `sysmon-collector` to a guest: the musl target for the guest's arch, the cargo
//! command that cross-builds it, where a built binary is staged in the workspace, the config and
//! systemd unit it is installed with, and the install/uninstall plans. Pure except [`find_source`].
//!
//! The service runs as the dedicated user `sysmon-vm` with only `CAP_PERFMON` (see
//! templates/systemd/serviceradar-sysmon-vm.service.j2) and listens on the guest's own network
//! address; the host reaches it through the profile's 127.0.0.1 forward.

use super::runner::{STAGE_DIR, Upload};
use super::steps::{Plan, PlanError};
use crate::profile::{Arch, Profile};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const UNIT: &str = "serviceradar-sysmon-vm.service";
pub const BINARY: &str = "/usr/local/bin/sysmon-collector";
pub const CONFIG_DIR: &str = "/etc/serviceradar/checkers";
pub const CONFIG: &str = sysmon_collector::config::DEFAULT_CONFIG_PATH;
pub const TMPFILES: &str = "/etc/tmpfiles.d/sysmon-vm.conf";
pub const USER: &str = "sysmon-vm";
/// Where `collector install --serviceradar --certs DIR` puts ServiceRadar's mTLS files.
pub const CERT_DIR: &str = "/etc/serviceradar/certs";
/// The files `--certs DIR` must hold, ServiceRadar's names for a checker: the CA its clients
/// (the agent) are signed by, and the checker's certificate and key.
pub const CERT_FILES: [&str; 3] = ["root.pem", "checkers.pem", "checkers-key.pem"];
/// How long the install waits for the restarted service to answer.
pub const WAIT_SECONDS: u32 = 30;

/// The static musl target that runs on a guest of `arch`.
pub fn target(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "aarch64-unknown-linux-musl",
        Arch::X86_64 => "x86_64-unknown-linux-musl",
    }
}

/// The guest arch a musl target triple (`--target`) builds for, or None for any other triple.
pub fn arch_of_target(triple: &str) -> Option<Arch> {
    [Arch::Aarch64, Arch::X86_64].into_iter().find(|a| target(*a) == triple)
}

/// The cargo command (run in the source checkout) that cross-builds the collector; the
/// checkout's `.cargo/config.toml` links musl targets with rust-lld.
pub fn build_argv(target: &str) -> Vec<String> {
    ["cargo", "build", "--release", "--locked", "--package", "sysmon-collector", "--target", target]
        .map(String::from)
        .to_vec()
}

/// [`build_argv`] with feature `mtls` (TLS on *ring*, which compiles C for the target).
pub fn build_argv_mtls(target: &str) -> Vec<String> {
    let mut v = build_argv(target);
    v.extend(["--features".to_string(), "mtls".to_string()]);
    v
}

/// The C cross compiler the `mtls` build needs for `target` (the cc crate's `CC_<target>`
/// variable and Debian's compiler for it: musl-tools' `musl-gcc`, gcc-aarch64-linux-gnu's).
pub fn cross_cc(target: &str) -> Option<(String, &'static str)> {
    let compiler = match target {
        "x86_64-unknown-linux-musl" => "musl-gcc",
        "aarch64-unknown-linux-musl" => "aarch64-linux-gnu-gcc",
        _ => return None,
    };
    Some((format!("CC_{}", target.replace('-', "_")), compiler))
}

/// Where cargo leaves the binary, given the checkout and an optional CARGO_TARGET_DIR.
pub fn built_binary(source: &Path, cargo_target_dir: Option<&Path>, target: &str) -> PathBuf {
    let base = cargo_target_dir.map(Path::to_path_buf).unwrap_or_else(|| source.join("target"));
    let base = if base.is_relative() { source.join(base) } else { base };
    base.join(target).join("release/sysmon-collector")
}

/// A sysmonvm source checkout: a directory holding the collector crate.
pub fn is_source(dir: &Path) -> bool {
    dir.join("collector/Cargo.toml").is_file() && dir.join("Cargo.toml").is_file()
}

/// The checkout to build from: `--source`, else SYSMONVM_SOURCE, else the checkout this binary
/// was built from (when it still exists: `cargo install --path .` and `cargo run`), else the
/// current directory or one of its parents. None for an installed binary with no checkout.
pub fn find_source(flag: Option<&Path>) -> Option<PathBuf> {
    let env = std::env::var_os("SYSMONVM_SOURCE").filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = flag.map(Path::to_path_buf).or(env) {
        return Some(dir);
    }
    let built_from = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if is_source(&built_from) {
        return Some(built_from);
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().find(|d| is_source(d)).map(Path::to_path_buf)
}

/// What goes into the guest's config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigInput {
    /// `ADDRESS:PORT` of the HTTP endpoint in the guest (`http_listen_addr`).
    pub listen: String,
    /// `ADDRESS:PORT` of the gRPC checker endpoint (`listen_addr`, ServiceRadar's meaning).
    pub grpc_listen: String,
    /// `security.mode: mtls` with the files of [`CERT_FILES`] in [`CERT_DIR`].
    pub mtls: bool,
    pub interval: String,
    pub vm_id: String,
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every push (validate's per-run token); only with `otlp_endpoint`.
    pub otlp_headers: BTreeMap<String, String>,
    pub cgroups: Vec<String>,
}

/// The JSON written to [`CONFIG`]; the collector's own parser reads it back in the tests.
pub fn config_json(c: &ConfigInput) -> String {
    // ServiceRadar's keys first (listen_addr is its gRPC checker address), then ours.
    let security = if c.mtls {
        serde_json::json!({
            "mode": "mtls",
            "role": "checker",
            "cert_dir": CERT_DIR,
            "tls": {"cert_file": CERT_FILES[1], "key_file": CERT_FILES[2], "ca_file": CERT_FILES[0], "client_ca_file": CERT_FILES[0]},
        })
    } else {
        serde_json::json!({"mode": "none"})
    };
    let mut v = serde_json::json!({
        "listen_addr": c.grpc_listen,
        "sample_interval": c.interval,
        "security": security,
        "http_listen_addr": c.listen,
        "perf": true,
        "cgroups": c.cgroups,
    });
    if let Some(endpoint) = &c.otlp_endpoint {
        v["otlp"] = serde_json::json!({
            "endpoint": endpoint,
            "service_name": "sysmon-collector",
            "vm_id": c.vm_id,
        });
        if !c.otlp_headers.is_empty() {
            v["otlp"]["headers"] = serde_json::json!(c.otlp_headers);
        }
    }
    serde_json::to_string_pretty(&v).expect("a JSON value serialises") + "\n"
}

/// The guest's own address from `ip -4 route get 1.1.1.1; echo ---; ip -4 -o addr show scope
/// global` output: the source address of the default route, else the first global address
/// that is not a container bridge.
pub fn parse_guest_address(output: &str) -> Option<String> {
    let (route, addrs) = output.split_once("---").unwrap_or(("", output));
    let mut words = route.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src"
            && let Some(a) = words.next().filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        {
            return Some(a.to_string());
        }
    }
    addrs.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let iface = f.nth(1)?;
        if ["podman", "docker", "cni", "veth", "virbr", "br-"].iter().any(|p| iface.starts_with(p)) {
            return None;
        }
        let inet = f.position(|w| w == "inet").and(l.split_whitespace().skip_while(|w| *w != "inet").nth(1))?;
        let a = inet.split('/').next()?;
        a.parse::<std::net::Ipv4Addr>().is_ok().then(|| a.to_string())
    })
}

/// The shell command whose output [`parse_guest_address`] reads.
pub const ADDRESS_PROBE: &str = "ip -4 route get 1.1.1.1 2>/dev/null; echo ---; ip -4 -o addr show scope global";

/// The status probe: the unit's state, the installed binary's sha256 and version, as KEY=VALUE
/// lines for [`parse_properties`]; in a container mode, the binary the image was built from, the
/// running container's version and its image's content label (`image_content_sha256`).
pub fn status_probe(
    mode: super::collector_mode::CollectorMode,
    ssh_user_is_root: bool,
) -> Result<crate::guest::command::GuestCommand, crate::templates::TemplateError> {
    let mut context = serde_json::to_value(Names { container: mode.is_container(), ..names("") })
        .expect("the template's names serialise");
    context["label"] = super::collector_image::CONTENT_LABEL.into();
    // Docker and the stage directory are root's: through sudo unless the SSH user is root.
    context["sudo"] = if ssh_user_is_root { "" } else { "sudo -n " }.into();
    let script = crate::templates::render("collector-status.sh.j2", &context)?;
    Ok(crate::guest::command::GuestCommand::script(script))
}

/// The install plan's first step: the guest still has the address the config listens on.
pub const ADDRESS_STEP: &str = "address";

/// What the install plan is built from.
#[derive(Debug, Clone)]
pub struct InstallInputs {
    pub binary: Vec<u8>,
    /// The config file, verbatim.
    pub config_text: String,
    /// The guest's IPv4 address the config listens on (probed, or recorded by an earlier run:
    /// the plan's first step checks the guest still has it).
    pub address: std::net::Ipv4Addr,
    pub listen: String,
    pub certs: Option<Certs>,
    /// The host checks `/healthz` through its forward after the run, so an unchanged run need not
    /// ask from inside the guest too (under TCG a curl is a tenth of a second).
    pub health_via_forward: bool,
    /// How the collector runs: natively, or as a container of the image (then `config_text` is
    /// the image's config, listening on every address of the container).
    pub mode: super::collector_mode::CollectorMode,
    /// The gRPC port the container publishes (container modes).
    pub grpc_port: u16,
}

#[derive(Serialize)]
struct Names<'a> {
    user: &'a str,
    binary: &'a str,
    config: &'a str,
    config_dir: &'a str,
    tmpfiles: &'a str,
    unit: &'a str,
    stage: &'a str,
    listen: &'a str,
    wait_seconds: u32,
    certs: bool,
    cert_dir: &'a str,
    address: String,
    health_via_forward: bool,
    /// A container mode: the image steps and the container unit instead of the native files.
    container: bool,
    container_name: &'a str,
    /// The image steps' values (container modes only).
    #[serde(flatten)]
    image: Option<super::collector_image::ImageContext>,
}

fn names(listen: &str) -> Names<'_> {
    Names {
        user: USER,
        binary: BINARY,
        config: CONFIG,
        config_dir: CONFIG_DIR,
        tmpfiles: TMPFILES,
        unit: UNIT,
        stage: STAGE_DIR,
        listen,
        wait_seconds: WAIT_SECONDS,
        certs: false,
        cert_dir: CERT_DIR,
        address: String::new(),
        health_via_forward: false,
        container: false,
        container_name: super::collector_mode::CONTAINER,
        image: None,
    }
}

/// ServiceRadar's mTLS files for the guest, read from `--certs DIR` ([`CERT_FILES`] order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certs {
    pub root: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// The install plan and the files it installs from the stage directory: the binary, the config
/// (verbatim when `config_text` is given), the unit and the tmpfiles rule; and ServiceRadar's
/// certificates when given.
pub fn install(inputs: InstallInputs) -> Result<(Plan, Vec<Upload>), PlanError> {
    let InstallInputs { binary, config_text, address, listen, certs, health_via_forward, mode, grpc_port } = inputs;
    let mut n = names(&listen);
    n.certs = certs.is_some();
    n.address = address.to_string();
    n.health_via_forward = health_via_forward;
    if mode.is_container() {
        if certs.is_some() {
            return Err(PlanError::Input(format!(
                "--certs is for the native service; mode {} runs the image, whose config has no mTLS",
                mode.as_str()
            )));
        }
        return install_container(n, mode, binary, config_text, grpc_port);
    }
    let plan = super::steps::from_template("collector-install", "collector-install.steps.j2", &n)?;
    let unit = crate::templates::render("serviceradar-sysmon-vm.service.j2", &n)?;
    let tmpfiles = crate::templates::render("sysmon-vm.tmpfiles.j2", &n)?;
    // Each file with the path its step installs it at (the template's `sysmonvm_same` pairs).
    let up = |name: &str, bytes: Vec<u8>, mode, installed: String| Upload {
        path: format!("{STAGE_DIR}/{name}"),
        bytes,
        mode,
        installed: Some(installed),
    };
    let mut uploads = vec![
        up("sysmon-collector", binary, 0o755, BINARY.into()),
        up("sysmon-vm.json", config_text.into_bytes(), 0o640, CONFIG.into()),
        up(UNIT, unit.into_bytes(), 0o644, format!("/etc/systemd/system/{UNIT}")),
        up("sysmon-vm.tmpfiles", tmpfiles.into_bytes(), 0o644, TMPFILES.into()),
    ];
    if let Some(c) = certs {
        let [root, cert, key] = CERT_FILES.map(|f| format!("{CERT_DIR}/{f}"));
        uploads.push(up("cert-root.pem", c.root, 0o644, root));
        uploads.push(up("cert-checkers.pem", c.cert, 0o644, cert));
        uploads.push(up("cert-checkers-key.pem", c.key, 0o600, key));
    }
    Ok((plan, uploads))
}

/// The install plan of a container mode: the image steps, the container unit, enable, restart,
/// answers; the files are the image's and the unit.
fn install_container(
    mut n: Names<'_>,
    mode: super::collector_mode::CollectorMode,
    binary: Vec<u8>,
    config_text: String,
    grpc_port: u16,
) -> Result<(Plan, Vec<Upload>), PlanError> {
    use super::collector_image::{self, IMAGE, IMAGE_CONFIG, ImageInputs};
    let (mut uploads, image) = collector_image::files(ImageInputs { binary, config_text })?;
    n.container = true;
    n.image = Some(image);
    let plan = super::steps::from_template("collector-install", "collector-install.steps.j2", &n)?;
    let args = mode.docker_run_args(IMAGE, n.listen, grpc_port, IMAGE_CONFIG);
    // systemd splits ExecStart at white space; every argument is a fixed word or an address.
    if let Some(bad) =
        args.iter().find(|a| a.is_empty() || a.chars().any(|c| c.is_whitespace() || c == '"' || c == '\''))
    {
        return Err(PlanError::Input(format!("a docker argument systemd would split: {bad:?}")));
    }
    let unit = crate::templates::render(
        "serviceradar-sysmon-vm.container.service.j2",
        &serde_json::json!({"mode": mode.as_str(), "container": super::collector_mode::CONTAINER, "docker_args": args.join(" ")}),
    )?;
    uploads.push(Upload {
        path: format!("{STAGE_DIR}/{UNIT}"),
        bytes: unit.into_bytes(),
        mode: 0o644,
        installed: Some(format!("/etc/systemd/system/{UNIT}")),
    });
    Ok((plan, uploads))
}

pub fn uninstall() -> Result<Plan, PlanError> {
    super::steps::from_template("collector-uninstall", "collector-uninstall.steps.j2", &names(""))
}

/// The HTTP listen address for a profile given the guest's address.
pub fn listen(profile: &Profile, guest_address: &str) -> String {
    format!("{guest_address}:{}", profile.collector.port)
}

/// The HTTP listen address inside a container: every address of the container on the profile's
/// port (the unit publishes it on the guest's address).
pub fn container_listen(profile: &Profile) -> String {
    format!("0.0.0.0:{}", profile.collector.port)
}

/// The gRPC checker address: every address of the guest on the profile's gRPC port, as
/// ServiceRadar's own config has it (only the host's 127.0.0.1 forward reaches it).
pub fn grpc_listen(profile: &Profile) -> String {
    format!("0.0.0.0:{}", profile.collector.grpc_port)
}

/// The check entry ServiceRadar's agent needs in its checkers config to poll this collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub details: String,
}

pub fn check_entry(host_port: u16) -> CheckEntry {
    CheckEntry { name: "sysmon-vm".into(), kind: "grpc".into(), details: format!("127.0.0.1:{host_port}") }
}

/// `KEY=VALUE` lines (`systemctl show` and the status probe); later keys win, junk is ignored.
pub fn parse_properties(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_build_paths() {
        assert_eq!(target(Arch::Aarch64), "aarch64-unknown-linux-musl");
        for arch in [Arch::Aarch64, Arch::X86_64] {
            assert_eq!(arch_of_target(target(arch)), Some(arch));
        }
        assert_eq!(arch_of_target("x86_64-unknown-linux-gnu"), None);
        assert_eq!(
            build_argv("x86_64-unknown-linux-musl").join(" "),
            "cargo build --release --locked --package sysmon-collector --target x86_64-unknown-linux-musl"
        );
        let src = Path::new("/src");
        assert_eq!(built_binary(src, None, "t"), Path::new("/src/target/t/release/sysmon-collector"));
        assert_eq!(built_binary(src, Some(Path::new("out")), "t"), Path::new("/src/out/t/release/sysmon-collector"));
        assert!(is_source(Path::new(env!("CARGO_MANIFEST_DIR"))));
    }

    #[test]
    fn the_config_is_what_the_collector_parses() {
        let mut c = ConfigInput {
            listen: "10.0.2.15:9105".into(),
            interval: "1s".into(),
            vm_id: "lab".into(),
            ..Default::default()
        };
        c.grpc_listen = "0.0.0.0:50110".into();
        let path = Path::new("sysmon-vm.json");
        let parsed = sysmon_collector::config::parse(path, &config_json(&c)).unwrap();
        assert_eq!(parsed.listen_addr.as_deref(), Some("0.0.0.0:50110"));
        assert_eq!(parsed.http_listen_addr.as_deref(), Some("10.0.2.15:9105"));
        let e = parsed.endpoints(path).unwrap();
        assert_eq!((e.http.as_deref(), e.grpc.as_deref()), (Some("10.0.2.15:9105"), Some("0.0.0.0:50110")));
        assert_eq!(e.security, sysmon_collector::config::GrpcSecurity::None);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        assert!(parsed.otlp.is_none());
        let mtls =
            sysmon_collector::config::parse(path, &config_json(&ConfigInput { mtls: true, ..c.clone() })).unwrap();
        let sysmon_collector::config::GrpcSecurity::Mtls(files) = mtls.endpoints(path).unwrap().security else {
            panic!("mtls")
        };
        assert_eq!(files.key, Path::new("/etc/serviceradar/certs/checkers-key.pem"));
        assert_eq!(files.client_ca, Path::new("/etc/serviceradar/certs/root.pem"));
        c.otlp_endpoint = Some("http://10.0.2.2:4318".into());
        c.cgroups = vec!["system.slice/validate-load.scope".into()];
        let parsed = sysmon_collector::config::parse(Path::new("sysmon-vm.json"), &config_json(&c)).unwrap();
        let otlp = parsed.otlp.unwrap();
        assert_eq!((otlp.endpoint.as_deref(), otlp.vm_id.as_deref()), (Some("http://10.0.2.2:4318"), Some("lab")));
        assert_eq!(parsed.cgroups.unwrap(), ["system.slice/validate-load.scope"]);
        assert_eq!(otlp.headers, None);
        c.otlp_headers = BTreeMap::from([("Authorization".into(), "Bearer 00ff".into())]);
        let parsed = sysmon_collector::config::parse(Path::new("sysmon-vm.json"), &config_json(&c)).unwrap();
        assert_eq!(parsed.otlp.unwrap().headers, Some(c.otlp_headers.clone()));
    }

    #[test]
    fn guest_address_from_real_ip_output() {
        let with_route = "1.1.1.1 via 10.0.2.2 dev ens3 src 10.0.2.15 uid 1000 \n    cache \n---\n2: ens3    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic ens3\\       valid_lft 86000sec preferred_lft 86000sec\n";
        assert_eq!(parse_guest_address(with_route).as_deref(), Some("10.0.2.15"));
        let no_route = "---\n3: podman0    inet 10.88.0.1/16 brd 10.88.255.255 scope global podman0\\  valid_lft forever\n2: ens3    inet 10.0.2.15/24 brd 10.0.2.255 scope global ens3\\  valid_lft forever\n";
        assert_eq!(parse_guest_address(no_route).as_deref(), Some("10.0.2.15"));
        for junk in ["", "---", "src", "x src notanip\n---\n2: eth0 inet", "\u{0}\u{ffff}---inet inet inet"] {
            assert_eq!(parse_guest_address(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn systemctl_show_output() {
        let kv = parse_properties(
            "ActiveState=active\nSubState=running\nNRestarts=0\nExecMainStartTimestamp=Tue 2026-11-24 18:00:00 UTC\ngarbage\n=x\nsha256=\n",
        );
        assert_eq!(kv["ActiveState"], "active");
        assert_eq!(kv["ExecMainStartTimestamp"], "Tue 2026-11-24 18:00:00 UTC");
        assert_eq!(kv["sha256"], "");
        assert_eq!(kv.len(), 5);
    }

    #[test]
    fn install_plan_unit_and_uninstall() {
        let certs = Certs { root: b"CA".to_vec(), cert: b"C".to_vec(), key: b"K".to_vec() };
        let inputs = |certs, health_via_forward| InstallInputs {
            binary: b"ELF".to_vec(),
            config_text: "{}".into(),
            address: std::net::Ipv4Addr::new(10, 0, 2, 15),
            listen: "10.0.2.15:9105".into(),
            certs,
            health_via_forward,
            mode: Default::default(),
            grpc_port: 50110,
        };
        let certs_again = || certs.clone();
        let (plan, uploads) = install(inputs(Some(certs.clone()), false)).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[..5], [ADDRESS_STEP, "user", "binary", "certificates", "config"]);
        assert!(plan.step(ADDRESS_STEP).unwrap().check.as_deref().unwrap().contains("' inet 10.0.2.15/'"));
        assert!(plan.step("answers").unwrap().check.as_deref().unwrap().contains("curl"), "no forward: the guest asks");
        assert!(plan.step("certificates").unwrap().run.contains("-m 0640 -o root -g sysmon-vm"));
        let key = uploads.iter().find(|u| u.path.ends_with("cert-checkers-key.pem")).unwrap();
        assert_eq!((key.mode, key.bytes.as_slice()), (0o600, &b"K"[..]));
        assert_eq!(
            check_entry(50110),
            CheckEntry { name: "sysmon-vm".into(), kind: "grpc".into(), details: "127.0.0.1:50110".into() }
        );
        assert_eq!(
            serde_json::to_string(&check_entry(1)).unwrap(),
            r#"{"name":"sysmon-vm","type":"grpc","details":"127.0.0.1:1"}"#
        );
        let (plan, uploads) = install(inputs(None, true)).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                ADDRESS_STEP,
                "user",
                "binary",
                "config",
                "cpufreq-read-access",
                "unit",
                "no-container",
                "enable",
                "restart",
                "answers"
            ]
        );
        assert!(plan.step("answers").unwrap().run.contains("http://10.0.2.15:9105/healthz"));
        let unit = String::from_utf8(uploads.iter().find(|u| u.path.ends_with(UNIT)).unwrap().bytes.clone()).unwrap();
        // The enable check reads the link `systemctl enable` makes for the unit's WantedBy.
        let wanted_by = unit.lines().find_map(|l| l.strip_prefix("WantedBy=")).unwrap();
        let enable = plan.step("enable").unwrap().check.clone().unwrap();
        assert!(enable.contains(&format!("/etc/systemd/system/{wanted_by}.wants/{UNIT}")), "{enable}");
        let answered = plan.step("answers").unwrap().check.clone().unwrap();
        assert!(!answered.contains("curl"), "the host asks through the forward: {answered}");
        assert!(unit.contains("User=sysmon-vm\n") && unit.contains("AmbientCapabilities=CAP_PERFMON\n"));
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/sysmon-collector --config /etc/serviceradar/checkers/sysmon-vm.json serve\n"
        ));
        assert!(unit.contains("Restart=on-failure\n"));
        assert!(plan.script("0123456789abcdef").is_ok());
        // Native removes a container an earlier mode left, after its own unit is in place.
        let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[names.len() - 4..], ["no-container", "enable", "restart", "answers"]);

        // A container mode: the image's steps and files and the container unit, no native files.
        use super::super::collector_mode::CollectorMode;
        let sys_ro = InstallInputs { mode: CollectorMode::ContainerSysRo, ..inputs(None, true) };
        let (plan, uploads) = install(sys_ro).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [ADDRESS_STEP, "docker", "image", "unit", "enable", "restart", "answers"]);
        let unit = String::from_utf8(uploads.iter().find(|u| u.path.ends_with(UNIT)).unwrap().bytes.clone()).unwrap();
        assert!(unit.contains("Requires=docker.service\n"), "{unit}");
        assert!(
            unit.contains("ExecStart=/usr/bin/docker run --rm --name sysmon-collector --publish 10.0.2.15:9105:9105 --publish 50110:50110 --volume /sys/devices/system/cpu:/sys/devices/system/cpu:ro"),
            "{unit}"
        );
        assert!(unit.contains("sysmon-collector:latest --config /etc/serviceradar/checkers/sysmon-vm.json serve --cgroupfs /host/sys/fs/cgroup --host-procfs /host/proc\n"), "{unit}");
        assert!(uploads.iter().any(|u| u.path.ends_with("sysmon-collector.Containerfile")));
        assert!(!uploads.iter().any(|u| u.path.ends_with("sysmon-vm.tmpfiles")));
        assert!(plan.script("0123456789abcdef").is_ok());
        let with_certs = InstallInputs { mode: CollectorMode::Container, ..inputs(Some(certs_again()), true) };
        assert!(install(with_certs).unwrap_err().to_string().contains("--certs is for the native service"));
        let u = uninstall().unwrap();
        assert_eq!(u.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["stop", "files", "user"]);
    }
}
