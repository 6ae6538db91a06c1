//! Admin API keys: `bk_<id>_<secret>`. The id is public (it finds the
//! record), the secret is 32 random bytes shown once; only its SHA-256 is
//! stored (the secret is random and long, so a slow hash adds nothing).

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every admin key starts with this.
pub const PREFIX: &str = "bk_";

/// A freshly generated key. `Debug` never shows the token.
#[derive(Clone)]
pub struct NewAdminKey {
    /// Public id, stored in the clear.
    pub id: String,
    /// The whole key, shown to the operator once.
    pub token: String,
    /// Hex SHA-256 of the secret part, stored.
    pub hash: String,
}

impl std::fmt::Debug for NewAdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAdminKey")
            .field("id", &self.id)
            .field("token", &"(redacted)")
            .finish()
    }
}

/// A string that is not an admin key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a Burrow admin API key: expected bk_<id>_<secret> as `burrow admin-key create` prints it"
)]
pub struct MalformedKey;

/// Hex SHA-256 of a key's secret part: what is stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes a new key.
pub fn generate() -> NewAdminKey {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewAdminKey {
        token: format!("{PREFIX}{id}_{secret}"),
        hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented key into its id and secret.
pub fn parse(token: &str) -> Result<(&str, &str), MalformedKey> {
    let rest = token.trim().strip_prefix(PREFIX).ok_or(MalformedKey)?;
    let (id, secret) = rest.split_once('_').ok_or(MalformedKey)?;
    let id_ok = id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok || secret.len() < 40 {
        return Err(MalformedKey);
    }
    Ok((id, secret))
}

/// Does `secret` match the stored hash? Constant time in the secret.
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    bool::from(hash_secret(secret).as_bytes().ct_eq(stored_hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_nothing_else_does() {
        let k = generate();
        let (id, secret) = parse(&k.token).expect("own format");
        assert_eq!(id, k.id);
        assert!(verify(secret, &k.hash));
        let other = generate();
        let (_, other_secret) = parse(&other.token).expect("parses");
        assert!(!verify(other_secret, &k.hash));
        assert!(!format!("{k:?}").contains(secret));
        assert!(!k.hash.contains(secret));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "bk_",
            "bk_abc_def",
            "xx_0123456789ab_secretsecretsecretsecretsecretsecret",
            "bk_0123456789zz_secretsecretsecretsecretsecretsecret",
        ] {
            assert_eq!(parse(bad), Err(MalformedKey), "{bad}");
        }
    }
}
