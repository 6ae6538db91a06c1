//! The tunnel endpoint: one port for agents and browsers. Over TLS (the
//! default) ALPN tells the raw carrier (`burrow/1`) from HTTP/1.1; HTTP
//! upgrades `/tunnel` and `/connect` to WebSocket links and serves the
//! status page. Every link, however it arrived, is authorized by [`admit`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_mux::Session;
use burrow_transport::tls::{Thumbprint, list_thumbprints};
use burrow_transport::{Link, accept_tls, handshake, page, raw, ws};
use burrow_wire::{Hello, Reject, RejectCode, capabilities};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::io::Rewind;
pub(crate) use crate::limits::Slot;
use crate::state::State;

use crate::answer::Body;

/// Longest a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    page::respond(status, "text/plain; charset=utf-8", body.into())
}

pub(crate) async fn serve(state: Arc<State>, listener: TcpListener) {
    let limiter = crate::limits::Limiter::new("tunnel endpoint", state.config.tunnel_caps);
    let at = state.accepting();
    loop {
        let Some((tcp, peer, permit)) = at.accept(&listener, &limiter).await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let conn = state.clone();
        state.shards.serve_least_busy(tcp, move |tcp| async move {
            let _permit = permit;
            let state = conn;
            let Some(acceptor) = state.acceptor.clone() else {
                return serve_http(state, tcp, peer, local, None).await;
            };
            match accept_tls(&acceptor, tcp, TLS_HANDSHAKE_TIMEOUT).await {
                Ok(tls) if tls.raw => {
                    let mut link = raw::link(tls.stream, Some(peer));
                    link.peer_cert = tls.peer_cert;
                    let slot = state.handshake_slot();
                    let links = state.links.clone();
                    links.spawn(
                        admit(state, link, None, slot).instrument(info_span!("link", %peer)),
                    );
                }
                Ok(tls) => serve_http(state, tls.stream, peer, local, tls.peer_cert).await,
                Err(e) => tls_failed(peer, &e),
            }
        });
    }
}

/// Logs a failed TLS handshake: a client refusing our certificate is worth
/// a warning (an agent with a stale pin); scanners and probes are not.
fn tls_failed(peer: SocketAddr, e: &std::io::Error) {
    let refused_cert = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadCertificate
                        | rustls::AlertDescription::UnknownCA
                        | rustls::AlertDescription::CertificateUnknown
                )
            )
        });
    if refused_cert {
        warn!(event = crate::event::CERTIFICATE_REFUSED_BY_PEER, %peer, error = %e, "a client refused this gateway's certificate: if it is an agent, its GATEWAY_THUMBPRINT does not match this gateway's thumbprint");
    } else {
        debug!(%peer, error = %e, "TLS handshake failed");
    }
}

/// HTTP on the tunnel port. While routes are published, connections start
/// on the edge's HTTP/1.1 path, which serves them for as long as they ask
/// for published hosts (behind Caddy) and hands anything else to the
/// general server below.
async fn serve_http<I>(
    state: Arc<State>,
    io: I,
    peer: SocketAddr,
    local: SocketAddr,
    cert: Option<Thumbprint>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = if state.catalog.any_routes() && !crate::edge::hyper_for_http1() {
        let front = crate::edge::Front::Proxy;
        let idle = Duration::from_secs(10);
        match crate::edge::h1::serve(
            state.http.clone(),
            io,
            bytes::BytesMut::new(),
            peer,
            local,
            front,
            idle,
        )
        .await
        {
            crate::edge::h1::Outcome::Done => return,
            crate::edge::h1::Outcome::Handover(io, read) => Rewind::new(read, io),
        }
    } else {
        Rewind::new(bytes::BytesMut::new(), io)
    };
    serve_general(state, io, peer, local, cert).await;
}

