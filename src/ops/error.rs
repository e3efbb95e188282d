//! The operations' one error type. Each variant keeps what went wrong underneath as its
//! `#[source]`, so the CLI prints the whole chain ("collector install: SSH to VM lab: …").

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error(transparent)]
    Vm(#[from] crate::vm::VmError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Accel(#[from] crate::qemu::accel::AccelError),
    #[error(transparent)]
    Firmware(#[from] crate::qemu::firmware::FirmwareNotFound),
    #[error(transparent)]
    Cache(#[from] crate::image::cache::CacheError),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error(transparent)]
    Plan(#[from] crate::guest::steps::PlanError),
    #[error(transparent)]
    Packages(#[from] crate::system_packages::InstallError),
    #[error("fetching the image of profile {profile}")]
    Fetch {
        profile: String,
        #[source]
        source: Box<crate::image::ImageError>,
    },
    /// Which images VMs use could not be worked out, so prune deletes nothing.
    #[error("image prune removes nothing")]
    ImagesInUse(#[source] crate::image::cache::InUseError),
    #[error(
        "image prune deleted nothing: --all would delete the images VMs {vms} boot from; confirm with --yes \
         (they cannot boot until `sysmonvm up` fetches them again)"
    )]
    NotConfirmed { vms: String },
    #[error("image fetch")]
    Image(#[source] Box<crate::image::ImageError>),
    #[error(
        "VM {vm}: its backing image (sha256 {sha256}) is gone and no source of profile {profile} gave those bytes again \
         (what each said follows); if none offers that digest any more, the VM cannot boot without it: \
         `sysmonvm vm destroy {vm}` and `sysmonvm up` make it anew"
    )]
    BackingImageUnavailable {
        vm: String,
        sha256: String,
        profile: String,
        #[source]
        source: Box<crate::image::ImageError>,
    },
    #[error("{step} in VM {vm}")]
    Guest {
        vm: String,
        step: &'static str,
        #[source]
        source: Box<crate::guest::runner::RunError>,
    },
    #[error("SSH command `{command}` in VM {vm}")]
    Ssh {
        vm: String,
        command: String,
        #[source]
        source: crate::ssh::SshError,
    },
    #[error("the collector would refuse this config")]
    CollectorConfig(#[source] sysmon_collector::config::ConfigError),
    #[error("no VMs in {dir} (create one with `sysmonvm up`)")]
    NoVms { dir: PathBuf },
    #[error("several VMs ({names}): name one")]
    SeveralVms { names: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool that is missing, cannot start, or refused: what happened and what to do about it.
    #[error("{what} ({hint})")]
    Tool {
        what: String,
        /// What to install or run to fix it.
        hint: String,
        /// Why the tool could not be started, when it could not.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Something ran and reported failure; `detail` is what it said (its exit status, its stderr,
    /// the text it printed instead of an answer), not an error of ours.
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
    #[error("{what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("a blocking task failed")]
    Join(#[source] tokio::task::JoinError),
}

impl OpError {
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> OpError {
        move |source| OpError::Io { what: what.to_string(), source }
    }
}
