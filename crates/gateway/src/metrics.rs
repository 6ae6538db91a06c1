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
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BytesLabel {
    kind: &'static str,
    direction: &'static str,
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
struct ReasonLabel {
    reason: &'static str,
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

fn status_class(status: i64) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
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
    link_refusals: Family<ReasonLabel, Counter>,
    auth_failures: Family<CheckLabel, Counter>,
    opened: Family<KindLabel, Counter>,
    active: Family<KindLabel, Gauge>,
    failed: Family<KindLabel, Counter>,
    bytes: Family<BytesLabel, Counter>,
    agent_bytes: Family<AgentBytesLabel, Counter>,
    http_duration: Family<StatusLabel, Histogram, fn() -> Histogram>,
    rtt: Family<AgentLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    audit_queue: Gauge,
    audit_dropped: Counter,
    store_errors: Counter,
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
        self.metrics
            .active
            .get_or_create(&KindLabel {
                kind: self.kind.as_str(),
            })
            .dec();
    }
}

impl Metrics {
    /// Every metric, registered.
    pub(crate) fn new() -> Arc<Self> {
        let mut prom = Prom::default();
        burrow_ops::register_build_info(&mut prom);
        let m = Metrics {
            agents: Gauge::default(),
            links: Gauge::default(),
            link_changes: Family::default(),
            link_refusals: Family::default(),
            auth_failures: Family::default(),
            opened: Family::default(),
            active: Family::default(),
            failed: Family::default(),
            bytes: Family::default(),
            agent_bytes: Family::default(),
            http_duration: Family::new_with_constructor(new_histogram),
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
            .get_or_create(&ReasonLabel {
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
        let label = KindLabel {
            kind: kind.as_str(),
        };
        self.opened.get_or_create(&label).inc();
        self.active.get_or_create(&label).inc();
        Active {
            metrics: self.clone(),
            kind,
        }
    }

    /// A stream the audit trail does not see (a forward's connection with
    /// no link to go on) could not be opened.
    pub(crate) fn open_failed(&self, kind: Kind) {
        self.failed
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// A stream or request finished, as the audit trail records it.
    pub(crate) fn finished(&self, t: &burrow_store::Traffic) {
        let kind = match t.kind {
            burrow_store::TrafficKind::Forward => Kind::Forward,
            burrow_store::TrafficKind::Egress => Kind::Egress,
            burrow_store::TrafficKind::Http => Kind::Http,
            _ => return,
        };
        let k = kind.as_str();
        if !t.error.is_empty() {
            self.failed.get_or_create(&KindLabel { kind: k }).inc();
        }
        let (bytes_in, bytes_out) = (
            u64::try_from(t.bytes_in).unwrap_or(0),
            u64::try_from(t.bytes_out).unwrap_or(0),
        );
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            if n == 0 {
                continue;
            }
            self.bytes
                .get_or_create(&BytesLabel { kind: k, direction })
                .inc_by(n);
            if !t.agent.is_empty() {
                self.agent_bytes
                    .get_or_create(&AgentBytesLabel {
                        agent: t.agent.clone(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
        if kind == Kind::Http {
            let seconds = u64::try_from(t.duration_ms).unwrap_or(0) as f64 / 1000.0;
            self.http_duration
                .get_or_create(&StatusLabel {
                    status: status_class(t.status),
                })
                .observe(seconds);
        }
    }

    /// The metrics text, with what is read at scrape brought up to date;
    /// `audit` is the audit queue's (depth, records dropped so far).
    pub(crate) fn scrape(&self, links: &Registry, audit: Option<(u64, u64)>) -> String {
        let agents = links.status();
        self.agents
            .set(i64::try_from(agents.len()).unwrap_or(i64::MAX));
        self.links
            .set(i64::try_from(agents.iter().map(|a| a.links).sum::<usize>()).unwrap_or(i64::MAX));
        self.rtt.clear();
        for a in &agents {
            let best = links
                .links(&a.name)
                .iter()
                .filter_map(|l| l.session.rtt())
                .min();
            if let Some(rtt) = best {
                self.rtt
                    .get_or_create(&AgentLabel {
                        agent: a.name.clone(),
                    })
                    .set(rtt.as_secs_f64());
            }
        }
        if let Some((depth, dropped)) = audit {
            self.audit_queue
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
            catch_up(&self.audit_dropped, dropped);
        }
        catch_up(&self.store_errors, burrow_store::errors_seen());
        burrow_ops::encode(&self.prom)
    }
}

/// Brings a counter up to a total counted elsewhere.
fn catch_up(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
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
