//! Access tokens: what the token endpoint returns for a verified client
//! assertion, and what an agent presents when it opens a link.
//!
//! A token is a JWT (`typ: at+jwt`, RFC 9068) signed HS256 with a gateway
//! secret shared by its replicas: `sub` is the agent name, `aud` the tunnel
//! audience, `key` the name of the agent key that earned it. Only HS256 is
//! accepted here, so a client assertion (RS256/ES256/EdDSA) can never pass
//! as an access token. The caller still checks that `key` is registered, so
//! removing a key also voids the tokens it earned.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// Default token lifetime.
pub const DEFAULT_LIFETIME: u64 = 600;
/// Largest token accepted.
pub const MAX_LEN: usize = 4 * 1024;
const TYP: &str = "at+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The gateway audience that issued it.
    pub iss: String,
    /// The agent name.
    pub sub: String,
    /// The tunnel audience.
    pub aud: String,
    /// The agent key that earned it.
    pub key: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Unique id.
    pub jti: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not a token of ours.
    #[error("malformed access token: {0}")]
    Malformed(String),
    /// Bad signature (another gateway's, or forged).
    #[error(
        "the access token was not issued by this gateway (bad signature): get a new one from its token endpoint"
    )]
    BadSignature,
    /// Expired.
    #[error(
        "the access token expired {0} s ago: the agent renews it before expiry; check the agent's clock and that it reaches the token endpoint"
    )]
    Expired(u64),
    /// For another audience.
    #[error("the access token is for audience {got:?}, this gateway is {expected:?}")]
    WrongAudience {
        /// This gateway's.
        expected: String,
        /// The token's.
        got: String,
    },
}

/// Signs and checks access tokens with one secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(redacted)")
    }
}

impl TokenKey {
    /// A key from a stored secret (hex), or `None` if it is not hex of at
    /// least 32 bytes.
    pub fn from_hex(secret: &str) -> Option<Self> {
        let secret = hex::decode(secret).ok().filter(|s| s.len() >= 32)?;
        Some(TokenKey { secret })
    }

    /// A new random secret, hex, for [`TokenKey::from_hex`].
    pub fn generate_hex() -> String {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        hex::encode(b)
    }

    /// Issues a token for `agent`, earned with key `key`.
    pub fn issue(
        &self,
        audience: &str,
        agent: &str,
        key: &str,
        now: u64,
        lifetime: u64,
    ) -> Result<(String, AccessClaims), AccessError> {
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = AccessClaims {
            iss: audience.into(),
            sub: agent.into(),
            aud: audience.into(),
            key: key.into(),
            iat: now,
            exp: now + lifetime,
            jti: hex::encode(jti),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TYP.into());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&self.secret))
            .map_err(|e| AccessError::Malformed(e.to_string()))?;
        Ok((token, claims))
    }

    /// Checks a token for `audience` at `now` (Unix seconds). Expiry is
    /// exact: the agent renews well before it.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<AccessClaims, AccessError> {
        if token.len() > MAX_LEN {
            return Err(AccessError::Malformed(format!(
                "longer than {MAX_LEN} bytes"
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AccessError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 || header.typ.as_deref() != Some(TYP) {
            return Err(AccessError::Malformed(
                "not an access token (present the token the token endpoint returned, not the client assertion)".into(),
            ));
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<AccessClaims>(
            token,
            &DecodingKey::from_secret(&self.secret),
            &v,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AccessError::BadSignature,
            _ => AccessError::Malformed(e.to_string()),
        })?
        .claims;
        if claims.aud != audience {
            return Err(AccessError::WrongAudience {
                expected: audience.into(),
                got: claims.aud,
            });
        }
        if claims.exp <= now {
            return Err(AccessError::Expired(now - claims.exp));
        }
        Ok(claims)
    }
}

/// Does this look like a JWT (three dot-separated parts)? Tells an access
/// token from a pre-shared key in a link's credential.
pub fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3 && !s.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const AUD: &str = "urn:burrow:gateway:test";

    fn key() -> TokenKey {
        TokenKey::from_hex(&TokenKey::generate_hex()).unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let k = key();
        let (t, c) = k.issue(AUD, "edge", "key-1", 1000, 600).unwrap();
        assert!(looks_like_jwt(&t));
        assert_eq!(k.verify(&t, AUD, 1599).unwrap(), c);
        assert_eq!(k.verify(&t, AUD, 1600), Err(AccessError::Expired(0)));
        assert_eq!(k.verify(&t, AUD, 1700), Err(AccessError::Expired(100)));
    }

    #[test]
    fn other_gateways_tokens_and_audiences_are_refused() {
        let (t, _) = key().issue(AUD, "edge", "k", 1000, 600).unwrap();
        assert_eq!(key().verify(&t, AUD, 1001), Err(AccessError::BadSignature));
        let k = key();
        let (t, _) = k.issue("urn:other", "edge", "k", 1000, 600).unwrap();
        assert!(matches!(
            k.verify(&t, AUD, 1001),
            Err(AccessError::WrongAudience { .. })
        ));
    }

    #[test]
    fn assertions_and_junk_are_not_access_tokens() {
        let k = key();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let assertion = crate::assertion::sign(
            pair.serialize_pem().as_bytes(),
            "cid",
            Some("k"),
            AUD,
            1000,
            60,
        )
        .unwrap();
        assert!(matches!(
            k.verify(&assertion, AUD, 1001),
            Err(AccessError::Malformed(_))
        ));
        for junk in ["", "a.b.c", "x", &"a".repeat(MAX_LEN + 1)] {
            assert!(k.verify(junk, AUD, 1).is_err(), "{junk:.20}");
        }
        assert!(!looks_like_jwt("a-pre-shared-key-of-32-characters!!"));
        assert!(TokenKey::from_hex("00").is_none());
        assert!(!format!("{k:?}").contains(&hex::encode(&k.secret)));
    }
}
