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
    /// The POSIX shell script that runs the plan (templates/guest/runner.sh.j2).
    pub fn script(&self) -> Result<String, PlanError> {
        Ok(crate::templates::render("runner.sh.j2", self)?)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
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
    Begin(String),
    Note(String),
    Done(String, Outcome),
    /// The step's exit status (125: it ran but its check still failed).
    Failed(String, i32),
    /// The end of the script; whether any step changed something.
    End(bool),
}

/// What every marker line starts with, before its run's nonce: `@@sysmonvm:NONCE kind args`.
pub const MARKER_PREFIX: &str = "@@sysmonvm:";

/// Parses one output line of the run whose script was given `nonce`; `None` for the steps' own
/// output (and for anything malformed, or a marker of another nonce: a step printing
/// `@@sysmonvm…` lines is output, never progress).
pub fn parse_marker(line: &str, nonce: &str) -> Option<Marker> {
    if nonce.is_empty() {
        return None;
    }
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(MARKER_PREFIX)?;
    let rest = rest.strip_prefix(nonce)?.strip_prefix(' ')?;
    let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = || valid_name(arg).then(|| arg.to_string());
    Some(match kind {
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
        "end" => Marker::End(arg.trim() == "1"),
        _ => return None,
    })
}

/// A line of the runner script's output, as [`MarkerLines`] sorts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    Marker(Marker),
    /// A line of a step's own output.
    Output(&'a str),
}

/// Sorts the runner script's output lines into markers and the steps' own output. The script
/// prints a newline before every marker, so a marker after output that did not end with a newline
/// still starts its own line (instead of being glued to it, or cut off with a long line's tail);
/// the empty line that newline makes, when the output did end with one, is not output.
#[derive(Debug)]
pub struct MarkerLines {
    nonce: String,
    /// An empty line held back: output, unless a marker follows it.
    blank: bool,
}

impl MarkerLines {
    pub fn new(nonce: &str) -> MarkerLines {
        MarkerLines { nonce: nonce.to_string(), blank: false }
    }

    /// Sorts one line (without its newline); an empty line is held until the next one says what it was.
    pub fn line<'a>(&mut self, line: &'a str, out: &mut impl FnMut(Line<'a>)) {
        if let Some(m) = parse_marker(line, &self.nonce) {
            self.blank = false;
            return out(Line::Marker(m));
        }
        if std::mem::replace(&mut self.blank, false) {
            out(Line::Output(""));
        }
        if line.is_empty() {
            self.blank = true;
        } else {
            out(Line::Output(line));
        }
    }

