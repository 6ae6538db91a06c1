//! TCP forwards: a local listener whose connections become streams to a
//! target reached through a named agent.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use burrow_mux::{MuxError, pump};
use burrow_wire::valid_name;
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, debug_span, warn};

use crate::State;

/// One forward: `LISTEN=AGENT:HOST:PORT`, e.g.
/// `127.0.0.1:15432=home:db.internal:5432`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local address to accept on.
    pub listen: SocketAddr,
    /// Agent whose links carry the streams.
    pub agent: String,
    /// `host:port` the agent connects to.
    pub target: String,
}

/// Why a forward specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid forward {spec:?}: {why} (expected LISTEN=AGENT:HOST:PORT, e.g. 127.0.0.1:15432=home:db.internal:5432)"
)]
pub struct ForwardSpecError {
    spec: String,
    why: String,
}

/// Checks a `host:port` target; returns why not.
pub(crate) fn check_target(target: &str) -> Result<(), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("target {target:?} has no port"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("target port {port:?} is not 1-65535"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(format!("target host {host:?} is empty or too long"));
    }
    if host.parse::<std::net::IpAddr>().is_err()
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!(
            "target host {host:?} is not a host name or IP address"
        ));
    }
    Ok(())
}

impl FromStr for ForwardSpec {
    type Err = ForwardSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ForwardSpecError {
            spec: s.to_owned(),
            why,
        };
        let (listen, rest) = s.split_once('=').ok_or_else(|| err("missing '='".into()))?;
        let listen: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| err(format!("{listen:?} is not an IP:PORT to listen on")))?;
        let (agent, target) = rest
            .split_once(':')
            .ok_or_else(|| err("missing agent name before the target".into()))?;
        if !valid_name(agent) {
            return Err(err(format!(
                "agent name {agent:?} must be 1-200 letters, digits, '-' or '.'"
            )));
        }
        check_target(target).map_err(err)?;
        Ok(ForwardSpec {
            listen,
            agent: agent.to_owned(),
            target: target.to_owned(),
        })
    }
}

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

pub(crate) async fn serve(state: Arc<State>, spec: ForwardSpec, listener: TcpListener) {
    let spec = Arc::new(spec);
    let warn_limit = Arc::new(RateLimit(AtomicU64::new(0)));
    loop {
        let Some((tcp, client)) = crate::accept(&state, &listener, "forward").await else {
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
            if warn_limit.allow() {
                warn!(%client, agent = %spec.agent, dest = %spec.target, "refusing connection: agent has no live link");
            }
            refuse(tcp);
            continue;
        };
        let spec = spec.clone();
        let state2 = state.clone();
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
                            state2.record(burrow_store::Traffic {
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
                            return;
                        }
                        Err(MuxError::Closed(_)) => continue,
                        Err(e) => {
                            warn!(agent = %spec.agent, dest = %spec.target, %client, error = %e, "cannot open stream");
                            break;
                        }
                    }
                }
                refuse(tcp);
            }
            .instrument(span)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs_parse() {
        let f: ForwardSpec = "127.0.0.1:15432=home:db.internal:5432"
            .parse()
            .expect("parses");
        assert_eq!(f.listen, "127.0.0.1:15432".parse().expect("addr"));
        assert_eq!(f.agent, "home");
        assert_eq!(f.target, "db.internal:5432");
        let f: ForwardSpec = "[::1]:80=a.b:[fd00::1]:8080".parse().expect("v6");
        assert_eq!(f.target, "[fd00::1]:8080");
    }

    #[test]
    fn bad_forward_specs_say_what_is_wrong() {
        for (spec, why) in [
            ("15432=home:db:5432", "IP:PORT"),
            ("127.0.0.1:1", "missing '='"),
            ("127.0.0.1:1=home", "missing agent"),
            ("127.0.0.1:1=ho me:db:5", "agent name"),
            ("127.0.0.1:1=home:db", "no port"),
            ("127.0.0.1:1=home:db:0", "1-65535"),
            ("127.0.0.1:1=home:db:99999", "1-65535"),
            ("127.0.0.1:1=home:d b:5", "not a host name"),
        ] {
            let e = spec.parse::<ForwardSpec>().expect_err(spec).to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }
}
