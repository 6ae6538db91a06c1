//! A side's own certificate and key: generated on first start and kept in
//! the data directory, or imported from PEM files; reloadable.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::{Thumbprint, TlsError, provider};

/// Where a side's certificate and key come from.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// `<dir>/<role>-cert.pem` and `<dir>/<role>-key.pem`, created on first
    /// start (P-256, self-signed) and reused afterwards.
    Generated {
        /// The data directory.
        dir: PathBuf,
        /// `gateway` or `agent`: the file name prefix.
        role: String,
        /// DNS names for the certificate (pinning ignores them; browsers
        /// show them).
        names: Vec<String>,
    },
    /// PEM files the operator provides (chain first, then key).
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A certificate made in memory and never written (the demo).
    Ephemeral {
        /// DNS names for the certificate.
        names: Vec<String>,
    },
}

/// One loaded certificate and key.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Chain and signing key, as rustls uses them.
    pub certified: Arc<CertifiedKey>,
    /// Thumbprint of the leaf.
    pub thumbprint: Thumbprint,
    /// True when this load created the files.
    pub created: bool,
}

fn generate(names: &[String]) -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        names.first().map_or("burrow", String::as_str),
    );
    dn.push(rcgen::DnType::OrganizationName, "Burrow (self-signed)");
    params.distinguished_name = dn;
    let year = 1970
        + i32::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 31_556_952),
        )
        .unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 100, 1, 1);
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn from_pem(cert_pem: &[u8], key_pem: &[u8], what: &Path) -> Result<Identity, TlsError> {
    let bad = |why: String| TlsError::Pem {
        path: what.to_owned(),
        why,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("certificate: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad("no CERTIFICATE block".into()))?;
    let thumbprint = Thumbprint::of_der(leaf);
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad(format!("key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| bad(format!("certificate and key do not belong together: {e}")))?;
    Ok(Identity {
        certified: Arc::new(certified),
        thumbprint,
        created: false,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    crate::files::write_private(path, data).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

impl IdentitySource {
    /// Loads the identity, creating it first where this source does.
    pub fn load(&self) -> Result<Identity, TlsError> {
        match self {
            IdentitySource::Files { cert, key } => from_pem(&read(cert)?, &read(key)?, cert),
            IdentitySource::Ephemeral { names } => {
                let (c, k) = generate(names)?;
                let mut id = from_pem(c.as_bytes(), k.as_bytes(), Path::new("(memory)"))?;
                id.created = true;
                Ok(id)
            }
            IdentitySource::Generated { dir, role, names } => {
                let (cert, key) = generated_paths(dir, role);
                if cert.exists() || key.exists() {
                    warn_if_readable(&key);
                    return from_pem(&read(&cert)?, &read(&key)?, &cert);
                }
                crate::files::ensure_writable_dir(dir, "data directory")?;
                let (c, k) = generate(names)?;
                // Key first: a certificate without its key is useless, a
                // key without its certificate is regenerated next time.
                write_private(&key, k.as_bytes())?;
                write_private(&cert, c.as_bytes())?;
                let mut id = from_pem(c.as_bytes(), k.as_bytes(), &cert)?;
                id.created = true;
                Ok(id)
            }
        }
    }

    /// The certificate file, where there is one.
    pub fn cert_path(&self) -> Option<PathBuf> {
        match self {
            IdentitySource::Files { cert, .. } => Some(cert.clone()),
            IdentitySource::Generated { dir, role, .. } => Some(generated_paths(dir, role).0),
            IdentitySource::Ephemeral { .. } => None,
        }
    }
}

/// Certificate and key paths of a generated identity.
pub fn generated_paths(dir: &Path, role: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{role}-cert.pem")),
        dir.join(format!("{role}-key.pem")),
    )
}

fn warn_if_readable(key: &Path) {
    crate::files::warn_if_readable(key);
}

/// Thumbprint of the first certificate in a PEM file.
pub fn thumbprint_of_pem_file(path: &Path) -> Result<Thumbprint, TlsError> {
    let pem = read(path)?;
    let first = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| TlsError::Pem {
            path: path.to_owned(),
            why: "no CERTIFICATE block".into(),
        })?
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    Ok(Thumbprint::of_der(&first))
}

/// The identity in use, swappable while links stay up: new handshakes use
/// the new certificate, established links keep theirs.
#[derive(Debug)]
pub struct LiveIdentity {
    source: IdentitySource,
    current: RwLock<Identity>,
}

impl LiveIdentity {
    /// Loads (or creates) the identity.
    pub fn load(source: IdentitySource) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(source.load()?);
        Ok(Arc::new(LiveIdentity { source, current }))
    }

    /// The identity in use now.
    pub fn current(&self) -> Identity {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Thumbprint of the certificate in use now.
    pub fn thumbprint(&self) -> Thumbprint {
        self.current().thumbprint
    }

    /// The DNS names (subject alternative names) of the certificate in
    /// use, lowercase; none when it cannot be parsed.
    pub fn dns_names(&self) -> Vec<String> {
        let current = self.current();
        let Some(leaf) = current.certified.cert.first() else {
            return Vec::new();
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
            return Vec::new();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect()
    }

    /// Where it comes from.
    pub fn source(&self) -> &IdentitySource {
        &self.source
    }

    /// Reads the files again. On error the identity in use is kept.
    pub fn reload(&self) -> Result<Thumbprint, TlsError> {
        let fresh = self.source.load()?;
        let t = fresh.thumbprint;
        match self.current.write() {
            Ok(mut g) => *g = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(t)
    }
}

impl rustls::server::ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified)
    }
}

impl rustls::client::ResolvesClientCert for LiveIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified)
    }

    fn has_certs(&self) -> bool {
        true
    }
}
