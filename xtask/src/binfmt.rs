//! The qemu-aarch64 binfmt_misc registration mmdebstrap needs to run arm64 maintainer scripts on
//! an x86_64 host. Where nothing registers it (no systemd-binfmt, as on this project's CI machine),
//! the guard mounts binfmt_misc and registers qemu-aarch64 from qemu-user-binfmt's own rule, and
//! on drop undoes exactly what it did.

use anyhow::{Context, Result, bail};
use std::path::Path;

const MOUNT: &str = "/proc/sys/fs/binfmt_misc";
const ENTRY: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
/// qemu-user-binfmt's rule (flags POF: the F flag keeps the interpreter usable inside the chroot).
const RULES: [&str; 2] = ["/usr/lib/binfmt.d/qemu-aarch64.conf", "/usr/share/binfmts/qemu-aarch64"];

pub struct Aarch64Binfmt {
    mounted: bool,
    registered: bool,
}

impl Aarch64Binfmt {
    pub fn ensure() -> Result<Aarch64Binfmt> {
        if std::env::consts::ARCH == "aarch64" {
            return Ok(Aarch64Binfmt { mounted: false, registered: false });
        }
        let mut guard = Aarch64Binfmt { mounted: false, registered: false };
        if !Path::new(MOUNT).join("status").exists() {
            let st = std::process::Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc", MOUNT])
                .status()
                .context("mount binfmt_misc")?;
            if !st.success() {
                bail!(
                    "binfmt_misc is not mounted and `mount -t binfmt_misc binfmt_misc {MOUNT}` failed ({st}); \
                     building the arm64 guest needs it (run as root)"
                );
            }
            guard.mounted = true;
        }
        if !Path::new(ENTRY).exists() {
            let rule = RULES
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .find(|r| r.starts_with(':'))
                .with_context(|| {
                    format!(
                        "no qemu-aarch64 binfmt rule ({}): {}",
                        RULES.join(" or "),
                        sysmonvm::system_packages::missing_tool_message("qemu-aarch64-static")
                    )
                })?;
            std::fs::write(Path::new(MOUNT).join("register"), rule.trim())
                .context("register qemu-aarch64 with binfmt_misc")?;
            guard.registered = true;
            eprintln!("[guest-image] registered qemu-aarch64 with binfmt_misc (undone when the build ends)");
        }
        Ok(guard)
    }
}

impl Drop for Aarch64Binfmt {
    fn drop(&mut self) {
        if self.registered {
            let _ = std::fs::write(ENTRY, "-1");
        }
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(MOUNT).status();
        }
    }
}
