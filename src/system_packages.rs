//! The one list of system packages (Debian/Ubuntu names) this project uses on a Linux host, and
//! the pure plan that installs the missing ones. `cargo xtask deps`, `.ci/run` (through it),
//! `sysmonvm doctor --fix` and the tests' "not installed" messages all read this table, and the
//! README quotes it.
//!
//! Why QEMU comes from bookworm-backports on Debian 12: the image this project is developed on ships
//! `qemu-utils` 10.0 from backports, which `Breaks: qemu-system-common (<< 1:8.0)`, so bookworm's
//! QEMU 7.2 cannot be installed beside it. QEMU 10.0 is also what Homebrew ships on the Macs we
//! target. Only the QEMU packages are taken from backports (`-t bookworm-backports` on their own
//! `apt-get install`): taking everything from there would pull a new systemd.
//!
//! This module depends on nothing but `std`, `libc` and `thiserror`, so the collector crate's tests can
//! include it by path and name the package that brings a missing tool; its tests live in
//! `tests/system_packages.rs` so they run once.

/// Why a package is on the list; `deps --role` and `doctor --fix` pick by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `sysmonvm` itself on a Linux host: QEMU, firmware, the OpenSSH client.
    Vm,
    /// `cargo xtask guest-image`: builds the Debian test guests from Debian packages.
    GuestImage,
    /// `cargo test --workspace` and the rest of `.ci/run`: real peers and readers.
    Test,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Vm, Role::GuestImage, Role::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Vm => "vm",
            Role::GuestImage => "guest-image",
            Role::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Which guest architecture a package is for, when it is only for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForGuest {
    Any,
    X86_64,
    Aarch64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPackage {
    /// The Debian (and Ubuntu) package name.
    pub name: &'static str,
    /// On Debian 12 this package comes from bookworm-backports (see the module comment).
    pub backports_on_bookworm: bool,
    /// The commands (or, where the package ships no command, the file) that show it is installed.
    pub provides: &'static [&'static str],
    pub roles: &'static [Role],
    pub for_guest: ForGuest,
    /// What it is used for, in a few words (quoted by `deps --check` and in the README).
    pub why: &'static str,
}

const fn pkg(
    name: &'static str,
    provides: &'static [&'static str],
    roles: &'static [Role],
    why: &'static str,
) -> SystemPackage {
    SystemPackage { name, backports_on_bookworm: false, provides, roles, for_guest: ForGuest::Any, why }
}

const fn qemu(
    name: &'static str,
    provides: &'static [&'static str],
    roles: &'static [Role],
    for_guest: ForGuest,
    why: &'static str,
) -> SystemPackage {
    SystemPackage { name, backports_on_bookworm: true, provides, roles, for_guest, why }
}

use Role::{GuestImage, Test, Vm};

