//! Burrow's own HTTP edge: visitors reach internal HTTP services published
//! as routes (public host name → agent → internal URL).
//!
//! HTTPS (`:17243`) serves HTTP/1.1 and HTTP/2 (ALPN) and routes by the
//! `Host` (or `:authority`); plain HTTP (`:17280`) redirects to HTTPS.
//! Request and response bodies are streamed, WebSocket upgrades pass
//! through, `X-Forwarded-For/-Proto/-Host` are set. An unknown host gets a
//! small landing page (404), an offline agent a page saying the tunnel is
//! down (502): never an internal error text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_mux::{MuxStream, ResetCode};
use burrow_store::Route;
use burrow_wire::egress::Target;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::State;
use crate::open::OpenFailure;

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML of a small page (landing, tunnel down, bad request).
pub(crate) fn page_html(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{t}</h1><p>{x}</p><p><small>Burrow</small></p></body></html>\n",
        t = escape(title),
        x = escape(text)
    )
}

fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    full(status, "text/html; charset=utf-8", page_html(title, text))
}

/// One route of the cached route list, held without copying it.
pub(crate) struct RouteRef {
    all: Arc<Vec<Route>>,
    index: usize,
}

impl std::ops::Deref for RouteRef {
    type Target = Route;

    fn deref(&self) -> &Route {
        &self.all[self.index]
    }
}

/// The route for a request's host, if any.
pub(crate) fn route_for(state: &State, host: &str) -> Option<RouteRef> {
    let all = state
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let index = all.iter().position(|r| r.hostname == host)?;
    Some(RouteRef { all, index })
}

/// Host name of the request, lowercase, without port.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    match req.uri().authority() {
        Some(a) => Some(normalize_host(a.host())),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(normalize_host),
    }
}

