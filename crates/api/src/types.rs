//! Request and response bodies. Times are microseconds since the Unix
//! epoch (UTC). Field names are the API's; they do not change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /agents`: register an agent with its first key (and, optionally,
/// FQDN rules), as Octopus Connection Agent's `register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// The agent's name: 1-200 letters, digits, `-` and `.`.
    pub agent_name: String,
    /// The first key's name.
    pub key_name: String,
    /// The agent's public key (PEM, RSA >= 2048 bits, P-256 or Ed25519).
    pub public_key: String,
    /// FQDN rules for the agent (host names or `*.domain`), all ports.
    #[serde(default)]
    pub fqdns: Vec<String>,
}

/// An agent's key as the API shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Key {
    /// The key's name.
    pub key_name: String,
    /// `RSA`, `EC P-256` or `Ed25519`.
    pub algorithm: String,
    /// Key size in bits.
    pub bits: i64,
    /// SHA-256 of the public key (hex).
    pub fingerprint: String,
    /// When it was added.
    pub created_at: i64,
}

/// The settings an agent runs with, as Octopus Connection Agent names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(non_snake_case)]
pub struct AgentEnv {
    /// The gateway's host (and port) for the token endpoint.
    pub AUTH_SERVER_DOMAIN: String,
    /// The agent's client id.
    pub AUTH_SERVER_CLIENT_ID: String,
    /// The audience access tokens are issued for.
    pub API_AUDIENCE: String,
    /// Where the agent dials.
    pub CONNECT_URL: String,
}

/// `POST /agents` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Registered {
    /// The agent's name.
    pub agent_name: String,
    /// Its first key.
    pub key: Key,
    /// The FQDN rules stored with it.
    pub fqdns: Vec<String>,
    /// What the agent needs to run.
    pub env: AgentEnv,
}

/// An agent in `GET /agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    /// The agent's name.
    pub agent_name: String,
    /// Its client id (the token endpoint's `client_id`).
    pub client_id: String,
    /// Whether it has a live link to this gateway or one of its replicas.
    pub connected: bool,
    /// Its live links, on every replica.
    pub links: u64,
    /// Its links on each replica holding any, most first (one entry, this
    /// gateway, without replicas).
    #[serde(default)]
    pub replicas: Vec<ReplicaLinks>,
    /// The smallest heartbeat round trip of its links, ms, once measured.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Seconds since its oldest live link came up.
    #[serde(default)]
    pub uptime_seconds: Option<u64>,
    /// When it was last seen (now, while connected).
    pub last_seen: Option<i64>,
    /// The version it last reported.
    pub version: Option<String>,
    /// The address it last connected from.
    pub remote_address: Option<String>,
    /// When it was registered.
    pub created_at: i64,
}

/// An agent's links on one gateway replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaLinks {
    /// The replica's id (`--replica-id`).
    pub replica: String,
    /// The agent's links there.
    pub links: u64,
    /// Their smallest heartbeat round trip, ms, once measured.
    pub rtt_ms: Option<f64>,
    /// When the oldest came up (µs since the epoch).
    pub since: i64,
    /// The replica is shutting down.
    pub draining: bool,
}

/// `DELETE /agents/{agent}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unregistered {
    /// The agent removed.
    pub agent_name: String,
    /// Its live links, closed.
    pub links_closed: u64,
}

/// `POST /agents/{agent}/keys`: add a key (rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The key's name.
    pub key_name: String,
    /// The public key (PEM).
    pub public_key: String,
}

/// `DELETE /agents/{agent}/keys/{key}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRemoved {
    /// The agent.
    pub agent_name: String,
    /// The key removed.
    pub key_name: String,
    /// Live links authenticated with it, closed.
    pub links_closed: u64,
}