/// Every system package, once. `provides` entries that start with `/` are files, the rest commands.
pub const PACKAGES: &[SystemPackage] = &[
    qemu("qemu-system-x86", &["qemu-system-x86_64"], &[Vm, Test], ForGuest::X86_64, "runs x86_64 guests"),
    qemu("qemu-system-arm", &["qemu-system-aarch64"], &[Vm, Test], ForGuest::Aarch64, "runs aarch64 guests"),
    qemu("qemu-utils", &["qemu-img"], &[Vm, GuestImage, Test], ForGuest::Any, "overlay disks (qemu-img)"),
    qemu(
        "qemu-user-static",
        &["qemu-aarch64-static"],
        &[GuestImage, Test],
        ForGuest::Any,
        "runs arm64 maintainer scripts and the aarch64 collector build",
    ),
    SystemPackage {
        for_guest: ForGuest::X86_64,
        ..pkg("ovmf", &["/usr/share/OVMF/OVMF_CODE_4M.fd"], &[Vm, Test], "UEFI firmware for x86_64 guests")
    },
    SystemPackage {
        for_guest: ForGuest::Aarch64,
        ..pkg(
            "qemu-efi-aarch64",
            &["/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"],
            &[Vm, Test],
            "UEFI firmware (AAVMF) for aarch64 guests",
        )
    },
    pkg("openssh-client", &["ssh"], &[Vm, Test], "`vm ssh` and the ssh baseline of the benchmarks"),
    pkg("openssh-server", &["/usr/sbin/sshd"], &[Test], "a real sshd on 127.0.0.1 for the SSH client tests"),
    pkg("ca-certificates", &["/etc/ssl/certs/ca-certificates.crt"], &[Vm, Test], "https image downloads"),
    pkg("openssl", &["openssl"], &[Test], "the CA and certificate of the https download tests"),
    pkg("curl", &["curl"], &[Test], "the fetch benchmark's peer and the e2e's scrapes"),
    pkg("gnupg", &["gpg"], &[GuestImage, Test], "keys and signatures for the image tests and the test guest"),
    pkg("xorriso", &["xorriso"], &[Test], "reads the seed ISO back"),
    pkg("genisoimage", &["isoinfo"], &[Test], "reads the seed ISO back (isoinfo)"),
    pkg(
        "util-linux",
        &["blkid", "flock"],
        &[Test],
        "reads the seed ISO's label (blkid); holds a lock from another process (flock)",
    ),
    pkg("cloud-init", &["cloud-init"], &[Test], "`cloud-init schema` checks the seed documents"),
    pkg(
        "prometheus",
        &["promtool", "prometheus"],
        &[Test],
        "promtool checks and a real Prometheus scraping the collector",
    ),
    pkg("prometheus-node-exporter", &["prometheus-node-exporter"], &[Test], "the collector benchmark's peer"),
    pkg("stress-ng", &["stress-ng"], &[Test], "load beside the test suite in .ci/run"),
    pkg("python3", &["python3"], &[Test], "scripted peers and report checks"),
    pkg(
        "python3-venv",
        &["/usr/share/doc/python3-venv/copyright"],
        &[Test],
        "the venv `deps --install` puts PyPI's grpcio and grpcio-tools in (target/grpc-venv): the gRPC tests' client",
    ),
    pkg(
        "musl-tools",
        &["musl-gcc"],
        &[Test],
        "C compiler for ring in the x86_64 musl collector built with feature mtls",
    ),
    pkg(
        "gcc-aarch64-linux-gnu",
        &["aarch64-linux-gnu-gcc"],
        &[Test],
        "C cross compiler for ring in the aarch64 musl collector built with feature mtls",
    ),
    pkg(
        "libc6-dev-arm64-cross",
        &["/usr/aarch64-linux-gnu/include/stdio.h"],
        &[Test],
        "C headers for that aarch64 cross compiler",
    ),
    pkg("file", &["file"], &[Test], "shows the cross-built collector's format in .ci/run"),
    pkg("ruby", &["ruby"], &[Test], "syntax check of the Homebrew formula"),
    pkg("mmdebstrap", &["mmdebstrap"], &[GuestImage], "builds the Debian test guests' root filesystems"),
    pkg("arch-test", &["arch-test"], &[GuestImage], "mmdebstrap checks that arm64 binaries can run"),
    pkg("eatmydata", &["eatmydata"], &[GuestImage], "skips fsync while the guest image is built"),
    pkg("e2fsprogs", &["mkfs.ext4"], &[GuestImage], "the guest's root filesystem"),
    pkg("dosfstools", &["mkfs.vfat"], &[GuestImage], "the guest's EFI system partition"),
    pkg("mtools", &["mcopy"], &[GuestImage], "fills the EFI system partition without a mount"),
    pkg("gdisk", &["sgdisk"], &[GuestImage], "the guest's GPT"),
    pkg(
        "systemd-boot-efi",
        &["/usr/lib/systemd/boot/efi/systemd-bootx64.efi"],
        &[GuestImage],
        "the test guest's boot loader",
    ),
];

/// The package that brings `tool` (a command name or a file path), for "not installed" messages.
pub fn package_for(tool: &str) -> Option<&'static SystemPackage> {
    PACKAGES.iter().find(|p| p.provides.contains(&tool))
}

