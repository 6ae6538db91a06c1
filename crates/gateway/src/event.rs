//! Event names: the `event` field of the log lines that say something
//! happened, stable for log queries and tests (the message wording may
//! change; these do not).

/// The tunnel port is bound (fields: addr, and thumbprint with TLS).
pub const TUNNEL_LISTENING: &str = "tunnel_listening";
/// A forward's local port is bound (fields: listen, agent, dest).
pub const FORWARD_LISTENING: &str = "forward_listening";
/// A reload removed a forward: its port no longer accepts; its open
/// connections go on (fields: listen, agent, dest).
pub const FORWARD_STOPPED: &str = "forward_stopped";
/// The agent could not connect a forward's target (fields: agent, dest,
/// client, code, reason; at most one a second per forward).
pub const FORWARD_TARGET_FAILED: &str = "forward_target_failed";
/// The egress proxy is bound (fields: addr, client_auth).
pub const PROXY_LISTENING: &str = "proxy_listening";
/// The HTTPS edge is bound (field: addr).
pub const EDGE_HTTPS_LISTENING: &str = "edge_https_listening";
/// The plain-HTTP edge (redirects) is bound (field: addr).
pub const EDGE_HTTP_LISTENING: &str = "edge_http_listening";
/// The metrics and probe listener is bound (field: addr).
pub const METRICS_LISTENING: &str = "metrics_listening";
/// This gateway is a replica of a shared database (fields: replica,
/// advertise_url).
pub const REPLICA: &str = "replica";
/// The live replicas sharing the database changed (fields: replicas, ids).
pub const REPLICAS_CHANGED: &str = "replicas_changed";
/// A link with another replica came up (fields: url or replica).
pub const PEER_LINK_UP: &str = "peer_link_up";
/// A replica's peer link was refused: its certificate is not trusted
/// (fields: replica, certificate).
pub const PEER_REFUSED: &str = "peer_refused";
/// Every listener is bound: which are reachable beyond this host, which
/// on loopback only (fields: public, loopback_only).
pub const LISTENERS: &str = "listeners";
/// Shutdown began: listeners closed, open streams draining.
pub const DRAINING: &str = "draining";
/// An agent's link passed its hello (fields: agent, link, links, version, key, shard).
pub const AGENT_LINK_UP: &str = "agent_link_up";
/// An agent's link closed (fields: agent, link, links left, reason).
pub const AGENT_LINK_DOWN: &str = "agent_link_down";
/// A link was refused at its hello (field: error).
pub const HELLO_REFUSED: &str = "hello_refused";
/// A client's TLS handshake refused this gateway's certificate (fields: peer, error).
pub const CERTIFICATE_REFUSED_BY_PEER: &str = "certificate_refused_by_peer";
/// An access token was issued (fields: agent, key, peer, expires_in).
pub const TOKEN_ISSUED: &str = "token_issued";
/// An access-token key kept in the database by an older gateway was retired.
pub const TOKEN_KEY_REPLACED: &str = "token_key_replaced";
/// A credential was refused (fields: check, source, reason).
pub const CREDENTIAL_REFUSED: &str = "credential_refused";
/// Repeated credential failures from one address, counted (fields: check, source, failures).
pub const CREDENTIAL_FAILURES: &str = "credential_failures";
/// A route an agent declared was refused (fields: agent, hostname, reason).
pub const ROUTE_REFUSED: &str = "route_refused";
/// A route an agent declared was published (fields: agent, hostname, target).
pub const ROUTE_PUBLISHED: &str = "route_published";
/// An agent's mappings were applied (fields: agent, published, mappings).
pub const MAPPINGS_SYNCED: &str = "mappings_synced";
/// A stored route names one of this gateway's own names and is not served.
pub const ROUTE_IGNORED_OWN_NAME: &str = "route_ignored_own_name";
/// Links whose key is no longer registered were closed (fields: agent, closed).
pub const REVOKED_LINKS_CLOSED: &str = "revoked_links_closed";
/// A trust file changed and was reloaded (fields: path, agents).
pub const TRUST_RELOADED: &str = "trust_reloaded";
/// A listening agent could not be dialled; retrying (fields: url, error).
pub const LISTENING_AGENT_UNREACHABLE: &str = "listening_agent_unreachable";
/// Another failed dial to a listening agent (debug).
pub const LISTENING_AGENT_STILL_UNREACHABLE: &str = "listening_agent_still_unreachable";
/// Traffic audit records were dropped because the queue was full.
pub const AUDIT_QUEUE_FULL: &str = "audit_queue_full";
/// The database took traffic audit records again.
pub const AUDIT_WRITES_RESUMED: &str = "audit_writes_resumed";
/// The database refused traffic audit records; they are kept and retried.
pub const AUDIT_WRITES_FAILING: &str = "audit_writes_failing";
/// Connections were refused at a listener's cap (fields: listener, refused_total).
pub const CONNECTIONS_CAPPED: &str = "connections_capped";
/// The gateway's certificate was reloaded on SIGHUP (field: thumbprint).
pub const CERTIFICATE_RELOADED: &str = "certificate_reloaded";
/// A SIGHUP certificate reload failed; the old one stays (field: error).
pub const CERTIFICATE_NOT_RELOADED: &str = "certificate_not_reloaded";
/// The gateway has stopped (after its drain).
pub const STOPPED: &str = "stopped";