/// `PUT /fqdn-rules/{fqdn}`: create or replace a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    /// The agent that reaches the host.
    pub agent_name: String,
    /// Originate TLS without validating the service's certificate.
    #[serde(default)]
    pub ignore_certificate_validation_errors: bool,
    /// Plain-HTTP proxy requests get TLS originated by the agent.
    #[serde(default)]
    pub tls: bool,
    /// The port reachability checks probe (default 443, or the lowest
    /// allowed port).
    #[serde(default)]
    pub check_port: Option<u16>,
    /// Whether checks handshake TLS.
    #[serde(default)]
    pub check_tls: Option<bool>,
    /// Allowed ports, `22,443,8000-8100`; absent or null: any port.
    #[serde(default)]
    pub ports: Option<String>,
}

/// An FQDN rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rule {
    /// The host name or `*.domain`.
    pub fqdn: String,
    /// The agent that reaches it.
    pub agent_name: String,
    /// TLS originated without certificate validation.
    pub ignore_certificate_validation_errors: bool,
    /// TLS originated for plain-HTTP requests.
    pub tls: bool,
    /// The port checks probe, if set.
    pub check_port: Option<i64>,
    /// Whether checks handshake TLS.
    pub check_tls: bool,
    /// Allowed ports; null: any.
    pub ports: Option<String>,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// The reachability check's result (`GET /fqdn-rules?check=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Whether the `PUT` created it (absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

/// `DELETE /fqdn-rules/{fqdn}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleRemoved {
    /// The rule removed.
    pub fqdn: String,
}

/// `PUT /routes/{hostname}`: publish an internal HTTP service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// The agent that reaches the service.
    pub agent_name: String,
    /// The internal URL: `http://HOST:PORT` or `https://HOST:PORT`.
    pub target: String,
    /// Do not validate an https target's certificate.
    #[serde(default)]
    pub ignore_certificate_validation_errors: bool,
    /// Send the service a PROXY protocol v2 header naming the visitor.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// A route: a public host name served by an agent's internal service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    /// The public host name.
    pub hostname: String,
    /// The agent.
    pub agent_name: String,
    /// The internal URL.
    pub target: String,
    /// An https target's certificate is not validated.
    pub ignore_certificate_validation_errors: bool,
    /// PROXY protocol towards the service.
    pub proxy_protocol: bool,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// Whether the `PUT` created it (absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

/// `DELETE /routes/{hostname}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteRemoved {
    /// The route removed.
    pub hostname: String,
}

/// One record of the traffic audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrafficRecord {
    /// When it started.
    pub at: i64,
    /// `http`, `egress`, `forward`, or `auth` (credential failures from
    /// one address, counted: `target` names the check, `failures` how
    /// many, `error` the last reason).
    pub kind: String,
    /// The agent that carried it.
    pub agent_name: String,
    /// The route (HTTP).
    pub route: String,
    /// The client's address.
    pub client: String,
    /// The request method (HTTP).
    pub method: String,
    /// The request's host (HTTP).
    pub host: String,
    /// The request path, without the query (HTTP).
    pub path: String,
    /// The answer's status (HTTP; 0 otherwise).
    pub status: i64,
    /// Where it went (`host:port`, or the route's internal URL).
    pub target: String,
    /// Bytes from the client.
    pub bytes_in: i64,
    /// Bytes to the client.
    pub bytes_out: i64,
    /// How long it took.
    pub duration_ms: i64,
    /// Why it failed or was refused, in words; empty when it was served.
    pub error: String,
    /// For `auth`: how many credential failures the record counts.
    pub failures: i64,
}

/// `GET /traffic` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrafficPage {
    /// The records, newest first.
    pub records: Vec<TrafficRecord>,
    /// Records this gateway dropped since it started (queue full, or a
    /// write the database refused).
    pub dropped: u64,
}

/// `POST /admin-keys`: create an admin API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdminKey {
    /// A name for the key.
    pub name: String,
    /// Lifetime in seconds; absent: no expiry.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// `POST /admin-keys` answer: the key, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AdminKeyCreated {
    /// The key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The key (`bk_…`): keep it, it is not shown again.
    pub key: String,
    /// When it expires, if it does.
    pub expires_at: Option<i64>,
}

