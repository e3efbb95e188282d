//! `sysmonvm`: command-line front end. Parses arguments, resolves the workspace and hands each
//! command to a thin executor in `commands/`; the work itself lives in the library.

mod commands;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sysmonvm",
    version,
    about = "Boot Linux guests under QEMU and validate the CPU telemetry collected inside them"
)]
pub struct Cli {
    /// Workspace directory for keys, VMs, profiles and the image cache [env: SYSMONVM_HOME;
    /// default: the platform's data and cache directories].
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text (progress bars are hidden).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// VM profiles: built in, in the workspace, or any YAML file.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// The verified image cache.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Build a cloud-init NoCloud seed ISO (volume id cidata) on its own.
    Cidata {
        #[arg(long, default_value = "almalinux-9-aarch64")]
        profile: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// VM name: hostname and the VM whose host key is used [default: the profile name].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// List the available profiles.
    List,
    /// Print a profile as loaded (NAME or FILE).
    Show { profile: String },
}

#[derive(Args, Clone, Default)]
pub struct SourceArgs {
    /// A profile whose image to fetch (NAME or FILE).
    #[arg(long, conflicts_with = "url")]
    pub profile: Option<String>,
    /// Image URL (instead of a profile).
    #[arg(long)]
    pub url: Option<String>,
    /// CHECKSUM file listing the image (GNU or BSD-tagged form).
    #[arg(long, requires = "url")]
    pub checksum_url: Option<String>,
    /// Expected SHA-256 of the image (instead of, or pinned on top of, a CHECKSUM file).
    #[arg(long, requires = "url")]
    pub sha256: Option<String>,
    /// Detached OpenPGP signature over the CHECKSUM file.
    #[arg(long, requires_all = ["url", "keyring"])]
    pub signature_url: Option<String>,
    /// Armored public key to check the signature against.
    #[arg(long, value_name = "KEY.asc", requires = "url")]
    pub keyring: Option<PathBuf>,
    /// Fingerprint the keyring's key must have.
    #[arg(long, requires = "keyring")]
    pub key_fingerprint: Option<String>,
    /// Mirror directories to try on network failure (repeatable).
    #[arg(long = "mirror", requires = "url")]
    pub mirrors: Vec<String>,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Download (resuming) and verify an image into the cache; a cached image is re-hashed.
    Fetch(SourceArgs),
    /// List cached images.
    List,
    /// Re-hash every cached image against its recorded digest.
    Verify,
    /// Delete partial downloads and images no VM uses.
    Prune,
}

fn main() {
    let cli = Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

pub type Exit = Result<i32>;