/// The tunnel endpoint's HTTP server: WebSocket links, the admin API, the
/// token endpoint, the status page (and published hosts for connections
/// that asked for something else first).
async fn serve_general<I>(
    state: Arc<State>,
    io: I,
    peer: SocketAddr,
    local: SocketAddr,
    cert: Option<Thumbprint>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cache = Arc::new(crate::edge::h2::ServiceClientCache::default());
    let svc = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        let cache = cache.clone();
        async move {
            // A published host (behind Caddy, which proxies routes here).
            if crate::edge::h2::has_route(&state.http, &req) {
                let front = crate::edge::Front::Proxy;
                return Ok::<_, Infallible>(
                    crate::edge::h2::proxy(state.http.clone(), req, peer, local, front, &cache)
                        .await,
                );
            }
            let boxed = |r: Response<Body>| r.map(|b| b.map_err(|e| match e {}).boxed());
            // The probes, as the probe listener answers them (Kubernetes
            // may probe the port agents dial).
            if matches!(req.uri().path(), "/healthz" | "/ready") {
                let probes = state.probes();
                return Ok(boxed(
                    burrow_ops::answer(&probes, req.method(), req.uri().path()).await,
                ));
            }
            if req.uri().path().starts_with("/api/v1/") {
                return Ok(boxed(crate::admin::handle(&state.admin, req, peer).await));
            }
            if req.uri().path() == crate::tokens::TOKEN_PATH {
                let Slot::Held(_slot) = state.handshake_slot() else {
                    state.count_refusal(crate::metrics::Refused::Busy);
                    return Ok(boxed(busy("token requests")));
                };
                return Ok(boxed(match &state.identity {
                    Some(id) => id.token_endpoint(req, peer, &state.throttles.token).await,
                    None => text(
                        StatusCode::NOT_FOUND,
                        "this gateway runs without a database: no key-pair agents\n",
                    ),
                }));
            }
            if ws::TUNNEL_PATHS.contains(&req.uri().path()) && state.config.psk.is_some() {
                // Checked before the upgrade: throttled per address, and a
                // refusal ends the connection, so one connection cannot
                // carry guess after guess.
                let throttles = state.throttles.clone();
                let Ok(attempt) = throttles.tunnel.attempt(peer.ip()).await else {
                    return Ok(boxed(closing(text(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many refused agent links from this address: retry later\n",
                    ))));
                };
                let r = route::<I>(state, peer, cert, req);
                if r.status() == StatusCode::UNAUTHORIZED {
                    let why = String::from_utf8_lossy(
                        &r.body()
                            .clone()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default(),
                    )
                    .trim()
                    .to_owned();
                    attempt.failed(&why);
                    return Ok(boxed(closing(r)));
                }
                attempt.succeeded();
                return Ok(boxed(r));
            }
            Ok(boxed(route::<I>(state, peer, cert, req)))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let _ = conn.await;
}

/// The response, with the connection closed after it.
fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn route<I>(
    state: Arc<State>,
    peer: SocketAddr,
    cert: Option<Thumbprint>,
    req: Request<Incoming>,
) -> Response<Body>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let path = req.uri().path();
    if ws::TUNNEL_PATHS.contains(&path) {
        return upgrade::<I>(state, peer, cert, req);
    }
    match path {
        "/" => status_page(&state),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn status_page(state: &State) -> Response<Body> {
    let thumbprint = state.config.tls.as_ref().map(|id| id.thumbprint());
    let body = page::html(
        "Burrow gateway",
        thumbprint,
        "Agents connect to this port: wss://HOST:PORT/tunnel, or tls://HOST:PORT.",
    );
    page::respond(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn bearer(req: &Request<Incoming>) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    v.strip_prefix(b"Bearer ")
}

fn upgrade<I>(
    state: Arc<State>,
    peer: SocketAddr,
    cert: Option<Thumbprint>,
    mut req: Request<Incoming>,
) -> Response<Body>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    // With a pre-shared key, refuse a wrong one (or a bad access token)
    // before upgrading: proxies and scanners get a plain 401. The hello
    // checks the credential again, fully.
    if let Some(psk) = &state.config.psk {
        let token_ok = |got: &[u8]| {
            let got = std::str::from_utf8(got).unwrap_or_default();
            burrow_auth::access::looks_like_jwt(got)
                && state.identity.as_ref().is_some_and(|id| id.plausible(got))
        };
        let authorized = bearer(&req)
            .is_some_and(|got| bool::from(got.ct_eq(psk.expose().as_bytes())) || token_ok(got));
        if !authorized {
            let why = match bearer(&req) {
                Some(b) if burrow_auth::access::looks_like_jwt(&String::from_utf8_lossy(b)) => {
                    "invalid or expired access token"
                }
                Some(_) => "wrong pre-shared key",
                None => "no pre-shared key presented",
            };
            return text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
        }
    }
    let Slot::Held(slot) = state.handshake_slot() else {
        state.count_refusal(crate::metrics::Refused::Busy);
        return busy("agent links");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let span = info_span!("link", %peer);
    let links = state.links.clone();
    links.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    // The connection itself when it is the one this server
                    // was given (always, but hyper only promises a
                    // wrapper): its reads and writes then skip the
                    // wrapper's layers.
                    let mut link = match upgraded.downcast::<TokioIo<I>>() {
                        Ok(parts) => {
                            ws::accept_upgraded(parts.io.into_inner(), &parts.read_buf, Some(peer))
                        }
                        Err(upgraded) => {
                            debug!("upgraded link connection kept in hyper's wrapper");
                            ws::accept_upgraded(TokioIo::new(upgraded), &[], Some(peer))
                        }
                    };
                    link.peer_cert = cert;
                    admit(state, link, None, Slot::Held(slot)).await;
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

/// Checks an agent's credentials: an access token from the token endpoint
/// (key-pair agents), or the pre-shared key (if the gateway has one); and
/// its certificate (if the gateway trusts certificates for this agent, or
/// requires them). Returns the key a token was earned with, or what to tell
/// the agent on refusal.
async fn authorize(
    state: &State,
    hello: &Hello,
    cert: Option<Thumbprint>,
) -> Result<Option<String>, String> {
    let agent = &hello.agent_name;
    let credential = hello.credential.as_str();
    let mut key = None;
    if burrow_auth::access::looks_like_jwt(credential) {
        let Some(id) = &state.identity else {
            return Err("this gateway has no database, so it issues no access tokens: use the pre-shared key".into());
        };
        key = Some(id.check_link(agent, credential).await?);
    } else if let Some(psk) = &state.config.psk {
        let ok = bool::from(credential.as_bytes().ct_eq(psk.expose().as_bytes()));
        if !ok {
            return Err(if credential.is_empty() {
                "no pre-shared key presented".into()
            } else {
                "wrong pre-shared key".into()
            });
        }
    } else if !credential.is_empty() {
        return Err("this gateway has no pre-shared key: register the agent with a key pair (burrow register) and give it AUTH_SERVER_CLIENT_ID and its private key".into());
    }
    let credentialed = key.is_some() || state.config.psk.is_some();
    let trusted = state.config.trust.for_agent(agent);
    if trusted.is_empty() {
        if state.config.require_agent_certificate || !credentialed {
            let presented = cert.map_or_else(
                || "no certificate".to_owned(),
                |t| format!("certificate {t}"),
            );
            return Err(format!(
                "the gateway trusts no certificate for agent {agent} (it presented {presented}): trust it with --trust-agent {agent}=THUMBPRINT, the thumbprint the agent prints at start; or register the agent with a key pair (burrow register)"
            ));
        }
        return Ok(key);
    }
    match cert {
        None => Err(format!(
            "agent {agent} presented no client certificate, but the gateway requires one of {}: connect with wss:// or tls:// so the agent presents its certificate",
            list_thumbprints(&trusted)
        )),
        Some(t) if trusted.contains(&t) => Ok(key),
        Some(t) => Err(format!(
            "agent {agent} presented certificate thumbprint {t}, but the gateway trusts only {} for it: if the agent's certificate was replaced, add the new thumbprint (--trust-agent {agent}={t} or the trust file) after checking it against the agent's start-up log",
            list_thumbprints(&trusted)
        )),
    }
}

/// [`authorize`], throttled per source address: a link from an address
/// with many refusals waits its turn (or is refused at once), and each
/// refusal is counted there and logged as a rate.
async fn authorize_throttled(
    state: &State,
    hello: &Hello,
    cert: Option<Thumbprint>,
    peer: Option<SocketAddr>,
) -> Result<Option<String>, String> {
    let Some(ip) = peer.map(|p| p.ip()) else {
        return authorize(state, hello, cert).await;
    };
    let attempt =
        state
            .throttles
            .tunnel
            .attempt(ip)
            .await
            .map_err(|crate::throttle::Refused(s)| {
                format!("too many refused links from this address: retry in {s} s")
            })?;
    match authorize(state, hello, cert).await {
        Ok(k) => {
            attempt.succeeded();
            Ok(k)
        }
        Err(why) => {
            attempt.failed(&format!("agent {}: {why}", hello.agent_name));
            Err(why)
        }
    }
}

/// The answer of a gateway at its handshake cap: 503, and when to retry.
fn busy(what: &str) -> Response<Body> {
    let mut r = closing(text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the gateway has as many handshakes under way as it takes ({what} are waiting): retry in {} s\n",
            burrow_wire::BUSY_RETRY_AFTER_SECS
        ),
    ));
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(burrow_wire::BUSY_RETRY_AFTER_SECS),
    );
    r
}

/// Runs the hello on a new link, authorizes it, and serves it until it
/// closes. `expected` is the agent name a gateway-dialed link must carry.
pub(crate) async fn admit(state: Arc<State>, mut link: Link, expected: Option<&str>, slot: Slot) {
    let peer = link.peer;
    let cert = link.peer_cert;
    let hello = match handshake::accept(&mut link).await {
        Ok(h) => h,
        Err(e) => {
            warn!(event = crate::event::HELLO_REFUSED, error = %e, "agent link refused at hello");
            state.count_refusal(crate::metrics::Refused::Hello);
            return;
        }
    };
    if hello.capabilities.iter().any(|c| c == capabilities::PEER) {
        drop(slot);
        match state.cluster.clone() {
            Some(cluster) => {
                crate::cluster::serve_peer(
                    cluster,
                    state.registry.clone(),
                    state.streams.clone(),
                    link,
                    hello,
                    state.config.heartbeat,
                )
                .await;
            }
            None => {
                handshake::reject(
                    &mut link,
                    Reject {
                        code: RejectCode::Unauthorized,
                        message: "this gateway shares no database with other replicas".into(),
                    },
                )
                .await;
            }
        }
        return;
    }
    let agent = hello.agent_name.clone();
    let mut key = None;
    let refusal = if state.stop_accepting.is_cancelled() {
        Some((
            RejectCode::ShuttingDown,
            "gateway is shutting down; retry shortly".to_owned(),
        ))
    } else if matches!(slot, Slot::Busy) {
        Some((
            RejectCode::Busy,
            format!(
                "the gateway has as many handshakes under way as it takes: retry in {} s",
                burrow_wire::BUSY_RETRY_AFTER_SECS
            ),
        ))
    } else if let Some(want) = expected.filter(|w| *w != agent) {
        Some((
            RejectCode::Unauthorized,
            format!(
                "the gateway dialed agent {want}, but this agent calls itself {agent}: fix --agent-endpoint or --agent-name"
            ),
        ))
    } else if let Err(why) = authorize_throttled(&state, &hello, cert, peer)
        .await
        .map(|k| key = k)
    {
        Some((RejectCode::Unauthorized, why))
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
        state.count_refusal(match code {
            RejectCode::ShuttingDown => crate::metrics::Refused::ShuttingDown,
            RejectCode::Busy => crate::metrics::Refused::Busy,
            RejectCode::TooManyLinks => crate::metrics::Refused::TooManyLinks,
            _ => crate::metrics::Refused::Unauthorized,
        });
        match code {
            // Credential refusals are logged as a rate by the throttle.
            RejectCode::Unauthorized => {}
            // A storm's refusals are counted (burrow_link_refusals_total),
            // not logged one by one.
            RejectCode::Busy => debug!(%agent, "agent link refused: at the handshake cap"),
            _ => warn!(%agent, reason = %message, "agent link refused"),
        }
        handshake::reject(&mut link, Reject { code, message }).await;
        return;
    }
    let mut caps = vec![
        capabilities::STREAMS.into(),
        capabilities::REQUESTS.into(),
        capabilities::RESET_REASONS.into(),
    ];
    let cluster = state.cluster.clone();
    if let Some(c) = &cluster {
        caps.push(capabilities::replica(&c.id));
    }
    if let Err(e) = handshake::ack(&mut link, caps).await {
        warn!(%agent, error = %e, "agent link failed during hello");
        return;
    }
    drop(slot);
    let config = burrow_mux::Config {
        dialer: false,
        heartbeat: Some(state.config.heartbeat),
        peer_reads_reasons: hello
            .capabilities
            .iter()
            .any(|c| c == capabilities::RESET_REASONS),
        ..burrow_mux::Config::default()
    };
    let (session, incoming) = Session::new(link.reader, link.writer, config);
    let rpc = burrow_rpc::Rpc::new(
        session.clone(),
        crate::requests::router(state.clone(), agent.clone()),
        burrow_rpc::Peer {
            role: "agent",
            answers: hello
                .capabilities
                .iter()
                .any(|c| c == capabilities::REQUESTS),
            version: hello.software_version.clone(),
        },
    );
    let _on_shard = state.shards.hold_link();
    let (id, links) = state.registry.add(
        &agent,
        session.clone(),
        rpc.clone(),
        peer,
        hello.software_version.clone(),
        key.clone(),
    );
    let cert = cert.map(|t| t.to_string()).unwrap_or_default();
    let key_name = key.as_deref().unwrap_or("");
    let shard = crate::shard::current().map_or_else(|| "main".to_owned(), |i| i.to_string());
    if let Some(m) = state.audit.metrics() {
        m.link_changed(true);
    }
    info!(event = crate::event::AGENT_LINK_UP, %agent, link = id, links, version = %hello.software_version, certificate = %cert, key = key_name, %shard, "agent link up");
    touch(&state, &agent, &hello.software_version, peer).await;
    if let Some(c) = &cluster {
        c.links_changed();
        let list = burrow_wire::replicas::encode(&c.replica_list());
        let _ = session
            .send_control(burrow_wire::control::REPLICAS, Bytes::from(list))
            .await;
    }
    state.catalog.push(&agent, Some(&session)).await;
    state.catalog.routes_changed();
    tokio::spawn(control_loop(
        state.clone(),
        agent.clone(),
        id,
        (session.clone(), rpc),
        incoming,
    ));
    let reason = session.closed().await;
    let left = state.registry.remove(&agent, id);
    if let Some(c) = &cluster {
        c.links_changed();
    }
    if let Some(m) = state.audit.metrics() {
        m.link_changed(false);
    }
    state.catalog.routes_changed();
    touch(&state, &agent, &hello.software_version, peer).await;
    info!(event = crate::event::AGENT_LINK_DOWN, %agent, link = id, links = left, %reason, "agent link down");
}

/// Records when a registered agent was last seen, its version and address
/// (for `list-agents`). Unregistered (pre-shared-key) agents have no row;
/// a database error costs only the record.
async fn touch(state: &State, agent: &str, version: &str, peer: Option<SocketAddr>) {
    if let Some(store) = &state.config.store {
        let addr = peer.map(|p| p.to_string()).unwrap_or_default();
        if let Err(e) = store.touch_agent(agent, version, &addr).await {
            debug!(error = %e, "last-seen not recorded");
        }
    }
}

/// Control messages from an agent's link. The agent opens no streams
/// towards the gateway: any it tries is refused.
async fn control_loop(
    state: Arc<State>,
    agent: String,
    id: u64,
    (session, rpc): (Session, burrow_rpc::Rpc),
    mut incoming: burrow_mux::Incoming,
) {
    while let Some(event) = incoming.next().await {
        match event {
            burrow_mux::Event::Control(kind, body) if rpc.on_control(kind, &body) => {}
            burrow_mux::Event::Stream(s) => s.reset(burrow_mux::ResetCode::NotAllowed),
            burrow_mux::Event::Control(burrow_wire::control::DRAINING, _) => {
                state.registry.set_draining(&agent, id);
                info!(%agent, link = id, "agent link draining: no new streams on it");
                let _ = session
                    .send_control(burrow_wire::control::DRAINING_ACK, Bytes::new())
                    .await;
            }
            burrow_mux::Event::Control(burrow_wire::control::ROUTES, body) => {
                state
                    .catalog
                    .declare(&agent, &body, state.config.max_agents)
                    .await;
            }
            burrow_mux::Event::Control(kind, _) => {
                debug!(%agent, kind, "ignoring unknown control message");
            }
        }
    }
}
