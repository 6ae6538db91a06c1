//! RFC 7523 client assertions (`private_key_jwt`).
//!
//! The agent signs a JWT with its private key: header `alg` (RS256, ES256
//! or EdDSA) and, optionally, `kid` (the key's registered name; without
//! it the gateway tries each of the agent's keys, so an agent needs no more
//! than Octopus Connection Agent's variables); claims `iss` = `sub` =
//! its client id, `aud` = the token endpoint's audience, `iat`, `exp` (at
//! most [`MAX_LIFETIME`] later) and a random `jti`. The gateway checks it
//! against that agent's registered key of that name. Replays (a `jti` seen
//! before) are the caller's check, against shared storage.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::pubkey::{KeyAlgorithm, KeyInfo};

/// Longest an assertion may live.
pub const MAX_LIFETIME: u64 = 300;
/// Clock difference tolerated between agent and gateway.
pub const LEEWAY: u64 = 60;
/// Largest assertion accepted.
pub const MAX_LEN: usize = 8 * 1024;

/// The claims of an assertion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: the client id.
    pub iss: String,
    /// Subject: the client id.
    pub sub: String,
    /// Audience: the token endpoint.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Not valid before (Unix seconds), if the client says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Unique id, for replay detection.
    pub jti: String,
}

/// Why an assertion was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not three base64url parts with JSON inside, or too long.
    #[error("malformed client assertion: {0}")]
    Malformed(String),
    /// `alg: none`.
    #[error("unsigned client assertions (alg none) are refused")]
    AlgNone,
    /// Another algorithm.
    #[error("client assertion algorithm {0} is not accepted: use RS256, ES256 or EdDSA")]
    UnsupportedAlg(String),
    /// The agent has no keys left.
    #[error("agent {0} has no registered keys: add one with `burrow add-key`")]
    NoKeys(String),
    /// `iss` and `sub` differ.
    #[error("client assertion iss and sub differ: both must be the client id")]
    IssuerMismatch,
    /// No such agent.
    #[error("unknown client id {0:?}: register the agent first (burrow register)")]
    UnknownClient(String),
    /// No such key for that agent (never registered, or removed).
    #[error(
        "agent {agent} has no key named {key:?}: it was removed or never added (burrow list-keys)"
    )]
    UnknownKey {
        /// The agent.
        agent: String,
        /// The key name presented.
        key: String,
    },
    /// The header's algorithm does not fit the registered key.
    #[error("key {key:?} is {registered}, but the assertion is signed {alg}")]
    AlgMismatch {
        /// The key name.
        key: String,
        /// The registered key's algorithm.
        registered: &'static str,
        /// The header's.
        alg: String,
    },
    /// The signature does not verify.
    #[error(
        "the client assertion signature does not verify with {0}: is the agent using a private key whose public key is registered (burrow list-keys)? A removed key no longer works"
    )]
    BadSignature(String),
    /// Expired.
    #[error("the client assertion expired {0} s ago: check the agent's clock")]
    Expired(u64),
    /// Issued in the future.
    #[error("the client assertion was issued {0} s in the future: check the agent's clock")]
    FromTheFuture(u64),
    /// `nbf` still ahead (RFC 7523 §3).
    #[error("the client assertion is not valid for another {0} s (nbf): check the agent's clock")]
    NotYetValid(u64),
    /// A `crit` header names extensions this gateway does not implement.
    #[error(
        "the client assertion's header lists critical extensions ({0}) this gateway does not understand: sign without crit"
    )]
    UnknownCritical(String),
    /// Lives too long.
    #[error("the client assertion lives {0} s; at most {MAX_LIFETIME} s is accepted")]
    TooLong(u64),
    /// Wrong audience.
    #[error(
        "the client assertion is for audience {got:?}, this gateway is {expected:?}: set API_AUDIENCE to what `burrow register` printed"
    )]
    WrongAudience {
        /// This gateway's audience.
        expected: String,
        /// The assertion's.
        got: String,
    },
    /// The `jti` was seen before.
    #[error(
        "replayed client assertion: its jti was already used; sign a fresh assertion for each token request"
    )]
    Replayed,
    /// The private key cannot sign.
    #[error("cannot sign with the private key: {0}")]
    Key(String),
}

