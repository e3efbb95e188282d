//! Finds the line and column of a dotted field path (`image.checksum_url`, `image.mirrors[1]`) in
//! YAML text by following indentation — enough to point at a field for errors that come from
//! validation rather than from the parser.

pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut want: Vec<(String, Option<usize>)> = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.split_once('[') {
            Some((k, i)) => (k.to_string(), i.trim_end_matches(']').parse().ok()),
            None => (seg.to_string(), None),
        })
        .collect();
    want.reverse();
    let mut min_indent = 0usize;
    let mut found_any = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((key, index)) = want.pop() {
        let mut hit = None;
        for (n, line) in lines.by_ref() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if indent < min_indent && found_any.is_some() {
                return found_any;
            }
            if trimmed.strip_prefix(&key).is_some_and(|r| r.starts_with(':')) {
                hit = Some((n + 1, indent + 1, indent));
                break;
            }
        }
        let (line, col, indent) = hit?;
        found_any = Some((line, col));
        min_indent = indent + 1;
        if let Some(i) = index {
            let mut seen = 0;
            for (n, l) in lines.by_ref() {
                let t = l.trim_start();
                if t.starts_with("- ") || t == "-" {
                    if seen == i {
                        found_any = Some((n + 1, l.len() - t.len() + 1));
                        break;
                    }
                    seen += 1;
                }
            }
        }
    }
    found_any
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn nested_and_listed() {
        let t = "name: x\nimage:\n  url: u\n  mirrors:\n    - a\n    - b\nssh:\n  user: y\n";
        assert_eq!(locate(t, "name"), Some((1, 1)));
        assert_eq!(locate(t, "image.url"), Some((3, 3)));
        assert_eq!(locate(t, "image.mirrors[1]"), Some((6, 5)));
        assert_eq!(locate(t, "ssh.user"), Some((8, 3)));
        assert_eq!(locate(t, "nope"), None);
    }
}
