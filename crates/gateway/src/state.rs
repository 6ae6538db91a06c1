//! What the core's tasks share: the settings, the live links, the
//! contexts each part takes, and the trackers shutdown waits on.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::GatewayConfig;
use crate::registry::Registry;
use crate::{admin, catalog, edge, egress, limits, shard, throttle, tokens, traffic};

/// The gateway's state, held by the core (tunnel endpoint, links,
/// forwards, token maintenance); the parts take narrower contexts.
pub(crate) struct State {
    pub(crate) config: GatewayConfig,
    pub(crate) registry: Arc<Registry>,
    /// Stops accept loops (first step of shutdown).
    pub(crate) stop_accepting: CancellationToken,
    /// Forwarded connections, waited for while draining.
    pub(crate) streams: TaskTracker,
    /// Link tasks.
    pub(crate) links: TaskTracker,
    pub(crate) conn_limit: Arc<Semaphore>,
    /// Handshakes (hellos and token requests) under way, capped.
    pub(crate) handshakes: Arc<Semaphore>,
    pub(crate) acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// Token endpoint and token checks; present with a store.
    pub(crate) identity: Option<tokens::Identity>,
    /// FQDN rules and routes.
    pub(crate) catalog: Arc<catalog::Catalog>,
    /// The traffic audit trail (empty without a store).
    pub(crate) audit: traffic::AuditSink,
    /// What the HTTP edge uses.
    pub(crate) http: Arc<edge::Http>,
    /// What the egress proxy uses.
    pub(crate) proxy: Arc<egress::Proxy>,
    /// What the admin API uses.
    pub(crate) admin: Arc<admin::Admin>,
    /// Where connections and links are served.
    pub(crate) shards: Arc<shard::Shards>,
    /// Credential failures per source address, for every check.
    pub(crate) throttles: Arc<throttle::Throttles>,
    /// When the gateway started.
    pub(crate) started: std::time::SystemTime,
    /// Where the request inspector fetches as a visitor would: the HTTPS
    /// edge, else the tunnel port (where Caddy sends visitors), with the
    /// certificate it serves there. Set once the listeners are bound.
    pub(crate) front_door: std::sync::OnceLock<FrontDoor>,
    /// This replica among those sharing the database, if it shares one.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A listener serving routes, as the inspector reaches it.
#[derive(Clone)]
pub(crate) struct FrontDoor {
    /// Its address (loopback for a wildcard bind).
    pub(crate) addr: std::net::SocketAddr,
    /// The certificate it serves, when it speaks TLS.
    pub(crate) tls: Option<Arc<burrow_transport::tls::LiveIdentity>>,
}

impl State {
    /// The probes (`/healthz`, `/ready`) and, when enabled, `/metrics`.
    /// Ready: not shutting down, and the database (if any) answers.
    pub(crate) fn probes(self: &Arc<Self>) -> burrow_ops::Probes {
        let ready_state = self.clone();
        let metrics_state = self.clone();
        burrow_ops::Probes {
            ready: Arc::new(move || {
                let state = ready_state.clone();
                Box::pin(async move { state.ready().await })
            }),
            metrics: self.audit.metrics().map(|_| {
                Arc::new(move || {
                    let s = &metrics_state;
                    s.audit.metrics().map_or_else(String::new, |m| {
                        m.scrape(
                            &s.registry,
                            s.audit.recorder().map(|r| (r.pending(), r.dropped())),
                        )
                    })
                }) as Arc<dyn Fn() -> String + Send + Sync>
            }),
        }
    }

    /// Whether this gateway should be sent work now.
    async fn ready(&self) -> Result<(), String> {
        if self.stop_accepting.is_cancelled() {
            return Err("shutting down".into());
        }
        if let Some(store) = &self.config.store {
            store
                .ping()
                .await
                .map_err(|e| format!("the database does not answer: {e}"))?;
        }
        Ok(())
    }

    /// A place for one more handshake, if the cap allows.
    pub(crate) fn handshake_slot(&self) -> limits::Slot {
        match self.handshakes.clone().try_acquire_owned() {
            Ok(p) => limits::Slot::Held(p),
            Err(_) => limits::Slot::Busy,
        }
    }

    /// Counts a refused link, when metrics are enabled.
    pub(crate) fn count_refusal(&self, why: crate::metrics::Refused) {
        if let Some(m) = self.audit.metrics() {
            m.link_refused(why);
        }
    }

    /// What an accept loop takes.
    pub(crate) fn accepting(&self) -> limits::Accepting {
        limits::Accepting {
            stop: self.stop_accepting.clone(),
            shards: self.shards.clone(),
            streams: self.streams.clone(),
        }
    }
}
