//! Plans of idempotent guest steps, the shell script that runs them, and the progress markers the
//! script prints. Pure: a plan renders to the same script every time, and every marker line
//! parses (or not) without effects.

use serde::{Deserialize, Serialize};

/// One idempotent step. `skip_if` true: not applicable here (with `skip_note` saying why);
/// `check` true: already done; otherwise `run`, after which `check` must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub skip_if: Option<String>,
    #[serde(default)]
    pub skip_note: Option<String>,
    pub run: String,
    /// Stage paths of the uploaded files `run` needs: fetched from the host, once, only when
    /// the check fails and the staged copy differs.
    #[serde(default)]
    pub uses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// What the plan does (`bootstrap`, `collector-install`); also the script's file name.
    pub title: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("template {template} did not render a valid step list")]
    StepList {
        template: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("template {template} did not render a valid step list: {message}")]
    Steps { template: String, message: String },
    #[error("{0}")]
    Input(String),
    #[error("no randomness for the run's nonce (/dev/urandom)")]
    Nonce(#[source] std::io::Error),
}

/// Renders a `.steps.j2` template and reads its step list.
pub fn from_template<S: Serialize>(title: &str, template: &str, context: &S) -> Result<Plan, PlanError> {
    let text = crate::templates::render(template, context)?;
    let steps: Vec<Step> =
        serde_yaml::from_str(&text).map_err(|source| PlanError::StepList { template: template.to_string(), source })?;
    if let Some(bad) = steps.iter().find(|s| !valid_name(&s.name)) {
        return Err(PlanError::Steps { template: template.into(), message: format!("bad step name {:?}", bad.name) });
    }
    Ok(Plan { title: title.to_string(), steps })
}

/// Step names travel in marker lines, so they are single words.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Plan {
    /// The POSIX shell script that runs this plan alone, with no files to send.
    pub fn script(&self, nonce: &str) -> Result<String, PlanError> {
        script(&[self], &[], nonce)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// A file the host can send while a script runs: where it is staged and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptFile {
    pub path: String,
    pub sha256: String,
    pub size: usize,
    /// What the script asks for in its `need` marker.
    pub id: usize,
    /// Octal, as chmod takes it.
    pub mode: String,
    /// The installed copy a check compares it with, hashed before the first step.
    pub installed: Option<String>,
}

/// The one POSIX shell script that runs `plans` in order (templates/guest/runner.sh.j2), with
/// `files` to fetch on request and `nonce` in every marker.
pub fn script(plans: &[&Plan], files: &[ScriptFile], nonce: &str) -> Result<String, PlanError> {
    if !is_nonce(nonce) {
        return Err(PlanError::Input(format!("bad marker nonce {nonce:?}")));
    }
    if let Some(bad) = plans.iter().find(|p| !valid_name(&p.title)) {
        return Err(PlanError::Input(format!("bad plan title {:?}", bad.title)));
    }
    let title = plans.iter().map(|p| p.title.as_str()).collect::<Vec<_>>().join("+");
    let context = serde_json::json!({ "title": title, "plans": plans, "files": files, "nonce": nonce });
    Ok(crate::templates::render("runner.sh.j2", &context)?)
}

/// A marker nonce is hex (it goes into the script unquoted and into every marker line).
fn is_nonce(n: &str) -> bool {
    (8..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A fresh nonce for one run's markers: 128 bits from the OS.
pub fn new_nonce() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step ran and changed the guest.
    Changed,
    /// Its check held: already done, nothing ran.
    Unchanged,
    /// Not applicable in this guest (the note says why).
    Skipped,
}

/// A progress line printed by the runner script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// The next plan of the script begins.
    Plan(String),
    Begin(String),
    Note(String),
    Done(String, Outcome),
    /// The step's exit status (125: it ran but its check still failed; 124: a file it uses
    /// could not be received).
    Failed(String, i32),
    /// The script waits on its stdin for the file with this id, sent as it is or compressed.
    Need(usize, Wire),
    /// The file with this id arrived whole and matched its sha256.
    Got(usize),
    /// The end of the script; whether any step changed something.
    End(bool),
}

