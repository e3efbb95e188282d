//! Progress as a typed event stream. Every operation is given a [`Sink`]; the CLI renders the
//! events as lines and bars (`commands::render`), tests collect them ([`Collected`]), and a
//! library caller can ignore them ([`Silent`]). The library itself prints nothing.

use crate::guest::steps::Outcome;
use crate::vm::BootPhase;
use serde::Serialize;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A part of an operation begins (`fetch`, `create`, `boot`, `bootstrap`, `collector`, a
    /// validate phase …).
    PhaseStarted {
        phase: String,
        detail: Option<String>,
    },
    PhaseFinished {
        phase: String,
        seconds: f64,
    },
    /// The boot reached a phase, `seconds` after QEMU was launched.
    BootPhase {
        phase: BootPhase,
        seconds: f64,
    },
    /// A guest plan starts: its title and how many steps it has.
    PlanStarted {
        title: String,
        steps: usize,
    },
    StepStarted {
        index: usize,
        total: usize,
        name: String,
    },
    /// One line of a running step's own output.
    StepOutput {
        line: String,
    },
    StepFinished {
        name: String,
        outcome: Outcome,
        seconds: f64,
        notes: Vec<String>,
    },
    PlanFinished {
        title: String,
        changed_steps: usize,
        total_steps: usize,
        seconds: f64,
    },
    /// A file the guest asked for (its staged copy differed) is being sent over the run's channel.
    Sending {
        path: String,
        bytes: usize,
    },
    DownloadStarted {
        url: String,
        total: Option<u64>,
        already: u64,
    },
    DownloadProgress {
        bytes: u64,
    },
    DownloadFinished,
    /// Waiting for a lock another process holds.
    Waiting {
        what: String,
        holder: String,
    },
    /// A child process's output line (cargo building the collector).
    ToolOutput {
        tool: String,
        line: String,
    },
    Warning {
        message: String,
    },
    Info {
        message: String,
    },
}

/// Where an operation sends its events. `Sync`: events may come from a blocking task.
pub trait Sink: Sync {
    fn emit(&self, event: Event);

    fn info(&self, message: String) {
        self.emit(Event::Info { message });
    }

    fn warning(&self, message: String) {
        self.emit(Event::Warning { message });
    }
}

/// Drops every event.
pub struct Silent;

impl Sink for Silent {
    fn emit(&self, _: Event) {}
}

/// Keeps every event, for tests and for callers that render afterwards.
#[derive(Default)]
pub struct Collected(Mutex<Vec<Event>>);

impl Collected {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Sink for Collected {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

/// A download's progress as events (the image cache speaks `download::Progress`).
pub struct DownloadEvents<'a>(pub &'a dyn Sink);

impl crate::image::download::Progress for DownloadEvents<'_> {
    fn start(&self, url: &str, total: Option<u64>, already: u64) {
        self.0.emit(Event::DownloadStarted { url: url.to_string(), total, already });
    }
    fn advance(&self, bytes: u64) {
        self.0.emit(Event::DownloadProgress { bytes });
    }
    fn finish(&self) {
        self.0.emit(Event::DownloadFinished);
    }
}

/// The runner's borrowed events, owned.
pub fn from_runner(e: crate::guest::runner::Event<'_>) -> Event {
    use crate::guest::runner::Event as R;
    match e {
        R::Plan { title, steps } => Event::PlanStarted { title: title.to_string(), steps },
        R::PlanDone { title, changed_steps, total_steps, seconds } => {
            Event::PlanFinished { title: title.to_string(), changed_steps, total_steps, seconds }
        }
        R::Sending { path, bytes, .. } => Event::Sending { path: path.to_string(), bytes },
        R::Begin { index, total, name } => Event::StepStarted { index, total, name: name.to_string() },
        R::Output(line) => Event::StepOutput { line: line.to_string() },
        R::Done(r) => {
            Event::StepFinished { name: r.name.clone(), outcome: r.outcome, seconds: r.seconds, notes: r.notes.clone() }
        }
    }
}
