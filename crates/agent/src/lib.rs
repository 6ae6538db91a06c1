//! The Burrow agent: the private end of the tunnel.
//!
//! It dials the gateway's tunnel endpoint over N links, keeps them alive
//! with heartbeats, redials with capped exponential backoff, and for each
//! stream the gateway opens connects the named target, if the allow-list
//! permits it.
//!
//! # Layout
//! - [`run`]: the agent until a shutdown future resolves, then a bounded drain.
//! - [`Backoff`]: reconnect delays.
//! - [`AllowList`]: targets this agent may reach.
//! - `link.rs`: one link's dial / serve / redial loop.

#![forbid(unsafe_code)]

mod allow;
mod backoff;
mod link;

use std::sync::Arc;
use std::time::Duration;

use burrow_transport::{Secret, TunnelUrl};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use allow::{AllowList, AllowRule, AllowRuleError};
pub use backoff::Backoff;

/// Agent settings, validated by the binary before use.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Gateway tunnel endpoint.
    pub url: TunnelUrl,
    /// Pre-shared key.
    pub psk: Secret,
    /// This agent's name (1–200 letters, digits, `-`, `.`).
    pub name: String,
    /// Links to keep open at once.
    pub links: usize,
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
}

impl AgentConfig {
    /// Settings with the documented defaults.
    pub fn new(url: TunnelUrl, psk: Secret, name: String) -> Self {
        AgentConfig {
            url,
            psk,
            name,
            links: 2,
            heartbeat: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(300),
            stable_after: Duration::from_secs(10),
            allow: AllowList::default(),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
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
}

/// Runs the agent until `shutdown` resolves, then refuses new streams, lets
/// open ones finish for up to the drain timeout, and closes its links.
pub async fn run(config: AgentConfig, shutdown: impl std::future::Future<Output = ()>) {
    if config.allow.is_empty() {
        tracing::warn!(
            "the allow-list is empty: every stream will be refused; add targets with --allow HOST:PORT"
        );
    }
    let state = Arc::new(AgentState {
        config,
        stopping: CancellationToken::new(),
        close_links: CancellationToken::new(),
        streams: TaskTracker::new(),
    });
    let loops = TaskTracker::new();
    for idx in 0..state.config.links.max(1) {
        loops.spawn(link::run(state.clone(), idx));
    }
    loops.close();
    shutdown.await;
    // Refuse first: once the log line says so, it is true.
    state.stopping.cancel();
    info!(
        open_streams = state.streams.len(),
        drain_seconds = state.config.drain_timeout.as_secs_f64(),
        "shutting down: refusing new streams; draining open ones"
    );
    burrow_mux::drain(&state.streams, state.config.drain_timeout).await;
    state.close_links.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), loops.wait()).await;
    info!("agent stopped");
}
