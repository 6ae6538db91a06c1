//! TLS from the agent to an application (egress TLS origination and
//! reachability checks): a certificate in the file given to the agent
//! (`--egress-ca-file`) is trusted as that certificate, pinned, CA or not
//! (a service's self-signed certificate); any other is validated by WebPKI
//! for the application's name against system roots or that file's CAs.
//! For a rule marked `--ignore-certificate-validation-errors` nothing is
//! validated (the handshake signatures still are). Refusals say in words
//! what is wrong. Never used for links.

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

/// Validates an application's certificate: one of `given`, byte for byte
/// (names and dates ignored, as with pinned thumbprints), or a chain to
/// `roots` for the name dialed.
#[derive(Debug)]
struct GivenOrRoots {
    given: Vec<CertificateDer<'static>>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl ServerCertVerifier for GivenOrRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.given.iter().any(|g| g.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        let refused = |e: Option<&Error>| {
            let why = CertProblem::of(end_entity, e, server_name, !self.given.is_empty());
            Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(why),
            )))
        };
        match &self.webpki {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| refused(Some(&e))),
            None => Err(refused(None)),
        }
    }

    super::verify::handshake_signatures!();
}

/// Why an application's certificate was refused, in words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
struct CertProblem(String);

impl CertProblem {
    fn of(cert: &CertificateDer<'_>, e: Option<&Error>, name: &ServerName<'_>, file: bool) -> Self {
        let self_signed = x509_parser::parse_x509_certificate(cert.as_ref())
            .is_ok_and(|(_, c)| c.issuer() == c.subject());
        let name = name.to_str();
        let not_given = if file {
            "it is not the certificate in --egress-ca-file, nor signed by a CA there"
        } else {
            "give the agent that certificate (or its CA) with --egress-ca-file"
        };
        use rustls::CertificateError as C;
        let cause = match e {
            Some(Error::InvalidCertificate(c)) => Some(c),
            _ => None,
        };
        let words = match cause {
            Some(C::Expired | C::ExpiredContext { .. }) => "the certificate has expired".to_owned(),
            Some(C::NotValidYet | C::NotValidYetContext { .. }) => {
                "the certificate is not valid yet (is the clock right?)".to_owned()
            }
            Some(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                format!("the certificate is not for {name} (it names other hosts)")
            }
            Some(C::Revoked) => "the certificate is revoked".to_owned(),
            Some(C::BadSignature) => "the certificate's signature does not verify".to_owned(),
            _ if self_signed => {
                format!("the certificate is self-signed and not trusted: {not_given}")
            }
            Some(C::UnknownIssuer) | None => {
                format!(
                    "the certificate is signed by an issuer the agent does not trust: {not_given}"
                )
            }
            Some(other) => format!("the certificate is not acceptable ({other:?})"),
        };
        CertProblem(words)
    }
}

/// The words for a refused application certificate inside a handshake's
/// I/O error, when that is what it was.
pub fn cert_problem(e: &std::io::Error) -> Option<String> {
    match e.get_ref()?.downcast_ref::<Error>()? {
        Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(o))) => {
            o.downcast_ref::<CertProblem>().map(|p| p.0.clone())
        }
        _ => None,
    }
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
    /// Settings trusting the `given` certificates as themselves and
    /// validating others against `roots` (system roots or a CA bundle).
    pub fn new(
        roots: Arc<RootCertStore>,
        given: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let builder = || {
            ClientConfig::builder_with_provider(Arc::new(provider()))
                .with_protocol_versions(VERSIONS)
                .map_err(|e| TlsError::Config(e.to_string()))
        };
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    Arc::new(provider()),
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?,
            )
        };
        let validating = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(GivenOrRoots { given, webpki }))
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

/// A certificate in words for a check's report: ` (subject …, expires …)`,
/// or nothing when it does not parse.
pub fn describe_cert(der: &[u8]) -> String {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return String::new();
    };
    let expires = cert.validity().not_after.to_rfc2822().unwrap_or_default();
    format!(" (subject {}, expires {expires})", cert.subject())
}
