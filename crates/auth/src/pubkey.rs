//! Registered public keys: PEM `PUBLIC KEY` (SubjectPublicKeyInfo, what
//! `openssl rsa -pubout` and `openssl pkey -pubout` write), parsed just far
//! enough to know the algorithm and size, and fingerprinted.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Smallest RSA key accepted (Octopus Connection Agent's limit).
pub const MIN_RSA_BITS: usize = 2048;

/// Largest PEM accepted, so a hostile upload cannot make us parse megabytes.
pub const MAX_PEM_LEN: usize = 16 * 1024;

/// A key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA, with its modulus size in bits; signs RS256.
    Rsa(usize),
    /// ECDSA on P-256; signs ES256.
    EcP256,
    /// Ed25519; signs EdDSA.
    Ed25519,
}

impl KeyAlgorithm {
    /// `RSA`, `EC P-256`, `Ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa(_) => "RSA",
            KeyAlgorithm::EcP256 => "EC P-256",
            KeyAlgorithm::Ed25519 => "Ed25519",
        }
    }

    /// Key size in bits.
    pub fn bits(self) -> usize {
        match self {
            KeyAlgorithm::Rsa(b) => b,
            KeyAlgorithm::EcP256 | KeyAlgorithm::Ed25519 => 256,
        }
    }
}

/// What a public key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// `SHA256:` + hex of the SubjectPublicKeyInfo DER.
    pub fingerprint: String,
    /// The PEM, normalised.
    pub pem: String,
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM `PUBLIC KEY`.
    #[error(
        "not a PEM public key: expected -----BEGIN PUBLIC KEY----- as `openssl rsa -in key.pem -pubout` writes it"
    )]
    NotPem,
    /// The PEM is larger than any key.
    #[error("the public key file is larger than {MAX_PEM_LEN} bytes")]
    TooLarge,
    /// The DER does not parse.
    #[error("the public key is malformed: {0}")]
    Malformed(&'static str),
    /// An RSA key too small.
    #[error(
        "RSA keys must have at least {MIN_RSA_BITS} bits; this one has {0}. Make one with: openssl genrsa -out key.pem 2048"
    )]
    TooSmall(usize),
    /// Another algorithm or curve.
    #[error("unsupported key type: use RSA (2048 bits or more), EC P-256 or Ed25519")]
    Unsupported,
}

const OID_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];

/// One DER element: (tag, content, rest).
fn tlv(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), KeyError> {
    let bad = KeyError::Malformed("truncated DER");
    let (&tag, rest) = buf.split_first().ok_or(bad.clone())?;
    let (&first, rest) = rest.split_first().ok_or(bad.clone())?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 3 || rest.len() < n {
            return Err(KeyError::Malformed("bad DER length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(
    buf: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), KeyError> {
    let (t, content, rest) = tlv(buf)?;
    if t != tag {
        return Err(KeyError::Malformed(what));
    }
    Ok((content, rest))
}

fn rsa_bits(bit_string: &[u8]) -> Result<usize, KeyError> {
    let (&unused, key) = bit_string
        .split_first()
        .ok_or(KeyError::Malformed("empty key"))?;
    if unused != 0 {
        return Err(KeyError::Malformed("bit string padding"));
    }
    let (seq, _) = expect(key, 0x30, "RSA key is not a sequence")?;
    let (n, _) = expect(seq, 0x02, "RSA modulus is not an integer")?;
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return Err(KeyError::Malformed("zero modulus")),
    };
    Ok(n.len() * 8 - n[0].leading_zeros() as usize)
}

/// The modulus size of a PEM RSA private key (PKCS#1 `RSA PRIVATE KEY`
/// or PKCS#8 `PRIVATE KEY`), or `None` for anything else.
pub fn rsa_private_bits(pem: &str) -> Option<usize> {
    let pem = pem.trim();
    let (pkcs8, body) = if let Some(b) = pem
        .strip_prefix("-----BEGIN RSA PRIVATE KEY-----")
        .and_then(|r| r.strip_suffix("-----END RSA PRIVATE KEY-----"))
    {
        (false, b)
    } else {
        let b = pem
            .strip_prefix("-----BEGIN PRIVATE KEY-----")
            .and_then(|r| r.strip_suffix("-----END PRIVATE KEY-----"))?;
        (true, b)
    };
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let (seq, _) = expect(&der, 0x30, "not a sequence").ok()?;
    let (_, rest) = expect(seq, 0x02, "no version").ok()?;
    let rsa_key = if pkcs8 {
        let (alg, rest) = expect(rest, 0x30, "no algorithm").ok()?;
        let (oid, _) = expect(alg, 0x06, "no OID").ok()?;
        if oid != OID_RSA {
            return None;
        }
        let (inner, _) = expect(rest, 0x04, "no key").ok()?;
        let (seq, _) = expect(inner, 0x30, "not a sequence").ok()?;
        let (_, rest) = expect(seq, 0x02, "no version").ok()?;
        rest
    } else {
        rest
    };
    let (n, _) = expect(rsa_key, 0x02, "no modulus").ok()?;
    let i = n.iter().position(|b| *b != 0)?;
    let n = &n[i..];
    Some(n.len() * 8 - n[0].leading_zeros() as usize)
}

impl KeyInfo {
    /// Parses and checks a PEM public key.
    pub fn from_pem(pem: &str) -> Result<KeyInfo, KeyError> {
        if pem.len() > MAX_PEM_LEN {
            return Err(KeyError::TooLarge);
        }
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|r| r.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(KeyError::NotPem)?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|_| KeyError::NotPem)?;
        let (spki, _) = expect(&der, 0x30, "not a SubjectPublicKeyInfo")?;
        let (alg, rest) = expect(spki, 0x30, "no algorithm identifier")?;
        let (bits, _) = expect(rest, 0x03, "no key bit string")?;
        let (oid, params) = expect(alg, 0x06, "no algorithm OID")?;
        let algorithm = if oid == OID_RSA {
            let b = rsa_bits(bits)?;
            if b < MIN_RSA_BITS {
                return Err(KeyError::TooSmall(b));
            }
            KeyAlgorithm::Rsa(b)
        } else if oid == OID_EC {
            let (curve, _) = expect(params, 0x06, "no curve OID")?;
            if curve != OID_P256 {
                return Err(KeyError::Unsupported);
            }
            KeyAlgorithm::EcP256
        } else if oid == OID_ED25519 {
            KeyAlgorithm::Ed25519
        } else {
            return Err(KeyError::Unsupported);
        };
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        Ok(KeyInfo {
            algorithm,
            fingerprint: format!("SHA256:{}", hex::encode(Sha256::digest(&der))),
            pem: format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            ),
        })
    }
}
