//! The Burrow gateway: the public end of the tunnel.
//!
//! Agents dial the tunnel endpoint (`wss://…/tunnel` or `/connect`, or raw
//! `tls://`, told apart by ALPN on one TLS port) and keep links open; or the
//! gateway dials agents that listen ([`AgentEndpoint`]). Through those links
//! it serves TCP forwards, the egress proxy and the HTTP edge.
//!
//! # Layout
//! Modules, not crates: the parts share one runtime setup and one set of
//! listeners, and each takes a narrow context, not the gateway's state.
//!
//! The core (files at the top):
//! - [`Gateway`]: binds listeners ([`Gateway::bind`]), then serves until a
//!   shutdown future resolves ([`Gateway::run`]), draining open streams.
//! - `endpoint.rs`: the tunnel port: TLS, then the raw carrier or HTTP
//!   (WebSocket upgrade, status page); `admit` authorizes every link.
//! - `outbound.rs`: links the gateway dials to listening agents.
//! - `reach.rs`: the start-up line saying which listeners are public.
//! - `forward.rs`, `forward_spec.rs`: TCP forwards (`LISTEN=AGENT:HOST:PORT`).
//! - `config.rs`: [`GatewayConfig`] and the errors of starting; `state.rs`:
//!   what the core's tasks share; `sweep.rs`: the 2 s fallback sweep
//!   (catalog reload, revoked keys).
//! - [`registry`]: live links by agent, round-robin link choice.
//! - `open.rs`: one open of a stream through an agent, with ack and timeout.
//! - `catalog.rs`: FQDN rules and routes, with their one reload.
//! - `names.rs`: the gateway's own names; which host names may be routes.
//! - [`Trust`], `tokens.rs`, `throttle.rs`: agent certificates, the RFC
//!   7523 token endpoint, credential-failure throttles.
//! - `limits.rs`, `shard.rs`, `io.rs`: connection caps and accept loops,
//!   per-core runtimes, the head reader and rewinding reader.
//! - `metrics.rs`: the Prometheus metrics (`--metrics-listen`), counted
//!   where the audit sink, the link admission and the throttles see
//!   things happen.
//! - `traffic.rs`: the audit sink and its writer; `answer.rs`: the body
//!   and JSON form of the gateway's own answers.
//!
//! The parts:
//! - `edge/`: the HTTP edge (HTTP/1.1, HTTP/2, routes, pages, Caddy).
//! - `egress/`: the egress proxy (CONNECT, absolute-URI HTTP, SOCKS5,
//!   reachability checks).
//! - [`admin`]: the admin API (`/api/v1`).

#![forbid(unsafe_code)]

pub mod admin;
mod answer;
mod catalog;
mod cluster;
mod config;
mod edge;
mod egress;
mod endpoint;
pub mod event;
mod forward;
mod forward_spec;
mod io;
mod limits;
mod metrics;
mod names;
mod open;
mod outbound;
mod reach;
mod refusal;
pub mod registry;
mod requests;
mod shard;
mod state;
mod sweep;
mod throttle;
mod tokens;
mod traffic;
mod trust;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use state::State;

pub use config::{AgentEndpoint, GatewayConfig, GatewayError, default_replica_id};
pub use edge::caddy::CaddyConfig;
pub use egress::ProxyAuth;
pub use forward_spec::{ForwardSpec, ForwardSpecError};
pub use limits::Caps;
pub use names::OwnNames;
pub use registry::Registry;
pub use tokens::{TokenKeyError, TokenKeySource};
pub use traffic::AuditConfig;
pub use trust::{Trust, TrustEntry, TrustError};

/// A forward serving now: its spec as configured, and what stops it.
struct RunningForward {
    spec: ForwardSpec,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

/// Changes a running gateway's settings (a configuration reload).
#[derive(Clone)]
pub struct Reloader {
    state: Arc<State>,
    forwards: Arc<tokio::sync::Mutex<Vec<RunningForward>>>,
}

/// A forward a reload could not add.
#[derive(Debug, thiserror::Error)]
#[error("forward {spec}: cannot listen on {listen}: {source}")]
pub struct ForwardBindError {
    /// The forward.
    pub spec: String,
    /// Its address.
    pub listen: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

impl Reloader {
    fn spawn(&self, spec: ForwardSpec, listener: TcpListener) -> RunningForward {
        if let Ok(addr) = listener.local_addr() {
            info!(event = crate::event::FORWARD_LISTENING, listen = %addr, agent = %spec.agent, dest = %spec.target, "forward listening");
        }
        let stop = self.state.stop_accepting.child_token();
        let done = tokio::spawn(forward::serve(
            self.state.clone(),
            spec.clone(),
            listener,
            stop.clone(),
        ));
        RunningForward { spec, stop, done }
    }

