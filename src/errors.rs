//! An error as one line of text with its causes: what the CLI prints, and what the few places
//! that must keep an error as text (a field of a report, a hint inside another message) store
//! instead of passing it on as a `#[source]`. Library errors say what was being done; their
//! causes say why, so `to_string()` alone would drop the why.

/// `outer: inner: innermost`, as anyhow's `{:#}` prints it, except that a cause whose text the
/// line already ends with is not repeated: some libraries (ssh-key, for one) print their inner
/// error in their own message and return it as their source too.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}")]
    struct Outer {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn every_cause_is_joined_once() {
        let e = Outer { path: "/x".into(), source: std::io::Error::other("disk on fire") };
        assert_eq!(super::chain(&e), "reading /x: disk on fire");
        assert_eq!(super::chain(&std::io::Error::other("alone")), "alone");
    }

    #[test]
    fn a_cause_that_the_message_already_says_is_not_repeated() {
        // ssh-key's Encoding variant prints the inner error and returns it as its source.
        let d = tempfile::tempdir().unwrap();
        let garbled = d.path().join("id");
        std::fs::write(&garbled, "garbage\n").unwrap();
        let e = crate::keys::ensure(&garbled, &d.path().join("id.pub"), "x").unwrap_err();
        let text = super::chain(&e);
        let innermost = {
            let mut c: &dyn std::error::Error = &e;
            while let Some(next) = c.source() {
                c = next;
            }
            c.to_string()
        };
        assert!(text.ends_with(&innermost), "{text}");
        assert_eq!(text.matches(&innermost).count(), 1, "{text}");
    }
}