/// A `Host` value as routes name it: without a port or a trailing dot,
/// lowercase.
pub(crate) fn normalize_host(h: &str) -> String {
    let h = h
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(h, |(host, _)| host);
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The egress target for a route's internal URL.
pub(crate) fn route_target(route: &Route) -> Option<Target> {
    let uri: http::Uri = route.target.parse().ok()?;
    let tls = match uri.scheme_str()? {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Some(Target {
        host: host.to_ascii_lowercase(),
        port,
        tls,
        insecure: tls && route.ignore_certificate_errors,
        check: false,
        proxy: None,
    })
}

/// Counts the bytes through a connection (for the audit trail).
struct Counted<T> {
    inner: T,
    read: Arc<std::sync::atomic::AtomicU64>,
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.written
                .fetch_add(*n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why `hostname` cannot be published here, if it cannot: it must be a
/// host name (not an IP address), not one of the gateway's own names, and
/// under the public domain if the gateway has one.
pub(crate) fn hostname_refusal(
    public_domain: Option<&str>,
    own: &OwnNames,
    hostname: &str,
) -> Option<String> {
    let ip_like = hostname
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if let Some(why) = route_name_syntax_refusal(hostname) {
        return Some(why);
    }
    if ip_like {
        return Some(format!(
            "invalid host name {hostname:?}: use a name such as app.tunnel.example.com"
        ));
    }
    if own.contains(hostname) {
        return Some(format!(
            "{hostname} is one of this gateway's own names (its certificate, CONNECT_URL or BURROW_GATEWAY_NAMES): agents and admins reach the gateway by it, so it cannot be a route"
        ));
    }
    let domain = public_domain?;
    let under = hostname
        .strip_suffix(domain)
        .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'));
    (!under).then(|| {
        format!(
            "{hostname} is not under this gateway's public domain {domain} (BURROW_PUBLIC_DOMAIN): use NAME.{domain}"
        )
    })
}

/// Why `hostname` is not even written as a route's name (a host name, no
/// wildcard), if it is not: the check a stored route's name passes too.
pub(crate) fn route_name_syntax_refusal(hostname: &str) -> Option<String> {
    (!burrow_wire::egress::valid_pattern(hostname) || hostname.starts_with("*.")).then(|| {
        format!("invalid host name {hostname:?}: use a name such as app.tunnel.example.com")
    })
}

/// The names agents and admins reach the gateway by: its certificate's DNS
/// names, the host of its CONNECT_URL and BURROW_GATEWAY_NAMES. Never
/// routes: the tunnel port routes by host before its own endpoints, so a
/// route on one of these would receive admin keys and agents' tokens.
#[derive(Debug, Clone, Default)]
pub struct OwnNames(Vec<String>);

impl OwnNames {
    /// The names, normalised as routes name hosts (lowercase, no port, no
    /// trailing dot); empty ones are dropped.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Self {
        let mut v: Vec<String> = names
            .into_iter()
            .map(|n| normalize_host(n.as_ref().trim()))
            .filter(|n| !n.is_empty())
            .collect();
        v.sort_unstable();
        v.dedup();
        OwnNames(v)
    }

    /// Is `host` (normalised) one of them?
    pub fn contains(&self, host: &str) -> bool {
        self.0.iter().any(|n| n == host)
    }

    /// The names, sorted.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// Routes an agent declares from its own configuration: stored for it
/// when the gateway has a public domain, the names are under it, and no
/// other agent owns them.
pub(crate) async fn declared(state: &State, agent: &str, body: &[u8]) {
    let Some(store) = &state.config.store else {
        return;
    };
    let Some(domain) = state.config.public_domain.as_deref() else {
        warn!(%agent, "agent-declared routes refused: this gateway has no public domain (BURROW_PUBLIC_DOMAIN)");
        return;
    };
    let existing = state
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut changed = false;
    for line in String::from_utf8_lossy(body).lines() {
        let Some((host, url)) = line.split_once('\t') else {
            continue;
        };
        let host = host.trim().to_ascii_lowercase();
        let now = burrow_store::now_micros();
        let route = Route {
            hostname: host.clone(),
            agent: agent.to_owned(),
            target: url.trim().to_owned(),
            ignore_certificate_errors: false,
            proxy_protocol: false,
            created_at: now,
            updated_at: now,
        };
        let why = hostname_refusal(Some(domain), &state.config.own_names, &host)
            .or_else(|| {
                route_target(&route)
                    .is_none()
                    .then(|| format!("invalid internal URL {url:?}"))
            })
            .or_else(|| {
                existing
                    .iter()
                    .find(|r| r.hostname == host && r.agent != agent)
                    .map(|r| format!("{host} is published by agent {}", r.agent))
            });
        if let Some(why) = why {
            warn!(%agent, hostname = %host, reason = %why, "agent-declared route refused");
            continue;
        }
        if existing
            .iter()
            .any(|r| r.hostname == host && r.target == route.target && r.agent == agent)
        {
            continue;
        }
        match store.put_route(&route).await {
            Ok(_) => {
                info!(%agent, hostname = %host, target = %route.target, "agent-declared route published");
                changed = true;
            }
            Err(e) => {
                warn!(%agent, hostname = %host, error = %e, "agent-declared route not stored")
            }
        }
    }
    if changed {
        crate::egress::reload(state).await;
    }
}

/// Hop-by-hop fields (RFC 9110 §7.6.1), never passed on; besides these,
/// the ones a `Connection` field names, and `Transfer-Encoding` where the
/// body is re-framed.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|n| !(keep_upgrade && n == "upgrade"))
        .collect();
    // hyper re-frames bodies: their transfer coding is not passed on.
    let framing = ["transfer-encoding"];
    for n in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP)
        .chain(framing)
    {
        h.remove(n);
    }
    if !keep_upgrade {
        h.remove(header::UPGRADE);
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The audit record of a visitor's request, before its outcome is known.
/// `path` is without the query: query strings may carry secrets.
pub(crate) fn http_record(
    route: &Route,
    client: String,
    method: String,
    host: String,
    path: String,
) -> burrow_store::Traffic {
    burrow_store::Traffic {
        at: burrow_store::now_micros(),
        kind: burrow_store::TrafficKind::Http,
        agent: route.agent.clone(),
        route: route.hostname.clone(),
        client,
        method,
        host,
        path,
        target: route.target.clone(),
        ..burrow_store::Traffic::default()
    }
}

/// Who the visitor's request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// Burrow's own HTTPS edge: the visitor spoke HTTPS to us.
    Edge,
    /// A TLS-terminating proxy in front (Caddy): keep the scheme it says.
    Proxy,
}

/// Is there a route for this request's host?
pub(crate) fn has_route<B>(state: &State, req: &Request<B>) -> bool {
    request_host(req).is_some_and(|h| route_for(state, &h).is_some())
}

/// Serves one visitor request through its route.
pub(crate) async fn proxy(
    state: Arc<State>,
    mut req: Request<Incoming>,
    client: SocketAddr,
    local: SocketAddr,
    front: Front,
    cache: &BackendCache,
) -> Response<Body> {
    let Some(host) = request_host(&req) else {
        return page(
            StatusCode::BAD_REQUEST,
            "No host",
            "The request names no host.",
        );
    };
    let Some(route) = route_for(&state, &host) else {
        return page(
            StatusCode::NOT_FOUND,
            "Nothing here",
            &format!("No service is published at {host} on this gateway."),
        );
    };
    let Some(mut target) = route_target(&route) else {
        warn!(%host, target = %route.target, "route has an unusable internal URL");
        return page(
            StatusCode::BAD_GATEWAY,
            "Tunnel misconfigured",
            "This route's internal URL is not usable.",
        );
    };
    if route.proxy_protocol {
        // The visitor as the service should see it: behind Caddy, the
        // address Caddy appended to X-Forwarded-For.
        let visitor = match front {
            Front::Edge => client,
            Front::Proxy => req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
                .map_or(client, |ip| SocketAddr::new(ip, 0)),
        };
        target.proxy = Some((visitor, local));
    }
    let down = |why: &str| {
        page(
            StatusCode::BAD_GATEWAY,
            "Tunnel down",
            &format!("The service at {host} is not reachable right now: {why}. Try again later."),
        )
    };
    let record = http_record(
        &route,
        client.to_string(),
        req.method().as_str().to_owned(),
        host.clone(),
        req.uri().path().to_owned(),
    );
    // The visitor's connection keeps its backend connection (one tunnel
    // stream, one connection to the service) between requests.
    let cached = {
        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
        match c.take() {
            Some(b) if b.host == host && b.sender.is_ready() => Some(b),
            _ => None,
        }
    };
    let mut backend = match cached {
        Some(b) => b,
        None => match open_backend(&state, &route, &host, &target).await {
            Ok(b) => b,
            Err(why) => return down(&why),
        },
    };
    let counted_at = backend.counters();
    let upgrade = is_upgrade(&req);
    let visitor_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let prior = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let xff = match prior {
        Some(p) => format!("{p}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    if front == Front::Edge || !parts.headers.contains_key("x-forwarded-proto") {
        let proto = if front == Front::Edge {
            "https"
        } else {
            "http"
        };
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static(proto));
    }
    if let Ok(v) = HeaderValue::from_str(&host) {
        parts.headers.insert("x-forwarded-host", v.clone());
        parts.headers.insert(header::HOST, v);
    }
    // HTTP/1.1 towards the service, whatever the visitor spoke.
    parts.version = http::Version::HTTP_11;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = match path.parse() {
        Ok(u) => u,
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request path is malformed.",
            );
        }
    };
    let backend_req = Request::from_parts(parts, body);
    let mut res = match backend.sender.send_request(backend_req).await {
        Ok(r) => r,
        Err(e) => return down(&format!("the internal service failed: {e}")),
    };
    let status = res.status().as_u16();
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(visitor) = visitor_upgrade {
            let backend = hyper::upgrade::on(&mut res);
            tokio::spawn(async move {
                match tokio::try_join!(visitor, backend) {
                    Ok((v, b)) => {
                        let mut v = TokioIo::new(v);
                        let mut b = TokioIo::new(b);
                        let r = tokio::io::copy_bidirectional(&mut v, &mut b).await;
                        debug!(result = ?r, "edge upgraded connection closed");
                    }
                    Err(e) => debug!(error = %e, "edge upgrade failed"),
                }
            });
        }
        state.record(burrow_store::Traffic {
            status: i64::from(status),
            duration_ms: 0,
            ..record
        });
        let (parts, _) = res.into_parts();
        return Response::from_parts(
            parts,
            http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
        );
    }
    strip_hop_by_hop(res.headers_mut(), false);
    let audit = Audit {
        state: state.clone(),
        record: burrow_store::Traffic {
            status: i64::from(status),
            ..record
        },
        counters: backend.read_written(),
        from: counted_at,
        started: std::time::Instant::now(),
    };
    *cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(backend);
    res.map(|body| {
        Audited {
            inner: body,
            audit: Some(audit),
        }
        .boxed()
    })
}

