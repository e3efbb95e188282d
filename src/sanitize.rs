//! The one sanitizer for text that comes from a guest (or a server) and reaches a terminal or a
//! log line: serial tails, step output, versions, OS names, error chains. A guest that prints
//! escape sequences must not retitle the window, clear the screen or move the cursor over what
//! we print, so every ECMA-48 control function goes: CSI (`ESC [` … final byte, and its 8-bit form
//! U+009B), OSC/DCS/SOS/PM/APC strings (up to BEL or ST), other two-byte `ESC x` sequences, C1
//! controls (U+0080–U+009F) and every other C0 control but newline and tab. JSON output needs none
//! of this: serde escapes control characters as JSON does.

/// Guest text made safe for a terminal, keeping its lines (`\n`) and tabs.
pub fn terminal(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Any other escape is two characters (ESC plus one); a lone ESC at the end goes.
                Some(_) | None => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Guest text for one field on one line (a version, an OS name): [`terminal`], with newlines and
/// tabs as spaces.
pub fn line(raw: &str) -> String {
    terminal(raw).replace(['\n', '\t'], " ")
}

/// Guest text for a Markdown report: one line ([`line`]), at most `max` characters, with every
/// character Markdown or the HTML it may carry gives meaning to escaped, so it can neither end a
/// table cell nor become a link, an image or a tag.
pub fn markdown(raw: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in line(raw).chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// CSI: parameter and intermediate bytes up to a final byte in `@`..=`~`.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for d in chars.by_ref() {
        if ('@'..='~').contains(&d) {
            break;
        }
    }
}

/// A control string up to BEL, ST (`ESC \`) or the 8-bit ST (U+009C).
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(d) = chars.next() {
        match d {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_in_markdown_is_one_inert_line() {
        let hostile = "a|b\n<img src=x onerror=alert(1)> [x](javascript:alert(1)) `code` \u{1b}[2J";
        let md = markdown(hostile, 200);
        assert_eq!(md, "a\\|b &lt;img src=x onerror=alert\\(1\\)&gt; \\[x\\]\\(javascript:alert\\(1\\)\\) \\`code\\` ");
        assert!(!md.contains('\n') && !md.contains('<'));
        assert_eq!(markdown("abcdef", 3), "abc…");
    }

    #[test]
    fn control_functions_go_and_text_stays() {
        assert_eq!(terminal("\u{1b}[2J\u{1b}[01;01HUEFI Shell\r\nok\u{7}"), "UEFI Shell\nok");
        // A version string that sets the window title and clears the screen (the reproduction).
        assert_eq!(terminal("0.1.0\u{1b}]0;PWNED\u{7}\u{1b}[2J\u{1b}[H"), "0.1.0");
        assert_eq!(terminal("a\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\b"), "alinkb");
        assert_eq!(terminal("x\u{9b}31my\u{9d}title\u{9c}z"), "xyz");
        assert_eq!(terminal("tab\there\u{1b}Pq#0;2;0;0;0\u{1b}\\."), "tab\there.");
        assert_eq!(terminal("ünïcödé ✓ 中文"), "ünïcödé ✓ 中文");
        assert_eq!(terminal("trailing escape \u{1b}"), "trailing escape ");
        assert_eq!(line("Debian\nGNU/Linux\t12"), "Debian GNU/Linux 12");
    }
}
