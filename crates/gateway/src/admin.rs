//! The admin API (`/api/v1`, JSON) behind admin API keys: agents and their
//! keys, and more admin keys. Every mutation is audited; every refusal is
//! a JSON `{"error": "..."}` that says what to do, and changes nothing.

use std::sync::Arc;

use burrow_auth::admin_key;
use burrow_auth::pubkey::KeyInfo;
use burrow_store::{AdminKey, AgentKey, Store, StoreError, now_micros};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::State;

type Body = Full<Bytes>;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// A JSON response.
pub(crate) fn reply(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A refusal: a status and what to tell the caller.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl Refusal {
    fn response(self) -> Response<Body> {
        reply(self.0, &json!({ "error": self.1 }))
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal(status, msg.into())
}

fn store_error(e: &StoreError) -> Refusal {
    let status = match e {
        StoreError::Exists { .. } | StoreError::AgentLimit { .. } => StatusCode::CONFLICT,
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::DiskFull(_) => {
            warn!(error = %e, "admin API change refused: the disk is full");
            return error(
                StatusCode::INSUFFICIENT_STORAGE,
                "the gateway's disk is full, so the change was not made: free space on the gateway's data disk (or the database server's), then retry",
            );
        }
        _ => {
            warn!(error = %e, "admin API storage error");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage error; see the gateway log",
            );
        }
    };
    error(status, e.to_string())
}

/// Who is calling: the admin key id, after checking the key. Wrong keys
/// are throttled per address; a request with no key at all is not a guess.
async fn authenticate(
    state: &State,
    store: &Store,
    req: &Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Result<String, Refusal> {
    let unauthorized = |m: &str| error(StatusCode::UNAUTHORIZED, m);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("no admin API key: send Authorization: Bearer bk_..."))?;
    let attempt =
        state
            .throttles
            .admin
            .attempt(peer.ip())
            .await
            .map_err(|crate::throttle::Refused(s)| {
                error(
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
    let unauthorized = |m: &str| error(StatusCode::UNAUTHORIZED, m);
    let (id, secret) = admin_key::parse(token).map_err(|e| unauthorized(&e.to_string()))?;
    let key = store
        .admin_key(id)
        .await
        .map_err(|e| store_error(&e))?
        .filter(|k| admin_key::verify(secret, &k.hash))
        .ok_or_else(|| unauthorized("unknown or wrong admin API key"))?;
    if key.revoked {
        return Err(unauthorized("this admin API key was revoked"));
    }
    if key.expires_at.is_some_and(|t| t <= now_micros()) {
        return Err(unauthorized(
            "this admin API key has expired: create a new one with `burrow admin-key create`",
        ));
    }
    Ok(key.id)
}

async fn body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Refusal> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn check_name(what: &str, name: &str) -> Result<(), Refusal> {
    if burrow_wire::valid_name(name) {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid {what} name {name:?}: use 1-200 letters, digits, '-' and '.', not only dots"
            ),
        ))
    }
}

fn key_row(agent: &str, name: &str, info: &KeyInfo) -> AgentKey {
    AgentKey {
        agent: agent.into(),
        name: name.into(),
        algorithm: info.algorithm.name().into(),
        bits: info.algorithm.bits() as i64,
        fingerprint: info.fingerprint.clone(),
        public_pem: info.pem.clone(),
        created_at: now_micros(),
    }
}

fn key_json(k: &AgentKey) -> Value {
    json!({ "key_name": k.name, "algorithm": k.algorithm, "bits": k.bits,
            "fingerprint": k.fingerprint, "created_at": k.created_at })
}

fn parse_key(pem: &str) -> Result<KeyInfo, Refusal> {
    KeyInfo::from_pem(pem).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

#[derive(Deserialize)]
struct NewAgent {
    agent_name: String,
    key_name: String,
    public_key: String,
    #[serde(default)]
    fqdns: Vec<String>,
}

/// A host name, or `*.` and a domain: labels of letters, digits and `-`.
fn check_fqdn(fqdn: &str) -> Result<(), Refusal> {
    if burrow_wire::egress::valid_pattern(fqdn) {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid FQDN {fqdn:?}: use a host name such as git.internal.example.com, or *.internal.example.com"
            ),
        ))
    }
}

#[derive(Deserialize)]
struct RuleReq {
    agent_name: String,
    #[serde(default)]
    ignore_certificate_validation_errors: bool,
    #[serde(default)]
    tls: bool,
    check_port: Option<u16>,
    check_tls: Option<bool>,
    /// `22,443,8000-8100`; absent or null: any port.
    ports: Option<String>,
}