/// How a file the script asked for travels over the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Its bytes, as many as the file list says.
    Plain,
    /// A decimal length and a newline, then that many bytes of gzip (the script asks for this
    /// only for large files, and only when the guest has gzip): under TCG the guest's sshd
    /// decrypting the bytes is what a transfer costs, and the collector binary halves.
    Gzip,
}

/// What every marker line starts with, before the run's nonce.
pub const MARKER_PREFIX: &str = "@@sysmonvm:";

/// Parses one output line as a marker of the run whose nonce is `nonce`; `None` for the steps'
/// own output (and for anything malformed, or a marker with another nonce).
pub fn parse_marker(line: &str, nonce: &str) -> Option<Marker> {
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(MARKER_PREFIX)?;
    let rest = rest.strip_prefix(nonce)?.strip_prefix(' ')?;
    let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = || valid_name(arg).then(|| arg.to_string());
    Some(match kind {
        "plan" => Marker::Plan(name()?),
        "begin" => Marker::Begin(name()?),
        "note" => Marker::Note(arg.to_string()),
        "changed" => Marker::Done(name()?, Outcome::Changed),
        "unchanged" => Marker::Done(name()?, Outcome::Unchanged),
        "skipped" => Marker::Done(name()?, Outcome::Skipped),
        "failed" => {
            let (step, status) = arg.split_once(' ')?;
            valid_name(step).then_some(())?;
            Marker::Failed(step.to_string(), status.trim().parse().ok()?)
        }
        "need" => {
            let (id, wire) = arg.trim().split_once(' ').unwrap_or((arg.trim(), ""));
            let wire = match wire {
                "" => Wire::Plain,
                "gzip" => Wire::Gzip,
                _ => return None,
            };
            Marker::Need(id.parse().ok()?, wire)
        }
        "got" => Marker::Got(arg.trim().parse().ok()?),
        "end" => Marker::End(arg.trim() == "1"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn markers_parse_and_everything_else_is_output() {
        let m = |rest: &str| parse_marker(&format!("@@sysmonvm:{NONCE} {rest}"), NONCE);
        assert_eq!(m("begin packages\n"), Some(Marker::Begin("packages".into())));
        assert_eq!(m("plan collector-install"), Some(Marker::Plan("collector-install".into())));
        assert_eq!(m("unchanged user"), Some(Marker::Done("user".into(), Outcome::Unchanged)));
        assert_eq!(m("failed packages 100"), Some(Marker::Failed("packages".into(), 100)));
        assert_eq!(m("note no cpufreq here"), Some(Marker::Note("no cpufreq here".into())));
        assert_eq!(m("need 3"), Some(Marker::Need(3, Wire::Plain)));
        assert_eq!(m("need 3 gzip"), Some(Marker::Need(3, Wire::Gzip)));
        assert_eq!(m("got 3"), Some(Marker::Got(3)));
        assert_eq!(m("end 0"), Some(Marker::End(false)));
        for junk in [
            "",
            "failed x",
            "begin a b",
            "need",
            "need -1",
            "need x",
            "need 3 zstd",
            "need 3 gzip x",
            "got",
            "got y",
            "plan a b",
            "bogus x",
        ] {
            assert_eq!(m(junk), None, "{junk:?}");
        }
        // Another run's nonce, the old unnonced form, a marker not at the start of the line.
        let other = "ffeeddccbbaa99887766554433221100";
        for spoof in [
            format!("@@sysmonvm:{other} changed x"),
            "@@sysmonvm changed x".to_string(),
            format!("@@sysmonvm:{NONCE}changed x"),
            format!("output @@sysmonvm:{NONCE} changed x"),
            "E: Unable to locate package x".to_string(),
        ] {
            assert_eq!(parse_marker(&spoof, NONCE), None, "{spoof:?}");
        }
    }

    #[test]
    fn nonces_are_fresh_hex_and_the_script_refuses_a_bad_one() {
        let (a, b) = (new_nonce().unwrap(), new_nonce().unwrap());
        assert!(is_nonce(&a) && a.len() == 32 && a != b);
        let plan = Plan { title: "t".into(), steps: vec![] };
        for bad in ["", "abc", "zz112233445566778899aabbccddeeff", "0011223344556677 ; reboot"] {
            assert!(plan.script(bad).is_err(), "{bad:?}");
        }
        assert!(Plan { title: "a b".into(), steps: vec![] }.script(NONCE).is_err());
    }

    #[test]
    fn a_template_that_is_no_step_list_keeps_the_yaml_error() {
        // runner.sh.j2 renders a shell script: text, not a YAML list of steps.
        let context = serde_json::json!({"title": "t", "nonce": "0123456789abcdef", "files": [], "plans": []});
        let e = from_template("t", "runner.sh.j2", &context).unwrap_err();
        assert!(matches!(&e, PlanError::StepList { template, .. } if template == "runner.sh.j2"), "{e:?}");
        assert_eq!(e.to_string(), "template runner.sh.j2 did not render a valid step list");
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<serde_yaml::Error>()), "{e:?}");
    }

    /// The rendered script run by a real /bin/sh: outcomes, the post-run check, a failure that
    /// stops the script, and a second run that changes nothing.
    #[test]
    fn the_script_runs_steps_idempotently_in_a_real_shell() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().display().to_string();
        let step = |name: &str, check: &str, run: &str| Step {
            name: name.into(),
            check: (!check.is_empty()).then(|| check.into()),
            skip_if: None,
            skip_note: None,
            run: run.into(),
            uses: vec![],
        };
        let mut skip = step("skipme", "", "exit 9");
        skip.skip_if = Some("true".into());
        skip.skip_note = Some("not here".into());
        let plan = Plan {
            title: "t".into(),
            steps: vec![
                step("make", &format!("test -f {p}/a"), &format!("echo made; touch {p}/a")),
                skip,
                step("after-change", r#"test "$CHANGED" = 0"#, "true"),
            ],
        };
        let run = |plan: &Plan| {
            let out = std::process::Command::new("sh").arg("-c").arg(plan.script(NONCE).unwrap()).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.code(), text.lines().filter_map(|l| parse_marker(l, NONCE)).collect::<Vec<_>>(), text)
        };
        let (code, m, text) = run(&plan);
        assert_eq!(code, Some(0), "{text}");
        assert!(m.contains(&Marker::Done("make".into(), Outcome::Changed)), "{text}");
        assert!(
            m.contains(&Marker::Note("not here".into()))
                && m.contains(&Marker::Done("skipme".into(), Outcome::Skipped))
        );
        assert!(m.contains(&Marker::Done("after-change".into(), Outcome::Changed)), "{text}");
        assert!(text.contains("made"));
        assert_eq!(m.last(), Some(&Marker::End(true)));

        let (_, m, text) = run(&plan);
        assert!(m.contains(&Marker::Done("make".into(), Outcome::Unchanged)), "{text}");
        assert!(m.contains(&Marker::Done("after-change".into(), Outcome::Unchanged)), "{text}");
        assert_eq!(m.last(), Some(&Marker::End(false)));

        let failing =
            Plan { title: "f".into(), steps: vec![step("bad", "", "echo boom; exit 7"), step("never", "", "true")] };
        let (code, m, text) = run(&failing);
        assert_eq!(code, Some(7));
        assert_eq!(m.last(), Some(&Marker::Failed("bad".into(), 7)));
        assert!(text.contains("boom") && !text.contains("begin never"));

        let unverified = Plan { title: "u".into(), steps: vec![step("liar", "false", "true")] };
        let (code, m, _) = run(&unverified);
        assert_eq!((code, m.last()), (Some(125), Some(&Marker::Failed("liar".into(), 125))));
    }
}
