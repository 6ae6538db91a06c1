//! The agent's Prometheus metrics, served with its probes when
//! `--health-listen` is set. Streams are counted where the agent connects
//! them; links are read from their status at scrape.
//!
//! Kinds: `forward` (a gateway forward's HOST:PORT) and `egress` (a target
//! by name: the egress proxy's and published routes' streams, which reach
//! the agent alike). Labels are bounded: kinds, reasons, link states, and
//! link indexes up to `--links`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry as Prom, Unit};

use crate::status::{LinkState, LinkStatus};

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A forward's HOST:PORT from the allow-list.
    Forward,
    /// A target by name (egress proxy, published routes).
    Egress,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Forward => "forward",
            Kind::Egress => "egress",
        }
    }
}

/// Why a dial did not give a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DialFailure {
    /// The gateway could not be reached, or TLS or the upgrade failed.
    Unreachable,
    /// The gateway refused the hello (credentials, limits, shutting down).
    Refused,
    /// No access token could be had.
    Token,
}

impl DialFailure {
    fn as_str(self) -> &'static str {
        match self {
            DialFailure::Unreachable => "unreachable",
            DialFailure::Refused => "refused",
            DialFailure::Token => "token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LinkLabel {
    link: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

/// The agent's metrics.
pub(crate) struct Metrics {
    prom: Prom,
    links: Family<StateLabel, Gauge>,
    by_replica: Family<ReplicaLabel, Gauge>,
    rtt: Family<LinkLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    reconnects: Counter,
    dial_failures: Family<burrow_ops::labels::Reason, Counter>,
    opened: Family<burrow_ops::labels::Kind, Counter>,
    active: Family<burrow_ops::labels::Kind, Gauge>,
    failed: Family<burrow_ops::labels::Kind, Counter>,
    bytes: Family<burrow_ops::labels::Bytes, Counter>,
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
            .get_or_create(&burrow_ops::labels::Kind {
                kind: self.kind.as_str(),
            })
            .dec();
    }
}

fn state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Connecting => "connecting",
        LinkState::Authenticating => "authenticating",
        LinkState::Connected => "connected",
        LinkState::Reconnecting => "reconnecting",
    }
}

impl Metrics {
    /// Every metric, registered.
    pub(crate) fn new() -> Arc<Self> {
        let mut prom = Prom::default();
        burrow_ops::register_build_info(&mut prom);
        let m = Metrics {
            prom: Prom::default(),
            links: Family::default(),
            by_replica: Family::default(),
            rtt: Family::default(),
            reconnects: Counter::default(),
            dial_failures: Family::default(),
            opened: Family::default(),
            active: Family::default(),
            failed: Family::default(),
            bytes: Family::default(),
        };
        prom.register(
            "burrow_agent_links",
            "This agent's links, by state",
            m.links.clone(),
        );
        prom.register(
            "burrow_agent_replica_links",
            "Connected links by the gateway replica they are on (at most --links replicas)",
            m.by_replica.clone(),
        );
        prom.register_with_unit(
            "burrow_agent_link_rtt",
            "Heartbeat round trip of each connected link",
            Unit::Seconds,
            m.rtt.clone(),
        );
        prom.register(
            "burrow_agent_reconnects",
            "Links that came up again after their first time",
            m.reconnects.clone(),
        );
        prom.register(
            "burrow_agent_dial_failures",
            "Dials of the gateway that gave no link, by reason",
            m.dial_failures.clone(),
        );
        prom.register(
            "burrow_agent_streams_opened",
            "Streams the agent connected, by kind",
            m.opened.clone(),
        );
        prom.register(
            "burrow_agent_streams_active",
            "Streams open now, by kind",
            m.active.clone(),
        );
        prom.register(
            "burrow_agent_streams_failed",
            "Streams the agent refused or could not connect, by kind",
            m.failed.clone(),
        );
        prom.register_with_unit(
            "burrow_agent_stream",
            "Bytes carried, by kind and direction (in: from the gateway)",
            Unit::Bytes,
            m.bytes.clone(),
        );
        Arc::new(Metrics { prom, ..m })
    }

    /// A dial failed.
    pub(crate) fn dial_failed(&self, why: DialFailure) {
        self.dial_failures
            .get_or_create(&burrow_ops::labels::Reason {
                reason: why.as_str(),
            })
            .inc();
    }

    /// A stream of `kind` is connected: counted, and active until the
    /// guard drops.
    pub(crate) fn active(self: &Arc<Self>, kind: Kind) -> Active {
        let label = burrow_ops::labels::Kind {
            kind: kind.as_str(),
        };
        self.opened.get_or_create(&label).inc();
        self.active.get_or_create(&label).inc();
        Active {
            metrics: self.clone(),
            kind,
        }
    }

    /// A stream of `kind` was refused or could not be connected.
    pub(crate) fn failed(&self, kind: Kind) {
        self.failed
            .get_or_create(&burrow_ops::labels::Kind {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// A stream of `kind` carried `from_gateway` and `to_gateway` bytes.
    pub(crate) fn carried(&self, kind: Kind, from_gateway: u64, to_gateway: u64) {
        let k = kind.as_str();
        for (direction, n) in [("in", from_gateway), ("out", to_gateway)] {
            if n > 0 {
                self.bytes
                    .get_or_create(&burrow_ops::labels::Bytes { kind: k, direction })
                    .inc_by(n);
            }
        }
    }

    /// The metrics text, with the links' state read now.
    pub(crate) fn scrape(&self, links: &[LinkStatus]) -> String {
        self.links.clear();
        for s in [
            LinkState::Connecting,
            LinkState::Authenticating,
            LinkState::Connected,
            LinkState::Reconnecting,
        ] {
            let n = links.iter().filter(|l| l.state == s).count();
            self.links
                .get_or_create(&StateLabel {
                    state: state_name(s),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.by_replica.clear();
        for l in links.iter().filter(|l| l.state == LinkState::Connected) {
            if let Some(r) = &l.gateway_replica {
                self.by_replica
                    .get_or_create(&ReplicaLabel { replica: r.clone() })
                    .inc();
            }
        }
        self.rtt.clear();
        for l in links.iter().filter(|l| l.state == LinkState::Connected) {
            if let Some(ms) = l.rtt_ms {
                self.rtt
                    .get_or_create(&LinkLabel {
                        link: l.index.to_string(),
                    })
                    .set(ms / 1000.0);
            }
        }
        burrow_ops::catch_up(&self.reconnects, links.iter().map(|l| l.reconnects).sum());
        burrow_ops::encode(&self.prom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_links_and_failures_are_counted_with_bounded_labels() {
        let m = Metrics::new();
        let a = m.active(Kind::Egress);
        m.carried(Kind::Egress, 5, 7);
        m.failed(Kind::Forward);
        m.dial_failed(DialFailure::Refused);
        let text = m.scrape(&[]);
        for line in [
            "burrow_agent_streams_opened_total{kind=\"egress\"} 1",
            "burrow_agent_streams_active{kind=\"egress\"} 1",
            "burrow_agent_streams_failed_total{kind=\"forward\"} 1",
            "burrow_agent_stream_bytes_total{kind=\"egress\",direction=\"in\"} 5",
            "burrow_agent_stream_bytes_total{kind=\"egress\",direction=\"out\"} 7",
            "burrow_agent_dial_failures_total{reason=\"refused\"} 1",
            "burrow_agent_links{state=\"connected\"} 0",
            "burrow_agent_reconnects_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        drop(a);
        assert!(
            m.scrape(&[])
                .contains("burrow_agent_streams_active{kind=\"egress\"} 0")
        );
    }
}
