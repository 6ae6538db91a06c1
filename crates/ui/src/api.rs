//! The JSON API the page calls (`/api/...`), the page itself, and the
//! checks every request passes: session cookie, CSRF token on changes,
//! bounded bodies, same-origin.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use burrow_agent::Agent;
use burrow_api::link::{
    CaddyRoutes, Fetched, GatewayInfo, GatewayLogs, GetLanding, InspectEdge, LogFilter, Mapping,
    Probe, SetLanding, Traffic, TrafficFilter,
};
use burrow_transport::logtap;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::UiConfig;
use crate::auth::{COOKIE, Lockout, Session, wait_words};
use crate::db::check;

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Largest request body (an import of many mappings).
const MAX_BODY: usize = 1024 * 1024;

/// Most mappings kept (the gateway publishes at most as many).
const MAX_MAPPINGS: usize = 5000;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

pub(crate) struct UiState {
    cfg: UiConfig,
    agent: Agent,
    lockout: Lockout,
    /// Serialises mapping changes (read, change, store, sync).
    changing: tokio::sync::Mutex<()>,
}

impl UiState {
    pub(crate) fn new(cfg: UiConfig, agent: Agent) -> UiState {
        UiState {
            cfg,
            agent,
            lockout: Lockout::default(),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    fn secure(&self) -> bool {
        self.cfg.tls.is_some()
    }
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ok_json(v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    full(StatusCode::OK, "application/json", body)
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let body = json!({ "error": message.into() });
    full(status, "application/json", body.to_string())
}

fn invalid(field: &str, message: impl Into<String>) -> Response<Body> {
    let body = json!({ "error": message.into(), "field": field });
    full(
        StatusCode::BAD_REQUEST,
        "application/json",
        body.to_string(),
    )
}

/// The headers every answer gets.
fn harden(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn session_cookie(state: &UiState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.secure() { "; Secure" } else { "" };
    let c =
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A change from another origin is refused, whatever it carries.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest.to_owned()))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
}

async fn body_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON (Content-Type: application/json)",
        ));
    }
    // A declared length past the limit is refused before a byte is read
    // (no "100 Continue": the client never sends the body it would have
    // to be cut off in).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request is larger than {MAX_BODY} bytes"),
        ));
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {MAX_BODY} bytes"),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("not the JSON expected: {e}"),
        )
    })
}

pub(crate) async fn handle(
    state: Arc<UiState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut r = route(&state, peer.ip(), req).await;
    harden(&mut r);
    r
}