fn rule_json(r: &burrow_store::FqdnRule) -> Value {
    json!({ "fqdn": r.fqdn, "agent_name": r.agent,
            "ignore_certificate_validation_errors": r.ignore_certificate_errors,
            "tls": r.tls, "check_port": r.check_port, "check_tls": r.check_tls,
            "ports": r.ports.as_ref().map(ToString::to_string),
            "created_at": r.created_at, "updated_at": r.updated_at })
}

#[derive(Deserialize)]
struct RouteReq {
    agent_name: String,
    target: String,
    #[serde(default)]
    ignore_certificate_validation_errors: bool,
    #[serde(default)]
    proxy_protocol: bool,
}

fn route_json(r: &burrow_store::Route) -> Value {
    json!({ "hostname": r.hostname, "agent_name": r.agent, "target": r.target,
            "ignore_certificate_validation_errors": r.ignore_certificate_errors,
            "proxy_protocol": r.proxy_protocol,
            "created_at": r.created_at, "updated_at": r.updated_at })
}

/// A public host name, under the configured public domain if there is one.
fn check_hostname(state: &State, hostname: &str) -> Result<(), Refusal> {
    match crate::edge::hostname_refusal(
        state.config.public_domain.as_deref(),
        &state.config.own_names,
        hostname,
    ) {
        Some(why) => Err(error(StatusCode::BAD_REQUEST, why)),
        None => Ok(()),
    }
}

/// A host name a route may be stored under (before the own-name and
/// public-domain checks, which apply to new routes only).
fn check_route_name(hostname: &str) -> Result<(), Refusal> {
    match crate::edge::route_name_syntax_refusal(hostname) {
        Some(why) => Err(error(StatusCode::BAD_REQUEST, why)),
        None => Ok(()),
    }
}

/// `.` or `..`, as such or percent-encoded (`%2e`, RFC 3986 §2.3).
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

#[derive(Deserialize)]
struct NewKey {
    key_name: String,
    public_key: String,
}

#[derive(Deserialize)]
struct NewAdminKeyReq {
    name: String,
    expires_in_seconds: Option<u64>,
}

/// Serves one `/api/v1/...` request.
pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| cors_allow(&state.config.allowed_origins, o));
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
    let mut r = serve_authenticated(&state, req, peer).await;
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

async fn serve_authenticated(
    state: &Arc<State>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let Some(store) = state.config.store.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this gateway runs without a database",
        )
        .response();
    };
    let actor = match authenticate(state, &store, &req, peer).await {
        Ok(a) => a,
        Err(r) => return r.response(),
    };
    match serve(state, &store, &actor, req).await {
        Ok(r) => r,
        Err(r) => r.response(),
    }
}