    /// Waits until every forward's accept loop has ended (after the
    /// gateway stopped accepting).
    async fn forwards_stopped(&self) {
        let running = std::mem::take(&mut *self.forwards.lock().await);
        for r in running {
            let _ = r.done.await;
        }
    }

    /// Serves exactly `specs` as forwards: new ones start listening,
    /// removed ones stop accepting (their open connections go on), the
    /// others are untouched. Returns the forwards added and removed. When
    /// a new forward's address cannot be bound, nothing changes (unless
    /// it is the address of a forward being removed, which is released
    /// first).
    pub async fn set_forwards(
        &self,
        specs: &[ForwardSpec],
    ) -> Result<(Vec<String>, Vec<String>), ForwardBindError> {
        let mut running = self.forwards.lock().await;
        if self.state.stop_accepting.is_cancelled() {
            // Shutting down: every forward has stopped accepting.
            return Ok((Vec::new(), Vec::new()));
        }
        let added: Vec<&ForwardSpec> = specs
            .iter()
            .filter(|s| !running.iter().any(|r| r.spec == **s))
            .collect();
        let removed: Vec<usize> = (0..running.len())
            .filter(|&i| !specs.contains(&running[i].spec))
            .collect();
        let freeing: Vec<SocketAddr> = removed.iter().map(|&i| running[i].spec.listen).collect();
        let (later, now): (Vec<&ForwardSpec>, Vec<&ForwardSpec>) = added
            .into_iter()
            .partition(|s| s.listen.port() != 0 && freeing.contains(&s.listen));
        let bind = |s: &ForwardSpec| {
            let s = s.clone();
            async move {
                listen(s.listen)
                    .await
                    .map(|l| (s.clone(), l))
                    .map_err(|source| ForwardBindError {
                        spec: s.to_string(),
                        listen: s.listen,
                        source,
                    })
            }
        };
        let mut bound = Vec::new();
        for s in now {
            bound.push(bind(s).await?);
        }
        let mut gone = Vec::new();
        for i in removed.into_iter().rev() {
            let r = running.remove(i);
            r.stop.cancel();
            let _ = r.done.await;
            info!(event = crate::event::FORWARD_STOPPED, listen = %r.spec.listen, agent = %r.spec.agent, dest = %r.spec.target, "forward stopped (open connections go on)");
            gone.push(r.spec.to_string());
        }
        let mut reused_failed = None;
        for s in later {
            match bind(s).await {
                Ok(b) => bound.push(b),
                Err(e) => reused_failed = Some(e),
            }
        }
        let mut new = Vec::new();
        for (spec, listener) in bound {
            new.push(spec.to_string());
            running.push(self.spawn(spec, listener));
        }
        match reused_failed {
            Some(e) => Err(e),
            None => Ok((new, gone)),
        }
    }
}

/// A gateway with its listeners bound.
pub struct Gateway {
    state: Arc<State>,
    reloader: Reloader,
    tunnel: TcpListener,
    forwards: Vec<(ForwardSpec, TcpListener)>,
    proxy: Option<TcpListener>,
    edge_http: Option<TcpListener>,
    edge_https: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    audit_rx: Option<tokio::sync::mpsc::Receiver<burrow_store::Traffic>>,
    metrics: Option<TcpListener>,
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

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    listen(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })
}

/// The gateway's listening sockets, bound before anything else opens a
/// connection: a database pool's outgoing connections take ephemeral
/// ports, and a listen port in that range (e.g. 34140) would be taken
/// before it was bound.
pub struct Listeners {
    tunnel: TcpListener,
    proxy: Option<TcpListener>,
    edge_http: Option<TcpListener>,
    edge_https: Option<TcpListener>,
    forwards: Vec<(ForwardSpec, TcpListener)>,
    metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the tunnel port and each of the others that is set.
    pub async fn bind(
        tunnel: SocketAddr,
        proxy: Option<SocketAddr>,
        edge_http: Option<SocketAddr>,
        edge_https: Option<SocketAddr>,
        forwards: &[ForwardSpec],
    ) -> Result<Self, GatewayError> {
        let maybe = |a: Option<SocketAddr>| async move {
            match a {
                Some(addr) => bind(addr).await.map(Some),
                None => Ok(None),
            }
        };
        let mut bound = Listeners {
            tunnel: bind(tunnel).await?,
            proxy: maybe(proxy).await?,
            edge_http: maybe(edge_http).await?,
            edge_https: maybe(edge_https).await?,
            forwards: Vec::new(),
            metrics: None,
        };
        for spec in forwards {
            bound
                .forwards
                .push((spec.clone(), bind(spec.listen).await?));
        }
        Ok(bound)
    }