async fn route(state: &Arc<UiState>, peer: IpAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/" | "/index.html") => {
            return full(StatusCode::OK, "text/html; charset=utf-8", INDEX);
        }
        (&Method::GET, "/app.js") => return full(StatusCode::OK, "text/javascript", APP_JS),
        (&Method::GET, "/app.css") => return full(StatusCode::OK, "text/css", APP_CSS),
        (&Method::POST, "/api/login") => return login(state, peer, req).await,
        _ => {}
    }
    if !path.starts_with("/api/") {
        return refuse(StatusCode::NOT_FOUND, "no such page");
    }
    let Some(session) = cookie(req.headers(), COOKIE).and_then(|t| state.cfg.sessions.check(&t))
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "log in first (or again: the session ended)",
        );
    };
    if method != Method::GET {
        let token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_origin(&req) || !state.cfg.sessions.csrf_ok(&session, token) {
            return refuse(
                StatusCode::FORBIDDEN,
                "refused: missing or wrong CSRF token, or another origin",
            );
        }
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let mapping = path.strip_prefix("/api/mappings/").map(str::to_owned);
    match (method, path.as_str()) {
        (Method::GET, "/api/session") => ok_json(&json!({
            "csrf": state.cfg.sessions.csrf(&session),
            "expires": session.expires,
        })),
        (Method::POST, "/api/logout") => {
            let mut r = ok_json(&json!({ "ok": true }));
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(state, "", 0));
            r
        }
        (Method::GET, "/api/status") => ok_json(&status(state).await),
        (Method::GET, "/api/events") => events(state.clone(), session),
        (Method::POST, "/api/reconnect") => {
            state.agent.reconnect_now();
            ok_json(&json!({ "ok": true }))
        }
        (Method::GET, "/api/mappings") => mappings(state).await,
        (Method::POST, "/api/mappings") => match body_json::<Mapping>(req).await {
            Ok(m) => put_mapping(state, m, None).await,
            Err(r) => r,
        },
        (Method::PUT, _) if mapping.is_some() => match body_json::<Mapping>(req).await {
            Ok(m) => put_mapping(state, m, mapping.as_deref()).await,
            Err(r) => r,
        },
        (Method::DELETE, _) if mapping.is_some() => {
            remove_mapping(state, mapping.as_deref().unwrap_or_default()).await
        }
        (Method::GET, "/api/mappings-export") => match state.cfg.db.mappings().await {
            Ok(all) => {
                let mut r = ok_json(&json!({ "mappings": all }));
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"burrow-mappings.json\""),
                );
                r
            }
            Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (Method::POST, "/api/mappings-import") => match body_json::<Imported>(req).await {
            Ok(i) => import(state, i.mappings).await,
            Err(r) => r,
        },
        (Method::GET, "/api/traffic") => traffic(state, &q).await,
        (Method::GET, "/api/logs") => {
            let Ok(level) = parse_level(q("level").as_deref()) else {
                return invalid("level", "use ERROR, WARN, INFO, DEBUG or TRACE");
            };
            own_logs(state, level, q("q").map(|s| s.to_lowercase())).await
        }
        (Method::GET, "/api/logs/follow") => {
            let Ok(level) = parse_level(q("level").as_deref()) else {
                return invalid("level", "use ERROR, WARN, INFO, DEBUG or TRACE");
            };
            follow_own_logs(
                state.clone(),
                session,
                level,
                q("q").map(|s| s.to_lowercase()),
            )
        }
        (Method::GET, "/api/gateway-logs/follow") => {
            follow_gateway_logs(state.clone(), session, q("level")).await
        }
        (Method::GET, "/api/landing") => gateway_call::<GetLanding>(state, &()).await,
        (Method::PUT, "/api/landing") => match body_json::<LandingBody>(req).await {
            Ok(b) => gateway_call::<SetLanding>(state, &Some(b.html)).await,
            Err(r) => r,
        },
        (Method::DELETE, "/api/landing") => gateway_call::<SetLanding>(state, &None).await,
        (Method::GET, "/api/caddy") => gateway_call::<CaddyRoutes>(state, &()).await,
        (Method::GET, "/api/backup") => backup(state).await,
        (Method::POST, "/api/inspect") => match body_json::<Probe>(req).await {
            Ok(p) => inspect(state, p).await,
            Err(r) => r,
        },
        _ => refuse(StatusCode::NOT_FOUND, "no such API"),
    }
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

#[derive(Deserialize)]
struct LandingBody {
    html: String,
}

#[derive(Deserialize)]
struct Imported {
    mappings: Vec<Mapping>,
}

async fn login(state: &Arc<UiState>, peer: IpAddr, req: Request<Incoming>) -> Response<Body> {
    if !same_origin(&req) {
        return refuse(StatusCode::FORBIDDEN, "refused: another origin");
    }
    if let Some(wait) = state.lockout.locked(peer) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed logins from this address: try again in {}",
                wait_words(wait)
            ),
        );
    }
    let body: LoginBody = match body_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let st = state.clone();
    let good = tokio::task::spawn_blocking(move || st.cfg.password.verify(&body.password))
        .await
        .unwrap_or(false);
    if !good {
        let lock = state.lockout.failed(peer);
        warn!(event = burrow_agent::event::UI_LOGIN_FAILED, source = %peer, locked_seconds = lock.map_or(0, |d| d.as_secs()), "web UI login failed");
        let message = match lock {
            Some(d) => format!(
                "wrong password; too many failed logins from this address: try again in {}",
                wait_words(d)
            ),
            None => "wrong password".to_owned(),
        };
        let code = if lock.is_some() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::UNAUTHORIZED
        };
        return refuse(code, message);
    }
    state.lockout.succeeded(peer);
    let Some((token, session)) = state.cfg.sessions.issue() else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no session could be made",
        );
    };
    info!(event = burrow_agent::event::UI_LOGIN, source = %peer, "web UI login");
    let mut r = ok_json(&json!({
        "csrf": state.cfg.sessions.csrf(&session),
        "expires": session.expires,
    }));
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(state, &token, state.cfg.sessions.lifetime().as_secs()),
    );
    r
}