async fn serve(
    state: &State,
    store: &Store,
    actor: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let force = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "force=true"));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let parts: Vec<&str> = path.split('/').skip(3).collect();
    // `.` and `..` (also percent-encoded) are dot segments: a client or
    // proxy that normalises the path would act on another resource than
    // the one named, so they are refused rather than interpreted.
    if path.split('/').any(is_dot_segment) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "paths with `.` or `..` segments are refused: name the resource itself",
        ));
    }
    // Every name in the path is checked as names are when created.
    match parts.as_slice() {
        ["agents", name, ..] => check_name("agent", name)?,
        ["fqdn-rules", fqdn] => check_fqdn(fqdn)?,
        ["routes", hostname] => check_route_name(hostname)?,
        _ => {}
    }
    if let ["agents", _, "keys", key] = parts.as_slice() {
        check_name("key", key)?;
    }
    let audit = |action: &'static str, subject: String, detail: String| async move {
        if let Err(e) = store.audit(actor, action, &subject, &detail).await {
            warn!(error = %e, "audit record not written");
        }
        info!(actor, action, %subject, "admin API");
    };
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["agents"]) => {
            let agents = store.agents().await.map_err(|e| store_error(&e))?;
            let list: Vec<Value> = agents
                .iter()
                .map(|a| {
                    let live = state.registry.links(&a.name);
                    let newest = live.iter().max_by_key(|l| l.since);
                    let version = newest.map(|l| l.version.clone()).or(a.version.clone());
                    let remote = newest
                        .and_then(|l| l.peer.map(|p| p.to_string()))
                        .or(a.remote_addr.clone());
                    let last_seen = if live.is_empty() {
                        a.last_seen
                    } else {
                        Some(now_micros())
                    };
                    json!({ "agent_name": a.name, "client_id": a.client_id,
                            "connected": !live.is_empty(), "links": live.len(),
                            "last_seen": last_seen, "version": version,
                            "remote_address": remote, "created_at": a.created_at })
                })
                .collect();
            Ok(reply(StatusCode::OK, &json!(list)))
        }
        (Method::POST, ["agents"]) => {
            let b: NewAgent = body(req).await?;
            check_name("agent", &b.agent_name)?;
            check_name("key", &b.key_name)?;
            for f in &b.fqdns {
                check_fqdn(f)?;
            }
            let info = parse_key(&b.public_key)?;
            let client_id = format!("burrow-{}", hex_id());
            let key = key_row(&b.agent_name, &b.key_name, &info);
            let now = now_micros();
            let rules: Vec<burrow_store::FqdnRule> = b
                .fqdns
                .iter()
                .map(|f| burrow_store::FqdnRule {
                    fqdn: f.to_ascii_lowercase(),
                    agent: b.agent_name.clone(),
                    ignore_certificate_errors: false,
                    tls: false,
                    check_port: None,
                    check_tls: false,
                    ports: None,
                    created_at: now,
                    updated_at: now,
                })
                .collect();
            // One transaction: the agent, its key and its rules, or nothing.
            store
                .register_agent(
                    &b.agent_name,
                    &client_id,
                    &key,
                    state.config.max_agents,
                    &rules,
                )
                .await
                .map_err(|e| store_error(&e))?;
            if !rules.is_empty() {
                crate::egress::reload(state).await;
            }
            audit(
                "register",
                b.agent_name.clone(),
                format!("key {} {}", b.key_name, info.fingerprint),
            )
            .await;
            let scheme = if state.acceptor.is_some() {
                "wss"
            } else {
                "ws"
            };
            let audience = state
                .identity
                .as_ref()
                .map(|i| i.audience.clone())
                .unwrap_or_default();
            Ok(reply(
                StatusCode::CREATED,
                &json!({
                    "agent_name": b.agent_name,
                    "key": key_json(&key),
                    "fqdns": b.fqdns,
                    "env": {
                        "AUTH_SERVER_DOMAIN": host,
                        "AUTH_SERVER_CLIENT_ID": client_id,
                        "API_AUDIENCE": audience,
                        "CONNECT_URL": format!("{scheme}://{host}/connect"),
                    }
                }),
            ))
        }
        (Method::DELETE, ["agents", name]) => {
            store
                .delete_agent(name)
                .await
                .map_err(|e| store_error(&e))?;
            let closed = state.registry.close_agent(name);
            audit(
                "unregister",
                (*name).to_owned(),
                format!("{closed} live links closed"),
            )
            .await;
            Ok(reply(
                StatusCode::OK,
                &json!({ "agent_name": name, "links_closed": closed }),
            ))
        }
        (Method::GET, ["agents", name, "keys"]) => {
            if store
                .agent(name)
                .await
                .map_err(|e| store_error(&e))?
                .is_none()
            {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no agent named {name:?}"),
                ));
            }
            let keys = store.keys(name).await.map_err(|e| store_error(&e))?;
            Ok(reply(
                StatusCode::OK,
                &json!(keys.iter().map(key_json).collect::<Vec<_>>()),
            ))
        }
        (Method::POST, ["agents", name, "keys"]) => {
            let b: NewKey = body(req).await?;
            check_name("key", &b.key_name)?;
            let info = parse_key(&b.public_key)?;
            let key = key_row(name, &b.key_name, &info);
            store.add_key(&key).await.map_err(|e| store_error(&e))?;
            audit(
                "add-key",
                (*name).to_owned(),
                format!("key {} {}", b.key_name, info.fingerprint),
            )
            .await;
            Ok(reply(StatusCode::CREATED, &key_json(&key)))
        }
        (Method::DELETE, ["agents", name, "keys", key]) => {
            let keys = store.keys(name).await.map_err(|e| store_error(&e))?;
            if !keys.iter().any(|k| k.name == *key) {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("agent {name} has no key named {key:?}"),
                ));
            }
            if keys.len() == 1 && !force {
                return Err(error(
                    StatusCode::CONFLICT,
                    format!(
                        "{key} is the last key of agent {name}: the agent could no longer authenticate; add another key first, or pass --force"
                    ),
                ));
            }
            store
                .remove_key(name, key)
                .await
                .map_err(|e| store_error(&e))?;
            let names: Vec<String> = keys
                .into_iter()
                .map(|k| k.name)
                .filter(|n| n != key)
                .collect();
            let closed = state.registry.close_unless_key(name, &names);
            audit(
                "remove-key",
                (*name).to_owned(),
                format!("key {key}; {closed} live links closed"),
            )
            .await;
            Ok(reply(
                StatusCode::OK,
                &json!({ "agent_name": name, "key_name": key, "links_closed": closed }),
            ))
        }
        (Method::GET, ["fqdn-rules"]) => {
            let check = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "check=true"));
            let rules = store.fqdn_rules().await.map_err(|e| store_error(&e))?;
            let results = if check {
                let checks = rules.iter().map(|r| crate::egress::check(state, r));
                futures_util::future::join_all(checks).await
            } else {
                Vec::new()
            };
            let list: Vec<Value> = rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut v = rule_json(r);
                    if let Some(c) = results.get(i) {
                        v["check"] = json!(c);
                    }
                    v
                })
                .collect();
            Ok(reply(StatusCode::OK, &json!(list)))
        }
        (Method::PUT, ["fqdn-rules", fqdn]) => {
            let fqdn = fqdn.to_ascii_lowercase();
            check_fqdn(&fqdn)?;
            let b: RuleReq = body(req).await?;
            check_name("agent", &b.agent_name)?;
            if b.check_port == Some(0) {
                return Err(error(StatusCode::BAD_REQUEST, "check_port must be 1-65535"));
            }
            let ports = match b.ports.as_deref() {
                None => None,
                Some(p) => Some(
                    p.parse::<burrow_store::Ports>()
                        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("ports: {e}")))?,
                ),
            };
            if let (Some(p), Some(c)) = (&ports, b.check_port)
                && !p.allows(c)
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("check_port {c} is not among the rule's ports {p}"),
                ));
            }
            let now = now_micros();
            let rule = burrow_store::FqdnRule {
                fqdn: fqdn.clone(),
                agent: b.agent_name.clone(),
                ignore_certificate_errors: b.ignore_certificate_validation_errors,
                tls: b.tls,
                check_port: b.check_port.map(i64::from),
                check_tls: b.check_tls.unwrap_or(false),
                ports,
                created_at: now,
                updated_at: now,
            };
            let created = store
                .put_fqdn_rule(&rule)
                .await
                .map_err(|e| store_error(&e))?;
            crate::egress::reload(state).await;
            let action = if created { "add-fqdn" } else { "update-fqdn" };
            let detail = match &rule.ports {
                Some(p) => format!("agent {} ports {p}", b.agent_name),
                None => format!("agent {}", b.agent_name),
            };
            audit(action, fqdn.clone(), detail).await;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut v = rule_json(&rule);
            v["created"] = json!(created);
            Ok(reply(status, &v))
        }
        (Method::DELETE, ["fqdn-rules", fqdn]) => {
            let fqdn = fqdn.to_ascii_lowercase();
            store
                .remove_fqdn_rule(&fqdn)
                .await
                .map_err(|e| store_error(&e))?;
            crate::egress::reload(state).await;
            audit("remove-fqdn", fqdn.clone(), String::new()).await;
            Ok(reply(StatusCode::OK, &json!({ "fqdn": fqdn })))
        }
        (Method::GET, ["traffic"]) => {
            let q: std::collections::HashMap<String, String> =
                form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let num = |k: &str| -> Result<Option<i64>, Refusal> {
                q.get(k)
                    .map(|v| {
                        v.parse::<i64>().map_err(|_| {
                            error(StatusCode::BAD_REQUEST, format!("{k} must be a number"))
                        })
                    })
                    .transpose()
            };
            let offset = num("offset")?.unwrap_or(0);
            if !(0..=burrow_store::MAX_TRAFFIC_OFFSET).contains(&offset) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "offset must be 0 to {}: page further back with until",
                        burrow_store::MAX_TRAFFIC_OFFSET
                    ),
                ));
            }
            let kind = q
                .get("kind")
                .map(|k| k.parse::<burrow_store::TrafficKind>())
                .transpose()
                .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
            let filter = burrow_store::TrafficFilter {
                kind,
                agent: q.get("agent").cloned(),
                host: q.get("host").cloned(),
                status: num("status")?,
                since: num("since")?,
                until: num("until")?,
                limit: num("limit")?.unwrap_or(100),
                offset,
            };
            let records = store.traffic(&filter).await.map_err(|e| store_error(&e))?;
            let list: Vec<Value> = records
                .iter()
                .map(|t| {
                    json!({ "at": t.at, "kind": t.kind.as_str(), "agent_name": t.agent, "route": t.route,
                            "client": t.client, "method": t.method, "host": t.host, "path": t.path,
                            "status": t.status, "target": t.target, "bytes_in": t.bytes_in,
                            "bytes_out": t.bytes_out, "duration_ms": t.duration_ms })
                })
                .collect();
            let dropped = state.traffic.as_ref().map_or(0, |r| r.dropped());
            Ok(reply(
                StatusCode::OK,
                &json!({ "records": list, "dropped": dropped }),
            ))
        }
        (Method::GET, ["routes"]) => {
            let routes = store.routes().await.map_err(|e| store_error(&e))?;
            Ok(reply(
                StatusCode::OK,
                &json!(routes.iter().map(route_json).collect::<Vec<_>>()),
            ))
        }
        (Method::PUT, ["routes", hostname]) => {
            let hostname = hostname.to_ascii_lowercase();
            check_hostname(state, &hostname)?;
            let b: RouteReq = body(req).await?;
            check_name("agent", &b.agent_name)?;
            let now = now_micros();
            let route = burrow_store::Route {
                hostname: hostname.clone(),
                agent: b.agent_name.clone(),
                target: b.target.clone(),
                ignore_certificate_errors: b.ignore_certificate_validation_errors,
                proxy_protocol: b.proxy_protocol,
                created_at: now,
                updated_at: now,
            };
            if crate::edge::route_target(&route).is_none() {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid internal URL {:?}: use http://HOST:PORT or https://HOST:PORT",
                        b.target
                    ),
                ));
            }
            let created = store.put_route(&route).await.map_err(|e| store_error(&e))?;
            crate::egress::reload(state).await;
            let action = if created { "add-route" } else { "update-route" };
            audit(
                action,
                hostname.clone(),
                format!("agent {} target {}", b.agent_name, b.target),
            )
            .await;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut v = route_json(&route);
            v["created"] = json!(created);
            Ok(reply(status, &v))
        }
        (Method::DELETE, ["routes", hostname]) => {
            let hostname = hostname.to_ascii_lowercase();
            store
                .remove_route(&hostname)
                .await
                .map_err(|e| store_error(&e))?;
            crate::egress::reload(state).await;
            audit("remove-route", hostname.clone(), String::new()).await;
            Ok(reply(StatusCode::OK, &json!({ "hostname": hostname })))
        }
        (Method::POST, ["admin-keys"]) => {
            let b: NewAdminKeyReq = body(req).await?;
            check_name("admin key", &b.name)?;
            let expires_at = b.expires_in_seconds.map(|s| {
                now_micros().saturating_add(
                    i64::try_from(s)
                        .unwrap_or(i64::MAX / 2_000_000)
                        .saturating_mul(1_000_000),
                )
            });
            let k = admin_key::generate();
            store
                .insert_admin_key(&AdminKey {
                    id: k.id.clone(),
                    name: b.name.clone(),
                    hash: k.hash.clone(),
                    created_at: now_micros(),
                    expires_at,
                    revoked: false,
                })
                .await
                .map_err(|e| store_error(&e))?;
            audit("admin-key-create", k.id.clone(), b.name.clone()).await;
            Ok(reply(
                StatusCode::CREATED,
                &json!({ "id": k.id, "name": b.name, "key": k.token, "expires_at": expires_at }),
            ))
        }
        _ => Err(error(StatusCode::NOT_FOUND, "no such admin API endpoint")),
    }
}

