//! The narrow context the admin API takes.

use std::sync::Arc;

use burrow_store::Store;

use crate::catalog::Catalog;
use crate::names::OwnNames;
use crate::registry::Registry;
use crate::throttle::Throttles;
use crate::traffic::AuditSink;

/// What the admin API uses of the gateway.
pub(crate) struct Admin {
    /// The store; without one the API answers 404.
    pub(crate) store: Option<Store>,
    /// Live links (closed when keys or agents go).
    pub(crate) links: Arc<Registry>,
    /// Rules and routes, reloaded after a change.
    pub(crate) catalog: Arc<Catalog>,
    /// The traffic trail's sink (for its drop count).
    pub(crate) audit: AuditSink,
    /// Wrong admin keys per address.
    pub(crate) throttles: Arc<Throttles>,
    /// Most agents that may be registered.
    pub(crate) max_agents: usize,
    /// Names that can never be routes.
    pub(crate) own_names: OwnNames,
    /// Routes must be under this domain, if set.
    pub(crate) public_domain: Option<String>,
    /// Origins browsers may call from (`*`: any).
    pub(crate) allowed_origins: Vec<String>,
    /// Whether the tunnel port speaks TLS (`wss` in a new agent's URL).
    pub(crate) tls: bool,
    /// The audience access tokens are issued for.
    pub(crate) audience: String,
    /// This replica's id (its links in `GET /agents`).
    pub(crate) replica_id: String,
    /// How to call another replica's admin API over HTTPS (questions for
    /// an agent whose links are there); `None`: not a replica with TLS.
    pub(crate) peer_tls: Option<Arc<rustls::ClientConfig>>,
}
