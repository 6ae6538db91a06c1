//! The tunnel endpoint: an HTTP/1.1 server on the gateway port that
//! upgrades `/tunnel` and `/connect` to WebSocket links, checks the
//! pre-shared key, and serves a small status page.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_mux::Session;
use burrow_transport::{handshake, ws};
use burrow_wire::{Reject, RejectCode, capabilities};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::{Instrument, info, info_span, warn};

use crate::State;

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

pub(crate) async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let Some((tcp, peer)) = crate::accept(&state, &listener, "tunnel endpoint").await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(state, peer, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

fn route(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if ws::TUNNEL_PATHS.contains(&path) {
        return upgrade(state, peer, req);
    }
    match path {
        "/" => status_page(&state),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn status_page(state: &State) -> Response<Body> {
    let agents = state.registry.status();
    let rows: String = agents
        .iter()
        .map(|a| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&a.name),
                a.links,
                html_escape(&a.version)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Burrow gateway</title></head>\
         <body><h1>Burrow gateway</h1><p>Version {}. Agents dial <code>/tunnel</code> on this port.</p>\
         <table><tr><th>agent</th><th>links</th><th>version</th></tr>{rows}</table></body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    respond(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bearer(req: &Request<Incoming>) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    v.strip_prefix(b"Bearer ")
}

fn upgrade(state: Arc<State>, peer: SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_ws, key) else {
        return text(
            StatusCode::UPGRADE_REQUIRED,
            "this is the Burrow tunnel endpoint: agents connect here with a WebSocket upgrade\n",
        );
    };
    let expected = state.config.psk.expose().as_bytes();
    let authorized = bearer(&req).is_some_and(|got| bool::from(got.ct_eq(expected)));
    if !authorized {
        let why = if bearer(&req).is_some() {
            "wrong pre-shared key"
        } else {
            "no pre-shared key presented"
        };
        warn!(%peer, reason = why, "refused agent link");
        return text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let span = info_span!("link", %peer);
    let links = state.links.clone();
    links.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let link = ws::accept_upgraded(TokioIo::new(upgraded), Some(peer)).await;
                    serve_link(state, link).await;
                }
                Err(e) => warn!(error = %e, "websocket upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&ws::accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

async fn serve_link(state: Arc<State>, mut link: burrow_transport::Link) {
    let peer = link.peer;
    let hello = match handshake::accept(&mut link).await {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "agent link refused at hello");
            return;
        }
    };
    let agent = hello.agent_name;
    let refusal = if state.stop_accepting.is_cancelled() {
        Some((
            RejectCode::ShuttingDown,
            "gateway is shutting down; retry shortly".to_owned(),
        ))
    } else if state.registry.link_count(&agent) >= state.config.max_links_per_agent {
        Some((
            RejectCode::TooManyLinks,
            format!(
                "agent {agent} already holds {} links, the most this gateway allows",
                state.config.max_links_per_agent
            ),
        ))
    } else {
        None
    };
    if let Some((code, message)) = refusal {
        warn!(%agent, reason = %message, "agent link refused");
        handshake::reject(&mut link, Reject { code, message }).await;
        return;
    }
    if let Err(e) = handshake::ack(&mut link, vec![capabilities::STREAMS.into()]).await {
        warn!(%agent, error = %e, "agent link failed during hello");
        return;
    }
    let config = burrow_mux::Config {
        dialer: false,
        heartbeat: Some(state.config.heartbeat),
        ..burrow_mux::Config::default()
    };
    // The agent opens no streams towards the gateway yet: dropping the
    // incoming side refuses any it tries.
    let (session, _incoming) = Session::new(link.reader, link.writer, config);
    let (id, links) = state.registry.add(
        &agent,
        session.clone(),
        peer,
        hello.software_version.clone(),
    );
    info!(%agent, link = id, links, version = %hello.software_version, "agent link up");
    let reason = session.closed().await;
    let left = state.registry.remove(&agent, id);
    info!(%agent, link = id, links = left, %reason, "agent link down");
}
