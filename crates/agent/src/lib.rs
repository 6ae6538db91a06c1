//! The Burrow agent: the private end of the tunnel.
//!
//! In polling mode (the default) it dials the gateway's tunnel endpoint
//! over N links, keeps them alive with heartbeats and redials with capped
//! exponential backoff; in listening mode it is the TLS server and the
//! gateway dials it. Either way, for each stream the gateway opens it
//! connects the named target, if the allow-list permits it.
//!
//! # Layout
//! - [`run`]: the agent until a shutdown future resolves, then a bounded drain.
//! - [`Backoff`]: reconnect delays.
//! - [`AllowList`]: targets this agent may reach.
//! - `link.rs`: one link's dial / serve / redial loop.
//! - `token.rs`: key-pair authentication: client assertion, access token,
//!   renewal.
//! - `listen.rs`: listening mode: accept the gateway's links, show browsers
//!   a page.

#![forbid(unsafe_code)]

mod allow;
mod answers;
mod check;
mod doctor;
mod egress;
pub mod event;
mod link;
mod listen;
mod metrics;
mod status;
mod token;

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use burrow_transport::tls::{LiveIdentity, Thumbprint};
use burrow_transport::{Dialer, Secret};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use allow::{AllowList, AllowRule, AllowRuleError};
pub use burrow_transport::Backoff;
pub use burrow_transport::tls::AppTls;
pub use doctor::HelloFacts;
pub use egress::{is_link_local_or_metadata, is_loopback_or_unspecified};
pub use status::{LinkState, LinkStatus};
pub use token::{KeyPairAuth, TOKEN_PATH, TokenError};

use burrow_api::link::{Fetched, Mapping, MappingSet, Probe, Synced};
use burrow_rpc::{Rpc, RpcError};

/// Who opens the links.
#[derive(Debug, Clone)]
pub enum AgentMode {
    /// The agent dials the gateway (the default).
    Poll(Dialer),
    /// The agent listens (TLS) and the gateway dials it; only a gateway
    /// presenting one of these certificate thumbprints is served.
    Listen {
        /// Where to listen.
        addr: SocketAddr,
        /// Trusted gateway certificates.
        gateway: Vec<Thumbprint>,
    },
}

/// Agent settings, validated by the binary before use.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Polling or listening.
    pub mode: AgentMode,
    /// This agent's certificate (client certificate when polling, server
    /// certificate when listening).
    pub identity: Option<Arc<LiveIdentity>>,
    /// Pre-shared key, if the gateway wants one.
    pub psk: Option<Secret>,
    /// Key-pair authentication (access tokens); used instead of the
    /// pre-shared key when set.
    pub auth: Option<KeyPairAuth>,
    /// This agent's name (1–200 letters, digits, `-`, `.`); empty for a
    /// key-pair agent that takes the name it was registered with.
    pub name: String,
    /// Links to keep open at once, on as many gateway replicas as there
    /// are (up to this many).
    pub links: usize,
    /// More gateway URLs (`CONNECT_URL` listing several): link `i` dials
    /// the `i`th of the configured URL and these, in turn.
    pub more_urls: Vec<burrow_transport::TunnelUrl>,
    /// Heartbeat interval; three silent intervals drop a link.
    pub heartbeat: Duration,
    /// First reconnect delay.
    pub reconnect_delay: Duration,
    /// Reconnect delay cap.
    pub max_reconnect_delay: Duration,
    /// A link up this long resets the backoff.
    pub stable_after: Duration,
    /// Targets this agent may connect to.
    pub allow: AllowList,
    /// Timeout for connecting a target.
    pub connect_timeout: Duration,
    /// On shutdown, how long open streams may take to finish.
    pub drain_timeout: Duration,
    /// Host names resolved by this map before DNS (egress).
    pub map_hosts: std::collections::HashMap<String, std::net::IpAddr>,
    /// Let egress reach link-local and cloud metadata addresses.
    pub allow_link_local: bool,
    /// Let egress reach this host's loopback and unspecified addresses.
    pub allow_loopback: bool,
    /// TLS towards applications (TLS origination, checks).
    pub app_tls: Option<AppTls>,
    /// Routes this agent publishes: (public host name, internal URL).
    pub routes: Vec<(String, String)>,
    /// The gateway host name it was configured with (`Agent__GatewayFqdn`),
    /// told to the gateway for landing-page routing.
    pub gateway_fqdn: Option<String>,
    /// Where the probes (`/healthz`, `/ready`) and `/metrics` are served;
    /// `None`: not served, and no metrics are kept.
    pub health_listen: Option<SocketAddr>,
    /// The settings it runs with, secrets masked, for `agent-info`.
    pub settings: Vec<burrow_api::types::Setting>,
}

