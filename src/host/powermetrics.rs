//! macOS `powermetrics --samplers cpu_power -f plist` output: one XML plist per sample, a NUL
//! byte before each document after the first. Parsed into per-cluster and per-core frequency,
//! active residency and power. Tolerant by design: keys may be missing, numbers come as `<real>`
//! or `<integer>`, the timestamp as `<date>` or `<string>`, the last document may be cut short;
//! nothing panics on any input (fuzzed in tests/fuzz_inputs.rs).

use plist::Value;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Core {
    pub cpu: u32,
    /// Average frequency while active, Hz.
    pub freq_hz: Option<f64>,
    /// Share of the sample the core was active (1 − idle − down), 0..1.
    pub active_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cluster {
    /// `E-Cluster`, `P0-Cluster`, …
    pub name: String,
    pub freq_hz: Option<f64>,
    pub active_ratio: Option<f64>,
    pub cores: Vec<Core>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    pub hw_model: Option<String>,
    pub timestamp: Option<String>,
    pub elapsed_ns: Option<u64>,
    pub thermal_pressure: Option<String>,
    /// mW, as powermetrics reports them.
    pub cpu_power_mw: Option<f64>,
    pub gpu_power_mw: Option<f64>,
    pub ane_power_mw: Option<f64>,
    pub combined_power_mw: Option<f64>,
    pub clusters: Vec<Cluster>,
}

/// Not `PartialEq`: `NotPlist` keeps the plist library's error, which is not comparable.
#[derive(Debug, thiserror::Error)]
pub enum PowermetricsError {
    #[error("not a plist document")]
    NotPlist(#[source] plist::Error),
    #[error("the plist is not a dictionary at the top level")]
    NotDict,
}

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Real(r) => Some(*r),
        Value::Integer(i) => i.as_signed().map(|x| x as f64).or_else(|| i.as_unsigned().map(|x| x as f64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn ratio(v: Option<&Value>) -> Option<f64> {
    num(v).filter(|r| (0.0..=1.0 + 1e-9).contains(r))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Date(d) => Some(d.to_xml_format()),
        _ => None,
    }
}

/// 1 − idle − down, when the idle ratio is there.
fn active(d: &plist::Dictionary) -> Option<f64> {
    let idle = ratio(d.get("idle_ratio"))?;
    let down = ratio(d.get("down_ratio")).unwrap_or(0.0);
    Some((1.0 - idle - down).clamp(0.0, 1.0))
}

fn positive(x: Option<f64>) -> Option<f64> {
    x.filter(|v| *v >= 0.0)
}

/// Parses one document.
pub fn parse_document(bytes: &[u8]) -> Result<Sample, PowermetricsError> {
    let v = Value::from_reader_xml(bytes).map_err(PowermetricsError::NotPlist)?;
    let top = v.as_dictionary().ok_or(PowermetricsError::NotDict)?;
    let mut s = Sample {
        hw_model: text(top.get("hw_model")),
        timestamp: text(top.get("timestamp")),
        elapsed_ns: num(top.get("elapsed_ns")).filter(|x| *x >= 0.0).map(|x| x as u64),
        thermal_pressure: text(top.get("thermal_pressure")),
        ..Default::default()
    };
    let Some(p) = top.get("processor").and_then(Value::as_dictionary) else { return Ok(s) };
    s.cpu_power_mw = positive(num(p.get("cpu_power")));
    s.gpu_power_mw = positive(num(p.get("gpu_power")));
    s.ane_power_mw = positive(num(p.get("ane_power")));
    s.combined_power_mw = positive(num(p.get("combined_power")));
    for c in p.get("clusters").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_dictionary) {
        let cores = c
            .get("cpus")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_dictionary)
            .filter_map(|d| {
                let cpu = num(d.get("cpu")).filter(|n| *n >= 0.0 && *n < 65536.0)? as u32;
                Some(Core { cpu, freq_hz: positive(num(d.get("freq_hz"))), active_ratio: active(d) })
            })
            .collect();
        s.clusters.push(Cluster {
            name: text(c.get("name")).unwrap_or_else(|| format!("cluster{}", s.clusters.len())),
            freq_hz: positive(num(c.get("freq_hz"))),
            active_ratio: active(c),
            cores,
        });
    }
    Ok(s)
}

/// Splits a `-f plist` stream into documents: on NUL bytes, trimmed, empty pieces dropped.
pub fn split_stream(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split(|b| *b == 0).map(|d| d.trim_ascii()).filter(|d| !d.is_empty()).collect()
}

/// Every document of a stream that parses, and how many did not (a cut-off last one, say).
pub fn parse_stream(bytes: &[u8]) -> (Vec<Sample>, usize) {
    let mut ok = Vec::new();
    let mut bad = 0;
    for d in split_stream(bytes) {
        match parse_document(d) {
            Ok(s) => ok.push(s),
            Err(_) => bad += 1,
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/powermetrics/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn real_m1_capture() {
        let s = parse_document(&fixture("m1-macbookpro17_1-cpu_power-plist-sample-a.plist")).unwrap();
        assert_eq!(s.hw_model.as_deref(), Some("MacBookPro17,1"));
        assert_eq!(s.clusters.len(), 2);
        assert_eq!(s.clusters.iter().map(|c| c.cores.len()).sum::<usize>(), 8);
        for c in &s.clusters {
            assert!(c.freq_hz.is_some_and(|f| f > 1e8 && f < 5e9), "{c:?}");
            assert!(c.active_ratio.is_some_and(|a| (0.0..=1.0).contains(&a)));
        }
        assert!(s.cpu_power_mw.is_some() && s.combined_power_mw.is_some());
    }

    #[test]
    fn real_m2_ultra_capture_has_six_clusters() {
        let s = parse_document(&fixture("m2-ultra-cpu_power-plist.plist")).unwrap();
        assert_eq!(s.hw_model.as_deref(), Some("Mac14,14"));
        let names: Vec<_> = s.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["E0-Cluster", "P0-Cluster", "P1-Cluster", "E1-Cluster", "P2-Cluster", "P3-Cluster"]);
        assert_eq!(s.timestamp.as_deref(), Some("2024-04-12T22:42:39Z"));
    }

    #[test]
    fn a_stream_of_two_documents_and_a_cut_one() {
        let mut stream = fixture("m2-two-samples.stream");
        let (samples, bad) = parse_stream(&stream);
        assert_eq!((samples.len(), bad), (2, 0));
        assert_eq!(samples[0].clusters[1].name, "P-Cluster");
        stream.push(0);
        stream.extend_from_slice(b"<?xml version=\"1.0\"?><plist><dict><key>elapsed_ns</key>");
        let (samples, bad) = parse_stream(&stream);
        assert_eq!((samples.len(), bad), (2, 1));
    }

    #[test]
    fn integers_where_reals_are_usual_and_missing_keys() {
        let doc = br#"<?xml version="1.0"?><plist version="1.0"><dict><key>timestamp</key><string>now</string>
<key>processor</key><dict><key>cpu_power</key><integer>1200</integer><key>clusters</key><array>
<dict><key>freq_hz</key><integer>2000000000</integer><key>cpus</key><array><dict><key>cpu</key><integer>3</integer></dict><dict/></array></dict>
</array></dict></dict></plist>"#;
        let s = parse_document(doc).unwrap();
        assert_eq!(s.cpu_power_mw, Some(1200.0));
        assert_eq!(s.clusters[0].freq_hz, Some(2e9));
        assert_eq!(s.clusters[0].name, "cluster0");
        assert_eq!(s.clusters[0].cores, [Core { cpu: 3, freq_hz: None, active_ratio: None }]);
        assert!(matches!(parse_document(b"<plist><array/></plist>"), Err(PowermetricsError::NotDict)));
        assert!(parse_document(b"\xff\xfe garbage").is_err());
    }

    #[test]
    fn a_document_that_is_no_plist_keeps_the_plist_error() {
        let e = parse_document(b"<?xml version=\"1.0\"?><plist><dict><key>elapsed_ns</key>").unwrap_err();
        assert!(matches!(e, PowermetricsError::NotPlist(_)), "{e:?}");
        assert_eq!(e.to_string(), "not a plist document");
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<plist::Error>()), "{e:?}");
    }
}