/// "`tool` is not installed (Debian package P: apt-get install P)", or without a package name
/// when the tool is not on the list.
pub fn missing_tool_message(tool: &str) -> String {
    match package_for(tool) {
        Some(p) => format!("{tool} is not installed (Debian package {}: {})", p.name, install_hint(&[p])),
        None => format!("{tool} is not installed"),
    }
}

/// The packages with any of `roles`, for guests of `guest` (`None`: every guest architecture).
pub fn selected(roles: &[Role], guest: Option<ForGuest>) -> Vec<&'static SystemPackage> {
    PACKAGES
        .iter()
        .filter(|p| p.roles.iter().any(|r| roles.contains(r)))
        .filter(|p| match guest {
            None | Some(ForGuest::Any) => true,
            Some(g) => p.for_guest == ForGuest::Any || p.for_guest == g,
        })
        .collect()
}

/// The parts of /etc/os-release the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsRelease {
    pub id: String,
    pub id_like: String,
    pub version_codename: String,
}

impl OsRelease {
    /// Parses os-release text (`KEY=value`, values optionally quoted).
    pub fn parse(text: &str) -> OsRelease {
        let mut r = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" => r.id = v,
                "ID_LIKE" => r.id_like = v,
                "VERSION_CODENAME" => r.version_codename = v,
                _ => {}
            }
        }
        r
    }

    pub fn read() -> OsRelease {
        std::fs::read_to_string("/etc/os-release").map(|t| OsRelease::parse(&t)).unwrap_or_default()
    }

    /// Debian or a derivative (Ubuntu): apt and these package names apply.
    pub fn is_debian_like(&self) -> bool {
        self.id == "debian" || self.id_like.split_whitespace().any(|w| w == "debian")
    }

    /// Debian 12, where QEMU comes from backports.
    pub fn is_bookworm(&self) -> bool {
        self.id == "debian" && self.version_codename == "bookworm"
    }
}

/// The apt source that `install_plan` adds on Debian 12 when no bookworm-backports source exists.
pub const BACKPORTS_SOURCE_FILE: &str = "/etc/apt/sources.list.d/sysmonvm-bookworm-backports.sources";
pub const BACKPORTS_SOURCE: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// One effect of an install plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallAction {
    /// Write an apt source file (only when no bookworm-backports source is configured).
    WriteFile { path: &'static str, contents: &'static str },
    /// Run a command (argv, program first).
    Run(Vec<String>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "installing system packages is automated only on Debian and Ubuntu (this host's /etc/os-release says ID={0:?}); install these by hand: {1}"
    )]
    NotDebian(String, String),
}

/// The plan that installs `missing` on this host: apt-get update, then the QEMU packages from
/// bookworm-backports on Debian 12 (adding that source when `has_backports_source` is false), then
/// the rest from the release's own suites. Pure: the caller runs it.
pub fn install_plan(
    os: &OsRelease,
    has_backports_source: bool,
    missing: &[&SystemPackage],
) -> Result<Vec<InstallAction>, PlanError> {
    if missing.is_empty() {
        return Ok(vec![]);
    }
    if !os.is_debian_like() {
        let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
        return Err(PlanError::NotDebian(os.id.clone(), names.join(" ")));
    }
    let bookworm = os.is_bookworm();
    let (from_backports, from_release): (Vec<&&SystemPackage>, Vec<&&SystemPackage>) =
        missing.iter().partition(|p| bookworm && p.backports_on_bookworm);
    let mut plan = Vec::new();
    if !from_backports.is_empty() && !has_backports_source {
        plan.push(InstallAction::WriteFile { path: BACKPORTS_SOURCE_FILE, contents: BACKPORTS_SOURCE });
    }
    plan.push(InstallAction::Run(argv(&["apt-get", "update", "-qq"])));
    let install = |extra: &[&str], pkgs: &[&&SystemPackage]| {
        let mut a = argv(&["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(pkgs.iter().map(|p| p.name.to_string()));
        InstallAction::Run(a)
    };
    if !from_backports.is_empty() {
        plan.push(install(&["-t", "bookworm-backports"], &from_backports));
    }
    if !from_release.is_empty() {
        plan.push(install(&[], &from_release));
    }
    Ok(plan)
}

/// The one-line command a person would type for `pkgs` on Debian 12 (the README's form).
pub fn install_hint(pkgs: &[&SystemPackage]) -> String {
    let (bp, rest): (Vec<&&SystemPackage>, Vec<&&SystemPackage>) = pkgs.iter().partition(|p| p.backports_on_bookworm);
    let names = |v: &[&&SystemPackage]| v.iter().map(|p| p.name).collect::<Vec<_>>().join(" ");
    match (bp.is_empty(), rest.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("apt-get install {}", names(&rest)),
        (false, true) => format!("apt-get install -t bookworm-backports {}", names(&bp)),
        (false, false) => {
            format!("apt-get install -t bookworm-backports {} && apt-get install {}", names(&bp), names(&rest))
        }
    }
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Whether `entry` of `provides` is present: a file that exists, or a command on `path_var`.
pub fn provided(entry: &str, path_var: &str) -> bool {
    if entry.starts_with('/') {
        return std::path::Path::new(entry).exists();
    }
    std::env::split_paths(path_var).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d| d.join(entry).is_file())
}

/// Whether a package looks installed on this host: every entry it provides is present.
pub fn looks_installed(p: &SystemPackage) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    p.provides.iter().all(|e| provided(e, &path))
}

/// Whether apt already has a bookworm-backports source (any file under /etc/apt naming the suite).
pub fn has_backports_source() -> bool {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).any(|t| {
        t.lines().any(|l| !l.trim_start().starts_with('#') && l.split_whitespace().any(|w| w == "bookworm-backports"))
    })
}

