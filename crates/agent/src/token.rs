//! Key-pair authentication, agent side: sign a client assertion with the
//! private key, trade it at the gateway's token endpoint for an access
//! token, present that on every link, and renew it before it expires.

use std::sync::Mutex;
use std::time::Duration;

use burrow_auth::assertion;
use burrow_transport::client::HttpClient;
use burrow_transport::{Secret, TransportError};
use bytes::Bytes;
use http::{Method, header};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::AgentState;

/// Where the gateway serves tokens (`https://AUTH_SERVER_DOMAIN` + this).
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Lifetime of each client assertion.
const ASSERTION_LIFETIME: u64 = 60;
/// Longest a token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What a key-pair agent needs (Octopus Connection Agent's variables).
#[derive(Clone)]
pub struct KeyPairAuth {
    /// `https://AUTH_SERVER_DOMAIN`, reached like the gateway (same proxy
    /// and trust).
    pub server: HttpClient,
    /// `AUTH_SERVER_CLIENT_ID`.
    pub client_id: String,
    /// `API_AUDIENCE`.
    pub audience: String,
    /// The key's registered name, if the operator gives it (`kid`);
    /// otherwise the gateway finds the key among the agent's.
    pub key_name: Option<String>,
    /// The private key, PEM.
    pub private_pem: Secret,
    /// Seconds added to this host's clock when signing (0; tests set it
    /// to play a host whose clock is off).
    pub clock_offset_secs: i64,
}

impl std::fmt::Debug for KeyPairAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairAuth")
            .field("server", &self.server.base())
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The private key cannot sign.
    #[error("cannot sign the client assertion: {0}")]
    Sign(#[from] assertion::AssertionError),
    /// The token endpoint could not be reached.
    #[error("token endpoint: {0}")]
    Transport(#[from] TransportError),
    /// The gateway refused the assertion; its reason.
    #[error("the gateway refused the agent's key (HTTP {status}): {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// `error_description`.
        reason: String,
    },
    /// The gateway could not check the assertion now (its database is
    /// down or its disk full); the agent retries.
    #[error("the gateway cannot issue tokens now (HTTP {status}): {reason}; retrying")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// `error_description`.
        reason: String,
        /// How long it asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The answer made no sense.
    #[error("the token endpoint answered something that is not a token: {0}")]
    BadAnswer(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
    /// The agent name the client id is registered as (a Burrow extension).
    agent_name: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Cached {
    token: Secret,
    agent_name: Option<String>,
    /// Renew from here on.
    renew_at: Instant,
    expires_at: Instant,
}

/// The current access token, fetched on first use and renewed before it
/// expires.
pub(crate) struct Tokens {
    auth: KeyPairAuth,
    current: Mutex<Option<Cached>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Tokens {
    pub(crate) fn new(auth: KeyPairAuth) -> Self {
        Tokens {
            auth,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, fresh: bool) -> Option<Secret> {
        let now = Instant::now();
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.as_ref()
            .filter(|c| {
                if fresh {
                    now < c.renew_at
                } else {
                    now < c.expires_at
                }
            })
            .map(|c| c.token.clone())
    }

    /// A token valid for a while yet: the cached one, or a new one.
    pub(crate) async fn get(&self) -> Result<Secret, TokenError> {
        if let Some(t) = self.cached(true) {
            return Ok(t);
        }
        // One request at a time: N links starting together share it.
        let _guard = self.fetching.lock().await;
        if let Some(t) = self.cached(true) {
            return Ok(t);
        }
        match self.fetch().await {
            Ok(t) => Ok(t),
            // A renewal that fails while the old token still works is not
            // fatal to a link being dialed.
            Err(e) => self.cached(false).ok_or(e),
        }
    }

    /// Fetches a new token unless a fresh one is cached.
    async fn refresh(&self) -> Result<(), TokenError> {
        let _guard = self.fetching.lock().await;
        if self.cached(true).is_some() {
            return Ok(());
        }
        self.fetch().await.map(|_| ())
    }

    /// Drops the cached token (the gateway refused it).
    pub(crate) fn forget(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The agent name the gateway registered this client id as.
    pub(crate) fn agent_name(&self) -> Option<String> {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.as_ref().and_then(|c| c.agent_name.clone())
    }

    /// When the current token should be renewed.
    fn renew_at(&self) -> Option<Instant> {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.as_ref().map(|c| c.renew_at)
    }

    async fn fetch(&self) -> Result<Secret, TokenError> {
        let a = &self.auth;
        let signed = assertion::sign(
            a.private_pem.expose().as_bytes(),
            &a.client_id,
            a.key_name.as_deref(),
            &a.audience,
            unix_now().saturating_add_signed(a.clock_offset_secs),
            ASSERTION_LIFETIME,
        )?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", &signed)
            .append_pair("client_id", &a.client_id)
            .finish();
        let res = a
            .server
            .request(
                Method::POST,
                TOKEN_PATH,
                &[(
                    header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded".into(),
                )],
                Bytes::from(form),
                REQUEST_TIMEOUT,
            )
            .await?;
        if !res.status.is_success() {
            let reason = match serde_json::from_slice::<OAuthError>(&res.body) {
                Ok(e) => e.error_description.unwrap_or(e.error),
                Err(_) => String::from_utf8_lossy(&res.body)
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
            };
            let status = res.status.as_u16();
            return Err(if res.status.is_server_error() {
                TokenError::Unavailable {
                    status,
                    reason,
                    retry_after: res.retry_after,
                }
            } else {
                TokenError::Refused { status, reason }
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&res.body).map_err(|e| TokenError::BadAnswer(e.to_string()))?;
        if answer.access_token.is_empty() || answer.expires_in == 0 {
            return Err(TokenError::BadAnswer("empty token or no lifetime".into()));
        }
        let life = Duration::from_secs(answer.expires_in);
        let now = Instant::now();
        let token = Secret::new(answer.access_token);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let before = current.as_ref().and_then(|c| c.agent_name.clone());
        if let Some(name) = answer
            .agent_name
            .as_ref()
            .filter(|n| before.as_ref() != Some(*n))
        {
            info!(event = crate::event::AGENT_NAMED, agent = %name, "the gateway knows this agent by its registered name");
        }
        *current = Some(Cached {
            token: token.clone(),
            agent_name: answer.agent_name,
            // Renew with a third of the lifetime left.
            renew_at: now + life * 2 / 3,
            expires_at: now + life,
        });
        drop(current);
        debug!(expires_in = answer.expires_in, "access token obtained");
        Ok(token)
    }
}

/// Keeps the token fresh while the agent runs, so links opened at any
/// moment (a redial after the gateway restarts) have a valid one at hand.
pub(crate) async fn renew(state: std::sync::Arc<AgentState>) {
    let Some(tokens) = &state.tokens else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let wait = match tokens.renew_at() {
            Some(at) if failures == 0 => at.saturating_duration_since(Instant::now()),
            // Not yet fetched, or the last try failed: retry with a capped
            // backoff.
            _ => Duration::from_secs(u64::from(failures.min(6)) * 5),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.stopping.cancelled() => return,
        }
        match tokens.refresh().await {
            Ok(()) => {
                if failures > 0 {
                    info!("access token renewed again");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!(error = %e, "cannot renew the access token; retrying");
                }
            }
        }
    }
}
