//! Finding edk2 firmware: the search is a pure function over "does this file exist", walking
//! Homebrew, Debian and Fedora locations in that order, so every path searched can be reported
//! when nothing is found. aarch64 `virt` needs both pflash units at exactly 64 MiB: an unpadded
//! 2 MiB `QEMU_EFI.fd` is padded in the per-VM copy.

use crate::profile::Arch;
use std::path::{Path, PathBuf};

/// Size of each pflash unit on aarch64 `virt`.
pub const VIRT_PFLASH_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FirmwarePair {
    /// Read-only code, used in place (or, when it must be padded, copied into the VM dir).
    pub code: PathBuf,
    /// Template for the per-VM variable store.
    pub vars_template: PathBuf,
    /// Where it was found (`homebrew`, `debian`, `fedora`, `profile`).
    pub origin: &'static str,
}

/// (origin, code, vars) candidates in search order, for one architecture.
pub fn candidates(arch: Arch) -> Vec<(&'static str, PathBuf, PathBuf)> {
    let c = |o, code: &str, vars: &str| (o, PathBuf::from(code), PathBuf::from(vars));
    match arch {
        Arch::Aarch64 => vec![
            c("homebrew", "/opt/homebrew/share/qemu/edk2-aarch64-code.fd", "/opt/homebrew/share/qemu/edk2-arm-vars.fd"),
            c("homebrew", "/usr/local/share/qemu/edk2-aarch64-code.fd", "/usr/local/share/qemu/edk2-arm-vars.fd"),
            c("debian", "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
            // qemu-efi-aarch64's unpadded 2 MiB image: padded per VM, with an empty vars store.
            c("debian", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", ""),
            c(
                "fedora",
                "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw",
                "/usr/share/edk2/aarch64/vars-template-pflash.raw",
            ),
            c("fedora", "/usr/share/edk2/aarch64/QEMU_EFI.fd", ""),
        ],
        Arch::X86_64 => vec![
            c("homebrew", "/opt/homebrew/share/qemu/edk2-x86_64-code.fd", "/opt/homebrew/share/qemu/edk2-i386-vars.fd"),
            c("homebrew", "/usr/local/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-i386-vars.fd"),
            c("debian", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
            c("debian", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
            c("fedora", "/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
            c("fedora", "/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
        ],
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no edk2 firmware for {arch} found; looked in:\n  {}\ninstall it with: {hint}", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct FirmwareNotFound {
    pub arch: &'static str,
    pub searched: Vec<PathBuf>,
    pub hint: &'static str,
}

pub fn install_hint(arch: Arch) -> &'static str {
    match (std::env::consts::OS, arch) {
        ("macos", _) => "brew install qemu",
        (_, Arch::Aarch64) => "apt-get install qemu-efi-aarch64 (Debian/Ubuntu) or dnf install edk2-aarch64 (Fedora)",
        (_, Arch::X86_64) => "apt-get install ovmf (Debian/Ubuntu) or dnf install edk2-ovmf (Fedora)",
    }
}

/// The first candidate whose files exist. An empty vars path means "start from an empty store".
pub fn find(arch: Arch, exists: impl Fn(&Path) -> bool) -> Result<FirmwarePair, FirmwareNotFound> {
    let all = candidates(arch);
    for (origin, code, vars) in &all {
        if exists(code) && (vars.as_os_str().is_empty() || exists(vars)) {
            return Ok(FirmwarePair { code: code.clone(), vars_template: vars.clone(), origin });
        }
    }
    let mut searched = Vec::new();
    for (_, c, v) in all {
        searched.push(c);
        if !v.as_os_str().is_empty() {
            searched.push(v);
        }
    }
    Err(FirmwareNotFound { arch: arch.as_str(), searched, hint: install_hint(arch) })
}

/// Whether a code image must be padded into a per-VM copy to be usable as a pflash unit.
pub fn needs_padding(arch: Arch, code_size: u64) -> bool {
    arch == Arch::Aarch64 && code_size < VIRT_PFLASH_SIZE
}

/// Writes `src` (or nothing, for an empty template) to `dest`, zero-padded to `size` when given.
pub fn copy_padded(src: Option<&Path>, dest: &Path, size: Option<u64>) -> std::io::Result<()> {
    let mut bytes = match src {
        Some(s) if !s.as_os_str().is_empty() => std::fs::read(s)?,
        _ => Vec::new(),
    };
    if let Some(size) = size {
        if bytes.len() as u64 > size {
            return Err(std::io::Error::other(format!("{} is larger than the {size}-byte flash", dest.display())));
        }
        bytes.resize(size as usize, 0);
    }
    std::fs::write(dest, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homebrew_wins_then_debian_then_fedora() {
        let only = |paths: &'static [&'static str]| move |p: &Path| paths.iter().any(|x| Path::new(x) == p);
        let f = find(
            Arch::Aarch64,
            only(&[
                "/usr/share/AAVMF/AAVMF_CODE.fd",
                "/usr/share/AAVMF/AAVMF_VARS.fd",
                "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
                "/opt/homebrew/share/qemu/edk2-arm-vars.fd",
            ]),
        )
        .unwrap();
        assert_eq!(f.origin, "homebrew");
        let f = find(Arch::Aarch64, only(&["/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"])).unwrap();
        assert_eq!((f.origin, f.vars_template.as_os_str().is_empty()), ("debian", true));
        assert!(needs_padding(Arch::Aarch64, 2 << 20));
        assert!(!needs_padding(Arch::Aarch64, 64 << 20));
        assert!(!needs_padding(Arch::X86_64, 2 << 20));
        let f = find(Arch::X86_64, only(&["/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"]))
            .unwrap();
        assert_eq!(f.origin, "fedora");
    }

    #[test]
    fn nothing_found_lists_every_path_and_the_fix() {
        let e = find(Arch::X86_64, |_| false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/opt/homebrew/share/qemu/edk2-x86_64-code.fd")
                && msg.contains("/usr/share/OVMF/OVMF_CODE_4M.fd")
        );
        assert!(msg.contains("install it with"));
    }

    #[test]
    fn padding_to_the_flash_size() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("code");
        std::fs::write(&src, vec![1u8; 2048]).unwrap();
        let dst = d.path().join("padded");
        copy_padded(Some(&src), &dst, Some(8192)).unwrap();
        let b = std::fs::read(&dst).unwrap();
        assert_eq!((b.len(), b[0], b[2047], b[2048]), (8192, 1, 1, 0));
        assert!(copy_padded(Some(&src), &dst, Some(1024)).is_err());
        copy_padded(None, &dst, Some(4096)).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), vec![0u8; 4096]);
    }
}
