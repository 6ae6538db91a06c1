//! Burrow's own HTTP edge: visitors reach internal HTTP services published
//! as routes (public host name → agent → internal URL).
//!
//! HTTPS (`:17243`) serves HTTP/1.1 and HTTP/2 (ALPN) and routes by the
//! `Host` (or `:authority`); plain HTTP (`:17280`) redirects to HTTPS.
//! Request and response bodies are streamed, WebSocket upgrades pass
//! through, `X-Forwarded-For/-Proto/-Host` are set. An unknown host gets a
//! small landing page (404), an offline agent a page saying the tunnel is
//! down (502): never an internal error text.

//!
//! # Parts
//! - `h1.rs`: HTTP/1.1 visitors, heads parsed and bodies passed through.
//! - `h2.rs`: HTTP/2 visitors (and published hosts on a connection the
//!   tunnel port's general server holds), through hyper.
//! - `forwarding.rs`: the one forwarding-header policy both apply.
//! - `backend.rs`: the context both take, the open through the route's
//!   agent, the audit record.
//! - `pages.rs`: the landing, tunnel-down and bad-request pages.
//! - `caddy.rs`: routes kept in Caddy through its Admin API.

mod backend;
pub(crate) mod caddy;
mod forwarding;
pub(crate) mod h1;
pub(crate) mod h2;
mod pages;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub(crate) use backend::Http;
pub(crate) use forwarding::Front;
use h2::{ServiceClientCache, proxy, request_host};
use pages::full;

use crate::limits::{Accepting, Caps, Limiter};

/// The gateway's own page for a host no route serves (an agent may set
/// its own for its domain).
pub(crate) fn default_landing() -> String {
    pages::page_html(
        "Nothing here",
        "No service is published at this address on this gateway.",
    )
}

/// Whether HTTP/1.1 visitors take the hyper path too
/// (`BURROW_EDGE_HTTP1=hyper`): for measuring the two paths side by side
/// (`bench/paths.d/burrow.sh`, path `burrow-edge-hyper`); the default is
/// the pass-through path, measured faster.
pub(crate) fn hyper_for_http1() -> bool {
    static HYPER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HYPER.get_or_init(|| std::env::var("BURROW_EDGE_HTTP1").is_ok_and(|v| v == "hyper"))
}

/// HTTPS: TLS with the edge certificate, then HTTP/1.1 or HTTP/2.
pub(crate) async fn serve_https(
    http: Arc<Http>,
    at: Accepting,
    caps: Caps,
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
) {
    let limiter = Limiter::new("edge https", caps);
    loop {
        let Some((tcp, client, permit)) = at.accept(&listener, &limiter).await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let tls = tls.clone();
        let conn = http.clone();
        at.shards.serve_least_busy(tcp, move |tcp| async move {
            let _permit = permit;
            let http = conn;
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            else {
                return;
            };
            // HTTP/1.1 takes the edge's pass-through path; HTTP/2 the
            // general server.
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") && !hyper_for_http1() {
                let idle = Duration::from_secs(30);
                let buf = bytes::BytesMut::new();
                let _ = h1::serve(http, stream, buf, client, local, Front::Edge, idle).await;
                return;
            }
            let cache = Arc::new(ServiceClientCache::default());
            let svc = service_fn(move |req| {
                let http = http.clone();
                let cache = cache.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        proxy(http, req, client, local, Front::Edge, &cache).await,
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
pub(crate) async fn serve_http(at: Accepting, caps: Caps, listener: TcpListener, https_port: u16) {
    let limiter = Limiter::new("edge http", caps);
    loop {
        let Some((tcp, _, permit)) = at.accept(&listener, &limiter).await else {
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
