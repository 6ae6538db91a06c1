//! Logging in: the password against its SHA-512 crypt hash, the session
//! as a signed JWT in a cookie, a CSRF token bound to the session, and a
//! lockout per address that grows with repeated failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burrow_transport::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Shortest JWT secret taken (as Octoporty's `Agent__JwtSecret`).
pub const MIN_JWT_SECRET: usize = 32;

/// Failures from one address before it is locked out.
pub const FAILURES_BEFORE_LOCKOUT: u32 = 5;

/// Lockouts, one level more after each failure once locked out before.
pub const LOCKOUTS: [Duration; 4] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
];

/// Addresses whose failures are remembered at most.
const MAX_TRACKED: usize = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "burrow_session";

/// A setting the UI cannot start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The hash is not SHA-512 crypt.
    #[error(
        "the password hash (Agent__Auth__PasswordHash) is not a SHA-512 crypt hash ($6$...): make one with openssl passwd -6"
    )]
    NotSha512,
    /// The JWT secret is too short.
    #[error(
        "the JWT secret (Agent__JwtSecret) is {0} characters; it must be at least {MIN_JWT_SECRET}: make one with openssl rand -base64 32"
    )]
    ShortSecret(usize),
}

/// The password hash, checked to be `$6$` at start.
pub struct PasswordHash(Secret);

impl PasswordHash {
    /// Takes a `$6$[rounds=N$]SALT$HASH` string.
    pub fn new(hash: Secret) -> Result<PasswordHash, AuthError> {
        let h = hash.expose();
        let parts: Vec<&str> = h.split('$').collect();
        // "", "6", [rounds=N], salt, hash
        let ok = h.starts_with("$6$") && (parts.len() == 4 || parts.len() == 5);
        if !ok || sha_crypt::PasswordHashRef::new(h).is_err() {
            return Err(AuthError::NotSha512);
        }
        Ok(PasswordHash(hash))
    }

    /// Whether `password` matches (slow by design: call off the runtime).
    pub fn verify(&self, password: &str) -> bool {
        use sha_crypt::PasswordVerifier as _;
        sha_crypt::ShaCrypt::default()
            .verify_password(password.as_bytes(), self.0.expose())
            .is_ok()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iat: u64,
    exp: u64,
}

/// Issues and checks sessions.
pub struct Sessions {
    secret: Secret,
    enc: EncodingKey,
    dec: DecodingKey,
    lifetime: Duration,
}

/// A checked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// When it ends (seconds since the epoch).
    pub expires: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sessions {
    /// Sessions signed with `secret` (at least [`MIN_JWT_SECRET`]
    /// characters), lasting `lifetime`.
    pub fn new(secret: Secret, lifetime: Duration) -> Result<Sessions, AuthError> {
        let n = secret.expose().chars().count();
        if n < MIN_JWT_SECRET {
            return Err(AuthError::ShortSecret(n));
        }
        let enc = EncodingKey::from_secret(secret.expose().as_bytes());
        let dec = DecodingKey::from_secret(secret.expose().as_bytes());
        Ok(Sessions {
            secret,
            enc,
            dec,
            lifetime,
        })
    }

    /// How long a session lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session's token.
    pub fn issue(&self) -> Option<(String, Session)> {
        let sid = hex::encode(rand::random::<[u8; 16]>());
        let iat = now_secs();
        let claims = Claims {
            sub: "admin".into(),
            sid: sid.clone(),
            iat,
            exp: iat + self.lifetime.as_secs(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc).ok()?;
        Some((
            token,
            Session {
                id: sid,
                expires: claims.exp,
            },
        ))
    }

    /// The session a token carries, if it is ours and unexpired.
    pub fn check(&self, token: &str) -> Option<Session> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &v).ok()?;
        (data.claims.sub == "admin" && data.claims.exp > now_secs()).then_some(Session {
            id: data.claims.sid,
            expires: data.claims.exp,
        })
    }

    /// The CSRF token of a session: bound to it, so a token from another
    /// session (or none) is refused.
    pub fn csrf(&self, session: &Session) -> String {
        let mut h = Sha256::new();
        h.update(b"burrow-ui-csrf\0");
        h.update(self.secret.expose().as_bytes());
        h.update(b"\0");
        h.update(session.id.as_bytes());
        hex::encode(h.finalize())
    }

    /// Whether `given` is `session`'s CSRF token.
    pub fn csrf_ok(&self, session: &Session, given: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(given.as_bytes()))
    }
}

#[derive(Debug, Default, Clone)]
struct Record {
    failures: u32,
    /// Lockouts so far (the next is one level longer).
    level: usize,
    until: Option<Instant>,
    last: Option<Instant>,
}

/// Failed logins per address.
#[derive(Default)]
pub struct Lockout {
    by_addr: Mutex<HashMap<IpAddr, Record>>,
}

