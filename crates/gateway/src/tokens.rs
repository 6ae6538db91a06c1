//! Key-pair identity: the RFC 7523 token endpoint (`POST /oauth2/token`)
//! and the check of the access token each link presents.
//!
//! The agent posts a client assertion signed with its private key; the
//! gateway verifies it against that agent's registered keys, refuses a
//! replayed `jti` (remembered in the store, so across replicas), and
//! returns a short-lived access token for the tunnel audience. A link's
//! token is checked again against the store when the link opens, so a
//! removed key or an unregistered agent gets no new links.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use burrow_auth::access::{AccessError, TokenKey};
use burrow_auth::assertion::{self, AssertionError, Keys};
use burrow_store::Store;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use tracing::{info, warn};

use crate::answer::Body;

/// Where agents get tokens.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// RFC 7523's client assertion type.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const MAX_FORM: usize = 16 * 1024;

/// Settings names in the store.
const SETTING_KEY: &str = "access_token_key";
const SETTING_AUDIENCE: &str = "api_audience";

/// The gateway's token issuer and checker.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) store: Store,
    key: TokenKey,
    /// The tunnel audience (`API_AUDIENCE`).
    pub(crate) audience: String,
    lifetime: u64,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An agent and its keys, fetched before verifying (the verifier is sync).
struct Fetched {
    client_id: String,
    agent: String,
    keys: Vec<(String, String)>,
}

impl Keys for Fetched {
    fn agent(&self, client_id: &str) -> Option<String> {
        (client_id == self.client_id).then(|| self.agent.clone())
    }
    fn keys(&self, agent: &str) -> Vec<(String, String)> {
        if agent == self.agent {
            self.keys.clone()
        } else {
            Vec::new()
        }
    }
}

struct NoAgent;

impl Keys for NoAgent {
    fn agent(&self, _: &str) -> Option<String> {
        None
    }
    fn keys(&self, _: &str) -> Vec<(String, String)> {
        Vec::new()
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    json_reply(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}

/// A JSON response that caches nowhere (RFC 6749 5.1).
fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = crate::answer::json(status, v);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Where the access-token signing key lives. Whoever reads it can forge a
/// token for any agent, so never where other local users can read it.
#[derive(Debug, Clone, Default)]
pub enum TokenKeySource {
    /// In the database's settings (PostgreSQL: shared by replicas and
    /// protected by the database's own authentication and grants).
    #[default]
    Store,
    /// A file (hex, mode 0600), created on first start: the default
    /// beside a SQLite database in the data directory.
    File(std::path::PathBuf),
    /// Given by the operator (`BURROW_TOKEN_KEY` or a key file of their
    /// own), the same on every replica; never stored.
    Given(burrow_transport::Secret),
}

/// Why the token key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] burrow_store::StoreError),
    /// The key file could not be read or written.
    #[error("token key file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not hex of 32 bytes or more.
    #[error("{what} is not a token key: use 64 or more hex characters (openssl rand -hex 32)")]
    Invalid {
        /// Which key (a file's path or a variable's name), never its value.
        what: String,
    },
}

impl TokenKeySource {
    async fn load(&self, store: &Store) -> Result<TokenKey, TokenKeyError> {
        let key = match self {
            TokenKeySource::Store => {
                let secret = store
                    .setting_or_init(SETTING_KEY, TokenKey::generate_hex)
                    .await?;
                return TokenKey::from_hex(&secret).ok_or_else(|| TokenKeyError::Invalid {
                    what: format!("the database setting {SETTING_KEY}"),
                });
            }
            TokenKeySource::Given(s) => {
                TokenKey::from_hex(s.expose().trim()).ok_or_else(|| TokenKeyError::Invalid {
                    what: "BURROW_TOKEN_KEY".into(),
                })?
            }
            TokenKeySource::File(path) => key_file(path)?,
        };
        // An older gateway kept the key in the database, where any reader
        // of the file (or a backup) could forge tokens. That key is retired,
        // not moved: it may already have been copied.
        if store.remove_setting(SETTING_KEY).await? {
            warn!(
                event = crate::event::TOKEN_KEY_REPLACED,
                "the access-token key was removed from the database and replaced by one the database does not hold; access tokens issued before now are refused, and agents fetch new ones"
            );
        }
        Ok(key)
    }
}

/// Reads the key file, or creates it (0600) with a new key.
fn key_file(path: &std::path::Path) -> Result<TokenKey, TokenKeyError> {
    let io = |source| TokenKeyError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            burrow_transport::files::tighten(path);
            TokenKey::from_hex(text.trim()).ok_or_else(|| TokenKeyError::Invalid {
                what: path.display().to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hex = TokenKey::generate_hex();
            burrow_transport::files::write_private(path, format!("{hex}\n").as_bytes())
                .map_err(io)?;
            info!(path = %path.display(), "access-token key created (mode 0600)");
            TokenKey::from_hex(&hex).ok_or_else(|| TokenKeyError::Invalid {
                what: path.display().to_string(),
            })
        }
        Err(e) => Err(io(e)),
    }
}

impl Identity {
    /// Loads (or, on a fresh database, creates) the signing key and the
    /// audience; `audience` overrides the stored one.
    pub(crate) async fn load(
        store: Store,
        key: &TokenKeySource,
        audience: Option<String>,
        lifetime: u64,
    ) -> Result<Self, TokenKeyError> {
        let key = key.load(&store).await?;
        let audience = match audience {
            Some(a) => a,
            None => {
                store
                    .setting_or_init(SETTING_AUDIENCE, || {
                        format!("urn:burrow:tunnel:{}", &TokenKey::generate_hex()[..16])
                    })
                    .await?
            }
        };
        Ok(Identity {
            store,
            key,
            audience,
            lifetime: lifetime.max(1),
        })
    }

