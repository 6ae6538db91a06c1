//! The Burrow gateway: the public end of the tunnel.
//!
//! Agents dial the tunnel endpoint (`wss://…/tunnel` or `/connect`, or raw
//! `tls://`, told apart by ALPN on one TLS port) and keep links open; or the
//! gateway dials agents that listen ([`AgentEndpoint`]). TCP forwards
//! accept connections and carry each one as a stream over one of the named
//! agent's live links.
//!
//! # Layout
//! - [`Gateway`]: binds listeners ([`Gateway::bind`]), then serves until a
//!   shutdown future resolves ([`Gateway::run`]), draining open streams.
//! - `endpoint.rs`: the tunnel port: TLS, then the raw carrier or HTTP
//!   (WebSocket upgrade, status page); `admit` authorizes every link.
//! - `outbound.rs`: links the gateway dials to listening agents.
//! - `forward.rs`: TCP forwards (`LISTEN=AGENT:HOST:PORT`).
//! - [`Trust`]: agent certificate thumbprints trusted per agent name.
//! - [`registry`]: live links by agent, round-robin link choice.
//! - `shard.rs`: single-threaded runtimes, one per core, that serve
//!   connections and links (accepted on the main runtime, then handed over).
//! - `tokens.rs`: the RFC 7523 token endpoint and access-token checks.
//! - [`admin`]: the admin API (`/api/v1`).

#![forbid(unsafe_code)]

pub mod admin;
mod caddy;
mod edge;
mod egress;
mod endpoint;
mod forward;
mod h1;
mod limits;
mod open;
mod outbound;
pub mod registry;
mod shard;
mod throttle;
mod tokens;
mod traffic;
mod trust;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_transport::tls::LiveIdentity;
use burrow_transport::{Secret, TunnelUrl};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use caddy::CaddyConfig;
pub use edge::OwnNames;
pub use egress::ProxyAuth;
pub use forward::{ForwardSpec, ForwardSpecError};
pub use limits::Caps;
pub use registry::Registry;
pub use tokens::{TokenKeyError, TokenKeySource};
pub use traffic::AuditConfig;
pub use trust::{Trust, TrustEntry, TrustError};

/// A listening agent the gateway dials: `NAME=tls://host:port`.
#[derive(Debug, Clone)]
pub struct AgentEndpoint {
    /// The agent's name (its hello must say the same).
    pub name: String,
    /// Where it listens.
    pub url: TunnelUrl,
}

impl std::str::FromStr for AgentEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s.split_once('=').ok_or_else(|| {
            format!("invalid agent endpoint {s:?}: expected NAME=tls://HOST:PORT")
        })?;
        if !burrow_wire::valid_name(name) {
            return Err(format!(
                "invalid agent endpoint {s:?}: agent names are 1-200 letters, digits, '-' and '.', not only dots"
            ));
        }
        let url = TunnelUrl::parse(url).map_err(|e| e.to_string())?;
        if url.scheme != burrow_transport::Scheme::Tls {
            return Err(format!(
                "invalid agent endpoint {s:?}: listening agents are dialed with tls://HOST:PORT"
            ));
        }
        Ok(AgentEndpoint {
            name: name.to_owned(),
            url,
        })
    }
}

