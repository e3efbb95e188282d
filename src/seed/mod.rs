//! The cloud-init NoCloud seed: three documents rendered from `templates/cloud-init/` by a pure
//! function of the VM's facts, and an ISO 9660 image (Rock Ridge + Joliet, volume id `cidata`)
//! built natively — no genisoimage, xorriso or hdiutil at run time.

pub mod iso;

use serde::Serialize;

/// What the seed says about the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedInput {
    pub hostname: String,
    pub instance_id: String,
    pub user: String,
    pub user_public_key: String,
    pub host_key_private: String,
    pub host_key_public: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDocuments {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

/// A seed document failed to render; the template error names the document and keeps the cause.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SeedError(#[from] pub crate::templates::TemplateError);

/// A stable instance id for the VM's lifetime: it changes only when the VM (and so its host key)
/// is made anew, which is exactly when cloud-init should run its per-instance steps again.
pub fn instance_id(vm: &str, host_public_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(host_public_key.as_bytes());
    format!("iid-{vm}-{}", &hex::encode(digest)[..12])
}

/// Renders the three documents. Pure: the same input gives the same bytes.
pub fn render(input: &SeedInput) -> Result<SeedDocuments, SeedError> {
    let r = |name: &str| crate::templates::render(name, input).map_err(SeedError);
    Ok(SeedDocuments {
        user_data: r("user-data.yaml.j2")?,
        meta_data: r("meta-data.yaml.j2")?,
        network_config: r("network-config.yaml.j2")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn input() -> SeedInput {
        SeedInput {
            hostname: "lab".into(),
            instance_id: "iid-lab-1".into(),
            user: "almalinux".into(),
            user_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 sysmonvm".into(),
            host_key_private: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n".into(),
            host_key_public: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0 lab".into(),
        }
    }

    #[test]
    fn values_are_quoted_and_the_header_comes_first() {
        let d = render(&input()).unwrap();
        assert!(d.user_data.starts_with("#cloud-config\n"));
        assert!(d.user_data.contains("hostname: \"lab\"\n"));
        assert!(d.user_data.contains("ed25519_private: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn\\n"));
        assert!(d.user_data.contains("ssh_pwauth: false"));
        assert_eq!(d.meta_data, "instance-id: \"iid-lab-1\"\nlocal-hostname: \"lab\"\n");
        assert!(d.network_config.contains("dhcp4: true"));
    }

    #[test]
    fn a_render_failure_names_the_document_and_keeps_minijinjas_error() {
        // The seed input always has every field; a context without them shows what a failure carries.
        let e = SeedError::from(crate::templates::render("user-data.yaml.j2", &serde_json::json!({})).unwrap_err());
        assert_eq!(e.to_string(), "rendering template user-data.yaml.j2");
        let cause =
            std::error::Error::source(&e).and_then(|s| s.downcast_ref::<minijinja::Error>()).expect("minijinja");
        assert_eq!(cause.kind(), minijinja::ErrorKind::UndefinedError);
    }

    #[test]
    fn hostile_values_stay_inside_their_string() {
        let mut i = input();
        i.hostname = "x\"\nruncmd: [reboot]".into();
        let d = render(&i).unwrap();
        assert!(!d.user_data.contains("\nruncmd:"), "{}", d.user_data);
        assert!(d.user_data.contains(r#"hostname: "x\"\nruncmd: [reboot]""#));
    }
}
