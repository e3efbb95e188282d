//! OpenPGP verification of a CHECKSUM file against the profile's trusted key: a detached signature
//! (`CHECKSUM.asc`, armored or binary) or a clearsigned CHECKSUM. A signing subkey counts once its
//! binding to the primary key verifies. For a clearsigned file only the signed text is returned,
//! so nothing outside the signature can add an entry.

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

/// The OpenPGP library's errors are large; boxed so every `Result` here stays small.
type PgpError = Box<pgp::errors::Error>;

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("trusted key {source_name}: not an OpenPGP public key")]
    BadKey {
        source_name: String,
        #[source]
        source: PgpError,
    },
    #[error("trusted key {source_name}: its self-signatures do not verify, so it cannot be trusted")]
    BadBindings {
        source_name: String,
        #[source]
        source: PgpError,
    },
    #[error("trusted key {source_name} has fingerprint {actual}, but the profile expects {expected}")]
    WrongKey { source_name: String, expected: String, actual: String },
    #[error("the signature file is not an OpenPGP signature")]
    BadSignature(#[source] PgpError),
    #[error("the CHECKSUM file is not a readable clearsigned OpenPGP message")]
    BadClearsigned(#[source] PgpError),
    #[error("the CHECKSUM file holds no clearsigned message")]
    NotClearsigned,
    #[error(
        "the signature does not verify against key {fingerprint}: the CHECKSUM file was changed or signed by someone else"
    )]
    NotVerified { fingerprint: String },
}

/// A parsed public key whose fingerprint matched what the profile pinned.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: SignedPublicKey,
    /// Upper-case hex of the primary key's fingerprint.
    pub fingerprint: String,
}

/// Normalises a fingerprint for comparison: hex digits only, upper case.
pub fn normalize_fingerprint(f: &str) -> String {
    f.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_uppercase()
}

/// Parses an armored public key; when `expected` is given, its fingerprint must match.
pub fn load_key(source_name: &str, armored: &str, expected: Option<&str>) -> Result<TrustedKey, SignatureError> {
    let (key, _) = SignedPublicKey::from_string(armored)
        .map_err(|e| SignatureError::BadKey { source_name: source_name.into(), source: Box::new(e) })?;
    key.verify_bindings()
        .map_err(|e| SignatureError::BadBindings { source_name: source_name.into(), source: Box::new(e) })?;
    let fingerprint = format!("{:X}", key.fingerprint());
    if let Some(expected) = expected {
        let expected = normalize_fingerprint(expected);
        if expected != fingerprint {
            return Err(SignatureError::WrongKey { source_name: source_name.into(), expected, actual: fingerprint });
        }
    }
    Ok(TrustedKey { key, fingerprint })
}

impl TrustedKey {
    fn signing_subkeys(&self) -> impl Iterator<Item = &pgp::composed::SignedPublicSubKey> {
        self.key.public_subkeys.iter().filter(|s| s.verify_bindings(&self.key.primary_key).is_ok())
    }

    /// Verifies a detached signature (armored or binary) over `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let text = std::str::from_utf8(signature).ok().filter(|t| t.contains("-----BEGIN PGP SIGNATURE-----"));
        let sig = match text {
            Some(t) => DetachedSignature::from_string(t).map(|(s, _)| s),
            None => DetachedSignature::from_bytes(signature),
        }
        .map_err(|e| SignatureError::BadSignature(Box::new(e)))?;
        if sig.verify(&self.key, data).is_ok() || self.signing_subkeys().any(|s| sig.verify(&s.key, data).is_ok()) {
            return Ok(());
        }
        Err(SignatureError::NotVerified { fingerprint: self.fingerprint.clone() })
    }

    /// Verifies a clearsigned document and returns only its signed text.
    pub fn verify_clearsigned(&self, document: &str) -> Result<String, SignatureError> {
        let part = clearsigned_part(document).ok_or(SignatureError::NotClearsigned)?;
        let (msg, _) =
            CleartextSignedMessage::from_string(part).map_err(|e| SignatureError::BadClearsigned(Box::new(e)))?;
        if msg.verify(&self.key).is_ok() || self.signing_subkeys().any(|s| msg.verify(&s.key).is_ok()) {
            return Ok(msg.signed_text());
        }
        Err(SignatureError::NotVerified { fingerprint: self.fingerprint.clone() })
    }
}

/// Keys compiled into the binary, by the name a profile uses.
pub fn builtin_key(name: &str) -> Option<&'static str> {
    match name {
        "almalinux-9" => Some(include_str!("../../keys/RPM-GPG-KEY-AlmaLinux-9")),
        _ => None,
    }
}

const CLEARSIGN_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// Whether a document contains a clearsigned message (then it needs no separate signature file).
pub fn is_clearsigned(text: &str) -> bool {
    clearsigned_part(text).is_some()
}

/// The clearsigned message inside a document, from its header line on; anything before it is
/// outside the signature and is dropped.
fn clearsigned_part(text: &str) -> Option<&str> {
    let at = text.find(CLEARSIGN_HEADER)?;
    (at == 0 || text[..at].ends_with('\n')).then(|| &text[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn almalinux_9_key_parses_with_its_published_fingerprint() {
        let k = load_key(
            "almalinux-9",
            builtin_key("almalinux-9").unwrap(),
            Some("BF18 AC28 7617 8908 D6E7 1267 D36C B86C B86B 3716"),
        )
        .unwrap();
        assert_eq!(k.fingerprint, "BF18AC2876178908D6E71267D36CB86CB86B3716");
        let e = load_key("almalinux-9", builtin_key("almalinux-9").unwrap(), Some(&"0".repeat(40))).unwrap_err();
        assert!(matches!(e, SignatureError::WrongKey { .. }));
    }

    #[test]
    fn garbage_key_and_signature_are_errors_not_panics() {
        assert!(load_key("x", "not a key", None).is_err());
        let k = load_key("almalinux-9", builtin_key("almalinux-9").unwrap(), None).unwrap();
        assert!(matches!(k.verify_detached(b"data", b"garbage"), Err(SignatureError::BadSignature(_))));
        assert!(k.verify_clearsigned("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n").is_err());
    }

    #[test]
    fn the_openpgp_error_is_the_source() {
        // The source is the boxed pgp error (`Box<E>` is itself an `Error` that forwards to `E`).
        let is_pgp = |e: &SignatureError| std::error::Error::source(e).is_some_and(|s| s.is::<PgpError>());
        let e = load_key("x.asc", "not a key", None).unwrap_err();
        assert!(matches!(&e, SignatureError::BadKey { source_name, .. } if source_name == "x.asc"), "{e:?}");
        assert_eq!(e.to_string(), "trusted key x.asc: not an OpenPGP public key");
        assert!(is_pgp(&e), "{e:?}");
        let k = load_key("almalinux-9", builtin_key("almalinux-9").unwrap(), None).unwrap();
        let e = k.verify_detached(b"data", b"garbage").unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature(_)) && is_pgp(&e), "{e:?}");
        let e = k.verify_clearsigned("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n").unwrap_err();
        assert!(matches!(e, SignatureError::BadClearsigned(_)) && is_pgp(&e), "{e:?}");
        assert!(matches!(k.verify_clearsigned("no header"), Err(SignatureError::NotClearsigned)));
    }
}