/// A connection to a route's service: one tunnel stream, HTTP/1.1 over it.
pub(crate) struct Backend {
    host: String,
    sender: hyper::client::conn::http1::SendRequest<Incoming>,
    read: Arc<std::sync::atomic::AtomicU64>,
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl Backend {
    fn counters(&self) -> (u64, u64) {
        (
            self.written.load(std::sync::atomic::Ordering::Relaxed),
            self.read.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn read_written(
        &self,
    ) -> (
        Arc<std::sync::atomic::AtomicU64>,
        Arc<std::sync::atomic::AtomicU64>,
    ) {
        (self.written.clone(), self.read.clone())
    }
}

/// A visitor connection's backend, kept between its requests.
pub(crate) type BackendCache = std::sync::Mutex<Option<Backend>>;

/// Opens a stream through the route's agent to its internal service and
/// waits until the agent has connected it; the error is for the visitor.
pub(crate) async fn open_stream(
    state: &State,
    route: &Route,
    host: &str,
    target: &Target,
) -> Result<MuxStream, String> {
    match crate::open::open(&state.registry, &route.agent, target).await {
        Ok(stream) => Ok(stream),
        Err(OpenFailure::Offline) => {
            info!(%host, agent = %route.agent, "edge request: agent offline");
            Err("its tunnel agent is offline".into())
        }
        Err(OpenFailure::Reset(code)) => {
            info!(%host, agent = %route.agent, ?code, "edge request: the agent could not connect the service");
            let why = match code {
                ResetCode::Refused => "the internal service refused the connection",
                ResetCode::NotAllowed => "the agent refused the internal address",
                _ => "the agent cannot reach the internal service",
            };
            Err(why.into())
        }
        Err(OpenFailure::Timeout) => Err("the internal service did not answer in time".into()),
        Err(OpenFailure::Failed(why)) => Err(why),
    }
}

/// Opens a stream through the route's agent and speaks HTTP/1.1 on it.
async fn open_backend(
    state: &State,
    route: &Route,
    host: &str,
    target: &Target,
) -> Result<Backend, String> {
    let stream = open_stream(state, route, host, target).await?;
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Counted {
        inner: stream,
        read: read.clone(),
        written: written.clone(),
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(counted))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "edge backend connection ended");
        }
    });
    Ok(Backend {
        host: host.to_owned(),
        sender,
        read,
        written,
    })
}

