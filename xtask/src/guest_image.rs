//! `cargo xtask guest-image [--arch x86_64|aarch64]`: builds the Debian 12 amd64 (or arm64) test guest from Debian packages
//! (guest-image.sh), caches it keyed by the recipe and the package list, signs a CHECKSUM for it
//! with a test OpenPGP key, writes the `debian-12-x86_64` profile into the workspace, and with
//! `--serve` serves image, CHECKSUM and CHECKSUM.asc over 127.0.0.1 — so the e2e goes through the
//! same download + checksum + signature path as AlmaLinux.

use anyhow::{Context, Result, bail};
use sha2::Digest;
use std::io::{BufRead, BufReader, Seek, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const RECIPE: &str = include_str!("../guest-image.sh");
/// What the guest carries: cloud-init, sshd, the guest agent, the frequency tools validate uses as
/// references, stress-ng, and podman for containers (images are made locally, never pulled); the
/// x86_64 guest also Docker (its profile's runtime, see [`GuestArch::container_runtime`]).
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "initramfs-tools",
    "cloud-init",
    "openssh-server",
    "sudo",
    "stress-ng",
    "linux-cpupower",
    "linux-perf",
    "qemu-guest-agent",
    "iproute2",
    "procps",
    "netbase",
    "less",
    "ca-certificates",
    "curl",
    "jq",
    "chrony",
    "podman",
    "busybox-static",
    // The rest of the bootstrap's baseline, so it finds every package installed and needs no network.
    "git",
    "vim",
];

/// The guest architectures the task builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestArch {
    X86_64,
    Aarch64,
}

impl GuestArch {
    pub fn parse(s: &str) -> Result<GuestArch> {
        match s {
            "x86_64" | "amd64" => Ok(GuestArch::X86_64),
            "aarch64" | "arm64" => Ok(GuestArch::Aarch64),
            other => bail!("--arch takes x86_64 or aarch64, not {other:?}"),
        }
    }
    /// Debian's name for it.
    pub fn debian(self) -> &'static str {
        match self {
            GuestArch::X86_64 => "amd64",
            GuestArch::Aarch64 => "arm64",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            GuestArch::X86_64 => "x86_64",
            GuestArch::Aarch64 => "aarch64",
        }
    }
    /// What only this architecture's guest carries: its kernel, and on arm64 the guest's own
    /// systemd-boot (the host's systemd-boot-efi has only the x86_64 loader).
    fn extra_packages(self) -> &'static [&'static str] {
        match self {
            GuestArch::X86_64 => &["linux-image-cloud-amd64", "docker.io", "apparmor"],
            GuestArch::Aarch64 => &["linux-image-arm64", "systemd-boot-efi"],
        }
    }
    /// The profile's `container_runtime`: Docker, as AlmaLinux's profiles have it, on the x86_64
    /// guest, where the e2e runs the container steps; podman on arm64, whose image is built under
    /// qemu-user within CI's 20-minute allowance and whose e2e runs the short path.
    pub fn container_runtime(self) -> &'static str {
        match self {
            GuestArch::X86_64 => "docker",
            GuestArch::Aarch64 => "podman",
        }
    }
    pub fn packages(self) -> Vec<&'static str> {
        let mut p = PACKAGES.to_vec();
        p.extend(self.extra_packages());
        p
    }
    pub fn profile_name(self) -> String {
        format!("debian-12-{}", self.as_str())
    }
    pub fn image_name(self) -> String {
        format!("debian-12-{}.qcow2", self.as_str())
    }
}

/// The x86_64 test guest's profile name (the default of the e2e, the demo and bench-start).
pub const PROFILE_NAME: &str = "debian-12-x86_64";

#[derive(Clone)]
pub struct Built {
    pub arch: GuestArch,
    pub dir: PathBuf,
    pub image: PathBuf,
    pub key_file: PathBuf,
    pub fingerprint: String,
}

