use super::print_json;
use crate::Exit;
use anyhow::Context;
use std::path::Path;
use sysmonvm::workspace::{self, Workspace};
use sysmonvm::{keys, profile, seed};

pub fn run(ws: &Workspace, profile_name: &str, out: &Path, name: Option<&str>, json: bool) -> Exit {
    let p = profile::load(profile_name, Some(&ws.profiles_dir()))?;
    let vm = ws.vm(name.unwrap_or(&p.name))?;
    workspace::private_dir(&vm.dir)?;
    let user = keys::ensure(&ws.user_key(), &ws.user_key_pub(), "sysmonvm")?;
    let host = keys::ensure(&vm.host_key, &vm.host_key_pub, &vm.name)?;
    workspace::write_private(&vm.known_hosts, keys::known_hosts_line(&vm.name, &host.public_openssh).as_bytes())?;
    let input = seed::SeedInput {
        hostname: vm.name.clone(),
        instance_id: seed::instance_id(&vm.name, &host.public_openssh),
        user: p.ssh.user.clone(),
        user_public_key: user.public_openssh.clone(),
        host_key_private: host.private_openssh.clone(),
        host_key_public: host.public_openssh.clone(),
    };
    let docs = seed::render(&input)?;
    let iso = seed::iso::build(&docs)?;
    std::fs::write(out, &iso).with_context(|| format!("writing {}", out.display()))?;
    if json {
        print_json(&serde_json::json!({
            "path": out, "size": iso.len(), "volume_id": seed::iso::VOLUME_ID, "vm": vm.name,
            "instance_id": input.instance_id, "known_hosts": vm.known_hosts,
        }))?;
    } else {
        println!("{}", out.display());
    }
    Ok(0)
}