/// `GET /admin-keys` item: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AdminKeyInfo {
    /// The key's id (`bk_ID_…`).
    pub id: String,
    /// Its name (`bootstrap` for the gateway's first key).
    pub name: String,
    /// When it was made.
    pub created_at: i64,
    /// When it expires, if it does.
    pub expires_at: Option<i64>,
    /// When it was last used (to within a minute), if ever.
    pub last_used_at: Option<i64>,
    /// Revoked (`burrow admin-key revoke`).
    pub revoked: bool,
    /// The key this request was made with.
    pub current: bool,
}

/// `DELETE /admin-keys/{id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AdminKeyRevoked {
    /// The key revoked.
    pub id: String,
}

/// Every refusal's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What was wrong and what to do, in words.
    pub error: String,
}

/// One setting an agent runs with, as it says: secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Setting {
    /// The flag (`--allow`) or file key it is set by.
    pub name: String,
    /// Its value; secrets read `(set, not shown)`.
    pub value: String,
    /// `default`, `file`, `variable NAME` or `flag`.
    pub source: String,
}

/// One of an agent's links, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentLinkInfo {
    /// Which link (0-based).
    pub index: u64,
    /// `connecting`, `authenticating`, `connected` or `reconnecting`.
    pub state: String,
    /// The gateway replica it is on, when the gateway says.
    pub replica: Option<String>,
    /// Smoothed heartbeat round trip.
    pub rtt_ms: Option<f64>,
    /// Streams open on it now.
    pub open_streams: u64,
    /// Why the last dial or link failed.
    pub last_failure: Option<String>,
}

/// A route an agent publishes (a "mapping" in Octoporty's words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRoute {
    /// The public host name.
    pub hostname: String,
    /// The internal URL.
    pub target: String,
    /// Published (false: kept, not served).
    pub enabled: bool,
}

/// `GET /agents/{agent}/info` answer: what the agent says of itself
/// (`burrow agent-info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentInfo {
    /// Its software version.
    pub version: String,
    /// Its operating system and architecture (`linux x86_64`).
    pub os: String,
    /// When it started (µs since the epoch).
    pub started_at: i64,
    /// Seconds since.
    pub uptime_seconds: u64,
    /// Every setting it runs with, secrets masked.
    pub settings: Vec<Setting>,
    /// Its links.
    pub links: Vec<AgentLinkInfo>,
    /// Streams open on all its links.
    pub open_streams: u64,
    /// The FQDN rules the gateway gave it (`pattern` and flags).
    pub rules: Vec<String>,
    /// Targets it may connect to for forwards (`--allow`).
    pub allow: Vec<String>,
    /// The routes it publishes.
    pub routes: Vec<AgentRoute>,
}

/// `GET /agents/{agent}/check?target=HOST:PORT[&tls=true]`: one step of
/// the agent's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckStep {
    /// `allowed`, `dns`, `tcp` or `tls`.
    pub step: String,
    /// Whether it passed.
    pub ok: bool,
    /// What happened, in words (the addresses, the certificate, the error).
    pub detail: String,
    /// How long it took.
    pub ms: f64,
}

/// `GET /agents/{agent}/check` answer (`burrow agent-check`): the agent
/// resolves, connects and, with `tls`, handshakes; the steps up to the
/// first that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckReport {
    /// `HOST:PORT`.
    pub target: String,
    /// Every step passed.
    pub ok: bool,
    /// The steps, in order.
    pub steps: Vec<CheckStep>,
}

/// One log line (an agent's, or the gateway's about an agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    /// When (µs since the epoch).
    pub at: i64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The message.
    pub message: String,
    /// The line's fields (`event`, `agent`, ...).
    pub fields: std::collections::BTreeMap<String, String>,
}

/// `GET /agents/{agent}/logs` answer (`burrow agent-logs`): lines, oldest
/// first; ask again with `after` = `last` to follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentLogs {
    /// The lines.
    pub lines: Vec<LogLine>,
    /// The newest line's time (or the `after` asked with, when none came).
    pub last: Option<i64>,
}