fn part<T: serde::de::DeserializeOwned>(token: &str, idx: usize) -> Result<T, AssertionError> {
    let seg = token
        .split('.')
        .nth(idx)
        .ok_or_else(|| AssertionError::Malformed("expected header.payload.signature".into()))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| AssertionError::Malformed("a part is not base64url".into()))?;
    serde_json::from_slice(&raw).map_err(|e| AssertionError::Malformed(e.to_string()))
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    /// Extensions the recipient must understand (RFC 7515 §4.1.11).
    crit: Option<serde_json::Value>,
}

/// Signs an assertion with a PEM private key (RSA, EC P-256 or Ed25519),
/// naming the key in `kid` if `key_name` is given.
pub fn sign(
    private_pem: &[u8],
    client_id: &str,
    key_name: Option<&str>,
    audience: &str,
    now: u64,
    lifetime: u64,
) -> Result<String, AssertionError> {
    let (alg, key) = if let Ok(k) = EncodingKey::from_rsa_pem(private_pem) {
        let bits = crate::pubkey::rsa_private_bits(&String::from_utf8_lossy(private_pem));
        if let Some(b) = bits.filter(|b| *b < crate::pubkey::MIN_RSA_BITS) {
            return Err(AssertionError::Key(format!(
                "this RSA key has {b} bits, and the gateway accepts RSA keys of at least {} bits: make a new pair with `burrow keygen`, add its public key with `burrow add-key` and start the agent with the new private key",
                crate::pubkey::MIN_RSA_BITS
            )));
        }
        (Algorithm::RS256, k)
    } else if let Ok(k) = EncodingKey::from_ec_pem(private_pem) {
        (Algorithm::ES256, k)
    } else if let Ok(k) = EncodingKey::from_ed_pem(private_pem) {
        (Algorithm::EdDSA, k)
    } else {
        return Err(AssertionError::Key(
            "not a PEM RSA, EC P-256 or Ed25519 private key".into(),
        ));
    };
    let mut jti = [0u8; 16];
    rand::rng().fill_bytes(&mut jti);
    let claims = Claims {
        iss: client_id.into(),
        sub: client_id.into(),
        aud: audience.into(),
        iat: now,
        exp: now + lifetime.min(MAX_LIFETIME),
        nbf: None,
        jti: hex::encode(jti),
    };
    let mut header = Header::new(alg);
    header.kid = key_name.map(Into::into);
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| AssertionError::Key(e.to_string()))
}

/// A verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The claims.
    pub claims: Claims,
    /// The key that signed it.
    pub key_name: String,
}

/// What the verifier needs to know about registered agents: the agent
/// name for a client id, and its keys.
pub trait Keys {
    /// Agent name for a client id.
    fn agent(&self, client_id: &str) -> Option<String>;
    /// The agent's keys: (name, PEM public key).
    fn keys(&self, agent: &str) -> Vec<(String, String)>;
}

fn decoding_key(pem: &str, alg: Algorithm) -> Result<Option<DecodingKey>, AssertionError> {
    let info = KeyInfo::from_pem(pem).map_err(|e| AssertionError::Key(e.to_string()))?;
    let k = match (info.algorithm, alg) {
        (KeyAlgorithm::Rsa(_), Algorithm::RS256) => DecodingKey::from_rsa_pem(pem.as_bytes()),
        (KeyAlgorithm::EcP256, Algorithm::ES256) => DecodingKey::from_ec_pem(pem.as_bytes()),
        (KeyAlgorithm::Ed25519, Algorithm::EdDSA) => DecodingKey::from_ed_pem(pem.as_bytes()),
        _ => return Ok(None),
    };
    k.map(Some).map_err(|e| AssertionError::Key(e.to_string()))
}

