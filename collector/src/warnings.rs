//! What could not be read, and why. A missing or garbled file never stops a sample: the field
//! becomes null and one of these says so.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The file or subsystem the reading came from.
    pub source: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Warnings(Vec<Warning>);

impl Warnings {
    pub fn push(&mut self, source: impl Into<String>, message: impl Into<String>) {
        self.0.push(Warning { source: source.into(), message: message.into() });
    }

    pub fn file(&mut self, path: &Path, message: impl Into<String>) {
        self.push(path.display().to_string(), message);
    }

    pub fn into_vec(self) -> Vec<Warning> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads a file once, recording a warning and returning None when it cannot be read.
pub fn read_or_warn(path: &Path, warnings: &mut Warnings) -> Option<String> {
    match crate::files::read_text(path) {
        Ok(s) => Some(s),
        Err(e) => {
            warnings.file(path, e);
            None
        }
    }
}