fn hex_id() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Makes sure an admin key exists: the one given (`BURROW_ADMIN_KEY`), or
/// on a fresh database a new one, returned so the caller can show it once.
pub async fn bootstrap(store: &Store, given: Option<&str>) -> Result<Option<String>, String> {
    if let Some(token) = given {
        let (id, secret) = admin_key::parse(token).map_err(|e| format!("BURROW_ADMIN_KEY: {e}"))?;
        match store.admin_key(id).await.map_err(|e| e.to_string())? {
            Some(k) if admin_key::verify(secret, &k.hash) => return Ok(None),
            Some(_) => return Err("BURROW_ADMIN_KEY has a known id but a different secret".into()),
            None => {}
        }
        let hash = admin_key::hash_secret(secret);
        store
            .insert_admin_key(&AdminKey {
                id: id.to_owned(),
                name: "bootstrap".into(),
                hash,
                created_at: now_micros(),
                expires_at: None,
                revoked: false,
            })
            .await
            .map_err(|e| e.to_string())?;
        return Ok(None);
    }
    if !store
        .admin_keys()
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(None);
    }
    let k = admin_key::generate();
    store
        .insert_admin_key(&AdminKey {
            id: k.id.clone(),
            name: "bootstrap".into(),
            hash: k.hash.clone(),
            created_at: now_micros(),
            expires_at: None,
            revoked: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(k.token))
}