    /// Also binds the metrics and probe listener, when `addr` is set.
    pub async fn with_metrics(mut self, addr: Option<SocketAddr>) -> Result<Self, GatewayError> {
        if let Some(addr) = addr {
            self.metrics = Some(bind(addr).await?);
        }
        Ok(self)
    }

    /// Binds what `config` asks for.
    async fn for_config(config: &GatewayConfig, tunnel: SocketAddr) -> Result<Self, GatewayError> {
        let https = config.edge_https.filter(|_| config.edge_tls.is_some());
        Listeners::bind(
            tunnel,
            config.proxy_listen,
            config.edge_http,
            https,
            &config.forwards,
        )
        .await?
        .with_metrics(config.metrics_listen)
        .await
    }
}

impl Gateway {
    /// Binds the tunnel endpoint and every forward. Port 0 picks a free port;
    /// the chosen addresses are logged and returned by the accessors.
    pub async fn bind(config: GatewayConfig, tunnel: SocketAddr) -> Result<Self, GatewayError> {
        let listeners = Listeners::for_config(&config, tunnel).await?;
        Gateway::with_listeners(config, listeners).await
    }

    /// Starts on listeners bound already ([`Listeners::bind`], with the
    /// addresses `config` names).
    pub async fn with_listeners(
        config: GatewayConfig,
        listeners: Listeners,
    ) -> Result<Self, GatewayError> {
        let Listeners {
            tunnel,
            proxy,
            edge_http,
            edge_https,
            forwards,
            metrics: metrics_listener,
        } = listeners;
        let edge_https = match (edge_https, &config.edge_tls) {
            (Some(l), Some(id)) => Some((
                l,
                tokio_rustls::TlsAcceptor::from(burrow_transport::tls::edge_server_config(
                    id.clone(),
                )?),
            )),
            _ => None,
        };
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
        let shards = Arc::new(shard::Shards::start(shard::default_count()));
        let registry = Arc::new(Registry::default());
        // Presence and hops where replicas share the database: always on
        // PostgreSQL, on SQLite (one file, one host) when addresses are
        // advertised.
        let cluster = config
            .store
            .as_ref()
            .filter(|s| {
                s.backend() == burrow_store::Backend::Postgres || config.advertise_url.is_some()
            })
            .map(|store| {
                cluster::Cluster::new(
                    config.replica_id.clone(),
                    config.advertise_url.as_ref(),
                    store.clone(),
                    registry.clone(),
                    config.tls.clone(),
                    config.peer_trust.clone(),
                    config.heartbeat,
                )
            });
        if let Some(c) = &cluster {
            registry.set_remote(c.clone());
        }
        let cluster_for_state = cluster.clone();
        let metrics = metrics_listener.as_ref().map(|_| metrics::Metrics::new());
        let audit = traffic::AuditSink::new(recorder, metrics);
        let throttles = Arc::new(throttle::Throttles::new(&audit));
        let catalog = Arc::new(catalog::Catalog::new(
            config.store.clone(),
            config.own_names.clone(),
            config.public_domain.clone(),
            registry.clone(),
        ));
        let edge_ctx = Arc::new(edge::Http {
            catalog: catalog.clone(),
            links: registry.clone(),
            audit: audit.clone(),
        });
        let proxy_ctx = Arc::new(egress::Proxy {
            catalog: catalog.clone(),
            links: registry.clone(),
            audit: audit.clone(),
            auth: config.proxy_auth.clone(),
            throttles: throttles.clone(),
        });
        let admin = Arc::new(admin::Admin {
            store: config.store.clone(),
            links: registry.clone(),
            catalog: catalog.clone(),
            audit: audit.clone(),
            throttles: throttles.clone(),
            max_agents: config.max_agents,
            own_names: config.own_names.clone(),
            public_domain: config.public_domain.clone(),
            allowed_origins: config.allowed_origins.clone(),
            tls: acceptor.is_some(),
            audience: identity
                .as_ref()
                .map(|i: &tokens::Identity| i.audience.clone())
                .unwrap_or_default(),
            replica_id: config.replica_id.clone(),
            peer_tls: cluster.as_ref().and_then(|c| c.admin_tls()),
        });
        let state = Arc::new(State {
            admin,
            throttles,
            shards,
            audit,
            catalog,
            http: edge_ctx,
            proxy: proxy_ctx,
            identity,
            acceptor,
            conn_limit: Arc::new(Semaphore::new(config.max_connections)),
            handshakes: Arc::new(Semaphore::new(config.max_handshakes.max(1))),
            config,
            registry,
            stop_accepting: CancellationToken::new(),
            streams: TaskTracker::new(),
            links: TaskTracker::new(),
            started: std::time::SystemTime::now(),
            front_door: std::sync::OnceLock::new(),
            cluster: cluster_for_state,
        });
        Ok(Gateway {
            reloader: Reloader {
                state: state.clone(),
                forwards: Arc::new(tokio::sync::Mutex::new(Vec::new())),
            },
            state,
            tunnel,
            forwards,
            proxy,
            edge_http,
            edge_https,
            audit_rx,
            metrics: metrics_listener,
        })
    }

