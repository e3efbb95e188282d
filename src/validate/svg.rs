//! Small self-contained SVG line charts for the HTML report (no scripts, no external assets).

/// A named series of (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed: references and expected values; solid: what the collector reported.
    pub dashed: bool,
}

/// Shaded x ranges with a label (the phases).
pub struct Band {
    pub label: String,
    pub from: f64,
    pub to: f64,
}

const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A line chart, `x` in seconds from the start of the run.
pub fn line_chart(title: &str, y_label: &str, series: &[Series], bands: &[Band]) -> String {
    let (w, h, l, r, t, b) = (900.0, 300.0, 60.0, 260.0, 30.0, 40.0);
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    for band in bands {
        (x0, x1) = (x0.min(band.from), x1.max(band.to));
    }
    if x0 >= x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    y1 += (y1 - y0) * 0.08;
    let sx = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let sy = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - t - b);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11">
<title>{}</title><rect width="{w}" height="{h}" fill="white"/>
<text x="{l}" y="18" font-size="13" font-weight="bold">{}</text>
"#,
        esc(title),
        esc(title)
    );
    for (k, band) in bands.iter().enumerate() {
        let fill = if k % 2 == 0 { "#f2f2f2" } else { "#e6e6e6" };
        svg += &format!(
            "<rect x=\"{:.1}\" y=\"{t}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">{}</text>\n",
            sx(band.from),
            (sx(band.to) - sx(band.from)).max(0.0),
            h - t - b,
            sx(band.from) + 3.0,
            t + 12.0,
            esc(&band.label)
        );
    }
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        svg += &format!(
            "<line x1=\"{l}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            w - r,
            sy(y),
            sy(y),
            l - 4.0,
            sy(y) + 4.0,
            short(y)
        );
    }
    for k in 0..=5 {
        let x = x0 + (x1 - x0) * k as f64 / 5.0;
        svg +=
            &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0} s</text>\n", sx(x), h - b + 15.0, x);
    }
    svg += &format!(
        "<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        (t + h - b) / 2.0,
        esc(y_label)
    );
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let dash = if s.dashed { " stroke-dasharray=\"5 3\"" } else { "" };
        // A non-finite point breaks the line (phases are drawn apart).
        for segment in s.points.split(|p| !p.0.is_finite() || !p.1.is_finite()) {
            let path: Vec<String> = segment.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            if !path.is_empty() {
                svg += &format!(
                    "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>\n",
                    path.join(" ")
                );
            }
        }
        let ly = t + 14.0 * k as f64 + 8.0;
        svg += &format!(
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            w - r + 8.0,
            w - r + 28.0,
            w - r + 32.0,
            ly + 4.0,
            esc(&s.label)
        );
    }
    svg + "</svg>\n"
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_wellformed_svg_with_every_series() {
        let s = vec![
            Series {
                label: "cpu0 <collector>".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0), (4.0, 1.0)],
                dashed: false,
            },
            Series { label: "expected".into(), points: vec![], dashed: true },
        ];
        let svg = line_chart("t & u", "%", &s, &[Band { label: "idle".into(), from: 0.0, to: 1.0 }]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("cpu0 &lt;collector&gt;") && svg.contains("t &amp; u"));
        assert_eq!(svg.matches("<polyline").count(), 2, "the NaN splits the line in two");
        assert!(!svg.contains("NaN"));
        let empty = line_chart("none", "", &[], &[]);
        assert!(!empty.contains("NaN") && !empty.contains("inf"));
    }
}
