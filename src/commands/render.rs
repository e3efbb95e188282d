//! The one rendering module every command uses: JSON on stdout, the event stream as lines and
//! indicatif bars on stderr, the tokio runtime the operations run on, and guest text made safe
//! for a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;
use sysmonvm::guest::steps::Outcome;
use sysmonvm::ops::{Event, Sink};

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs an operation's future to completion.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    Ok(rt.block_on(f))
}

/// Text from a guest or a server, safe to print: control characters and escape sequences go.
pub fn safe(text: &str) -> String {
    sysmonvm::sanitize::terminal(text)
}

/// One field of guest text on one line (a version, an OS name).
pub fn safe_line(text: &str) -> String {
    sysmonvm::sanitize::line(text)
}

/// Renders events on stderr: today's lines, a spinner per guest step and a bar per download on
/// a terminal; nothing under `--json` but warnings.
pub struct Terminal {
    quiet: bool,
    verbose: bool,
    interactive: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    pub fn new(json: bool, verbose: bool) -> Terminal {
        Terminal { quiet: json, verbose, interactive: !json && std::io::stderr().is_terminal(), bar: Mutex::new(None) }
    }

    fn line(&self, text: String) {
        match self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn set_bar(&self, make: impl FnOnce() -> ProgressBar) {
        if !self.interactive {
            return;
        }
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take() {
            old.finish_and_clear();
        }
        *slot = Some(make());
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(b);
        }
    }

    fn clear_bar(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.clear_bar();
    }
}

impl Sink for Terminal {
    fn emit(&self, event: Event) {
        if let Event::Warning { message } = &event {
            self.line(format!("warning: {}", safe(message)));
            return;
        }
        if self.quiet {
            return;
        }
        match event {
            Event::PhaseStarted { phase, detail } => match detail {
                Some(d) => self.line(format!("{phase}: {}", safe(&d))),
                None => self.line(format!("{phase}…")),
            },
            Event::PhaseFinished { .. } => {}
            Event::BootPhase { phase, seconds } => self.line(format!("  {:<10} {seconds:>6.1} s", phase.as_str())),
            Event::PlanStarted { title, steps } => self.line(format!("{title} ({steps} steps)")),
            Event::StepStarted { index, total, name } => {
                if self.bar.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                    self.set_bar(|| {
                        let b = ProgressBar::new_spinner();
                        b.set_style(
                            ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("static template"),
                        );
                        b.enable_steady_tick(Duration::from_millis(120));
                        b
                    });
                }
                self.with_bar(|b| b.set_message(format!("[{}/{total}] {name}", index + 1)));
            }
            Event::StepOutput { line } if self.verbose => self.line(format!("      | {}", safe(&line))),
            Event::StepOutput { .. } => {}
            Event::StepFinished { name, outcome, seconds, notes } => {
                let what = match outcome {
                    Outcome::Changed => "done",
                    Outcome::Unchanged => "already so",
                    Outcome::Skipped => "skipped",
                };
                self.line(format!("  {name:<22} {what:<10} {seconds:>6.1} s"));
                for n in notes {
                    self.line(format!("      note: {}", safe(&n)));
                }
            }
            Event::PlanFinished { title, changed_steps, total_steps, seconds } => {
                self.clear_bar();
                if changed_steps == 0 {
                    self.line(format!("{title}: nothing to do, every step was already done ({seconds:.1} s)"));
                } else {
                    self.line(format!(
                        "{title}: {changed_steps} of {total_steps} steps changed the guest ({seconds:.1} s)"
                    ));
                }
            }
            Event::Sending { path, bytes } => {
                self.with_bar(|b| b.set_message(format!("sending {} ({:.1} MB)", safe(&path), bytes as f64 / 1e6)))
            }
            Event::DownloadStarted { url, total, already } => {
                self.line(format!("{} {url}", if already > 0 { "resuming" } else { "downloading" }));
                self.set_bar(|| {
                    let b = ProgressBar::new(total.unwrap_or(0));
                    b.set_style(
                        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                            .expect("static template"),
                    );
                    b.set_position(already);
                    b
                });
            }
            Event::DownloadProgress { bytes } => self.with_bar(|b| b.inc(bytes)),
            Event::DownloadFinished => self.clear_bar(),
            Event::Waiting { what, holder } => self.line(format!("waiting for {holder}, which holds {what}")),
            Event::ToolOutput { line, .. } => self.line(line),
            Event::Info { message } => self.line(safe(&message)),
            Event::Warning { .. } => unreachable!("handled above"),
        }
    }
}

/// Asks on the terminal; without one (a script, CI) the answer is no.
pub fn confirm(question: &str) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
}