    /// The end of the output: an empty line still held was output.
    pub fn finish(&mut self, out: &mut impl FnMut(Line<'_>)) {
        if std::mem::replace(&mut self.blank, false) {
            out(Line::Output(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "5f0c9a7e21d34b68";

    #[test]
    fn markers_parse_and_everything_else_is_output() {
        let m = |rest: &str| format!("@@sysmonvm:{NONCE} {rest}");
        let p = |line: &str| parse_marker(line, NONCE);
        assert_eq!(p(&m("begin packages\n")), Some(Marker::Begin("packages".into())));
        assert_eq!(p(&m("unchanged user")), Some(Marker::Done("user".into(), Outcome::Unchanged)));
        assert_eq!(p(&m("failed packages 100")), Some(Marker::Failed("packages".into(), 100)));
        assert_eq!(p(&m("note no cpufreq here")), Some(Marker::Note("no cpufreq here".into())));
        assert_eq!(p(&m("end 0")), Some(Marker::End(false)));
        for junk in ["", "E: Unable to locate package x", "@@sysmonvm", &m("failed x"), &m("begin a b")] {
            assert_eq!(p(junk), None, "{junk:?}");
        }
    }

    /// What a step prints cannot pass for progress: the old nonce-less markers, another run's
    /// nonce, a prefix of this one, or this nonce without its separator are all output.
    #[test]
    fn a_step_cannot_spoof_a_marker_without_the_runs_nonce() {
        for spoof in [
            "@@sysmonvm failed packages 100".to_string(),
            "@@sysmonvm end 1".to_string(),
            "@@sysmonvm:0123456789abcdef failed packages 100".to_string(),
            format!("@@sysmonvm:{} changed packages", &NONCE[..8]),
            format!("@@sysmonvm:{NONCE}changed packages"),
            format!("@@sysmonvm:{NONCE}x changed packages"),
            format!(" @@sysmonvm:{NONCE} changed packages"),
        ] {
            assert_eq!(parse_marker(&spoof, NONCE), None, "{spoof:?}");
        }
        // An empty nonce would make `@@sysmonvm: …` a marker for anyone: it never matches.
        assert_eq!(parse_marker("@@sysmonvm: end 1", ""), None);
    }

    fn sort(nonce: &str, lines: &[&str]) -> Vec<String> {
        let mut m = MarkerLines::new(nonce);
        let mut out = Vec::new();
        let mut push = |l: Line<'_>| {
            out.push(match l {
                Line::Marker(m) => format!("{m:?}"),
                Line::Output(o) => format!("out {o:?}"),
            })
        };
        for l in lines {
            m.line(l, &mut push);
        }
        m.finish(&mut push);
        out
    }

    /// The script's newline before each marker: the empty line it makes after output that ended
    /// with a newline is dropped; real empty lines of a step's output are kept, also at the end.
    #[test]
    fn the_newline_before_a_marker_is_not_output_but_real_blank_lines_are() {
        let m = |rest: &str| format!("@@sysmonvm:{NONCE} {rest}");
        let (begin, done, end) = (m("begin s"), m("changed s"), m("end 1"));
        // `printf 'a\n'`: "a", the marker's own empty line, the marker.
        assert_eq!(
            sort(NONCE, &["", &begin, "a", "", &done, "", &end]),
            ["Begin(\"s\")", "out \"a\"", "Done(\"s\", Changed)", "End(true)"]
        );
        // `printf 'a'` (no final newline): the marker's newline ends the output's line.
        assert_eq!(sort(NONCE, &["", &begin, "a", &done]), ["Begin(\"s\")", "out \"a\"", "Done(\"s\", Changed)"]);
        // `printf 'a\n\n\nb\n\n'`: two blank lines inside, one at the end, all kept.
        assert_eq!(
            sort(NONCE, &[&begin, "a", "", "", "b", "", "", &done]),
            ["Begin(\"s\")", "out \"a\"", "out \"\"", "out \"\"", "out \"b\"", "out \"\"", "Done(\"s\", Changed)"]
        );
        // Output that ends with blank lines and no marker after them (a dropped connection).
        assert_eq!(sort(NONCE, &[&begin, "a", "", ""]), ["Begin(\"s\")", "out \"a\"", "out \"\"", "out \"\""]);
        // Another nonce's markers are output.
        assert_eq!(sort("ffff", &[&begin]), [format!("out {begin:?}")]);
    }

    #[test]
    fn a_template_that_is_no_step_list_keeps_the_yaml_error() {
        // runner.sh.j2 renders a shell script: text, not a YAML list of steps.
        let context = serde_json::json!({"title": "t", "steps": []});
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
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(plan.script().unwrap())
                .args(["runner.sh", NONCE])
                .output()
                .unwrap();
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

        // A step does not see the run's marker in its environment.
        let peek = Plan { title: "p".into(), steps: vec![step("peek", "", r#"echo "[${SYSMONVM_MARK:-}]""#)] };
        let (code, m, text) = run(&peek);
        assert_eq!((code, m.last()), (Some(0), Some(&Marker::End(true))), "{text}");
        assert!(text.contains("\n[]\n") && !text.contains(&format!("[@@sysmonvm:{NONCE}")), "{text}");
        // Without a nonce the script refuses to start.
        let out = std::process::Command::new("sh").arg("-c").arg(peek.script().unwrap()).output().unwrap();
        assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    }
}
