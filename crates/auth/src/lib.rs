//! Burrow's credentials, with no HTTP and no storage in sight:
//!
//! - [`pubkey`]: what a registered public key is (algorithm, size,
//!   fingerprint), refusing RSA under 2048 bits.
//! - [`assertion`]: RFC 7523 client assertions: the agent signs a
//!   short-lived JWT with its private key (RS256, ES256 or EdDSA), the
//!   gateway verifies it against the agent's registered keys, each failure
//!   with its own error.
//! - [`keygen`]: new key pairs, as Octopus Connection Agent's openssl commands make them.
//! - [`access`]: the short-lived access tokens the token endpoint issues.
//! - [`admin_key`]: admin API keys: generated once, stored as a hash,
//!   compared in constant time.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin_key;
pub mod assertion;
pub mod keygen;
pub mod pubkey;
