//! Prometheus text exposition format 0.0.4.

use crate::metrics::{Family, Kind};
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape_label(v: &str, out: &mut String) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

pub fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    for f in families {
        out.push_str("# HELP ");
        out.push_str(f.prom_name);
        out.push(' ');
        escape_help(f.help, &mut out);
        out.push('\n');
        let _ = writeln!(out, "# TYPE {} {}", f.prom_name, if f.kind == Kind::Counter { "counter" } else { "gauge" });
        for p in &f.points {
            out.push_str(f.prom_name);
            let mut first = true;
            for l in &p.labels {
                let Some(name) = l.prom else { continue };
                out.push(if first { '{' } else { ',' });
                first = false;
                for ch in name.chars() {
                    out.push(if ch == '.' { '_' } else { ch });
                }
                out.push_str("=\"");
                escape_label(&l.value.render(), &mut out);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            value(p.value, &mut out);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Label, LabelValue, Point};

    #[test]
    fn labels_are_escaped_and_dots_become_underscores() {
        let f = Family {
            otel_name: "a.b",
            prom_name: "a_b_total",
            help: "line\\two",
            unit: "1",
            kind: Kind::Counter,
            points: vec![Point {
                labels: vec![
                    Label { otel: "x.y", prom: Some("x.y"), value: LabelValue::Str("q\"\n\\".into()) },
                    Label { otel: "hidden", prom: None, value: LabelValue::Int(3) },
                ],
                value: 1.5,
            }],
        };
        assert_eq!(
            render(&[f]),
            "# HELP a_b_total line\\\\two\n# TYPE a_b_total counter\na_b_total{x_y=\"q\\\"\\n\\\\\"} 1.5\n"
        );
    }
}
