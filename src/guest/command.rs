//! Commands run in the guest over SSH, as typed values: a program and its arguments, each word
//! shell-quoted when rendered (so no value can change the command's shape), optionally through
//! `sudo -n`. Anything compound (pipes, `||`, several commands) is a template under
//! `templates/guest/` run as `sh -c SCRIPT`, never a `format!`ed string.

use crate::ssh::shell_quote;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCommand {
    sudo: bool,
    argv: Vec<String>,
    stdin_null: bool,
}

impl GuestCommand {
    pub fn new(program: impl Into<String>) -> GuestCommand {
        GuestCommand { sudo: false, argv: vec![program.into()], stdin_null: false }
    }

    /// `sh -c SCRIPT`: for the templates' compound scripts.
    pub fn script(text: impl Into<String>) -> GuestCommand {
        GuestCommand::new("sh").arg("-c").arg(text)
    }

    pub fn arg(mut self, a: impl Into<String>) -> GuestCommand {
        self.argv.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> GuestCommand {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run through `sudo -n` (never prompts: a password prompt would hang the SSH channel).
    pub fn sudo(mut self, yes: bool) -> GuestCommand {
        self.sudo = yes;
        self
    }

    /// As root: through sudo unless the SSH user already is root.
    pub fn as_root(self, ssh_user_is_root: bool) -> GuestCommand {
        self.sudo(!ssh_user_is_root)
    }

    /// Reads nothing from the channel (`</dev/null`).
    pub fn stdin_null(mut self) -> GuestCommand {
        self.stdin_null = true;
        self
    }

    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The shell line sent over SSH.
    pub fn render(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if self.sudo {
            words.extend(["sudo".to_string(), "-n".to_string()]);
        }
        words.extend(self.argv.iter().map(|w| quote_word(w)));
        let mut line = words.join(" ");
        if self.stdin_null {
            line.push_str(" </dev/null");
        }
        line
    }
}

impl std::fmt::Display for GuestCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// A word as the shell must see it: bare when it holds only characters no shell treats
/// specially (so messages stay readable), else single-quoted.
fn quote_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars().all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c))
        && !w.starts_with('=');
    if plain { w.to_string() } else { shell_quote(w) }
}

/// `journalctl` for the collector's unit.
pub fn journal(unit: &str, lines: u32, follow: bool, ssh_user_is_root: bool) -> GuestCommand {
    let c = GuestCommand::new("journalctl")
        .args(["-u", unit, "-n", &lines.to_string(), "--no-pager", "-o", "short-iso"])
        .as_root(ssh_user_is_root);
    if follow { c.arg("-f") } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_quoted_unless_plain() {
        let c = GuestCommand::new("systemctl").args(["show", "-p", "A,B", "x y", "it's", "$(reboot)"]).sudo(true);
        assert_eq!(c.render(), r"sudo -n systemctl show -p A,B 'x y' 'it'\''s' '$(reboot)'");
        assert_eq!(GuestCommand::script("a && b").stdin_null().render(), "sh -c 'a && b' </dev/null");
        assert_eq!(GuestCommand::new("true").arg("").render(), "true ''");
    }

    #[test]
    fn journal_command() {
        assert_eq!(
            journal("u.service", 50, true, false).render(),
            "sudo -n journalctl -u u.service -n 50 --no-pager -o short-iso -f"
        );
        assert_eq!(
            journal("u.service", 5, false, true).render(),
            "journalctl -u u.service -n 5 --no-pager -o short-iso"
        );
    }
}
