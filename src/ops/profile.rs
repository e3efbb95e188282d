//! Profiles: the built-in ones and the workspace's, listed and shown as loaded.

use super::Result;
use crate::profile::{self, Profile};
use crate::workspace::Workspace;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ProfileRow {
    pub name: String,
    pub arch: Option<String>,
    /// `builtin` or the file it was loaded from.
    pub source: Option<String>,
    pub description: Option<String>,
    /// Why the profile could not be loaded.
    pub error: Option<String>,
}

pub fn list(ws: &Workspace) -> Vec<ProfileRow> {
    let extra = ws.profiles_dir();
    profile::builtin_names()
        .map(String::from)
        .chain(profile::workspace_names(Some(&extra)))
        .map(|name| match profile::load(&name, Some(&extra)) {
            Ok(p) => ProfileRow {
                name: p.name.clone(),
                arch: Some(p.arch.as_str().into()),
                source: Some(p.source.clone()),
                description: p.description.clone(),
                error: None,
            },
            Err(e) => {
                ProfileRow { name, arch: None, source: None, description: None, error: Some(crate::errors::chain(&e)) }
            }
        })
        .collect()
}

/// A profile as loaded, with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct ShownProfile {
    #[serde(flatten)]
    pub profile: Profile,
    pub source: String,
}

pub fn show(ws: &Workspace, name: &str) -> Result<ShownProfile> {
    let p = profile::load(name, Some(&ws.profiles_dir()))?;
    Ok(ShownProfile { source: p.source.clone(), profile: p })
}