/// Gateway settings, validated by the binary before use.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Pre-shared key agents must present, if any.
    pub psk: Option<Secret>,
    /// The gateway's certificate; `None` serves plain `ws://` (behind a TLS
    /// proxy only).
    pub tls: Option<Arc<LiveIdentity>>,
    /// Agent certificates trusted per agent name.
    pub trust: Trust,
    /// Refuse agents that present no trusted certificate, even with the key.
    pub require_agent_certificate: bool,
    /// Listening agents to dial.
    pub agent_endpoints: Vec<AgentEndpoint>,
    /// Registered agents, keys, admin keys; `None` disables the admin API.
    pub store: Option<burrow_store::Store>,
    /// Most agents that may be registered.
    pub max_agents: usize,
    /// The tunnel audience access tokens are issued for (`API_AUDIENCE`);
    /// `None` keeps the one stored on first start.
    pub audience: Option<String>,
    /// How long an access token lives.
    pub access_token_lifetime: Duration,
    /// Where the access-token signing key lives.
    pub token_key: TokenKeySource,
    /// How often live links are checked against the stored keys, so a key
    /// removed through another replica (or the database) closes its links;
    /// FQDN rules are re-read as often.
    pub revocation_check: Duration,
    /// Where the egress proxy listens (HTTP CONNECT, absolute http://,
    /// SOCKS5); `None`: no proxy.
    pub proxy_listen: Option<SocketAddr>,
    /// Credentials proxy clients must present.
    pub proxy_auth: Option<ProxyAuth>,
    /// Where the HTTP edge redirects visitors to HTTPS; `None`: not served.
    pub edge_http: Option<SocketAddr>,
    /// Where the HTTPS edge serves routes; `None`: not served.
    pub edge_https: Option<SocketAddr>,
    /// The edge's certificate (a wildcard for the public domain).
    pub edge_tls: Option<Arc<LiveIdentity>>,
    /// Routes must be under this domain (`BURROW_PUBLIC_DOMAIN`), if set.
    pub public_domain: Option<String>,
    /// The gateway's own host names, which can never be routes.
    pub own_names: OwnNames,
    /// Caddy mode: keep routes in Caddy through its Admin API.
    pub caddy: Option<CaddyConfig>,
    /// Origins browsers may call the admin API from (`*`: any).
    pub allowed_origins: Vec<String>,
    /// The traffic audit trail's queue and retention.
    pub audit: AuditConfig,
    /// Links to keep to each listening agent.
    pub links_per_endpoint: usize,
    /// First delay before redialing a listening agent; doubles per failure.
    pub reconnect_delay: Duration,
    /// Cap on that delay.
    pub max_reconnect_delay: Duration,
    /// TCP forwards to serve.
    pub forwards: Vec<ForwardSpec>,
    /// Heartbeat interval on agent links; three silent intervals drop one.
    pub heartbeat: Duration,
    /// On shutdown, how long open streams may take to finish.
    pub drain_timeout: Duration,
    /// Most forwarded connections open at once; more are refused.
    pub max_connections: usize,
    /// Caps on the tunnel endpoint's connections.
    pub tunnel_caps: Caps,
    /// Caps on each edge listener's (HTTPS, HTTP) connections.
    pub edge_caps: Caps,
    /// Caps on the egress proxy's connections.
    pub proxy_caps: Caps,
    /// Most live links one agent may hold.
    pub max_links_per_agent: usize,
}

impl GatewayConfig {
    /// Settings with the documented defaults, the given key and TLS
    /// identity.
    pub fn new(psk: Option<Secret>, tls: Option<Arc<LiveIdentity>>) -> Self {
        GatewayConfig {
            psk,
            tls,
            trust: Trust::default(),
            require_agent_certificate: false,
            agent_endpoints: Vec::new(),
            store: None,
            max_agents: burrow_store::DEFAULT_MAX_AGENTS,
            audience: None,
            access_token_lifetime: Duration::from_secs(burrow_auth::access::DEFAULT_LIFETIME),
            token_key: TokenKeySource::default(),
            revocation_check: Duration::from_secs(2),
            proxy_listen: None,
            proxy_auth: None,
            edge_http: None,
            edge_https: None,
            edge_tls: None,
            public_domain: None,
            own_names: OwnNames::new(["localhost"]),
            caddy: None,
            allowed_origins: vec!["*".into()],
            audit: AuditConfig::default(),
            links_per_endpoint: 2,
            reconnect_delay: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(300),
            forwards: Vec::new(),
            heartbeat: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            tunnel_caps: Caps {
                total: 4096,
                per_address: 512,
            },
            edge_caps: Caps {
                total: 4096,
                per_address: 256,
            },
            proxy_caps: Caps {
                total: 1024,
                per_address: 256,
            },
            max_links_per_agent: 16,
        }
    }
}