/// The packages of `wanted` that do not look installed.
pub fn missing(wanted: &[&'static SystemPackage]) -> Vec<&'static SystemPackage> {
    wanted.iter().copied().filter(|p| !looks_installed(p)).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot write {path}")]
    Write {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: std::process::ExitStatus },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("installing system packages needs root; run as root:\n  {0}")]
    NeedsRoot(String),
    #[error("apt-get finished but these are still missing: {0}")]
    StillMissing(String),
}

fn names(pkgs: &[&SystemPackage]) -> String {
    pkgs.iter().map(|p| p.name).collect::<Vec<_>>().join(" ")
}

/// Installs the packages of `wanted` that are missing (as root, by [`install_plan`]) and checks
/// they are there afterwards. Returns what it installed (empty: nothing was missing). Not root:
/// [`InstallError::NeedsRoot`] with the commands to run. Used by `cargo xtask deps --install`,
/// `cargo xtask demo` and `sysmonvm doctor --fix`.
pub fn install_missing(wanted: &[&'static SystemPackage]) -> Result<Vec<&'static SystemPackage>, InstallError> {
    let missing = missing(wanted);
    if missing.is_empty() {
        return Ok(missing);
    }
    let plan = install_plan(&OsRelease::read(), has_backports_source(), &missing)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(InstallError::NeedsRoot(plan_as_shell(&plan)));
    }
    run_plan(&plan)?;
    let still = self::missing(wanted);
    if !still.is_empty() {
        return Err(InstallError::StillMissing(names(&still)));
    }
    Ok(missing)
}

/// Runs an install plan; apt-get's own output goes to this process's stdout and stderr.
pub fn run_plan(plan: &[InstallAction]) -> Result<(), InstallError> {
    for action in plan {
        match action {
            InstallAction::WriteFile { path, contents } => {
                std::fs::write(path, contents).map_err(|source| InstallError::Write { path, source })?
            }
            InstallAction::Run(argv) => {
                let command = argv.join(" ");
                let status = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .map_err(|source| InstallError::Spawn { command: command.clone(), source })?;
                if !status.success() {
                    return Err(InstallError::Failed { command, status });
                }
            }
        }
    }
    Ok(())
}

/// How a plan reads as shell commands, for "run this as root" messages.
pub fn plan_as_shell(plan: &[InstallAction]) -> String {
    plan.iter()
        .map(|a| match a {
            InstallAction::WriteFile { path, contents } => {
                format!("printf '{}' > {path}", contents.replace('\n', "\\n"))
            }
            InstallAction::Run(argv) => argv.join(" "),
        })
        .collect::<Vec<_>>()
        .join(" && ")
}