    /// Verifies a client assertion; returns (agent, key name, jti expiry).
    async fn check_assertion(&self, token: &str) -> Result<(String, String), NotAccepted> {
        let now = unix_now();
        let client_id = assertion::claimed_client_id(token).map_err(|e| e.to_string())?;
        let fetched = match self.store.agent_by_client_id(&client_id).await {
            Ok(Some(agent)) => {
                let keys = self
                    .store
                    .keys(&agent.name)
                    .await
                    .map_err(|e| storage(&e))?
                    .into_iter()
                    .map(|k| (k.name, k.public_pem))
                    .collect();
                Some(Fetched {
                    client_id,
                    agent: agent.name,
                    keys,
                })
            }
            Ok(None) => None,
            Err(e) => return Err(storage(&e)),
        };
        let verified = match &fetched {
            Some(f) => assertion::verify(token, f, &self.audience, now),
            None => assertion::verify(token, &NoAgent, &self.audience, now),
        }
        .map_err(|e| e.to_string())?;
        let agent = fetched.map(|f| f.agent).unwrap_or_default();
        // Remember the jti until the assertion could no longer pass anyway.
        let until = verified.claims.exp.saturating_add(assertion::LEEWAY);
        let until = i64::try_from(until).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
        match self.store.use_jti(&verified.claims.jti, until).await {
            Ok(true) => Ok((agent, verified.key_name)),
            Ok(false) => Err(AssertionError::Replayed.to_string().into()),
            Err(e) => Err(storage(&e)),
        }
    }

