//! The admin API (`/api/v1`): agents and keys, FQDN rules, routes, the
//! traffic trail and admin keys, behind an admin API key. Requests are
//! parsed into a [`burrow_api::Endpoint`] (names and query checked there),
//! served by one handler per resource, and refused through one mapping of
//! errors to statuses (`error.rs`). The document of it all is
//! `docs/api.json` ([`burrow_api::openapi`]).

mod admin_keys;
mod agents;
mod ask;
mod call;
mod error;
mod routes;
mod rules;
mod state;
mod traffic;

pub(crate) use traffic::record as traffic_record;

use std::net::SocketAddr;

use burrow_api::Endpoint;
use burrow_auth::admin_key;
use burrow_store::{Store, now_micros};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

pub use admin_keys::bootstrap;
use call::{Call, body};
pub(crate) use error::Body;
use error::Refusal;
pub(crate) use state::Admin;

/// Serves one `/api/v1/...` request.
pub(crate) async fn handle(
    admin: &Admin,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| cors_allow(&admin.allowed_origins, o));
    if req.method() == Method::OPTIONS {
        // A browser's preflight: answered without credentials.
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        if let Some(a) = allowed {
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                http::HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                http::HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                http::HeaderValue::from_static("600"),
            );
            h.insert(header::VARY, http::HeaderValue::from_static("origin"));
        }
        return r;
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let mut r = match serve(admin, req, peer).await {
        Ok(r) => r,
        Err(r) => r.response(),
    };
    // Other replicas re-read at once (PostgreSQL NOTIFY) instead of at
    // their next sweep.
    if changes
        && r.status().is_success()
        && let Some(store) = &admin.store
        && let Err(e) = store.notify_change().await
    {
        tracing::debug!(error = %e, "change not announced to other replicas");
    }
    if let Some(a) = allowed {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
        r.headers_mut()
            .insert(header::VARY, http::HeaderValue::from_static("origin"));
    }
    r
}

/// The `Access-Control-Allow-Origin` value for `origin`, if allowed
/// (`BURROW_ALLOWED_ORIGINS`; `*` allows any).
fn cors_allow(allowed: &[String], origin: &http::HeaderValue) -> Option<http::HeaderValue> {
    if allowed.iter().any(|a| a == "*") {
        return Some(http::HeaderValue::from_static("*"));
    }
    let o = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        .then(|| origin.clone())
}

async fn serve(
    admin: &Admin,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Refusal> {
    let Some(store) = &admin.store else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "this gateway runs without a database",
        ));
    };
    let actor = authenticate(admin, store, &req, peer).await?;
    let endpoint = Endpoint::parse(req.method().as_str(), req.uri().path(), req.uri().query())?;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let call = Call {
        admin,
        store,
        actor: &actor,
        host,
        bearer,
        hop: req.headers().contains_key(ask::HOP_HEADER),
    };
    match endpoint {
        Endpoint::ListAgents => agents::list(&call).await,
        Endpoint::Register => agents::register(&call, body(req).await?).await,
        Endpoint::Unregister { agent } => agents::unregister(&call, &agent).await,
        Endpoint::ListKeys { agent } => agents::list_keys(&call, &agent).await,
        Endpoint::AddKey { agent } => agents::add_key(&call, &agent, body(req).await?).await,
        Endpoint::RemoveKey { agent, key, force } => {
            agents::remove_key(&call, &agent, &key, force).await
        }
        Endpoint::ListRules { check } => rules::list(&call, check).await,
        Endpoint::PutRule { fqdn } => rules::put(&call, &fqdn, body(req).await?).await,
        Endpoint::RemoveRule { fqdn } => rules::remove(&call, &fqdn).await,
        Endpoint::ListRoutes => routes::list(&call).await,
        Endpoint::PutRoute { hostname } => routes::put(&call, &hostname, body(req).await?).await,
        Endpoint::RemoveRoute { hostname } => routes::remove(&call, &hostname).await,
        Endpoint::Traffic(q) => traffic::list(&call, &q).await,
        Endpoint::CreateAdminKey => admin_keys::create(&call, body(req).await?).await,
        Endpoint::ListAdminKeys => admin_keys::list(&call).await,
        Endpoint::RevokeAdminKey { id } => admin_keys::revoke(&call, &id).await,
        Endpoint::AgentInfo { agent } => ask::info(&call, &agent).await,
        Endpoint::AgentCheck { agent, target, tls } => {
            ask::check(&call, &agent, &target, tls).await
        }
        Endpoint::AgentLogs { agent, query } => ask::logs(&call, &agent, &query).await,
    }
}

/// Who is calling: the admin key id, after checking the key. Wrong keys
/// are throttled per address; a request with no key at all is not a guess.
async fn authenticate(
    admin: &Admin,
    store: &Store,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<String, Refusal> {
    let unauthorized = |m: &str| Refusal::new(StatusCode::UNAUTHORIZED, m);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("no admin API key: send Authorization: Bearer bk_..."))?;
    let attempt =
        admin
            .throttles
            .admin
            .attempt(peer.ip())
            .await
            .map_err(|crate::throttle::Refused(s)| {
                Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many wrong admin API keys from this address: retry in {s} s"),
                )
            })?;
    match check_admin_key(store, token).await {
        Ok(id) => {
            attempt.succeeded();
            Ok(id)
        }
        Err(r) if r.0 == StatusCode::UNAUTHORIZED => {
            attempt.failed(&r.1);
            Err(r)
        }
        Err(r) => {
            attempt.succeeded();
            Err(r)
        }
    }
}

async fn check_admin_key(store: &Store, token: &str) -> Result<String, Refusal> {
    let unauthorized = |m: &str| Refusal::new(StatusCode::UNAUTHORIZED, m);
    let wrong = "unknown or wrong admin API key";
    let (id, secret) = admin_key::parse(token).map_err(|e| {
        // A key of the `bk_` form that is not one of ours is a wrong key,
        // not a malformed one.
        if token.trim().starts_with(admin_key::PREFIX) {
            unauthorized(wrong)
        } else {
            unauthorized(&e.to_string())
        }
    })?;
    let key = store
        .admin_key(id)
        .await?
        .filter(|k| admin_key::verify(secret, &k.hash))
        .ok_or_else(|| unauthorized(wrong))?;
    if key.revoked {
        return Err(unauthorized("this admin API key was revoked"));
    }
    if key.expires_at.is_some_and(|t| t <= now_micros()) {
        return Err(unauthorized(
            "this admin API key has expired: create a new one with `burrow admin-key create`",
        ));
    }
    // Last use, to within a minute: at most one write a minute per key.
    let now = now_micros();
    if key
        .last_used_at
        .is_none_or(|t| now.saturating_sub(t) >= 60_000_000)
        && let Err(e) = store.admin_key_used(&key.id, now).await
    {
        tracing::warn!(error = %e, "admin key use not recorded");
    }
    Ok(key.id)
}