/// What to record when a response body ends.
struct Audit {
    state: Arc<State>,
    record: burrow_store::Traffic,
    /// (to the service, from the service) counters of the connection.
    counters: (
        Arc<std::sync::atomic::AtomicU64>,
        Arc<std::sync::atomic::AtomicU64>,
    ),
    /// Their values when the request started.
    from: (u64, u64),
    started: std::time::Instant,
}

impl Audit {
    fn finish(self) {
        let now = (
            self.counters.0.load(std::sync::atomic::Ordering::Relaxed),
            self.counters.1.load(std::sync::atomic::Ordering::Relaxed),
        );
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.state.record(burrow_store::Traffic {
            bytes_in: n(now.0.saturating_sub(self.from.0)),
            bytes_out: n(now.1.saturating_sub(self.from.1)),
            duration_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            ..self.record
        });
    }
}

/// A response body that records the request when it ends (or is dropped).
struct Audited {
    inner: Incoming,
    audit: Option<Audit>,
}

impl hyper::body::Body for Audited {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, std::task::Poll::Ready(None | Some(Err(_))))
            && let Some(a) = self.audit.take()
        {
            a.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if let Some(a) = self.audit.take() {
            a.finish();
        }
    }
}

/// HTTPS: TLS with the edge certificate, then HTTP/1.1 or HTTP/2.
pub(crate) async fn serve_https(
    state: Arc<State>,
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
) {
    let limiter = crate::limits::Limiter::new("edge https", state.config.edge_caps);
    loop {
        let Some((tcp, client, permit)) = crate::limits::accept(&state, &listener, &limiter).await
        else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let tls = tls.clone();
        let conn = state.clone();
        state.shards.serve_least_busy(tcp, move |tcp| async move {
            let _permit = permit;
            let state = conn;
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            else {
                return;
            };
            // HTTP/1.1 takes the edge's pass-through path; HTTP/2 the
            // general server.
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                let idle = Duration::from_secs(30);
                let buf = bytes::BytesMut::new();
                let _ =
                    crate::h1::serve(state, stream, buf, client, local, Front::Edge, idle).await;
                return;
            }
            let cache = Arc::new(BackendCache::default());
            let svc = service_fn(move |req| {
                let state = state.clone();
                let cache = cache.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        proxy(state, req, client, local, Front::Edge, &cache).await,
                    )
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Plain HTTP: redirects every request to HTTPS.
pub(crate) async fn serve_http(state: Arc<State>, listener: TcpListener, https_port: u16) {
    let limiter = crate::limits::Limiter::new("edge http", state.config.edge_caps);
    loop {
        let Some((tcp, _, permit)) = crate::limits::accept(&state, &listener, &limiter).await
        else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let host = request_host(&req).unwrap_or_default();
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                let port = if https_port == 443 {
                    String::new()
                } else {
                    format!(":{https_port}")
                };
                let mut r = full(
                    StatusCode::MOVED_PERMANENTLY,
                    "text/plain; charset=utf-8",
                    "moved to https\n".into(),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                Ok::<_, std::convert::Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(target: &str, insecure: bool) -> Route {
        Route {
            hostname: "app.example.com".into(),
            agent: "edge".into(),
            target: target.into(),
            ignore_certificate_errors: insecure,
            proxy_protocol: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn internal_urls_become_egress_targets() {
        let t = route_target(&route("http://10.0.0.5:8080", false)).expect("http");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("10.0.0.5", 8080, false));
        let t = route_target(&route("https://NAS.lan", true)).expect("https");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls, t.insecure),
            ("nas.lan", 443, true, true)
        );
        assert!(route_target(&route("ftp://x", false)).is_none());
        assert!(route_target(&route("not a url", false)).is_none());
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, false);
        assert!(
            h.get("x-private").is_none()
                && h.get("keep-alive").is_none()
                && h.get(header::UPGRADE).is_none()
        );
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn pages_escape_what_they_show() {
        let r = page(StatusCode::NOT_FOUND, "Nothing here", "<script>");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