    /// What changes its settings while it runs.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
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

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
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
            reloader,
            tunnel,
            forwards,
            proxy,
            edge_http,
            edge_https,
            audit_rx,
            metrics,
        } = self;
        let audit_writer = match (audit_rx, &state.config.store, state.audit.recorder()) {
            (Some(rx), Some(store), Some(rec)) => Some(tokio::spawn(traffic::writer(
                store.clone(),
                rx,
                rec.clone(),
                state.config.audit.clone(),
            ))),
            _ => None,
        };
        state.catalog.reload().await;
        let tunnel_addr = tunnel.local_addr().ok();
        let bound: Vec<(String, Option<SocketAddr>)> = [
            ("tunnel".to_owned(), tunnel_addr),
            (
                "proxy".to_owned(),
                proxy.as_ref().and_then(|l| l.local_addr().ok()),
            ),
            (
                "edge-https".to_owned(),
                edge_https.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            ),
            (
                "edge-http".to_owned(),
                edge_http.as_ref().and_then(|l| l.local_addr().ok()),
            ),
        ]
        .into_iter()
        .chain(
            forwards
                .iter()
                .map(|(spec, l)| (format!("forward:{}", spec.agent), l.local_addr().ok())),
        )
        .collect();
        let front = match (&edge_https, &state.config.edge_tls) {
            (Some((l, _)), Some(id)) => l.local_addr().ok().map(|a| (a, Some(id.clone()))),
            _ => tunnel_addr.map(|a| (a, state.config.tls.clone())),
        };
        if let Some((mut addr, tls)) = front {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            let _ = state.front_door.set(state::FrontDoor { addr, tls });
        }
        if let Ok(addr) = tunnel.local_addr() {
            match &state.config.tls {
                Some(id) => info!(
                    event = crate::event::TUNNEL_LISTENING,
                    %addr,
                    thumbprint = %id.thumbprint(),
                    urls = %format!("wss://{addr}/tunnel tls://{addr}"),
                    "tunnel endpoint listening (TLS 1.2+)"
                ),
                None => warn!(
                    event = crate::event::TUNNEL_LISTENING,
                    %addr,
                    urls = %format!("ws://{addr}/tunnel"),
                    "tunnel endpoint listening WITHOUT TLS (--no-tls): only behind a TLS-terminating proxy such as Caddy"
                ),
            }
        }
        let accept_loops = TaskTracker::new();
        accept_loops.spawn(endpoint::serve(state.clone(), tunnel));
        {
            let mut running = reloader.forwards.lock().await;
            for (spec, listener) in forwards {
                running.push(reloader.spawn(spec, listener));
            }
        }
        if state.identity.is_some() {
            accept_loops.spawn(sweep::run(state.clone()));
        }
        let cluster_gone = CancellationToken::new();
        let cluster_task = state.cluster.clone().map(|c| {
            info!(event = crate::event::REPLICA, replica = %c.id, advertise_url = %state.config.advertise_url.as_ref().map(|u| u.url.as_str()).unwrap_or(""), "replica of a shared database: presence kept, hops to other replicas");
            tokio::spawn(c.run(state.stop_accepting.clone(), cluster_gone.clone()))
        });
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
                info!(event = crate::event::PROXY_LISTENING, %addr, client_auth = auth, "egress proxy listening (HTTP CONNECT, http:// requests, SOCKS5)");
                if !addr.ip().is_loopback() && state.config.proxy_auth.is_none() {
                    warn!(%addr, "the egress proxy listens beyond loopback without client credentials: anyone who reaches it may use the FQDN rules (set --proxy-auth)");
                }
            }
            accept_loops.spawn(egress::serve(
                state.proxy.clone(),
                state.accepting(),
                state.config.proxy_caps,
                listener,
            ));
        }
        let https_port = edge_https
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
            .map_or(443, |a| a.port());
        if let Some((listener, tls)) = edge_https {
            if let Ok(addr) = listener.local_addr() {
                info!(event = crate::event::EDGE_HTTPS_LISTENING, %addr, "edge listening (HTTPS, HTTP/2 and HTTP/1.1, routes by host)");
            }
            accept_loops.spawn(edge::serve_https(
                state.http.clone(),
                state.accepting(),
                state.config.edge_caps,
                listener,
                tls,
            ));
        }
        if let Some(listener) = edge_http {
            if let Ok(addr) = listener.local_addr() {
                info!(event = crate::event::EDGE_HTTP_LISTENING, %addr, "edge listening (HTTP, redirects to HTTPS)");
            }
            accept_loops.spawn(edge::serve_http(
                state.accepting(),
                state.config.edge_caps,
                listener,
                https_port,
            ));
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
            accept_loops.spawn(edge::caddy::run(
                state.http.clone(),
                state.stop_accepting.clone(),
                cfg,
            ));
        }
        // Served through the drain, so /ready says "shutting down" then.
        let probes_stop = CancellationToken::new();
        if let Some(l) = metrics {
            if let Ok(addr) = l.local_addr() {
                info!(event = crate::event::METRICS_LISTENING, %addr, "metrics and probes listening (/metrics, /healthz, /ready)");
            }
            tokio::spawn(burrow_ops::serve(l, state.probes(), probes_stop.clone()));
        }
        reach::say(&bound);
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
        reloader.forwards_stopped().await;
        info!(
            event = crate::event::DRAINING,
            open_streams = state.streams.len(),
            drain_seconds = state.config.drain_timeout.as_secs_f64(),
            "shutting down: listeners closed; draining open streams"
        );
        state.registry.say_going_away().await;
        burrow_mux::drain(&state.streams, state.config.drain_timeout).await;
        probes_stop.cancel();
        cluster_gone.cancel();
        if let Some(t) = cluster_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        state.registry.close_all();
        state.links.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), state.links.wait()).await;
        // Streams left at the drain's end broke with their links; let their
        // tasks reset their clients (RST) before the process exits, which
        // would close those sockets with a clean FIN: silent truncation.
        let _ = tokio::time::timeout(Duration::from_secs(2), state.streams.wait()).await;
        if let (Some(rec), Some(writer)) = (state.audit.recorder(), audit_writer) {
            rec.flush(Duration::from_secs(3)).await;
            writer.abort();
        }
        info!(event = crate::event::STOPPED, "gateway stopped");
    }
}