async fn status(state: &UiState) -> Value {
    let gateway = match state.agent.gateway() {
        Some(rpc) => rpc
            .call_with::<GatewayInfo>(
                &(),
                burrow_rpc::Options {
                    timeout: Duration::from_secs(3),
                    ..burrow_rpc::Options::default()
                },
            )
            .await
            .map(|g| serde_json::to_value(g).unwrap_or(Value::Null))
            .unwrap_or_else(|e| json!({ "error": e.to_string() })),
        None => Value::Null,
    };
    json!({
        "agent": {
            "name": state.agent.name(),
            "version": env!("CARGO_PKG_VERSION"),
        },
        "gateway_url": state.agent.gateway_url(),
        "gateway": gateway,
        "links": state.agent.links(),
    })
}

/// A server-sent-event stream fed by `next`, ended when the session does.
fn sse<S>(session: Session, items: S) -> Response<Body>
where
    S: futures_util::Stream<Item = Value> + Send + 'static,
{
    let until = Duration::from_secs(
        session.expires.saturating_sub(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
    );
    let deadline = tokio::time::sleep(until);
    let frames = items
        .map(|v| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: {v}\n\n")))))
        .take_until(deadline);
    let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

fn events(state: Arc<UiState>, session: Session) -> Response<Body> {
    let watch = state.agent.watch();
    let items = futures_util::stream::unfold(
        (state, watch, true),
        |(state, mut watch, first)| async move {
            if !first {
                // A change, or a second for the live figures.
                let _ = tokio::time::timeout(Duration::from_secs(1), watch.changed()).await;
            }
            let v = status(&state).await;
            Some((v, (state, watch, false)))
        },
    );
    sse(session, items)
}

async fn mappings(state: &UiState) -> Response<Body> {
    match state.cfg.db.mappings().await {
        Ok(all) => ok_json(&json!({
            "mappings": all,
            "synced": state.agent.synced(),
        })),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Sends the stored mappings to the gateway; what it said, for the page.
async fn apply(state: &UiState) -> Value {
    let all = match state.cfg.db.mappings().await {
        Ok(a) => a,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    match state.agent.set_mappings(all).await {
        Some(Ok(s)) => serde_json::to_value(s).unwrap_or(Value::Null),
        Some(Err(e)) => json!({ "error": format!("saved; the gateway did not take it yet: {e}") }),
        None => json!({ "error": "saved; no link to the gateway is up: it is sent when one is" }),
    }
}

async fn put_mapping(state: &UiState, m: Mapping, replacing: Option<&str>) -> Response<Body> {
    let m = match check(&m) {
        Ok(m) => m,
        Err((field, why)) => return invalid(field, why),
    };
    let _one = state.changing.lock().await;
    if replacing.is_none()
        && state
            .cfg
            .db
            .mappings()
            .await
            .is_ok_and(|a| a.len() >= MAX_MAPPINGS)
    {
        return invalid("hostname", format!("at most {MAX_MAPPINGS} mappings"));
    }
    if let Err(e) = state.cfg.db.put(&m, replacing).await {
        return match e {
            crate::DbError::Conflict(why) => invalid("hostname", why),
            e => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    info!(event = burrow_agent::event::MAPPING_SAVED, hostname = %m.hostname, target = %m.target, enabled = m.enabled, "mapping saved");
    ok_json(&json!({ "mapping": m, "gateway": apply(state).await }))
}

async fn remove_mapping(state: &UiState, host: &str) -> Response<Body> {
    let _one = state.changing.lock().await;
    if let Err(e) = state.cfg.db.remove(host).await {
        return match e {
            crate::DbError::Conflict(why) => refuse(StatusCode::NOT_FOUND, why),
            e => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    info!(event = burrow_agent::event::MAPPING_REMOVED, hostname = %host, "mapping removed");
    ok_json(&json!({ "gateway": apply(state).await }))
}

async fn import(state: &UiState, all: Vec<Mapping>) -> Response<Body> {
    if all.len() > MAX_MAPPINGS {
        return invalid("mappings", format!("at most {MAX_MAPPINGS} mappings"));
    }
    let mut checked = Vec::with_capacity(all.len());
    for (i, m) in all.iter().enumerate() {
        match check(m) {
            Ok(m) if checked.iter().any(|c: &Mapping| c.hostname == m.hostname) => {
                return invalid(
                    "mappings",
                    format!("mapping {}: {} is listed twice", i + 1, m.hostname),
                );
            }
            Ok(m) => checked.push(m),
            Err((field, why)) => {
                return invalid("mappings", format!("mapping {} ({field}): {why}", i + 1));
            }
        }
    }
    let _one = state.changing.lock().await;
    if let Err(e) = state.cfg.db.replace_all(&checked).await {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    info!(
        event = burrow_agent::event::MAPPING_SAVED,
        imported = checked.len(),
        "mappings imported"
    );
    ok_json(&json!({ "imported": checked.len(), "gateway": apply(state).await }))
}

async fn gateway_call<M: burrow_rpc::Call>(state: &UiState, req: &M::Request) -> Response<Body> {
    let Some(rpc) = state.agent.gateway() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "no link to the gateway is up: see the dashboard",
        );
    };
    match rpc.call::<M>(req).await {
        Ok(v) => ok_json(&v),
        Err(burrow_rpc::RpcError::Failed(why)) => refuse(StatusCode::BAD_REQUEST, why),
        Err(e) => refuse(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn traffic(state: &UiState, q: &impl Fn(&str) -> Option<String>) -> Response<Body> {
    // A bad number names its field.
    let num = |k: &'static str| -> Result<Option<i64>, &'static str> {
        q(k).map(|v| v.parse::<i64>().map_err(|_| k)).transpose()
    };
    let f = (|| {
        Ok::<_, &'static str>(TrafficFilter {
            kind: q("kind"),
            host: q("host"),
            status: num("status")?,
            since: num("since")?,
            until: num("until")?,
            limit: num("limit")?.unwrap_or(50),
            offset: num("offset")?.unwrap_or(0),
        })
    })();
    match f {
        Ok(f) => gateway_call::<Traffic>(state, &f).await,
        Err(k) => invalid(k, format!("{k} must be a number")),
    }
}

fn parse_level(name: Option<&str>) -> Result<tracing::Level, ()> {
    name.map_or(Ok(tracing::Level::INFO), |n| n.parse().map_err(|_| ()))
}

fn matches(l: &logtap::Line, needle: Option<&str>) -> bool {
    crate::logfile::mentions(needle, &l.message, l.fields.values().map(|v| v.into()))
}

fn line_json(l: &logtap::Line) -> Value {
    json!({
        "at": l.at,
        "level": l.level.to_string(),
        "message": l.message,
        "fields": l.fields,
    })
}

/// Lines the Logs page shows before following.
const LOG_LINES: usize = 1000;

/// The agent's recent log lines: from its log files when it writes them,
/// else those kept in memory since it started.
async fn own_logs(
    state: &UiState,
    level: tracing::Level,
    needle: Option<String>,
) -> Response<Body> {
    let Some(files) = state.cfg.log_files.clone() else {
        let lines: Vec<_> = logtap::tap()
            .recent(LOG_LINES, |l| {
                l.level <= level && matches(l, needle.as_deref())
            })
            .iter()
            .map(|l| line_json(l))
            .collect();
        return ok_json(&json!({ "lines": lines, "source": "memory" }));
    };
    let read =
        tokio::task::spawn_blocking(move || files.recent(LOG_LINES, level, needle.as_deref()))
            .await;
    match read {
        Ok(Ok((lines, cut))) => ok_json(&json!({
            "lines": lines.iter().map(crate::logfile::FileLine::json).collect::<Vec<_>>(),
            "source": "file",
            "cut": cut,
        })),
        Ok(Err(e)) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the log files: {e}"),
        ),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn follow_own_logs(
    _state: Arc<UiState>,
    session: Session,
    level: tracing::Level,
    needle: Option<String>,
) -> Response<Body> {
    let live = logtap::tap().subscribe();
    let items = futures_util::stream::unfold(live, move |mut live| {
        let needle = needle.clone();
        async move {
            loop {
                match live.recv().await {
                    Ok(l) if l.level <= level && matches(&l, needle.as_deref()) => {
                        return Some((line_json(&l), live));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        return Some((json!({ "missed": n }), live));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    sse(session, items)
}

async fn follow_gateway_logs(
    state: Arc<UiState>,
    session: Session,
    level: Option<String>,
) -> Response<Body> {
    let Some(rpc) = state.agent.gateway() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "no link to the gateway is up: see the dashboard",
        );
    };
    let filter = LogFilter {
        level,
        backlog: 200,
    };
    let following = match rpc.follow::<GatewayLogs>(&filter).await {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let items = futures_util::stream::unfold(following, |mut f| async move {
        match f.next().await? {
            Ok(line) => Some((serde_json::to_value(line).unwrap_or(Value::Null), f)),
            Err(e) => Some((json!({ "error": e.to_string() }), f)),
        }
    });
    sse(session, items)
}

/// The request inspector: the same request through the gateway's edge and
/// straight from the agent, side by side (the page marks differences).
/// A POST with the CSRF token: it sends requests to services.
async fn inspect(state: &UiState, mut p: Probe) -> Response<Body> {
    if let Err((field, why)) = p.check() {
        return invalid(field, why);
    }
    p.hostname = p.hostname.trim().to_ascii_lowercase();
    let mapping = match state.cfg.db.mappings().await {
        Ok(all) => all.into_iter().find(|m| m.hostname == p.hostname),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(mapping) = mapping else {
        return invalid("hostname", "not one of this agent's mappings");
    };
    let through_edge = async {
        let started = std::time::Instant::now();
        let via = || "the gateway's edge".to_owned();
        match state.agent.gateway() {
            None => Fetched::failed(
                via(),
                "no link to the gateway is up".into(),
                started.elapsed(),
            ),
            Some(rpc) => match rpc.call::<InspectEdge>(&p).await {
                Ok(f) => f,
                Err(e) => Fetched::failed(via(), e.to_string(), started.elapsed()),
            },
        }
    };
    let (edge, direct) = tokio::join!(through_edge, state.agent.inspect(&mapping, &p));
    info!(host = %p.hostname, edge = edge.status, direct = direct.status, "request inspected");
    ok_json(&json!({ "edge": edge, "direct": direct }))
}

async fn backup(state: &UiState) -> Response<Body> {
    let name = format!("backup-{}.db", hex::encode(rand::random::<[u8; 8]>()));
    let path = state.cfg.scratch_dir.join(name);
    let out = async {
        state
            .cfg
            .db
            .backup(&path)
            .await
            .map_err(|e| e.to_string())?;
        tokio::fs::read(&path).await.map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    match out {
        Ok(bytes) => {
            let mut r = full(StatusCode::OK, "application/vnd.sqlite3", bytes);
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"burrow-agent-backup.db\""),
            );
            r
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("no backup: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; burrow_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn log_levels_and_search() {
        assert_eq!(parse_level(None), Ok(tracing::Level::INFO));
        assert!(parse_level(Some("nope")).is_err());
        let l = logtap::Line {
            at: 0,
            level: tracing::Level::INFO,
            message: "Link up".into(),
            fields: [("agent".to_owned(), "Edge-1".to_owned())].into(),
        };
        assert!(matches(&l, Some("link")) && matches(&l, Some("edge-1")));
        assert!(!matches(&l, Some("down")));
    }
}
