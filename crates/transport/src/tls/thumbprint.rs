//! SHA-256 certificate thumbprints: how each side names the other.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 digest of a certificate's DER encoding. Printed as 64
/// uppercase hex digits; parsed from hex in any case, with or without the
/// `:` separators `openssl x509 -fingerprint -sha256` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint([u8; 32]);

impl Thumbprint {
    /// Thumbprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Thumbprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a SHA-256 thumbprint.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a SHA-256 thumbprint: expected 64 hex digits (colons allowed), as `burrow thumbprint` or the start-up log prints"
)]
pub struct ThumbprintError(pub String);

impl FromStr for Thumbprint {
    type Err = ThumbprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix("sha256:").unwrap_or(t);
        let digits: String = t.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| ThumbprintError(s.to_owned()))?;
        Ok(Thumbprint(out))
    }
}

/// Formats a list of thumbprints for messages.
pub fn list(prints: &[Thumbprint]) -> String {
    if prints.is_empty() {
        return "(none)".into();
    }
    prints
        .iter()
        .map(Thumbprint::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints_and_what_openssl_prints() {
        let t = Thumbprint::of_der(b"certificate");
        let printed = t.to_string();
        assert_eq!(printed.len(), 64);
        assert_eq!(printed.parse::<Thumbprint>().expect("own form"), t);
        let colons = printed
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_lowercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<Thumbprint>().expect("openssl form"), t);
    }

    #[test]
    fn rejects_wrong_lengths_and_digits() {
        for bad in ["", "abcd", &"g".repeat(64), &"A".repeat(66)] {
            let e = bad.parse::<Thumbprint>().expect_err(bad).to_string();
            assert!(e.contains("64 hex digits"), "{e}");
        }
    }
}
