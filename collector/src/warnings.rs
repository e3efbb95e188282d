//! What could not be read, and why. A missing or garbled file never stops a sample: the field
//! becomes null and one of these says so. Depends on nothing else in the crate (reading files and
//! warning about them is `files::read_or_warn`).

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The file or subsystem the reading came from.
    pub source: String,
    pub message: String,
    /// The sampler's source (`cpu`, `memory`, … — the `source` of `Snapshot::sources`) whose read
    /// produced this warning; a source with a warning reports `success: false`. Null in documents
    /// from older collectors.
    #[serde(default)]
    pub subsystem: Option<String>,
}

/// The warnings of one source's read (or, from [`Warnings::default`], of no source in particular).
#[derive(Debug, Default)]
pub struct Warnings {
    subsystem: Option<&'static str>,
    list: Vec<Warning>,
}

impl Warnings {
    /// Warnings tagged with the source (subsystem) that records them.
    pub fn for_source(subsystem: &'static str) -> Self {
        Warnings { subsystem: Some(subsystem), list: Vec::new() }
    }

    pub fn push(&mut self, source: impl Into<String>, message: impl Into<String>) {
        self.list.push(Warning {
            source: source.into(),
            message: message.into(),
            subsystem: self.subsystem.map(str::to_string),
        });
    }

    pub fn file(&mut self, path: &Path, message: impl Into<String>) {
        self.push(path.display().to_string(), message);
    }

    /// Records warnings kept from an earlier read (facts re-read only every so many samples),
    /// re-tagged with this list's source.
    pub fn repeat(&mut self, earlier: &[Warning]) {
        for w in earlier {
            self.push(w.source.clone(), w.message.clone());
        }
    }

    pub fn as_slice(&self) -> &[Warning] {
        &self.list
    }

    pub fn into_vec(self) -> Vec<Warning> {
        self.list
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
