//! The edge's hyper path: HTTP/2 visitors on Burrow's HTTPS edge, and
//! published hosts asked for on a connection the tunnel port's general
//! server already holds. Requests go to the service as HTTP/1.1 over one
//! tunnel stream per visitor connection, kept between its requests.
//! HTTP/1.1 visitors take the pass-through path (`h1.rs`) instead: in one
//! harness run it served 14,707 keep-alive req/s (p99 7.8 ms, 67 µs CPU a
//! request) to this path's 11,308 (10.6 ms, 94 µs)
//! (`bench/results/burrow-restructure-2026-12-02-edge.md`); this one stays
//! for HTTP/2, which the pass-through path does not speak. Both apply the
//! one policy of `forwarding.rs` and `backend.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use burrow_mux::MuxStream;
use burrow_store::Route;
use burrow_wire::egress::Target;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use super::backend::{Down, Http, http_record};
use super::forwarding::{
    Bodies, Field, Front, Policy, forwarded_for, last_forwarded, tokens, visitor,
};
use super::pages::{Body, full, page};
use crate::names::normalize_host;

/// Host name of the request, lowercase, without port.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<String> {
    match req.uri().authority() {
        Some(a) => Some(normalize_host(a.host())),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(normalize_host),
    }
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

/// The tokens of a message's `Connection` fields, lowercase.
fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    tokens(
        h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
    .map(str::to_ascii_lowercase)
    .collect()
}

/// Applies the forwarding policy to a header map: fields it drops go.
fn apply(h: &mut HeaderMap, front: Front, upgrade: bool, request: bool) -> Vec<String> {
    let named = connection_tokens(h);
    let named_ref: Vec<&str> = named.iter().map(String::as_str).collect();
    let policy = Policy {
        front,
        upgrade,
        connection: &named_ref,
        bodies: Bodies::Reframed,
    };
    let mut prior = Vec::new();
    let names: Vec<header::HeaderName> = h.keys().cloned().collect();
    for n in names {
        let keep = if request {
            match policy.request_field(n.as_str()) {
                Field::Keep => true,
                Field::Drop => false,
                Field::ForwardedFor => {
                    prior.extend(
                        h.get_all(&n)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .map(str::to_owned),
                    );
                    false
                }
            }
        } else {
            policy.response_field(n.as_str())
        };
        if !keep {
            h.remove(&n);
        }
    }
    prior
}

/// Applies the forwarding policy to a request's fields and adds the
/// forwarding fields.
fn forward_headers(h: &mut HeaderMap, front: Front, upgrade: bool, client_ip: &str, host: &str) {
    let had_proto = h.contains_key("x-forwarded-proto");
    let prior = apply(h, front, upgrade, true);
    let prior: Vec<&str> = prior.iter().map(String::as_str).collect();
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let mut xff = Vec::new();
    forwarded_for(&mut xff, &prior, client_ip);
    if let Ok(v) = HeaderValue::from_bytes(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if let Some(proto) = front.proto(had_proto) {
        h.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        h.insert("x-forwarded-host", v.clone());
        h.insert(header::HOST, v);
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers())
            .iter()
            .any(|t| t == "upgrade")
}

/// Is there a route for this request's host?
pub(crate) fn has_route<B>(http: &Http, req: &Request<B>) -> bool {
    request_host(req).is_some_and(|h| http.route_for(&h).is_some())
}

/// Serves one visitor request through its route.
pub(crate) async fn proxy(
    http: Arc<Http>,
    mut req: Request<Incoming>,
    client: SocketAddr,
    local: SocketAddr,
    front: Front,
    cache: &ServiceClientCache,
) -> Response<Body> {
    let Some(host) = request_host(&req) else {
        return page(
            StatusCode::BAD_REQUEST,
            "No host",
            "The request names no host.",
        );
    };
    let Some(route) = http.route_for(&host) else {
        http.record_unrouted(
            client.to_string(),
            req.method().as_str(),
            &host,
            req.uri().path(),
        );
        return full(
            StatusCode::NOT_FOUND,
            "text/html; charset=utf-8",
            http.unknown_host_page(&host),
        );
    };
    let Some(mut target) = crate::catalog::route_target(&route) else {
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
        let prior: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let visitor = visitor(front, last_forwarded(&prior), client);
        target.proxy = Some((visitor, local));
    }
    let down = |d: &Down| {
        page(
            StatusCode::from_u16(d.status).unwrap_or(StatusCode::BAD_GATEWAY),
            d.title,
            &d.text(&host),
        )
    };
    let record = http_record(
        &route,
        client.to_string(),
        req.method().as_str().to_owned(),
        host.clone(),
        req.uri().path().to_owned(),
    );
    let active = http.audit.active(crate::metrics::Kind::Http);
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
        None => match open_backend(&http, &route, &host, &target).await {
            Ok(b) => b,
            Err(d) => {
                http.record(burrow_store::Traffic {
                    status: i64::from(d.status),
                    error: d.cause.clone(),
                    ..record
                });
                return down(&d);
            }
        },
    };
    let counted_at = backend.counters();
    let upgrade = is_upgrade(&req);
    let visitor_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    forward_headers(
        &mut parts.headers,
        front,
        upgrade,
        &client.ip().to_string(),
        &host,
    );
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
        Err(e) => return down(&Down::service(format!("the internal service failed: {e}"))),
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
        http.record(burrow_store::Traffic {
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
    apply(res.headers_mut(), front, false, false);
    let audit = Audit {
        http: http.clone(),
        record: burrow_store::Traffic {
            status: i64::from(status),
            ..record
        },
        counters: backend.read_written(),
        from: counted_at,
        started: std::time::Instant::now(),
        _active: active,
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
pub(crate) struct ServiceClient {
    host: String,
    sender: hyper::client::conn::http1::SendRequest<Incoming>,
    read: Arc<std::sync::atomic::AtomicU64>,
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl ServiceClient {
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
pub(crate) type ServiceClientCache = std::sync::Mutex<Option<ServiceClient>>;

/// Opens a stream through the route's agent and speaks HTTP/1.1 on it.
async fn open_backend(
    http: &Http,
    route: &Route,
    host: &str,
    target: &Target,
) -> Result<ServiceClient, Down> {
    let stream: MuxStream = http.open(route, host, target).await?;
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
        .map_err(|e| Down::service(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "edge backend connection ended");
        }
    });
    Ok(ServiceClient {
        host: host.to_owned(),
        sender,
        read,
        written,
    })
}

/// What to record when a response body ends.
struct Audit {
    http: Arc<Http>,
    record: burrow_store::Traffic,
    /// (to the service, from the service) counters of the connection.
    counters: (
        Arc<std::sync::atomic::AtomicU64>,
        Arc<std::sync::atomic::AtomicU64>,
    ),
    /// Their values when the request started.
    from: (u64, u64),
    started: std::time::Instant,
    /// Counts the request as active until the body ends.
    _active: Option<crate::metrics::Active>,
}

impl Audit {
    fn finish(self) {
        let now = (
            self.counters.0.load(std::sync::atomic::Ordering::Relaxed),
            self.counters.1.load(std::sync::atomic::Ordering::Relaxed),
        );
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.http.record(burrow_store::Traffic {
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
