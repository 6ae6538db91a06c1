//! New agent key pairs: a PKCS#8 private key and a SubjectPublicKeyInfo
//! public key, both PEM: what `openssl genrsa` and `openssl rsa -pubout`
//! write, so either tool's keys work everywhere.

use std::fmt;
use std::str::FromStr;

use crate::pubkey::{KeyError, KeyInfo};

/// Which kind of key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with 2048, 3072 or 4096 bits (RS256).
    Rsa(usize),
    /// ECDSA P-256 (ES256).
    P256,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa(b) => write!(f, "rsa{b}"),
            KeyKind::P256 => f.write_str("p256"),
            KeyKind::Ed25519 => f.write_str("ed25519"),
        }
    }
}

impl FromStr for KeyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa2048" => Ok(KeyKind::Rsa(2048)),
            "rsa3072" => Ok(KeyKind::Rsa(3072)),
            "rsa4096" => Ok(KeyKind::Rsa(4096)),
            "p256" | "ec" | "es256" => Ok(KeyKind::P256),
            "ed25519" | "eddsa" => Ok(KeyKind::Ed25519),
            _ => Err(format!(
                "unknown key type {s:?}: use rsa2048 (default), rsa3072, rsa4096, p256 or ed25519"
            )),
        }
    }
}

/// A new key pair. `Debug` never shows the private key.
pub struct KeyPair {
    /// PKCS#8 PEM private key.
    pub private_pem: String,
    /// What the public key is, with its PEM.
    pub public: KeyInfo,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_pem", &"(redacted)")
            .field("public", &self.public)
            .finish()
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The size is not one we make.
    #[error("RSA keys are made with 2048, 3072 or 4096 bits, not {0}")]
    Size(usize),
    /// Generation failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// The result did not parse back (a bug).
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Makes a key pair.
pub fn generate(kind: KeyKind) -> Result<KeyPair, KeygenError> {
    let gen_err = |e: rcgen::Error| KeygenError::Generate(e.to_string());
    let pair = match kind {
        KeyKind::Rsa(bits) => {
            let size = match bits {
                2048 => rcgen::RsaKeySize::_2048,
                3072 => rcgen::RsaKeySize::_3072,
                4096 => rcgen::RsaKeySize::_4096,
                other => return Err(KeygenError::Size(other)),
            };
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size).map_err(gen_err)?
        }
        KeyKind::P256 => {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?
        }
        KeyKind::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(gen_err)?,
    };
    let private_pem = match kind {
        KeyKind::Ed25519 => ed25519_pkcs8_v1_pem(&pair.serialize_der())
            .ok_or_else(|| KeygenError::Generate("unexpected Ed25519 key encoding".into()))?,
        _ => pair.serialize_pem(),
    };
    Ok(KeyPair {
        private_pem,
        public: KeyInfo::from_pem(&pair.public_key_pem())?,
    })
}

/// The DER prefix of a PKCS#8 v1 Ed25519 private key (RFC 8410 §7), up to
/// the 32-byte seed; the same bytes open the seed in a v2 document.
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 key as PKCS#8 v1 PEM, from the v2 document (RFC 5958, with
/// the public key) the generator writes: OpenSSL 3.0 cannot read v2
/// Ed25519 keys, and every reader reads v1.
fn ed25519_pkcs8_v1_pem(v2: &[u8]) -> Option<String> {
    use base64::Engine as _;
    // The seed follows `OCTET STRING (34) { OCTET STRING (32) }`.
    let at = v2.windows(4).position(|w| w == [0x04, 0x22, 0x04, 0x20])? + 4;
    let seed = v2.get(at..at + 32)?;
    let mut der = ED25519_V1_PREFIX.to_vec();
    der.extend_from_slice(seed);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    Some(format!(
        "-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubkey::KeyAlgorithm;

    #[test]
    fn made_keys_parse_and_sign() {
        for (kind, alg) in [
            (KeyKind::Rsa(2048), KeyAlgorithm::Rsa(2048)),
            (KeyKind::P256, KeyAlgorithm::EcP256),
            (KeyKind::Ed25519, KeyAlgorithm::Ed25519),
        ] {
            let k = generate(kind).expect("generates");
            assert_eq!(k.public.algorithm, alg);
            assert!(k.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(!format!("{k:?}").contains("BEGIN PRIVATE"));
            let t = crate::assertion::sign(k.private_pem.as_bytes(), "c", Some("k"), "a", 100, 60)
                .expect("signs");
            assert_eq!(t.split('.').count(), 3);
        }
        assert!(matches!(
            generate(KeyKind::Rsa(1024)),
            Err(KeygenError::Size(1024))
        ));
        assert_eq!("RSA4096".parse::<KeyKind>(), Ok(KeyKind::Rsa(4096)));
        // Ed25519 keys are PKCS#8 v1: version 0, no public key attribute.
        use base64::Engine as _;
        let k = generate(KeyKind::Ed25519).expect("generates");
        let b64: String = k
            .private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_V1_PREFIX);
        assert!("dsa".parse::<KeyKind>().is_err());
    }
}