/// What a reload changes while the agent runs ([`Agent::reload`]); the
/// [`AgentConfig`] fields of the same names are the values it starts with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reloadable {
    /// Targets this agent may connect to.
    pub allow: AllowList,
    /// Host names resolved by this map before DNS.
    pub map_hosts: std::collections::HashMap<String, std::net::IpAddr>,
    /// Routes this agent publishes: (public host name, internal URL).
    pub routes: Vec<(String, String)>,
    /// The settings, as `agent-info` shows them.
    pub settings: Vec<burrow_api::types::Setting>,
}

impl AgentConfig {
    /// Settings with the documented defaults.
    pub fn new(mode: AgentMode, psk: Option<Secret>, name: String) -> Self {
        AgentConfig {
            mode,
            identity: None,
            psk,
            auth: None,
            name,
            links: 2,
            more_urls: Vec::new(),
            heartbeat: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(300),
            stable_after: Duration::from_secs(10),
            allow: AllowList::default(),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            map_hosts: std::collections::HashMap::new(),
            allow_link_local: false,
            allow_loopback: false,
            app_tls: None,
            routes: Vec::new(),
            gateway_fqdn: None,
            health_listen: None,
            settings: Vec::new(),
        }
    }
}

pub(crate) struct AgentState {
    pub(crate) config: AgentConfig,
    /// No new streams, no redials.
    pub(crate) stopping: CancellationToken,
    /// Close links now (after the drain).
    pub(crate) close_links: CancellationToken,
    pub(crate) streams: TaskTracker,
    /// Access tokens, with key-pair authentication.
    pub(crate) tokens: Option<token::Tokens>,
    /// Live links that may still be given new streams (see `link::serve`).
    pub(crate) unsettled_links: std::sync::atomic::AtomicUsize,
    /// The FQDN rules the gateway gave this agent (egress).
    pub(crate) rules: std::sync::RwLock<Vec<burrow_wire::egress::AgentRule>>,
    /// Each link's status.
    pub(crate) links: status::Links,
    /// Mappings set at run time (the web UI's), published beside the
    /// configured routes.
    pub(crate) mappings: std::sync::Mutex<Vec<Mapping>>,
    /// What the gateway last said of the mappings.
    pub(crate) synced: std::sync::Mutex<Option<Synced>>,
    /// Close the links now and redial at once ("reconnect now").
    pub(crate) reconnect: tokio::sync::Notify,
    /// Metrics, with the probe listener.
    pub(crate) metrics: Option<Arc<metrics::Metrics>>,
    /// The gateway's live replicas, (id, URL), as it last listed them.
    pub(crate) replicas: std::sync::RwLock<Vec<(String, String)>>,
    /// Where each link dials next, when not the configured URL: another
    /// replica's own address.
    pub(crate) next_dial: std::sync::Mutex<std::collections::HashMap<usize, String>>,
    /// When it started.
    pub(crate) started: std::time::SystemTime,
    /// The allow-list, host map, routes and settings now (a reload
    /// replaces them).
    pub(crate) live: std::sync::RwLock<Arc<Reloadable>>,
}

/// Errors starting an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The listening port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Listening mode without a certificate, or a bad one.
    #[error("listening mode: {0}")]
    Tls(String),
}

impl AgentState {
    pub(crate) fn new(config: AgentConfig) -> Arc<Self> {
        let tokens = config.auth.clone().map(token::Tokens::new);
        let config_links = match config.mode {
            AgentMode::Poll(_) => config.links.max(1),
            AgentMode::Listen { .. } => 0,
        };
        Arc::new(AgentState {
            tokens,
            stopping: CancellationToken::new(),
            close_links: CancellationToken::new(),
            streams: TaskTracker::new(),
            unsettled_links: std::sync::atomic::AtomicUsize::new(0),
            rules: std::sync::RwLock::new(Vec::new()),
            links: status::Links::new(config_links),
            mappings: std::sync::Mutex::new(Vec::new()),
            synced: std::sync::Mutex::new(None),
            reconnect: tokio::sync::Notify::new(),
            metrics: config.health_listen.map(|_| metrics::Metrics::new()),
            replicas: std::sync::RwLock::new(Vec::new()),
            next_dial: std::sync::Mutex::new(std::collections::HashMap::new()),
            started: std::time::SystemTime::now(),
            live: std::sync::RwLock::new(Arc::new(Reloadable {
                allow: config.allow.clone(),
                map_hosts: config.map_hosts.clone(),
                routes: config.routes.clone(),
                settings: config.settings.clone(),
            })),
            config,
        })
    }

