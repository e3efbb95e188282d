//! `cidata`: the NoCloud seed ISO of a VM on its own (the same documents `vm create` writes).

use super::{OpError, Result};
use crate::workspace::{self, Workspace};
use crate::{keys, profile, seed};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct CidataReport {
    pub path: PathBuf,
    pub size: usize,
    pub volume_id: &'static str,
    pub vm: String,
    pub instance_id: String,
    pub known_hosts: PathBuf,
}

pub fn build(ws: &Workspace, profile_name: &str, out: &Path, name: Option<&str>) -> Result<CidataReport> {
    let p = profile::load(profile_name, Some(&ws.profiles_dir()))?;
    let vm = ws.vm(name.unwrap_or(&p.name))?;
    workspace::private_dir(&vm.dir)?;
    let keys_err = |e| OpError::Vm(crate::vm::VmError::Keys(e));
    let user = keys::ensure(&ws.user_key(), &ws.user_key_pub(), "sysmonvm").map_err(keys_err)?;
    let host = keys::ensure(&vm.host_key, &vm.host_key_pub, &vm.name).map_err(keys_err)?;
    workspace::write_private(&vm.known_hosts, keys::known_hosts_line(&vm.name, &host.public_openssh).as_bytes())?;
    let input = seed::SeedInput {
        hostname: vm.name.clone(),
        instance_id: seed::instance_id(&vm.name, &host.public_openssh),
        user: p.ssh.user.clone(),
        user_public_key: user.public_openssh.clone(),
        host_key_private: host.private_openssh.clone(),
        host_key_public: host.public_openssh.clone(),
    };
    let docs = seed::render(&input).map_err(|e| OpError::Vm(crate::vm::VmError::Seed(e)))?;
    let iso = seed::iso::build(&docs).map_err(|e| OpError::Vm(crate::vm::VmError::SeedIso(e)))?;
    // The seed carries the VM's SSH host private key: readable by the owner only.
    workspace::write_private(out, &iso)?;
    Ok(CidataReport {
        path: out.to_path_buf(),
        size: iso.len(),
        volume_id: seed::iso::VOLUME_ID,
        vm: vm.name,
        instance_id: input.instance_id,
        known_hosts: vm.known_hosts,
    })
}