fn cache_key(arch: GuestArch) -> String {
    let mut h = sha2::Sha256::new();
    h.update(RECIPE.as_bytes());
    h.update(arch.packages().join(",").as_bytes());
    let key = hex::encode(h.finalize())[..16].to_string();
    match arch {
        GuestArch::X86_64 => key,
        GuestArch::Aarch64 => format!("arm64-{key}"),
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("{cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home).args(["--batch", "--yes", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]);
    c
}

/// Builds (or reuses) the x86_64 image and its signed CHECKSUM in `cache`.
pub fn build(cache: &Path) -> Result<Built> {
    build_arch(cache, GuestArch::X86_64)
}

/// Builds (or reuses) the image of `arch` and its signed CHECKSUM in `cache`.
pub fn build_arch(cache: &Path, arch: GuestArch) -> Result<Built> {
    let dir = cache.join(cache_key(arch));
    std::fs::create_dir_all(&dir)?;
    let image = dir.join("disk.qcow2");
    if !image.exists() {
        let tools: &[&str] = match arch {
            GuestArch::X86_64 => &["mmdebstrap", "mkfs.ext4", "mkfs.vfat", "mcopy", "sgdisk", "qemu-img", "eatmydata"],
            GuestArch::Aarch64 => &[
                "mmdebstrap",
                "arch-test",
                "qemu-aarch64-static",
                "mkfs.ext4",
                "mkfs.vfat",
                "mcopy",
                "sgdisk",
                "qemu-img",
                "eatmydata",
            ],
        };
        let path = std::env::var("PATH").unwrap_or_default();
        let missing: Vec<String> = tools
            .iter()
            .filter(|t| !sysmonvm::system_packages::provided(t, &path))
            .map(|t| sysmonvm::system_packages::missing_tool_message(t))
            .collect();
        if !missing.is_empty() {
            bail!("cannot build the {} test guest:\n  {}", arch.as_str(), missing.join("\n  "));
        }
        let _binfmt = match arch {
            GuestArch::Aarch64 => Some(crate::binfmt::Aarch64Binfmt::ensure()?),
            GuestArch::X86_64 => None,
        };
        let script = dir.join("guest-image.sh");
        std::fs::write(&script, RECIPE)?;
        let start = std::time::Instant::now();
        run(Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("GUEST_PKGS", arch.packages().join(","))
            .env("GUEST_ARCH", arch.debian()))?;
        eprintln!("[guest-image] built in {:.0} s", start.elapsed().as_secs_f64());
    } else {
        eprintln!("[guest-image] cached: {}", image.display());
    }
    // The signing key of the test guest's CHECKSUM (a throwaway, made once per cache).
    let home = cache.join("gnupg");
    if !home.join("pubring.kbx").exists() {
        std::fs::create_dir_all(&home)?;
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        run(gpg(&home).args([
            "--quick-gen-key",
            "sysmonvm test guest <guest@sysmonvm.invalid>",
            "ed25519",
            "sign,cert",
            "never",
        ]))?;
    }
    let out = gpg(&home).args(["--with-colons", "--list-keys"]).output()?;
    let fingerprint = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .context("no key fingerprint")?
        .to_string();
    let key_file = dir.join("guest-signing-key.asc");
    let key = gpg(&home).args(["--armor", "--export", &fingerprint]).output()?;
    std::fs::write(&key_file, key.stdout)?;
    let checksum = dir.join("CHECKSUM");
    if !dir.join("CHECKSUM.asc").exists() || !checksum.exists() {
        let (sha, size) = sysmonvm::image::download::hash_file(&image)?;
        let name = arch.image_name();
        std::fs::write(&checksum, format!("# {name}: {size} bytes\nSHA256 ({name}) = {sha}\n"))?;
        run(gpg(&home)
            .args(["--local-user", &format!("{fingerprint}!"), "--armor", "--detach-sign", "--output"])
            .arg(dir.join("CHECKSUM.asc"))
            .arg(&checksum))?;
    }
    Ok(Built { arch, dir, image, key_file, fingerprint })
}

pub fn profile_yaml(port: u16, b: &Built) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let (description, machine) = match b.arch {
        GuestArch::X86_64 => ("Debian 12 amd64 cloud guest built from Debian packages (tests)", "q35"),
        GuestArch::Aarch64 => ("Debian 12 arm64 cloud guest built from Debian packages (tests)", "virt"),
    };
    [
        "# Written by `cargo xtask guest-image`: the Debian 12 test guest served over 127.0.0.1.".to_string(),
        format!("name: {}", b.arch.profile_name()),
        format!("description: {description}"),
        format!("arch: {}", b.arch.as_str()),
        "accel: auto".into(),
        format!("machine: {machine}"),
        "cpu: host".into(),
        "smp: 2".into(),
        "memory_mib: 2048".into(),
        "disk_gib: 8".into(),
        "firmware: auto".into(),
        "image:".into(),
        format!("  url: {base}/{}", b.arch.image_name()),
        format!("  checksum_url: {base}/CHECKSUM"),
        format!("  signature_url: {base}/CHECKSUM.asc"),
        format!("  key: {}", b.key_file.display()),
        format!("  key_fingerprint: {}", b.fingerprint),
        "ssh:".into(),
        "  user: lab".into(),
        "forwards:".into(),
        "  - guest: 9105".into(),
        "  - guest: 50110".into(),
        "seed: virtio".into(),
        "guest_family: apt".into(),
        format!("container_runtime: {}", b.arch.container_runtime()),
        "collector:".into(),
        "  port: 9105".into(),
        "  interval: 1s".into(),
        "  grpc_port: 50110".into(),
        String::new(),
    ]
    .join("\n")
}

/// Binds 127.0.0.1:`port` (0 = any free port) and writes the profile that points at it into
/// `profiles_dir`. Returns the listener to serve on and the profile's path.
pub fn publish(built: &Built, profiles_dir: &Path, port: u16) -> Result<(TcpListener, PathBuf)> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    std::fs::create_dir_all(profiles_dir)?;
    let profile = profiles_dir.join(format!("{}.yaml", built.arch.profile_name()));
    std::fs::write(&profile, profile_yaml(port, built))?;
    Ok((listener, profile))
}

