//! sysmonvm: the VM-lab library behind the `sysmonvm` binary. Pure planning (profiles, seed
//! documents, CHECKSUM parsing, mirror candidates) lives apart from effects (downloads, files,
//! locks); see ARCHITECTURE.md.

pub mod errors;
pub mod exit;
pub mod guest;
pub mod host;
pub mod image;
pub mod keys;
pub mod lock;
pub mod ops;
pub mod profile;
pub mod qemu;
pub mod qga;
pub mod qmp;
pub mod sanitize;
pub mod seed;
pub mod ssh;
pub mod system_packages;
pub mod templates;
pub mod validate;
pub mod vm;
pub mod workspace;
