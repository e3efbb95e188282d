//! The `thermal` source: temperatures from thermal zones
//! (`/sys/class/thermal/thermal_zoneN/{type,temp}`) and hwmon chips
//! (`/sys/class/hwmon/hwmonN/{name,tempM_input,tempM_label}`), in millidegrees Celsius, and the
//! Raspberry Pi firmware's throttle flags (`vcgencmd get_throttled`, where that program exists).

use crate::files::KernelFiles;
use crate::parse::single_i64;
use crate::parse::throttle::{self, ThrottleFlags};
use crate::roots::Roots;
use crate::snapshot::Temperature;
use crate::warnings::Warnings;
use std::path::Path;

/// A one-value sysfs field (a zone type, chip name, label, temperature), under the field cap.
fn trimmed(files: &mut KernelFiles, path: &Path) -> Option<String> {
    files.field(path)
}

fn sorted_entries(dir: &Path, prefix: &str) -> Vec<(String, std::path::PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// A reading outside what any sensor reports is a driver error value, not a temperature.
fn plausible(milli: i64) -> Option<f64> {
    let c = milli as f64 / 1000.0;
    (-100.0..=250.0).contains(&c).then_some(c)
}

/// The thermal source's read: every zone and hwmon temperature, and the Raspberry Pi's throttle
/// flags when `vcgencmd` is there.
pub fn read(
    roots: &Roots,
    files: &mut KernelFiles,
    vcgencmd: Option<&Path>,
    warnings: &mut Warnings,
) -> (Vec<Temperature>, Option<ThrottleFlags>) {
    (temperatures(roots, files, warnings), throttling(vcgencmd, warnings))
}

pub fn temperatures(roots: &Roots, files: &mut KernelFiles, warnings: &mut Warnings) -> Vec<Temperature> {
    let mut out = Vec::new();
    for (name, path) in sorted_entries(&roots.sys("class/thermal"), "thermal_zone") {
        let kind = trimmed(files, &path.join("type")).unwrap_or_else(|| "unknown".into());
        match trimmed(files, &path.join("temp")).and_then(|t| single_i64(&t)).and_then(plausible) {
            Some(celsius) => {
                out.push(Temperature { sensor: format!("{name}/{kind}"), kind: "thermal".into(), celsius })
            }
            None => warnings.file(&path.join("temp"), "unreadable or implausible temperature"),
        }
    }
    for (name, path) in sorted_entries(&roots.sys("class/hwmon"), "hwmon") {
        let chip = trimmed(files, &path.join("name")).unwrap_or_else(|| "unknown".into());
        for (file, input) in sorted_entries(&path, "temp") {
            let Some(index) = file.strip_suffix("_input") else { continue };
            let label = trimmed(files, &path.join(format!("{index}_label"))).unwrap_or_else(|| index.to_string());
            match trimmed(files, &input).and_then(|t| single_i64(&t)).and_then(plausible) {
                Some(celsius) => {
                    out.push(Temperature { sensor: format!("{name}/{chip}/{label}"), kind: "hwmon".into(), celsius })
                }
                None => warnings.file(&input, "unreadable or implausible temperature"),
            }
        }
    }
    out
}

/// The throttle flags from `vcgencmd get_throttled`; None (no warning) without the program.
pub fn throttling(vcgencmd: Option<&Path>, warnings: &mut Warnings) -> Option<ThrottleFlags> {
    let program = vcgencmd?;
    match std::process::Command::new(program).arg("get_throttled").output() {
        Ok(out) if out.status.success() => {
            let flags = throttle::parse(&String::from_utf8_lossy(&out.stdout));
            if flags.is_none() {
                warnings.push("vcgencmd get_throttled", "unparsable output");
            }
            flags
        }
        Ok(out) => {
            warnings.push("vcgencmd get_throttled", format!("exited with {}", out.status));
            None
        }
        Err(e) => {
            warnings.push("vcgencmd get_throttled", e.to_string());
            None
        }
    }
}