/// [`publish`], then serve on a background thread for as long as this process lives.
pub fn serve_in_background(built: Built, profiles_dir: &Path) -> Result<()> {
    let (listener, _) = publish(&built, profiles_dir, 0)?;
    std::thread::spawn(move || serve(listener, &built));
    Ok(())
}

/// Serves the image, CHECKSUM and CHECKSUM.asc (with Range) until the process is killed.
pub fn serve(listener: TcpListener, b: &Built) -> Result<()> {
    let files: Vec<(String, PathBuf)> = vec![
        (format!("/{}", b.arch.image_name()), b.image.clone()),
        ("/CHECKSUM".into(), b.dir.join("CHECKSUM")),
        ("/CHECKSUM.asc".into(), b.dir.join("CHECKSUM.asc")),
    ];
    for stream in listener.incoming().flatten() {
        let files = files.clone();
        std::thread::spawn(move || -> Result<()> {
            let mut r = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            r.read_line(&mut line)?;
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut start = 0u64;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h)? == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    start = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                }
            }
            let mut w = stream;
            let Some((_, file)) = files.iter().find(|(p, _)| *p == path) else {
                w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return Ok(());
            };
            let mut f = std::fs::File::open(file)?;
            let len = f.metadata()?.len();
            if start > 0 && start < len {
                write!(
                    w,
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    len - 1,
                    len - start
                )?;
                f.seek(std::io::SeekFrom::Start(start))?;
            } else {
                write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
            }
            std::io::copy(&mut f, &mut w)?;
            Ok(())
        });
    }
    Ok(())
}

pub fn run_task(args: &[String]) -> Result<()> {
    let mut serve_it = false;
    let mut port = 0u16;
    let mut workspace: Option<PathBuf> = None;
    let mut cache = crate::workspace_root().join("target/guest-image");
    let mut arch = GuestArch::X86_64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => serve_it = true,
            "--port" => port = it.next().context("--port N")?.parse()?,
            "--workspace" => workspace = Some(it.next().context("--workspace DIR")?.into()),
            "--cache" => cache = it.next().context("--cache DIR")?.into(),
            "--arch" => arch = GuestArch::parse(it.next().context("--arch x86_64|aarch64")?)?,
            other => bail!("unknown option {other}"),
        }
    }
    let built = build_arch(&cache, arch)?;
    let ws = sysmonvm::workspace::Workspace::resolve(workspace.as_deref())?;
    let (listener, profile) = publish(&built, &ws.profiles_dir(), port)?;
    println!("profile {}", profile.display());
    if serve_it {
        println!("serving http://127.0.0.1:{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        serve(listener, &built)?;
    }
    Ok(())
}
