//! [`Secret`]: a credential that never prints.

/// A credential (pre-shared key, token). `Debug` and `Display` print a
/// placeholder, so a secret cannot leak into logs by formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Fewest characters a pre-shared key may have.
pub const MIN_PSK_LEN: usize = 32;

/// Why a pre-shared key was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Too short to resist guessing.
    #[error(
        "the pre-shared key has {len} characters; at least {MIN_PSK_LEN} are required. Generate one with: openssl rand -base64 32"
    )]
    TooShort {
        /// Its length.
        len: usize,
    },
}

impl Secret {
    /// Wraps a value without checks (tokens, test values).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Wraps a pre-shared key, refusing one shorter than [`MIN_PSK_LEN`].
    /// Surrounding white space (a trailing newline from a file) is dropped.
    pub fn psk(value: &str) -> Result<Self, SecretError> {
        let v = value.trim();
        if v.chars().count() < MIN_PSK_LEN {
            return Err(SecretError::TooShort {
                len: v.chars().count(),
            });
        }
        Ok(Secret(v.to_owned()))
    }

    /// The value, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused_with_a_way_out() {
        let e = Secret::psk("short").expect_err("too short").to_string();
        assert!(e.contains("openssl rand -base64 32"), "{e}");
        assert!(Secret::psk(&"x".repeat(31)).is_err());
        assert!(Secret::psk(&format!("{}\n", "x".repeat(32))).is_ok());
    }

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("hunter2-hunter2-hunter2-hunter2-x");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
