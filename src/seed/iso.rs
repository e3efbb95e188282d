//! The NoCloud seed as an ISO 9660 image with Rock Ridge and Joliet (so `user-data`,
//! `meta-data` and `network-config` keep their lower-case names everywhere) and volume id `cidata`.

use super::SeedDocuments;
use hadris_iso::joliet::JolietLevel;
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
use std::io::Cursor;
use std::sync::Arc;

pub const VOLUME_ID: &str = "cidata";

#[derive(Debug, thiserror::Error)]
#[error("writing the ISO 9660 image (volume id `{VOLUME_ID}`) in memory")]
pub struct IsoError(#[source] hadris_iso::write::IsoCreationError);

pub fn build(docs: &SeedDocuments) -> Result<Vec<u8>, IsoError> {
    let file =
        |name: &str, text: &str| IsoFile::File { name: Arc::new(name.to_string()), contents: text.as_bytes().to_vec() };
    let files = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: vec![
            file("meta-data", &docs.meta_data),
            file("network-config", &docs.network_config),
            file("user-data", &docs.user_data),
        ],
    };
    let options = IsoFormatOptions {
        volume_name: VOLUME_ID.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("sysmonvm".to_string()),
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        strict_charset: false,
        features: CreationFeatures { joliet: Some(JolietLevel::Level3), ..CreationFeatures::rock_ridge() },
    };
    let size: usize = docs.user_data.len() + docs.meta_data.len() + docs.network_config.len();
    let buffer = Cursor::new(vec![0u8; 512 * 1024 + size * 2]);
    let out = IsoImageWriter::create(buffer, files, options).map_err(IsoError)?;
    let mut bytes = out.into_inner();
    // The writer works in a pre-sized buffer; trim the unused tail to whole sectors in use.
    if let Some(last) = bytes.iter().rposition(|b| *b != 0) {
        let used = (last / 2048 + 1) * 2048;
        bytes.truncate(used.max(32 * 2048));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_a_writer_failure_stays_the_source() {
        let docs =
            SeedDocuments { user_data: "#cloud-config\n".into(), meta_data: "m".into(), network_config: "n".into() };
        let iso = build(&docs).unwrap();
        assert_eq!(&iso[16 * 2048 + 1..16 * 2048 + 6], b"CD001", "a primary volume descriptor at sector 16");
        // Writing into memory does not fail in practice, so the error is made from the writer's own
        // error type: the io::Error must be reachable as a source, not folded into the message.
        let e = IsoError(hadris_iso::write::IsoCreationError::Io(hadris_iso::Error::other("disk on fire")));
        assert_eq!(e.to_string(), "writing the ISO 9660 image (volume id `cidata`) in memory");
        assert_eq!(crate::errors::chain(&e), format!("{e}: Other: disk on fire"));
    }
}