    /// Serves `POST /oauth2/token` (client credentials with a JWT client
    /// assertion, form-encoded).
    pub(crate) async fn token_endpoint(
        &self,
        req: Request<Incoming>,
        peer: std::net::SocketAddr,
        throttle: &crate::throttle::Throttle,
    ) -> Response<Body> {
        if req.method() != http::Method::POST {
            return oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "POST the token request",
            );
        }
        let Ok(form) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
            return oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                &format!("request body over {MAX_FORM} bytes"),
            );
        };
        let form: HashMap<String, String> = form_urlencoded::parse(&form.to_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| form.get(k).map(String::as_str);
        if get("grant_type") != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
        if get("client_assertion_type") != Some(ASSERTION_TYPE) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("client_assertion_type must be {ASSERTION_TYPE}"),
            );
        }
        let Some(token) = get("client_assertion").filter(|t| !t.is_empty()) else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion is missing",
            );
        };
        // Throttled per address, whatever client id is claimed: changing
        // it gains an attacker nothing, and an agent's valid assertion from
        // a busy address is slowed, not refused.
        let attempt = match throttle.attempt(peer.ip()).await {
            Ok(a) => a,
            Err(crate::throttle::Refused(wait)) => {
                let mut r = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "slow_down",
                    &format!(
                        "too many refused token requests from this address: retry in {wait} s"
                    ),
                );
                if let Ok(v) = http::HeaderValue::from_str(&wait.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return r;
            }
        };
        let (agent, key) = match self.check_assertion(token).await {
            Ok(v) => {
                attempt.succeeded();
                v
            }
            Err(NotAccepted::Refused(why)) => {
                attempt.failed(&why);
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &why);
            }
            Err(NotAccepted::Unavailable(why)) => {
                attempt.succeeded();
                let mut r = oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    &why,
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
                return r;
            }
        };
        if let Some(id) = get("client_id") {
            let claimed = assertion::claimed_client_id(token).unwrap_or_default();
            if id != claimed {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client_id differs from the assertion's subject",
                );
            }
        }
        let (access, claims) =
            match self
                .key
                .issue(&self.audience, &agent, &key, unix_now(), self.lifetime)
            {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "cannot issue an access token");
                    return oauth_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "cannot issue a token; see the gateway log",
                    );
                }
            };
        info!(event = crate::event::TOKEN_ISSUED, %agent, %key, %peer, expires_in = self.lifetime, "access token issued");
        json_reply(
            StatusCode::OK,
            &json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": claims.exp - claims.iat,
                "scope": "tunnel",
                "agent_name": agent,
            }),
        )
    }

    /// Checks the access token a link presents for agent `agent`: signed by
    /// this gateway, for this audience, unexpired, for this agent, and its
    /// key still registered. Returns the key's name.
    pub(crate) async fn check_link(&self, agent: &str, token: &str) -> Result<String, String> {
        let claims = self
            .key
            .verify(token, &self.audience, unix_now())
            .map_err(|e: AccessError| e.to_string())?;
        if claims.sub != agent {
            return Err(format!(
                "the access token is for agent {}, but this link says it is {agent}: set the agent name it was registered with",
                claims.sub
            ));
        }
        let keys = self
            .store
            .keys(agent)
            .await
            .map_err(|e| storage(&e).into_text())?;
        if !keys.iter().any(|k| k.name == claims.key) {
            return Err(format!(
                "key {:?} of agent {agent} was removed (or the agent unregistered): the access token it earned no longer works",
                claims.key
            ));
        }
        Ok(claims.key)
    }

    /// Quick check before a WebSocket upgrade: a token of ours, unexpired.
    pub(crate) fn plausible(&self, token: &str) -> bool {
        self.key.verify(token, &self.audience, unix_now()).is_ok()
    }
}

/// Why an assertion was not accepted.
enum NotAccepted {
    /// The credential is wrong: 401, counted against the address.
    Refused(String),
    /// The database failed (unreachable, disk full): 503, not the
    /// client's fault and not counted as a guess.
    Unavailable(String),
}

impl NotAccepted {
    fn into_text(self) -> String {
        match self {
            NotAccepted::Refused(t) | NotAccepted::Unavailable(t) => t,
        }
    }
}

impl From<String> for NotAccepted {
    fn from(why: String) -> Self {
        NotAccepted::Refused(why)
    }
}

fn storage(e: &burrow_store::StoreError) -> NotAccepted {
    warn!(error = %e, "storage error while checking credentials");
    NotAccepted::Unavailable(match e {
        burrow_store::StoreError::DiskFull(_) => {
            "the gateway's disk is full, so it cannot record the assertion; try again later".into()
        }
        _ => "the gateway cannot reach its database; try again".into(),
    })
}
