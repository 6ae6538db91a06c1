//! TLS from the agent to an application (egress TLS origination and
//! reachability checks): ordinary WebPKI validation of the application's
//! name against system roots or a CA bundle, or, for a rule marked
//! `--ignore-certificate-validation-errors`, no certificate validation at
//! all (the handshake signatures are still checked). Never used for links.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, Error, RootCertStore};

use super::{TlsError, VERSIONS, provider};

/// Accepts any certificate; checks only that the server holds its key.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    super::verify::handshake_signatures!();
}

/// Client settings towards applications: validating against `roots`, and
/// not validating at all (for rules that say so).
#[derive(Debug, Clone)]
pub struct AppTls {
    /// Validates the application's certificate and name.
    pub validating: Arc<ClientConfig>,
    /// Validates nothing but the handshake.
    pub insecure: Arc<ClientConfig>,
}

impl AppTls {
    /// Settings validating against `roots` (system roots or a CA bundle).
    pub fn new(roots: Arc<RootCertStore>) -> Result<Self, TlsError> {
        let builder = || {
            ClientConfig::builder_with_provider(Arc::new(provider()))
                .with_protocol_versions(VERSIONS)
                .map_err(|e| TlsError::Config(e.to_string()))
        };
        let validating = builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let insecure = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        Ok(AppTls {
            validating: Arc::new(validating),
            insecure: Arc::new(insecure),
        })
    }
}