/// The client id an assertion claims, before any check: only to find
/// which agent's keys [`verify`] must use.
pub fn claimed_client_id(token: &str) -> Result<String, AssertionError> {
    if token.len() > MAX_LEN {
        return Err(AssertionError::Malformed(format!(
            "longer than {MAX_LEN} bytes"
        )));
    }
    let claims: Claims = part(token, 1)?;
    Ok(claims.sub)
}

/// Verifies an assertion for `audience` at time `now` (Unix seconds).
pub fn verify(
    token: &str,
    keys: &impl Keys,
    audience: &str,
    now: u64,
) -> Result<Verified, AssertionError> {
    if token.len() > MAX_LEN {
        return Err(AssertionError::Malformed(format!(
            "longer than {MAX_LEN} bytes"
        )));
    }
    let header: RawHeader = part(token, 0)?;
    let alg = match header.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        a if a.eq_ignore_ascii_case("none") => return Err(AssertionError::AlgNone),
        other => return Err(AssertionError::UnsupportedAlg(other.into())),
    };
    // No extension is understood here, so any `crit` is refused; an empty
    // or malformed one is refused too (§4.1.11: it must not be empty).
    if let Some(crit) = &header.crit {
        return Err(AssertionError::UnknownCritical(crit.to_string()));
    }
    let kid = header.kid.filter(|k| !k.is_empty());
    // Claims before the signature only to find the key; nothing is trusted
    // until the signature verifies below.
    let unverified: Claims = part(token, 1)?;
    if unverified.iss != unverified.sub {
        return Err(AssertionError::IssuerMismatch);
    }
    let agent = keys
        .agent(&unverified.sub)
        .ok_or_else(|| AssertionError::UnknownClient(unverified.sub.clone()))?;
    let registered = keys.keys(&agent);
    if registered.is_empty() {
        return Err(AssertionError::NoKeys(agent));
    }
    let candidates: Vec<&(String, String)> = match &kid {
        Some(kid) => vec![registered.iter().find(|(n, _)| n == kid).ok_or_else(|| {
            AssertionError::UnknownKey {
                agent: agent.clone(),
                key: kid.clone(),
            }
        })?],
        None => registered.iter().collect(),
    };
    let mut v = Validation::new(alg);
    // Times and audience are checked below with `now` and clear errors.
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let mut verified = None;
    for (name, pem) in candidates {
        let Some(decoding) = decoding_key(pem, alg)? else {
            if kid.is_some() {
                let registered = KeyInfo::from_pem(pem)
                    .map_err(|e| AssertionError::Key(e.to_string()))?
                    .algorithm
                    .name();
                return Err(AssertionError::AlgMismatch {
                    key: name.clone(),
                    registered,
                    alg: header.alg.clone(),
                });
            }
            continue;
        };
        if let Ok(d) = jsonwebtoken::decode::<Claims>(token, &decoding, &v) {
            verified = Some((d.claims, name.clone()));
            break;
        }
    }
    let (claims, key_name) = verified.ok_or_else(|| {
        AssertionError::BadSignature(match &kid {
            Some(k) => format!("key {k:?}"),
            None => format!("any of agent {agent}'s {} keys", registered.len()),
        })
    })?;
    if claims.aud != audience {
        return Err(AssertionError::WrongAudience {
            expected: audience.into(),
            got: claims.aud,
        });
    }
    if claims.iat > now.saturating_add(LEEWAY) {
        return Err(AssertionError::FromTheFuture(claims.iat - now));
    }
    if claims.exp.saturating_add(LEEWAY) < now {
        return Err(AssertionError::Expired(now - claims.exp));
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(LEEWAY)
    {
        return Err(AssertionError::NotYetValid(nbf - now));
    }
    if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME {
        return Err(AssertionError::TooLong(
            claims.exp.saturating_sub(claims.iat),
        ));
    }
    if claims.jti.is_empty() {
        return Err(AssertionError::Malformed("no jti".into()));
    }
    Ok(Verified { claims, key_name })
}

#[cfg(test)]
mod tests;
