//! The gateway's Prometheus metrics (`--metrics-listen`): what they are,
//! and the one place each is counted. Traffic is counted where the audit
//! trail records it ([`crate::traffic::AuditSink`]), links where they are
//! admitted, credential failures where the throttles see them; what can be
//! read at any time (agents, links, round trips, the audit queue) is read
//! at scrape.
//!
//! Label sets are bounded: kinds, reasons and status classes are fixed
//! lists; agents are at most the registered agents (`BURROW_MAX_AGENTS`).
//! Nothing is labelled by visitor, client address or host.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry as Prom, Unit};

use crate::registry::Registry;

/// What a tunneled stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A TCP forward's connection.
    Forward,
    /// An egress proxy connection (CONNECT, SOCKS5, http://).
    Egress,
    /// A visitor's request on the HTTP edge.
    Http,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Forward, Kind::Egress, Kind::Http];

    fn index(self) -> usize {
        match self {
            Kind::Forward => 0,
            Kind::Egress => 1,
            Kind::Http => 2,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Forward => "forward",
            Kind::Egress => "egress",
            Kind::Http => "http",
        }
    }
}

/// Why a link was refused before it carried anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refused {
    /// The hello was malformed, late, or the connection dropped in it.
    Hello,
    /// Wrong or missing credentials or certificate.
    Unauthorized,
    /// The agent holds the most links allowed.
    TooManyLinks,
    /// The gateway is shutting down.
    ShuttingDown,
    /// Too many handshakes at once: told to retry later.
    Busy,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Hello => "hello",
            Refused::Unauthorized => "unauthorized",
            Refused::TooManyLinks => "too_many_links",
            Refused::ShuttingDown => "shutting_down",
            Refused::Busy => "busy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentBytesLabel {
    agent: String,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentLabel {
    agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChangeLabel {
    change: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CheckLabel {
    check: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn status_class(status: i64) -> usize {
    match status {
        100..=599 => usize::try_from(status / 100 - 1).unwrap_or(5),
        _ => 5,
    }
}

/// The handles of the fixed label sets, made once: the traffic path
/// increments them without a family lookup.
struct Handles {
    opened: [Counter; 3],
    active: [Gauge; 3],
    failed: [Counter; 3],
    /// By kind, then (in, out).
    bytes: [[Counter; 2]; 3],
    http_duration: [Histogram; 6],
}

fn new_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The gateway's metrics.
pub(crate) struct Metrics {
    prom: Prom,
    agents: Gauge,
    links: Gauge,
    link_changes: Family<ChangeLabel, Counter>,
    link_refusals: Family<burrow_ops::labels::Reason, Counter>,
    auth_failures: Family<CheckLabel, Counter>,
    opened: Family<burrow_ops::labels::Kind, Counter>,
    active: Family<burrow_ops::labels::Kind, Gauge>,
    failed: Family<burrow_ops::labels::Kind, Counter>,
    bytes: Family<burrow_ops::labels::Bytes, Counter>,
    agent_bytes: Family<AgentBytesLabel, Counter>,
    http_duration: Family<StatusLabel, Histogram, fn() -> Histogram>,
    rtt: Family<AgentLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    audit_queue: Gauge,
    audit_dropped: Counter,
    store_errors: Counter,
    handles: Handles,
    /// Each agent's (in, out) byte counters, found without allocating.
    agent_handles: std::sync::RwLock<std::collections::HashMap<String, [Counter; 2]>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A stream counted as active until dropped.
pub(crate) struct Active {
    metrics: Arc<Metrics>,
    kind: Kind,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.metrics.handles.active[self.kind.index()].dec();
    }
}

impl Metrics {
    /// Every metric, registered.
    pub(crate) fn new() -> Arc<Self> {
        let mut prom = Prom::default();
        burrow_ops::register_build_info(&mut prom);
        let opened: Family<burrow_ops::labels::Kind, Counter> = Family::default();
        let active: Family<burrow_ops::labels::Kind, Gauge> = Family::default();
        let failed: Family<burrow_ops::labels::Kind, Counter> = Family::default();
        let bytes: Family<burrow_ops::labels::Bytes, Counter> = Family::default();
        let http_duration: Family<StatusLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(new_histogram);
        let kind = |k: Kind| burrow_ops::labels::Kind { kind: k.as_str() };
        let handles = Handles {
            opened: Kind::ALL.map(|k| opened.get_or_create(&kind(k)).clone()),
            active: Kind::ALL.map(|k| active.get_or_create(&kind(k)).clone()),
            failed: Kind::ALL.map(|k| failed.get_or_create(&kind(k)).clone()),
            bytes: Kind::ALL.map(|k| {
                ["in", "out"].map(|direction| {
                    bytes
                        .get_or_create(&burrow_ops::labels::Bytes {
                            kind: k.as_str(),
                            direction,
                        })
                        .clone()
                })
            }),
            http_duration: STATUS_CLASSES
                .map(|status| http_duration.get_or_create(&StatusLabel { status }).clone()),
        };
        let m = Metrics {
            handles,
            agent_handles: std::sync::RwLock::new(std::collections::HashMap::new()),
            agents: Gauge::default(),
            links: Gauge::default(),
            link_changes: Family::default(),
            link_refusals: Family::default(),
            auth_failures: Family::default(),
            opened,
            active,
            failed,
            bytes,
            agent_bytes: Family::default(),
            http_duration,
            rtt: Family::default(),
            audit_queue: Gauge::default(),
            audit_dropped: Counter::default(),
            store_errors: Counter::default(),
            prom: Prom::default(),
        };
        prom.register(
            "burrow_agents",
            "Agents with at least one live link to this gateway",
            m.agents.clone(),
        );
        prom.register(
            "burrow_links",
            "Live agent links on this gateway",
            m.links.clone(),
        );
        prom.register(
            "burrow_link_changes",
            "Agent links that came up or went down",
            m.link_changes.clone(),
        );
        prom.register(
            "burrow_link_refusals",
            "Agent links refused at the handshake, by reason",
            m.link_refusals.clone(),
        );
        prom.register(
            "burrow_auth_failures",
            "Refused credentials, by check (tunnel, token, admin, proxy)",
            m.auth_failures.clone(),
        );
        prom.register(
            "burrow_streams_opened",
            "Tunneled streams opened, by kind (http: visitor requests)",
            m.opened.clone(),
        );
        prom.register(
            "burrow_streams_active",
            "Tunneled streams open now, by kind",
            m.active.clone(),
        );
        prom.register(
            "burrow_streams_failed",
            "Tunneled streams or requests the gateway could not serve, by kind",
            m.failed.clone(),
        );
        prom.register_with_unit(
            "burrow_stream",
            "Bytes carried, by kind and direction (in: from clients and visitors)",
            Unit::Bytes,
            m.bytes.clone(),
        );
        prom.register_with_unit(
            "burrow_agent",
            "Bytes carried, by agent and direction",
            Unit::Bytes,
            m.agent_bytes.clone(),
        );
        prom.register_with_unit(
            "burrow_http_request_duration",
            "Edge request durations, by status class",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        prom.register_with_unit(
            "burrow_agent_rtt",
            "Smallest heartbeat round trip of an agent's links",
            Unit::Seconds,
            m.rtt.clone(),
        );
        prom.register(
            "burrow_audit_queue",
            "Traffic audit records waiting to be written",
            m.audit_queue.clone(),
        );
        prom.register(
            "burrow_audit_dropped",
            "Traffic audit records dropped (queue full or a failed write)",
            m.audit_dropped.clone(),
        );
        prom.register(
            "burrow_store_errors",
            "Database errors",
            m.store_errors.clone(),
        );
        Arc::new(Metrics { prom, ..m })
    }

    /// A link came up (`true`) or went down.
    pub(crate) fn link_changed(&self, up: bool) {
        let change = if up { "up" } else { "down" };
        self.link_changes
            .get_or_create(&ChangeLabel { change })
            .inc();
    }

    /// A link was refused at the handshake.
    pub(crate) fn link_refused(&self, why: Refused) {
        self.link_refusals
            .get_or_create(&burrow_ops::labels::Reason {
                reason: why.as_str(),
            })
            .inc();
    }

    /// A credential check failed.
    pub(crate) fn auth_failed(&self, check: &'static str) {
        self.auth_failures
            .get_or_create(&CheckLabel { check })
            .inc();
    }

    /// A stream of `kind` opened: counted, and active until the guard drops.
    pub(crate) fn active(self: &Arc<Self>, kind: Kind) -> Active {
        self.handles.opened[kind.index()].inc();
        self.handles.active[kind.index()].inc();
        Active {
            metrics: self.clone(),
            kind,
        }
    }

    /// A stream the audit trail does not see (a forward's connection with
    /// no link to go on) could not be opened.
    pub(crate) fn open_failed(&self, kind: Kind) {
        self.handles.failed[kind.index()].inc();
    }

    /// A stream or request finished, as the audit trail records it.
    pub(crate) fn finished(&self, t: &burrow_store::Traffic) {
        let kind = match t.kind {
            burrow_store::TrafficKind::Forward => Kind::Forward,
            burrow_store::TrafficKind::Egress => Kind::Egress,
            burrow_store::TrafficKind::Http => Kind::Http,
            _ => return,
        };
        let k = kind.index();
        if !t.error.is_empty() {
            self.handles.failed[k].inc();
        }
        let carried = [
            u64::try_from(t.bytes_in).unwrap_or(0),
            u64::try_from(t.bytes_out).unwrap_or(0),
        ];
        for (counter, n) in self.handles.bytes[k].iter().zip(carried) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if !t.agent.is_empty() && carried.iter().any(|n| *n > 0) {
            self.agent_carried(&t.agent, carried);
        }
        if kind == Kind::Http {
            let seconds = u64::try_from(t.duration_ms).unwrap_or(0) as f64 / 1000.0;
            self.handles.http_duration[status_class(t.status)].observe(seconds);
        }
    }

    /// Counts an agent's bytes, making its counters on first use only.
    fn agent_carried(&self, agent: &str, carried: [u64; 2]) {
        let found = self
            .agent_handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned();
        let counters = found.unwrap_or_else(|| {
            let made = ["in", "out"].map(|direction| {
                self.agent_bytes
                    .get_or_create(&AgentBytesLabel {
                        agent: agent.to_owned(),
                        direction,
                    })
                    .clone()
            });
            self.agent_handles
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(agent.to_owned(), made.clone());
            made
        });
        for (c, n) in counters.iter().zip(carried) {
            if n > 0 {
                c.inc_by(n);
            }
        }
    }

    /// The metrics text, with what is read at scrape brought up to date;
    /// `audit` is the audit queue's (depth, records dropped so far).
    pub(crate) fn scrape(&self, links: &Registry, audit: Option<(u64, u64)>) -> String {
        // One pass over the links: counts and each agent's best round trip.
        let held = links.held();
        self.agents
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        self.links.set(held.iter().map(|h| h.links).sum());
        self.rtt.clear();
        for h in held {
            if let Some(us) = h.rtt_us {
                self.rtt
                    .get_or_create(&AgentLabel { agent: h.agent })
                    .set(us as f64 / 1e6);
            }
        }
        if let Some((depth, dropped)) = audit {
            self.audit_queue
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
            burrow_ops::catch_up(&self.audit_dropped, dropped);
        }
        burrow_ops::catch_up(&self.store_errors, burrow_store::errors_seen());
        burrow_ops::encode(&self.prom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions_and_labels_are_bounded() {
        let m = Metrics::new();
        let active = m.active(Kind::Forward);
        m.link_changed(true);
        m.link_refused(Refused::Unauthorized);
        m.auth_failed("tunnel");
        m.finished(&burrow_store::Traffic {
            kind: burrow_store::TrafficKind::Http,
            agent: "home".into(),
            status: 502,
            error: "agent offline".into(),
            bytes_in: 10,
            bytes_out: 20,
            duration_ms: 3,
            ..burrow_store::Traffic::default()
        });
        let text = m.scrape(&Registry::default(), None);
        for line in [
            "burrow_streams_opened_total{kind=\"forward\"} 1",
            "burrow_streams_active{kind=\"forward\"} 1",
            "burrow_link_changes_total{change=\"up\"} 1",
            "burrow_link_refusals_total{reason=\"unauthorized\"} 1",
            "burrow_auth_failures_total{check=\"tunnel\"} 1",
            "burrow_streams_failed_total{kind=\"http\"} 1",
            "burrow_stream_bytes_total{kind=\"http\",direction=\"in\"} 10",
            "burrow_agent_bytes_total{agent=\"home\",direction=\"out\"} 20",
            "burrow_http_request_duration_seconds_count{status=\"5xx\"} 1",
            "burrow_agents 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        drop(active);
        let text = m.scrape(&Registry::default(), None);
        assert!(text.contains("burrow_streams_active{kind=\"forward\"} 0"));
        // An audit-only record (credential counts) is not a stream.
        m.finished(&burrow_store::Traffic {
            kind: burrow_store::TrafficKind::Auth,
            error: "wrong key".into(),
            ..burrow_store::Traffic::default()
        });
        let text = m.scrape(&Registry::default(), None);
        assert!(!text.contains("kind=\"auth\""));
    }
}
