//! The `thermal` source's families: sensor temperatures and the Raspberry Pi throttle flags.

use super::{Builder, Family, Kind, Point, s};
use crate::snapshot::Snapshot;

pub fn families(snap: &Snapshot) -> Vec<Family> {
    let mut b = Builder::default();
    let p = b.family(
        "hw.temperature",
        "hw_temperature_celsius",
        "Cel",
        Kind::Gauge,
        "Sensor temperature (thermal zones and hwmon).",
    );
    for t in &snap.temperatures {
        p.push(Point { labels: vec![s("sensor", &t.sensor), s("hw.type", &t.kind)], value: t.celsius });
    }
    if let Some(t) = &snap.throttling {
        let p = b.family(
            "sysmon.rpi.throttle",
            "sysmon_rpi_throttle_flag",
            "1",
            Kind::Gauge,
            "Raspberry Pi firmware throttle flags from vcgencmd get_throttled (1 = set).",
        );
        for (flag, v) in [
            ("under_voltage", t.under_voltage),
            ("frequency_capped", t.frequency_capped),
            ("throttled", t.throttled),
            ("soft_temperature_limit", t.soft_temperature_limit),
            ("under_voltage_occurred", t.under_voltage_occurred),
            ("frequency_capped_occurred", t.frequency_capped_occurred),
            ("throttled_occurred", t.throttled_occurred),
            ("soft_temperature_limit_occurred", t.soft_temperature_limit_occurred),
        ] {
            p.push(Point { labels: vec![s("flag", flag)], value: if v { 1.0 } else { 0.0 } });
        }
    }

    b.finish()
}