    /// The allow-list, host map and routes now.
    pub(crate) fn live(&self) -> Arc<Reloadable> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The settings now, as `agent-info` shows them.
    pub(crate) fn settings(&self) -> Vec<burrow_api::types::Setting> {
        self.live().settings.clone()
    }

    /// The configured routes and the run-time mappings, as one set.
    pub(crate) fn mapping_set(&self) -> MappingSet {
        let mut mappings: Vec<Mapping> = self
            .live()
            .routes
            .iter()
            .map(|(host, url)| Mapping {
                hostname: host.clone(),
                target: url.clone(),
                ignore_certificate_errors: false,
                proxy_protocol: false,
                enabled: true,
            })
            .collect();
        mappings.extend(
            self.mappings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        MappingSet {
            gateway_fqdn: self.config.gateway_fqdn.clone(),
            mappings,
        }
    }

    /// Sends the mappings to the gateway on `rpc`; keeps and logs what it
    /// says of them.
    pub(crate) async fn sync(&self, rpc: &Rpc) -> Result<Synced, RpcError> {
        let set = self.mapping_set();
        let synced = rpc.call::<burrow_api::link::SyncMappings>(&set).await?;
        for m in &synced.mappings {
            if let Some(why) = &m.problem {
                tracing::warn!(event = crate::event::MAPPING_REFUSED, hostname = %m.hostname, reason = %why, "the gateway refused a mapping");
            }
        }
        if let Some(why) = &synced.landing_problem {
            tracing::warn!(event = crate::event::MAPPING_REFUSED, reason = %why, "the gateway refused this agent's landing domain");
        }
        *self.synced.lock().unwrap_or_else(|p| p.into_inner()) = Some(synced.clone());
        Ok(synced)
    }
}

impl AgentState {
    /// [`AgentState::sync`] from a link coming up or a reload, said in
    /// the log (a failure is retried when the next link comes up).
    pub(crate) async fn sync_and_say(&self, rpc: &Rpc) {
        match self.sync(rpc).await {
            Ok(s) => {
                let published = s.mappings.iter().filter(|m| m.published).count();
                info!(
                    event = crate::event::MAPPINGS_SENT,
                    published,
                    mappings = s.mappings.len(),
                    "mappings sent to the gateway"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "mappings not sent to the gateway; they are sent when a link comes up")
            }
        }
    }
}

/// How long a mapping change waits for a link when the one it was sent on
/// closed.
const RESYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A running agent, for what shows and changes it while it runs (the web
/// UI). Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    state: Arc<AgentState>,
}

impl Agent {
    /// An agent with `config`, not yet running.
    pub fn new(config: AgentConfig) -> Agent {
        Agent {
            state: AgentState::new(config),
        }
    }

    /// Runs it until `shutdown` resolves (see [`run`]).
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        run_state(self.state.clone(), shutdown).await
    }

    /// Its name as configured (empty: the one it was registered with).
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// The gateway URL it dials (empty in listening mode).
    pub fn gateway_url(&self) -> &str {
        match &self.state.config.mode {
            AgentMode::Poll(d) => &d.url.url,
            AgentMode::Listen { .. } => "",
        }
    }

