//! The one place that knows the templates in `templates/`: they are compiled into the binary, so an
//! installed `sysmonvm` needs no data files. Rendering is strict (an undefined name is an error).
//! Names ending in `.yaml.j2` escape every value as JSON (valid YAML); `.sh.j2` and `.steps.j2`
//! templates escape nothing, and their callers quote with the `shq` filter or check values first;
//! the launchd plist escapes with the `xml` filter.

use minijinja::{Environment, UndefinedBehavior};

const TEMPLATES: &[(&str, &str)] = &[
    ("user-data.yaml.j2", include_str!("../templates/cloud-init/user-data.yaml.j2")),
    ("meta-data.yaml.j2", include_str!("../templates/cloud-init/meta-data.yaml.j2")),
    ("network-config.yaml.j2", include_str!("../templates/cloud-init/network-config.yaml.j2")),
    ("runner.sh.j2", include_str!("../templates/guest/runner.sh.j2")),
    ("runner-launch.sh.j2", include_str!("../templates/guest/runner-launch.sh.j2")),
    ("bootstrap-apt.steps.j2", include_str!("../templates/guest/bootstrap-apt.steps.j2")),
    ("bootstrap-dnf.steps.j2", include_str!("../templates/guest/bootstrap-dnf.steps.j2")),
    ("cpufreq.steps.j2", include_str!("../templates/guest/cpufreq.steps.j2")),
    ("container-runtime.steps.j2", include_str!("../templates/guest/container-runtime.steps.j2")),
    ("collector-install.steps.j2", include_str!("../templates/guest/collector-install.steps.j2")),
    (
        "serviceradar-sysmon-vm.container.service.j2",
        include_str!("../templates/systemd/serviceradar-sysmon-vm.container.service.j2"),
    ),
    ("collector-image.steps.j2", include_str!("../templates/guest/collector-image.steps.j2")),
    ("sysmon-collector.Containerfile.j2", include_str!("../templates/guest/sysmon-collector.Containerfile.j2")),
    ("collector-uninstall.steps.j2", include_str!("../templates/guest/collector-uninstall.steps.j2")),
    ("validate-refs.sh.j2", include_str!("../templates/guest/validate-refs.sh.j2")),
    ("validate-perf.sh.j2", include_str!("../templates/guest/validate-perf.sh.j2")),
    ("validate-stress-ng-probe.sh.j2", include_str!("../templates/guest/validate-stress-ng-probe.sh.j2")),
    ("collector-status.sh.j2", include_str!("../templates/guest/collector-status.sh.j2")),
    ("matrix-cpufreq-probe.sh.j2", include_str!("../templates/guest/matrix-cpufreq-probe.sh.j2")),
    ("matrix-set-governors.sh.j2", include_str!("../templates/guest/matrix-set-governors.sh.j2")),
    ("upload.sh.j2", include_str!("../templates/guest/upload.sh.j2")),
    ("host-monitor.plist.j2", include_str!("../templates/launchd/host-monitor.plist.j2")),
    ("serviceradar-sysmon-vm.service.j2", include_str!("../templates/systemd/serviceradar-sysmon-vm.service.j2")),
    ("sysmon-vm.tmpfiles.j2", include_str!("../templates/systemd/sysmon-vm.tmpfiles.j2")),
];

#[derive(Debug, thiserror::Error)]
#[error("rendering template {template}")]
pub struct TemplateError {
    pub template: String,
    #[source]
    pub source: minijinja::Error,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build().expect("static syntax settings"),
    );
    env.add_filter("shq", |s: String| crate::ssh::shell_quote(&s));
    env.add_filter("xml", |s: String| {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
    });
    for (name, src) in TEMPLATES {
        env.add_template(name, src).expect("templates compiled into the binary parse");
    }
    env
}

/// Renders the template `name` with `context` (any serialisable value). Pure.
pub fn render<S: serde::Serialize>(name: &str, context: &S) -> Result<String, TemplateError> {
    // Parsed once per process: the seed is rendered on every `vm create`, steps on every run.
    static ENV: std::sync::LazyLock<Environment<'static>> = std::sync::LazyLock::new(environment);
    ENV.get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(context)))
        .map_err(|source| TemplateError { template: name.to_string(), source })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses_and_shq_quotes() {
        let out = super::render(
            "runner.sh.j2",
            &serde_json::json!({"title": "t", "nonce": "0123456789abcdef", "files": [], "plans": [{"title": "t", "steps": [
                {"name": "a", "check": "test -e '/x'", "skip_if": null, "skip_note": null, "run": "echo it's", "uses": []}
            ]}]}),
        )
        .unwrap();
        assert!(out.contains(r"sysmonvm_step 'a' 'test -e '\''/x'\''' '' '' 'echo it'\''s'"), "{out}");
    }

    #[test]
    fn a_failure_names_the_template_and_keeps_minijinjas_error() {
        let e = super::render("runner.sh.j2", &serde_json::json!({})).unwrap_err();
        assert_eq!(e.to_string(), "rendering template runner.sh.j2");
        let cause =
            std::error::Error::source(&e).and_then(|s| s.downcast_ref::<minijinja::Error>()).expect("minijinja");
        assert_eq!(cause.kind(), minijinja::ErrorKind::UndefinedError);
        let e = super::render("no-such.sh.j2", &()).unwrap_err();
        assert_eq!(e.source.kind(), minijinja::ErrorKind::TemplateNotFound, "{e:?}");
    }
}
