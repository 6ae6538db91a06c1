//! TLS for every link: one policy (TLS 1.2 minimum, 1.3 preferred, AEAD
//! suites only) for every listener and dialer, certificates generated on
//! first start, and trust by SHA-256 thumbprint or CA roots.
//!
//! # Layout
//! - [`Thumbprint`]: how each side names the other's certificate.
//! - [`IdentitySource`] / [`LiveIdentity`]: this side's certificate and key,
//!   reloadable while links stay up.
//! - [`ServerTrust`], [`PinError`]: how a client trusts a server, and why it
//!   did not.
//! - [`server_config`] / [`client_config`]: the rustls configurations.

mod app;
mod identity;
mod thumbprint;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

pub use app::{AppTls, cert_problem, describe_cert};
pub use identity::{
    Identity, IdentitySource, LiveIdentity, generated_paths, thumbprint_of_pem_file,
};
pub use thumbprint::{Thumbprint, ThumbprintError, list as list_thumbprints};
pub use verify::{PinError, ServerTrust, pin_error};

/// ALPN for the raw-TLS carrier (Burrow frames straight over TLS).
pub const ALPN_BURROW: &[u8] = b"burrow/1";
/// ALPN for HTTP/1.1: WebSocket links, status pages, browsers.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Protocol versions on every listener and dialer, preferred first.
pub static VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Errors loading or making TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    /// A PEM file does not hold what it should.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory cannot be created or written.
    #[error(transparent)]
    Dir(#[from] crate::files::DirError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider: aws-lc-rs with its default suites, which are all
/// AEAD (AES-GCM and ChaCha20-Poly1305) for TLS 1.2 and 1.3.
pub fn provider() -> CryptoProvider {
    static P: OnceLock<CryptoProvider> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = rustls::crypto::aws_lc_rs::default_provider();
        p.cipher_suites.retain(|s| is_aead(s.suite()));
        p
    })
    .clone()
}

fn is_aead(s: rustls::CipherSuite) -> bool {
    let name = format!("{s:?}");
    name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")
}

/// Server side: this side's certificate, ALPN for the raw carrier and
/// HTTP/1.1, and a request for (not a requirement of) a client
/// certificate, checked by the application with [`peer_thumbprint`].
pub fn server_config(identity: Arc<LiveIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut c = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verify::AnyClientCert))
        .with_cert_resolver(identity);
    c.alpn_protocols = vec![ALPN_BURROW.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(c))
}

/// Server side of the public HTTP edge: the same TLS policy, `h2` and
/// `http/1.1` by ALPN, no client certificates.
pub fn edge_server_config(identity: Arc<LiveIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut c = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(identity);
    c.alpn_protocols = vec![b"h2".to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(c))
}

/// Client side: trust per `trust`, present `identity` as the client
/// certificate, offer `alpn`. `peer` and `hint` word the error when the
/// server is not trusted ("the gateway", "set GATEWAY_THUMBPRINT=…").
pub fn client_config(
    identity: Option<Arc<LiveIdentity>>,
    trust: &ServerTrust,
    peer: &str,
    hint: &str,
    alpn: &[u8],
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = verify::ServerVerifier::new(trust, peer, hint)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut c = match identity {
        Some(id) => builder.with_client_cert_resolver(id),
        None => builder.with_no_client_auth(),
    };
    c.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(c))
}

/// Thumbprint of the certificate the peer presented, if any.
pub fn peer_thumbprint(conn: &rustls::CommonState) -> Option<Thumbprint> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Thumbprint::of_der(c))
}

/// The system's CA roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` override).
pub fn system_roots() -> Result<ServerTrust, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Config(format!(
            "no system CA certificates found ({} errors); pin the gateway with GATEWAY_THUMBPRINT or give --ca-file",
            found.errors.len()
        )));
    }
    Ok(ServerTrust::Roots(Arc::new(roots)))
}

/// CA roots from a PEM file.
pub fn roots_from_pem_file(path: &Path) -> Result<ServerTrust, TlsError> {
    let (roots, _) = certs_from_pem_file(path)?;
    Ok(ServerTrust::Roots(roots))
}

/// The certificates in a PEM file, as roots and as they are (an
/// application's own certificate is trusted as itself, [`AppTls`]).
pub fn certs_from_pem_file(
    path: &Path,
) -> Result<(Arc<rustls::RootCertStore>, Vec<CertificateDer<'static>>), TlsError> {
    let bad = |why: String| TlsError::Pem {
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(bad("no usable certificate".into()));
    }
    Ok((Arc::new(roots), certs))
}

#[cfg(test)]
mod tests;
