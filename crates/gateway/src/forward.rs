//! TCP forwards: a local listener whose connections become streams to a
//! target reached through a named agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use burrow_mux::{MuxError, pump};
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, debug_span, warn};

use crate::forward_spec::ForwardSpec;
use crate::state::State;

/// Logs at most once a second per forward, so a client hammering a forward
/// whose agent is down cannot flood the log.
struct RateLimit(AtomicU64);

impl RateLimit {
    fn allow(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        self.0.swap(now, Ordering::Relaxed) != now
    }
}

/// Closes a connection with RST so the client sees a refusal, not EOF.
fn refuse(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
}

/// The audit record of one forwarded connection.
fn record(
    state: &State,
    spec: &ForwardSpec,
    client: std::net::SocketAddr,
    (at, started): (i64, std::time::Instant),
    out: &burrow_mux::PumpOutcome,
) {
    state.audit.record(burrow_store::Traffic {
        at,
        kind: burrow_store::TrafficKind::Forward,
        agent: spec.agent.clone(),
        client: client.to_string(),
        target: spec.target.clone(),
        bytes_in: i64::try_from(out.tcp_to_stream).unwrap_or(i64::MAX),
        bytes_out: i64::try_from(out.stream_to_tcp).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        ..burrow_store::Traffic::default()
    });
}

/// One forward's accept loop: stops accepting when the gateway does or
/// `stop` is cancelled (a reload removed it); its open connections go on.
pub(crate) async fn serve(
    state: Arc<State>,
    spec: ForwardSpec,
    listener: TcpListener,
    stop: tokio_util::sync::CancellationToken,
) {
    let spec = Arc::new(spec);
    let warn_limit = Arc::new(RateLimit(AtomicU64::new(0)));
    let mut at = state.accepting();
    at.stop = stop;
    loop {
        let Some((tcp, client)) = at.next(&listener, "forward").await else {
            return;
        };
        let Ok(permit) = state.conn_limit.clone().try_acquire_owned() else {
            if warn_limit.allow() {
                warn!(%client, limit = state.config.max_connections, "refusing connection: at the connection limit");
            }
            refuse(tcp);
            continue;
        };
        let Some((first, shard)) = state.registry.pick_link(&spec.agent) else {
            if state.registry.remote().is_some() {
                // Another replica may hold the agent's links.
                let (spec, state2) = (spec.clone(), state.clone());
                let tracked = state.streams.token();
                state.shards.serve_on(None, tcp, move |tcp| async move {
                    let _tracked = tracked;
                    let _permit = permit;
                    match crate::open::open_str(&state2.registry, &spec.agent, &spec.target).await {
                        Ok(stream) => {
                            let _active = state2.audit.active(crate::metrics::Kind::Forward);
                            let (at, started) = (burrow_store::now_micros(), std::time::Instant::now());
                            let out = pump(stream, tcp).await;
                            record(&state2, &spec, client, (at, started), &out);
                        }
                        Err(f) => {
                            debug!(agent = %spec.agent, failure = ?f, "forward: no replica reached the agent");
                            if let Some(m) = state2.audit.metrics() {
                                m.open_failed(crate::metrics::Kind::Forward);
                            }
                            refuse(tcp);
                        }
                    }
                });
                continue;
            }
            if let Some(m) = state.audit.metrics() {
                m.open_failed(crate::metrics::Kind::Forward);
            }
            if warn_limit.allow() {
                warn!(%client, agent = %spec.agent, dest = %spec.target, "refusing connection: agent has no live link");
            }
            refuse(tcp);
            continue;
        };
        let spec = spec.clone();
        let state2 = state.clone();
        let warn_limit = warn_limit.clone();
        // Debug level: a span formats its fields when created, a cost paid per
        // connection; at the default level it is skipped entirely.
        let span = debug_span!("stream", agent = %spec.agent, dest = %spec.target, %client);
        // Counted as open from here, so a drain waits for it; served on
        // the shard of the link it goes over.
        let tracked = state.streams.token();
        state.shards.serve_on(shard, tcp, move |tcp| {
            async move {
                let _tracked = tracked;
                let _permit = permit;
                // A link may die between choosing it and opening on it: try
                // the agent's other links before giving up.
                let mut next = Some(first);
                for _ in 0..3 {
                    let Some(session) = next.take().or_else(|| state2.registry.pick(&spec.agent)) else {
                        break;
                    };
                    // Asked to confirm, so a dead link is noticed within a
                    // few round trips (the watch closes it and the pump resets
                    // the client) instead of after heartbeats; the bytes flow
                    // at once either way.
                    match session.open_with_ack(&spec.target).await {
                        Ok(stream) => {
                            let _active = state2.audit.active(crate::metrics::Kind::Forward);
                            let id = stream.id();
                            let (at, started) = (burrow_store::now_micros(), std::time::Instant::now());
                            let watch = stream.opened_watch();
                            let watched = async {
                                let _ = session.answered_watch(&watch).await;
                                std::future::pending().await
                            };
                            let out = tokio::select! {
                                out = pump(stream, tcp) => out,
                                out = watched => out,
                            };
                            debug!(stream = id, up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "stream closed");
                            if let Some((code, reason)) = watch.refusal().filter(|_| warn_limit.allow()) {
                                warn!(event = crate::event::FORWARD_TARGET_FAILED, agent = %spec.agent, dest = %spec.target, %client, %code, %reason, "the agent could not connect the forward's target");
                            }
                            record(&state2, &spec, client, (at, started), &out);
                            return;
                        }
                        Err(MuxError::Closed(_)) => continue,
                        Err(e) => {
                            warn!(agent = %spec.agent, dest = %spec.target, %client, error = %e, "cannot open stream");
                            break;
                        }
                    }
                }
                if let Some(m) = state2.audit.metrics() {
                    m.open_failed(crate::metrics::Kind::Forward);
                }
                refuse(tcp);
            }
            .instrument(span)
        });
    }
}
