//! Certificate verifiers: pinning by thumbprint, CA roots with a helpful
//! error, and client certificates checked by the application after the
//! handshake.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, Error, OtherError};

use super::{Thumbprint, provider, thumbprint::list};

/// Why the peer's certificate was refused, in words an operator can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PinError {
    /// The presented certificate is not one of the pinned ones.
    #[error(
        "{peer} presented certificate thumbprint {presented}, but only {expected} is trusted: if {peer}'s certificate was replaced, trust the new thumbprint ({hint}); otherwise something between the two is intercepting the connection"
    )]
    Mismatch {
        /// Who presented it ("the gateway", "agent X").
        peer: String,
        /// The thumbprint presented.
        presented: Thumbprint,
        /// The trusted ones, formatted.
        expected: String,
        /// The setting to change.
        hint: String,
    },
    /// CA validation failed.
    #[error(
        "{peer}'s certificate (thumbprint {presented}) is not trusted by the CA roots in use: {cause}. If {peer} uses Burrow's self-signed certificate, pin it ({hint}) once that thumbprint matches the one presented here"
    )]
    Untrusted {
        /// Who presented it.
        peer: String,
        /// The thumbprint presented.
        presented: Thumbprint,
        /// The CA verifier's reason.
        cause: String,
        /// The setting to change.
        hint: String,
    },
}

impl PinError {
    fn into_rustls(self) -> Error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// Finds a [`PinError`] inside an I/O error from a TLS handshake.
pub fn pin_error(e: &std::io::Error) -> Option<PinError> {
    let inner = e.get_ref()?;
    match inner.downcast_ref::<Error>()? {
        Error::InvalidCertificate(CertificateError::Other(OtherError(o))) => {
            o.downcast_ref::<PinError>().cloned()
        }
        _ => None,
    }
}

/// The handshake-signature methods every verifier here shares, whatever it
/// decides about the certificate: the peer must hold the certificate's
/// key, checked with the provider's algorithms.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &super::provider().signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &super::provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            super::provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}
pub(super) use handshake_signatures;

/// How a TLS client decides to trust the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Only these certificates, by thumbprint (names and dates ignored, as
    /// with SSH host keys).
    Pinned(Vec<Thumbprint>),
    /// A certificate chain to one of these roots, for the server name dialed.
    Roots(Arc<rustls::RootCertStore>),
}

/// Server verifier for [`ServerTrust`].
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pins: Vec<Thumbprint>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    peer: String,
    hint: String,
}

impl ServerVerifier {
    pub(crate) fn new(trust: &ServerTrust, peer: &str, hint: &str) -> Result<Self, Error> {
        let (pins, webpki) = match trust {
            ServerTrust::Pinned(p) => (p.clone(), None),
            ServerTrust::Roots(roots) => {
                let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots.clone(),
                    Arc::new(provider()),
                )
                .build()
                .map_err(|e| Error::General(e.to_string()))?;
                (Vec::new(), Some(v))
            }
        };
        Ok(ServerVerifier {
            pins,
            webpki,
            peer: peer.to_owned(),
            hint: hint.to_owned(),
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented = Thumbprint::of_der(end_entity);
        if let Some(webpki) = &self.webpki {
            return webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| {
                    PinError::Untrusted {
                        peer: self.peer.clone(),
                        presented,
                        cause: e.to_string(),
                        hint: self.hint.clone(),
                    }
                    .into_rustls()
                });
        }
        if self.pins.contains(&presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(PinError::Mismatch {
                peer: self.peer.clone(),
                presented,
                expected: list(&self.pins),
                hint: self.hint.clone(),
            }
            .into_rustls())
        }
    }

    handshake_signatures!();
}

/// Asks every client for a certificate, requires none, and checks only that
/// a client presenting one holds its key. Which thumbprints are trusted
/// depends on the agent name, known only after the handshake, so the
/// application checks [`super::peer_thumbprint`] then.
#[derive(Debug)]
pub(crate) struct AnyClientCert;

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}
