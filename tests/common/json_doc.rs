//! Reads docs/json.md: for each command, the top-level fields its `--json` report has. Used by
//! `tests/json_reports.rs` and (included by path) by the real-guest e2e.

use std::collections::BTreeSet;

/// The fields documented for `sysmonvm CMD`: (always present, present when not empty).
pub fn documented(doc: &str, command: &str) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let heading = format!("### `sysmonvm {command}`");
    let start = doc.lines().position(|l| l == heading || l.starts_with(&format!("{heading} ")))?;
    let mut required = BTreeSet::new();
    let mut optional = BTreeSet::new();
    for line in doc.lines().skip(start + 1).take_while(|l| !l.starts_with("### ")) {
        let Some(cell) = line.strip_prefix("| `") else { continue };
        let Some(end) = cell.find('`') else { continue };
        let name = &cell[..end];
        match name.strip_suffix('?') {
            Some(n) => optional.insert(n.to_string()),
            None => required.insert(name.to_string()),
        };
    }
    (!required.is_empty()).then_some((required, optional))
}

/// Whether `value` (an object, or the first element of an array) has exactly the documented
/// fields: every required one, and nothing undocumented.
pub fn check(doc: &str, command: &str, value: &serde_json::Value) -> Result<(), String> {
    let (required, optional) =
        documented(doc, command).ok_or_else(|| format!("docs/json.md documents no `sysmonvm {command}`"))?;
    let object = match value {
        serde_json::Value::Array(items) => match items.first() {
            Some(first) => first,
            None => return Ok(()), // nothing to compare
        },
        v => v,
    };
    let keys: BTreeSet<String> =
        object.as_object().ok_or_else(|| format!("{command}: not a JSON object: {value}"))?.keys().cloned().collect();
    let missing: Vec<&String> = required.difference(&keys).collect();
    let undocumented: Vec<&String> = keys.iter().filter(|k| !required.contains(*k) && !optional.contains(*k)).collect();
    if missing.is_empty() && undocumented.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`sysmonvm {command} --json` and docs/json.md disagree: missing {missing:?}, undocumented {undocumented:?}"
        ))
    }
}
