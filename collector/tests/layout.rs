//! ARCHITECTURE.md's shape of the collector, checked on its source: every `Source` has a module
//! of its name with the reader `read`, and a metric-family module of its name under `metrics/`,
//! and the sampler dispatches to each reader.

use std::path::PathBuf;
use sysmon_collector::source::Source;

fn src(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_source_has_its_reader_and_its_metric_families() {
    let sampler = src("sampler.rs");
    for source in Source::ALL {
        let name = source.name();
        assert!(src(&format!("{name}.rs")).contains("\npub fn read("), "src/{name}.rs has no `pub fn read(`");
        assert!(
            src(&format!("metrics/{name}.rs")).contains("pub fn families("),
            "src/metrics/{name}.rs has no `pub fn families(`"
        );
        assert!(sampler.contains(&format!("{name}::read(")), "the sampler never calls {name}::read");
    }
}