    /// Every link's status.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.state.links.snapshot()
    }

    /// Changes when a link's status does.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.links.watch()
    }

    /// Requests to the gateway, on a live link whose gateway answers them.
    pub fn gateway(&self) -> Option<Rpc> {
        self.state.links.gateway()
    }

    /// Replaces the run-time mappings and sends them to the gateway.
    /// `None`: no link is up; they are sent when one is.
    pub async fn set_mappings(&self, mappings: Vec<Mapping>) -> Option<Result<Synced, RpcError>> {
        *self
            .state
            .mappings
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = mappings;
        let mut rpc = self.gateway()?;
        // A link that closes under the call (a proxy reloading, a redial)
        // is not the answer: the next link that comes up within a few
        // seconds is asked (it would sync on link-up anyway).
        let until = tokio::time::Instant::now() + RESYNC_WAIT;
        loop {
            match self.state.sync(&rpc).await {
                Err(RpcError::Closed) => {
                    // The closed link may not show as closed yet.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    rpc = match self.gateway_until(until).await {
                        Some(next) => next,
                        None => return Some(Err(RpcError::Closed)),
                    };
                }
                done => return Some(done),
            }
        }
    }

    /// The first live link that answers requests, waiting until `until`.
    async fn gateway_until(&self, until: tokio::time::Instant) -> Option<Rpc> {
        let mut changed = self.watch();
        loop {
            if let Some(rpc) = self.gateway() {
                return Some(rpc);
            }
            match tokio::time::timeout_at(until, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// What the gateway last said of the mappings.
    pub fn synced(&self) -> Option<Synced> {
        self.state
            .synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches `probe` straight from `mapping`'s internal service, under
    /// the same rules the gateway gave this agent for the edge (the
    /// request inspector's direct side).
    pub async fn inspect(&self, mapping: &Mapping, probe: &Probe) -> Fetched {
        egress::inspect(&self.state, mapping, probe).await
    }

    /// Replaces the allow-list, host map, routes and shown settings while
    /// running (a configuration reload); returns the names of those that
    /// changed (`allow`, `map-host`, `route`). Streams already open are
    /// untouched: the allow-list is checked when a stream opens. Changed
    /// routes are sent to the gateway at once (or when a link is up).
    pub async fn reload(&self, new: Reloadable) -> Vec<&'static str> {
        let old = self.state.live();
        let mut changed = Vec::new();
        if old.allow != new.allow {
            changed.push("allow");
        }
        if old.map_hosts != new.map_hosts {
            changed.push("map-host");
        }
        let routes = old.routes != new.routes;
        if routes {
            changed.push("route");
        }
        *self.state.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        if routes && let Some(rpc) = self.gateway() {
            self.state.sync_and_say(&rpc).await;
        }
        changed
    }

    /// Closes the links and redials at once.
    pub fn reconnect_now(&self) {
        info!(event = crate::event::RECONNECT_ASKED, "reconnect asked for");
        self.state.reconnect.notify_waiters();
    }
}

/// The probe listener's view of the agent: ready while polling links are
/// up (at least one) or the listening port is open, and not shutting down.
fn probes(state: &Arc<AgentState>) -> burrow_ops::Probes {
    let (ready, scrape) = (state.clone(), state.clone());
    burrow_ops::Probes {
        ready: Arc::new(move || {
            let state = ready.clone();
            Box::pin(async move {
                if state.stopping.is_cancelled() {
                    return Err("shutting down".to_owned());
                }
                if matches!(state.config.mode, AgentMode::Listen { .. }) {
                    return Ok(());
                }
                let links = state.links.snapshot();
                if links.iter().any(|l| l.state == LinkState::Connected) {
                    return Ok(());
                }
                let why = links
                    .iter()
                    .find_map(|l| l.last_failure.clone())
                    .unwrap_or_else(|| "connecting".to_owned());
                Err(format!("no link to the gateway is up ({why})"))
            })
        }),
        metrics: state.metrics.as_ref().map(|_| {
            Arc::new(move || {
                scrape
                    .metrics
                    .as_ref()
                    .map_or_else(String::new, |m| m.scrape(&scrape.links.snapshot()))
            }) as Arc<dyn Fn() -> String + Send + Sync>
        }),
    }
}

/// Runs the agent until `shutdown` resolves, then refuses new streams, lets
/// open ones finish for up to the drain timeout, and closes its links.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    Agent::new(config).run(shutdown).await
}

async fn run_state(
    state: Arc<AgentState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    if state.live().allow.is_empty() {
        tracing::info!(
            "the allow-list is empty: fixed forwards are refused (add targets with --allow HOST:PORT); egress by FQDN follows the gateway's rules"
        );
    }
    let loops = TaskTracker::new();
    if let Some(addr) = state.config.health_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(event = crate::event::HEALTH_LISTENING, addr = %bound, "probes and metrics listening (/healthz, /ready, /metrics)");
        loops.spawn(burrow_ops::serve(
            listener,
            probes(&state),
            state.close_links.clone(),
        ));
    }
    if state.tokens.is_some() {
        loops.spawn(token::renew(state.clone()));
    }
    match &state.config.mode {
        AgentMode::Poll(_) => {
            for idx in 0..state.config.links.max(1) {
                loops.spawn(link::run_on_own_thread(state.clone(), idx));
            }
        }
        AgentMode::Listen { addr, gateway } => {
            let listener = listen::bind(&state, *addr, gateway.clone()).await?;
            loops.spawn(listener.run(state.clone()));
        }
    }
    loops.close();
    shutdown.await;
    state.stopping.cancel();
    // Each link tells the gateway it is draining and serves what crosses
    // that message; wait (bounded) until every link refuses new streams,
    // so the log line below is true.
    let settle_by =
        tokio::time::Instant::now() + link::DRAIN_ACK_TIMEOUT + Duration::from_millis(500);
    while state
        .unsettled_links
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0
        && tokio::time::Instant::now() < settle_by
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    info!(
        event = crate::event::DRAINING,
        open_streams = state.streams.len(),
        drain_seconds = state.config.drain_timeout.as_secs_f64(),
        "shutting down: refusing new streams; draining open ones"
    );
    burrow_mux::drain(&state.streams, state.config.drain_timeout).await;
    state.close_links.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), loops.wait()).await;
    info!(event = crate::event::STOPPED, "agent stopped");
    Ok(())
}
