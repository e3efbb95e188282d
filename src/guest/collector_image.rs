//! The collector as an OCI image built in the guest: `FROM scratch` with the static musl binary
//! and a config for a container (listening on all of the container's addresses), built by the
//! guest's Docker from files sysmonvm sends, so no registry is involved. Pure: the plan and the
//! files it sends; the runner runs it.
//!
//! The image is named [`IMAGE`] and labelled [`CONTENT_LABEL`] with a hash of everything it is
//! built from, so a second run compares that label and builds nothing when nothing differs.

use super::runner::{STAGE_DIR, Upload, sha256_hex};
use super::steps::{Plan, PlanError};
use serde::Serialize;

/// The image's name in the guest's Docker.
pub const IMAGE: &str = "sysmon-collector:latest";
/// The label holding the sha256 of the files the image was built from.
pub const CONTENT_LABEL: &str = "io.sysmonvm.content-sha256";
/// Where the binary and config sit inside the image (the service's paths in the guest).
pub const IMAGE_BINARY: &str = super::collector::BINARY;
pub const IMAGE_CONFIG: &str = super::collector::CONFIG;

/// What the image is built from.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    pub binary: Vec<u8>,
    /// The config baked into the image (see [`super::collector::config_json`]).
    pub config_text: String,
}

/// What the image steps (templates/guest/collector-image.steps.j2) are rendered with; the
/// collector install's container modes include them too.
#[derive(Debug, Clone, Serialize)]
pub struct ImageContext {
    pub image: &'static str,
    pub label: &'static str,
    pub content_sha256: String,
    pub stage: &'static str,
    pub dir: &'static str,
}

/// The Containerfile: the binary and its config on an empty base, the service's command.
pub fn containerfile() -> Result<String, PlanError> {
    let context = serde_json::json!({ "binary": IMAGE_BINARY, "config": IMAGE_CONFIG });
    Ok(crate::templates::render("sysmon-collector.Containerfile.j2", &context)?)
}

/// The hash the image is labelled with: of the three files' hashes, in order.
pub fn content_sha256(binary: &[u8], config: &[u8], containerfile: &[u8]) -> String {
    let joined = [binary, config, containerfile].map(sha256_hex).join("\n");
    sha256_hex(joined.as_bytes())
}

/// The files the image is built from (the binary at the service install's stage path, so a
/// staged copy serves both) and what the image steps are rendered with.
pub fn files(inputs: ImageInputs) -> Result<(Vec<Upload>, ImageContext), PlanError> {
    let containerfile = containerfile()?;
    let content_sha256 = content_sha256(&inputs.binary, inputs.config_text.as_bytes(), containerfile.as_bytes());
    let context = ImageContext {
        image: IMAGE,
        label: CONTENT_LABEL,
        content_sha256,
        stage: STAGE_DIR,
        dir: super::runner::GUEST_DIR,
    };
    let up = |name: &str, bytes: Vec<u8>| Upload {
        path: format!("{STAGE_DIR}/{name}"),
        bytes,
        mode: 0o644,
        installed: None,
    };
    let uploads = vec![
        Upload { mode: 0o755, ..up("sysmon-collector", inputs.binary) },
        up("sysmon-vm.container.json", inputs.config_text.into_bytes()),
        up("sysmon-collector.Containerfile", containerfile.into_bytes()),
    ];
    Ok((uploads, context))
}

/// The image plan, the files it may ask for, and the content hash the image will carry.
pub fn plan(inputs: ImageInputs) -> Result<(Plan, Vec<Upload>, String), PlanError> {
    let (uploads, context) = files(inputs)?;
    let plan = super::steps::from_template("collector-image", "collector-image.steps.j2", &context)?;
    Ok((plan, uploads, context.content_sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_checks_the_label_and_builds_from_the_staged_files() {
        let inputs = ImageInputs { binary: b"ELF".to_vec(), config_text: "{}".into() };
        let (plan, uploads, content) = plan(inputs.clone()).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["docker", "image"]);
        let image = plan.step("image").unwrap();
        assert!(image.check.as_deref().unwrap().contains(&content), "{image:?}");
        assert!(image.run.contains(&format!("--label {CONTENT_LABEL}={content}")), "{}", image.run);
        assert_eq!(image.uses.len(), 3);
        assert!(uploads.iter().all(|u| image.uses.contains(&u.path)));
        // Another binary or config is another image.
        let (_, _, other) = super::plan(ImageInputs { config_text: "{ }".into(), ..inputs }).unwrap();
        assert_ne!(other, content);
        let file = containerfile().unwrap();
        assert!(file.starts_with("FROM scratch\n") || file.contains("\nFROM scratch\n"), "{file}");
        assert!(file.contains(&format!("COPY sysmon-collector {IMAGE_BINARY}")), "{file}");
        assert!(plan.script("0123456789abcdef").is_ok());
    }
}
