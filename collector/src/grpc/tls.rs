//! mTLS for the gRPC endpoint (feature `mtls`): rustls on *ring*, driven without blocking from
//! the same poll loop. A client must present a certificate signed by the configured client CA;
//! the handshake shares the connection's handshake deadline, so a stalled one is dropped.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read the {what}: {source}")]
    Read {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM {what} in it")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: not a PEM {what}: {detail}")]
    Pem { path: PathBuf, what: &'static str, detail: String },
    #[error("{path}: {what} not usable: {source}")]
    Rustls {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("the client CA {path} is not usable: {detail}")]
    Verifier { path: PathBuf, detail: String },
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), what, source })
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path, what)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what, detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_path_buf(), what });
    }
    Ok(certs)
}

/// The server's TLS settings from its certificate chain, key and the CA its clients must be
/// signed by. Every file is read now, so a missing or bad one fails the start naming it.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(cert, "certificate")?;
    let key_bytes = read_file(key, "private key")?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        what: "private key",
        detail: e.to_string(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(client_ca, "client CA certificate")? {
        roots.add(ca).map_err(|source| TlsError::Rustls {
            path: client_ca.to_path_buf(),
            what: "client CA certificate",
            source,
        })?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier { path: client_ca.to_path_buf(), detail: e.to_string() })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls { path: cert.to_path_buf(), what: "TLS versions", source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsError::Rustls { path: key.to_path_buf(), what: "certificate and key", source })?;
    // gRPC clients insist on HTTP/2 by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Reads TLS records, decrypts, and appends the plaintext to `into`.
pub(super) fn read(
    sock: &mut TcpStream,
    tls: &mut rustls::ServerConnection,
    into: &mut Vec<u8>,
) -> std::io::Result<super::ReadOutcome> {
    loop {
        match tls.read_tls(sock) {
            Ok(0) => return Ok(super::ReadOutcome::Eof),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert (a missing or untrusted client certificate, say), then end.
                    while tls.wants_write() && tls.write_tls(sock).is_ok() {}
                    return Err(std::io::Error::new(ErrorKind::InvalidData, e));
                }
                let mut chunk = [0u8; 8192];
                loop {
                    match tls.reader().read(&mut chunk) {
                        Ok(0) => return Ok(super::ReadOutcome::Eof),
                        Ok(n) => into.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                if into.len() >= 64 * 1024 {
                    return Ok(super::ReadOutcome::Bytes);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(super::ReadOutcome::Bytes),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Encrypts what rustls takes of `out` and writes records until the socket is full.
pub(super) fn write(
    sock: &mut TcpStream,
    tls: &mut rustls::ServerConnection,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if !out.is_empty() {
        let n = tls.writer().write(out)?;
        out.drain(..n);
    }
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