impl Lockout {
    /// How long `addr` must wait before trying again, if it must.
    pub fn locked(&self, addr: IpAddr) -> Option<Duration> {
        let map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        let until = map.get(&addr)?.until?;
        until.checked_duration_since(Instant::now())
    }

    /// Records a failure; returns the lockout it starts, if it starts one.
    pub fn failed(&self, addr: IpAddr) -> Option<Duration> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            // Forget the address seen longest ago.
            if let Some(oldest) = map.iter().min_by_key(|(_, r)| r.last).map(|(a, _)| *a) {
                map.remove(&oldest);
            }
        }
        let now = Instant::now();
        let r = map.entry(addr).or_default();
        r.last = Some(now);
        r.failures += 1;
        // Once locked out, each further failure locks out again, longer.
        if r.level > 0 || r.failures >= FAILURES_BEFORE_LOCKOUT {
            let d = LOCKOUTS[r.level.min(LOCKOUTS.len() - 1)];
            r.level += 1;
            r.failures = 0;
            r.until = Some(now + d);
            Some(d)
        } else {
            None
        }
    }

    /// A success forgets the address's failures.
    pub fn succeeded(&self, addr: IpAddr) {
        self.by_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }
}

/// "1 minute", "5 minutes", "42 seconds".
pub fn wait_words(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s < 60 {
        format!("{s} second{}", if s == 1 { "" } else { "s" })
    } else {
        let m = s.div_ceil(60);
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn hashes_must_be_sha512_crypt() {
        // `openssl passwd -6 -salt saltsalt hunter2`
        let good = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";
        let h = PasswordHash::new(secret(good)).expect("a $6$ hash");
        assert!(h.verify("hunter2"));
        assert!(!h.verify("hunter3"));
        assert!(!h.verify(""));
        // Any rounds (glibc crypt with rounds=10000).
        let rounds = "$6$rounds=10000$saltsalt$ZTNXXHFyLAi.0f6IV4I1ziqTD4etecjPY.wSj7UV9ctRg0t3APls5/5wgDKKPAKtz42rw3DeefzFnFyha0DdM.";
        let h = PasswordHash::new(secret(rounds)).expect("with rounds");
        assert!(h.verify("hunter2") && !h.verify("hunter"));
        for bad in ["$5$salt$abc", "plain", "$1$x$y", "$6$"] {
            assert!(PasswordHash::new(secret(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_are_signed_expire_and_carry_their_csrf_token() {
        assert_eq!(
            Sessions::new(secret("short"), Duration::from_secs(60)).err(),
            Some(AuthError::ShortSecret(5))
        );
        let s = Sessions::new(secret(&"k".repeat(32)), Duration::from_secs(60)).expect("ok");
        let (token, session) = s.issue().expect("issued");
        assert_eq!(s.check(&token), Some(session.clone()));
        // Signed by another secret: refused.
        let other = Sessions::new(secret(&"x".repeat(32)), Duration::from_secs(60)).expect("ok");
        assert_eq!(other.check(&token), None);
        // Tampered: refused.
        let mut bad = token.clone();
        bad.push('x');
        assert_eq!(s.check(&bad), None);
        // Expired: refused.
        let gone = Sessions::new(secret(&"k".repeat(32)), Duration::ZERO).expect("ok");
        let (t, _) = gone.issue().expect("issued");
        assert_eq!(s.check(&t), None);
        // CSRF tokens are per session.
        let (_, second) = s.issue().expect("issued");
        assert!(s.csrf_ok(&session, &s.csrf(&session)));
        assert!(!s.csrf_ok(&session, &s.csrf(&second)));
        assert!(!s.csrf_ok(&session, ""));
    }

    #[test]
    fn lockouts_grow() {
        let l = Lockout::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..FAILURES_BEFORE_LOCKOUT - 1 {
            assert_eq!(l.failed(a), None);
        }
        assert_eq!(l.failed(a), Some(LOCKOUTS[0]));
        assert!(l.locked(a).is_some());
        assert!(l.locked(b).is_none(), "per address");
        assert_eq!(l.failed(a), Some(LOCKOUTS[1]));
        assert_eq!(l.failed(a), Some(LOCKOUTS[2]));
        assert_eq!(l.failed(a), Some(LOCKOUTS[3]));
        assert_eq!(l.failed(a), Some(LOCKOUTS[3]), "capped at an hour");
        l.succeeded(a);
        assert!(l.locked(a).is_none());
        assert_eq!(wait_words(Duration::from_secs(60)), "1 minute");
        assert_eq!(wait_words(Duration::from_secs(61)), "2 minutes");
        assert_eq!(wait_words(Duration::from_secs(5)), "5 seconds");
    }
}