/// Errors starting a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] burrow_transport::tls::TlsError),
    /// The database could not provide the token settings.
    #[error("database: {0}")]
    Store(#[from] burrow_store::StoreError),
    /// The access-token key could not be had.
    #[error(transparent)]
    TokenKey(#[from] TokenKeyError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

pub(crate) struct State {
    pub(crate) config: GatewayConfig,
    pub(crate) registry: Registry,
    /// Stops accept loops (first step of shutdown).
    pub(crate) stop_accepting: CancellationToken,
    /// Forwarded connections, waited for while draining.
    pub(crate) streams: TaskTracker,
    /// Link tasks.
    pub(crate) links: TaskTracker,
    pub(crate) conn_limit: Arc<Semaphore>,
    pub(crate) acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Token endpoint and token checks; present with a store.
    pub(crate) identity: Option<tokens::Identity>,
    /// FQDN rules, as last read from the store.
    pub(crate) rules: std::sync::RwLock<Arc<Vec<burrow_store::FqdnRule>>>,
    /// Routes, as last read from the store, less those on own names.
    pub(crate) routes: std::sync::RwLock<Arc<Vec<burrow_store::Route>>>,
    /// Stored routes left out because they name the gateway itself.
    pub(crate) shadowed_routes: std::sync::atomic::AtomicUsize,
    /// Wakes the Caddy reconciler (a route or an agent changed).
    pub(crate) caddy_kick: tokio::sync::Notify,
    /// The traffic audit trail; present with a store.
    pub(crate) traffic: Option<Arc<traffic::Recorder>>,
    /// Where connections and links are served.
    pub(crate) shards: shard::Shards,
    /// Credential failures per source address, for every check.
    pub(crate) throttles: Arc<throttle::Throttles>,
}

impl State {
    /// Records one tunneled request or stream, without waiting.
    pub(crate) fn record(&self, t: burrow_store::Traffic) {
        if let Some(r) = &self.traffic {
            r.record(t);
        }
    }
}

/// A gateway with its listeners bound.
pub struct Gateway {
    state: Arc<State>,
    tunnel: TcpListener,
    forwards: Vec<(ForwardSpec, TcpListener)>,
    proxy: Option<TcpListener>,
    edge_http: Option<TcpListener>,
    edge_https: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    audit_rx: Option<tokio::sync::mpsc::Receiver<burrow_store::Traffic>>,
}

/// Accept queue depth: bursts of new connections (a CI fleet starting, a
/// load test) queue in the kernel instead of being dropped.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds with `SO_REUSEADDR` (a restarted gateway gets its port back at
/// once) and a deep accept queue.
pub async fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Next connection on `listener`, or `None` once the gateway stops
/// accepting. A failed accept (EMFILE and friends) is logged and retried
/// after a pause instead of spinning.
pub(crate) async fn accept(
    state: &State,
    listener: &TcpListener,
    what: &'static str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = state.stop_accepting.cancelled() => return None,
            r = listener.accept() => match r {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    listen(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })
}

impl Gateway {
    /// Binds the tunnel endpoint and every forward. Port 0 picks a free port;
    /// the chosen addresses are logged and returned by the accessors.
    pub async fn bind(config: GatewayConfig, tunnel: SocketAddr) -> Result<Self, GatewayError> {
        let tunnel = bind(tunnel).await?;
        let proxy = match config.proxy_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let edge_http = match config.edge_http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let edge_https = match (config.edge_https, &config.edge_tls) {
            (Some(addr), Some(id)) => Some((
                bind(addr).await?,
                tokio_rustls::TlsAcceptor::from(burrow_transport::tls::edge_server_config(
                    id.clone(),
                )?),
            )),
            _ => None,
        };
        let mut forwards = Vec::new();
        for spec in &config.forwards {
            forwards.push((spec.clone(), bind(spec.listen).await?));
        }
        let acceptor = match &config.tls {
            Some(id) => Some(tokio_rustls::TlsAcceptor::from(
                burrow_transport::tls::server_config(id.clone())?,
            )),
            None => None,
        };
        let identity = match &config.store {
            Some(store) => Some(
                tokens::Identity::load(
                    store.clone(),
                    &config.token_key,
                    config.audience.clone(),
                    config.access_token_lifetime.as_secs(),
                )
                .await?,
            ),
            None => None,
        };
        let (recorder, audit_rx) = match &config.store {
            Some(_) => {
                let (r, rx) = traffic::Recorder::new(config.audit.queue);
                (Some(Arc::new(r)), Some(rx))
            }
            None => (None, None),
        };
        let shards = shard::Shards::start(shard::default_count());
        let state = Arc::new(State {
            throttles: Arc::new(throttle::Throttles::default()),
            shards,
            traffic: recorder,
            rules: std::sync::RwLock::new(Arc::new(Vec::new())),
            routes: std::sync::RwLock::new(Arc::new(Vec::new())),
            shadowed_routes: std::sync::atomic::AtomicUsize::new(0),
            caddy_kick: tokio::sync::Notify::new(),
            identity,
            acceptor,
            conn_limit: Arc::new(Semaphore::new(config.max_connections)),
            config,
            registry: Registry::default(),
            stop_accepting: CancellationToken::new(),
            streams: TaskTracker::new(),
            links: TaskTracker::new(),
        });
        Ok(Gateway {
            state,
            tunnel,
            forwards,
            proxy,
            edge_http,
            edge_https,
            audit_rx,
        })
    }

    /// Where the tunnel endpoint listens.
    pub fn tunnel_addr(&self) -> std::io::Result<SocketAddr> {
        self.tunnel.local_addr()
    }

    /// Where the egress proxy listens, if it does.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the HTTPS edge listens, if it does.
    pub fn edge_https_addr(&self) -> Option<SocketAddr> {
        self.edge_https
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// Where each forward listens, in configuration order.
    pub fn forward_addrs(&self) -> Vec<SocketAddr> {
        self.forwards
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets open
    /// streams finish for up to the drain timeout, and closes every link.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Gateway {
            state,
            tunnel,
            forwards,
            proxy,
            edge_http,
            edge_https,
            audit_rx,
        } = self;
        let audit_writer = match (audit_rx, &state.config.store, &state.traffic) {
            (Some(rx), Some(store), Some(rec)) => Some(tokio::spawn(traffic::writer(
                store.clone(),
                rx,
                rec.clone(),
                state.config.audit.clone(),
            ))),
            _ => None,
        };
        egress::reload(&state).await;
        let tunnel_addr = tunnel.local_addr().ok();
        if let Ok(addr) = tunnel.local_addr() {
            match &state.config.tls {
                Some(id) => info!(
                    %addr,
                    thumbprint = %id.thumbprint(),
                    urls = %format!("wss://{addr}/tunnel tls://{addr}"),
                    "tunnel endpoint listening (TLS 1.2+)"
                ),
                None => warn!(
                    %addr,
                    urls = %format!("ws://{addr}/tunnel"),
                    "tunnel endpoint listening WITHOUT TLS (--no-tls): only behind a TLS-terminating proxy such as Caddy"
                ),
            }
        }
        let accept_loops = TaskTracker::new();
        accept_loops.spawn(endpoint::serve(state.clone(), tunnel));
        for (spec, listener) in forwards {
            if let Ok(addr) = listener.local_addr() {
                info!(listen = %addr, agent = %spec.agent, dest = %spec.target, "forward listening");
            }
            accept_loops.spawn(forward::serve(state.clone(), spec, listener));
        }
        if state.identity.is_some() {
            accept_loops.spawn(tokens::maintenance(state.clone()));
        }
        {
            let (throttles, stop) = (state.throttles.clone(), state.stop_accepting.clone());
            accept_loops.spawn(async move { throttles.report(stop).await });
        }
        if let Some(listener) = proxy {
            if let Ok(addr) = listener.local_addr() {
                let auth = if state.config.proxy_auth.is_some() {
                    "basic / SOCKS5 user:password"
                } else {
                    "none"
                };
                info!(%addr, client_auth = auth, "egress proxy listening (HTTP CONNECT, http:// requests, SOCKS5)");
                if !addr.ip().is_loopback() && state.config.proxy_auth.is_none() {
                    warn!(%addr, "the egress proxy listens beyond loopback without client credentials: anyone who reaches it may use the FQDN rules (set --proxy-auth)");
                }
            }
            accept_loops.spawn(egress::serve(state.clone(), listener));
        }
        let https_port = edge_https
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
            .map_or(443, |a| a.port());
        if let Some((listener, tls)) = edge_https {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "edge listening (HTTPS, HTTP/2 and HTTP/1.1, routes by host)");
            }
            accept_loops.spawn(edge::serve_https(state.clone(), listener, tls));
        }
        if let Some(listener) = edge_http {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "edge listening (HTTP, redirects to HTTPS)");
            }
            accept_loops.spawn(edge::serve_http(state.clone(), listener, https_port));
        }
        if let Some(mut cfg) = state.config.caddy.clone() {
            if cfg.upstream.is_empty() {
                // Caddy dials the tunnel port, on loopback when it listens
                // on all addresses.
                if let Some(mut a) = tunnel_addr {
                    if a.ip().is_unspecified() {
                        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    cfg.upstream = a.to_string();
                }
            }
            accept_loops.spawn(caddy::run(state.clone(), cfg));
        }
        accept_loops.close();
        for ep in &state.config.agent_endpoints {
            info!(agent = %ep.name, url = %ep.url.url, "dialing listening agent");
            for idx in 0..state.config.links_per_endpoint.max(1) {
                let link = state
                    .links
                    .track_future(outbound::run(state.clone(), ep.clone(), idx));
                state.shards.spawn_on(idx, link);
            }
        }

        shutdown.await;
        // Stop accepting first: once the log line says so, it is true.
        state.stop_accepting.cancel();
        accept_loops.wait().await;
        info!(
            open_streams = state.streams.len(),
            drain_seconds = state.config.drain_timeout.as_secs_f64(),
            "shutting down: listeners closed; draining open streams"
        );
        burrow_mux::drain(&state.streams, state.config.drain_timeout).await;
        state.registry.close_all();
        state.links.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), state.links.wait()).await;
        // Streams left at the drain's end broke with their links; let their
        // tasks reset their clients (RST) before the process exits, which
        // would close those sockets with a clean FIN: silent truncation.
        let _ = tokio::time::timeout(Duration::from_secs(2), state.streams.wait()).await;
        if let (Some(rec), Some(writer)) = (&state.traffic, audit_writer) {
            rec.flush(Duration::from_secs(3)).await;
            writer.abort();
        }
        info!("gateway stopped");
    }
}
