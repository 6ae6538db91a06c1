//! One link: dial, serve streams until it drops, wait, redial.

use std::sync::Arc;
use std::time::Duration;

use burrow_mux::{Event, ResetCode, Session, pump};
use burrow_rpc::{Peer, Rpc};
use burrow_transport::handshake::{self, HandshakeError};
use burrow_transport::{Link, Secret, TransportError};
use burrow_wire::{Hello, HelloAck, PROTOCOL_VERSION, RejectCode, capabilities, control};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::egress::Failure;
use crate::metrics::{DialFailure, Kind};
use crate::{AgentMode, AgentState, Backoff};

/// Longest the WebSocket dial and upgrade may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Token(#[from] crate::TokenError),
}

impl DialError {
    /// How long the gateway asked to wait before the next dial: it is at
    /// its handshake cap (a 503 with `Retry-After` on the upgrade or the
    /// token endpoint, or a busy refusal at hello).
    fn asked_wait(&self) -> Option<Duration> {
        match self {
            DialError::Transport(TransportError::Busy { retry_after }) => Some(*retry_after),
            DialError::Token(crate::TokenError::Unavailable { retry_after, .. }) => *retry_after,
            DialError::Handshake(HandshakeError::Rejected {
                code: RejectCode::Busy,
                ..
            }) => Some(Duration::from_secs(burrow_wire::BUSY_RETRY_AFTER_SECS)),
            _ => None,
        }
    }
}

/// What this agent presents on a link: its access token (key-pair
/// authentication), else its pre-shared key, else nothing (certificate only).
pub(crate) async fn credential(state: &AgentState) -> Result<Option<Secret>, DialError> {
    if let Some(tokens) = &state.tokens {
        return Ok(Some(tokens.get().await?));
    }
    Ok(state.config.psk.clone())
}

/// This agent's hello.
pub(crate) fn hello(state: &AgentState, credential: Option<&Secret>) -> Hello {
    let cfg = &state.config;
    Hello {
        version: PROTOCOL_VERSION,
        // A key-pair agent is who its client id is registered as.
        agent_name: state
            .tokens
            .as_ref()
            .and_then(|t| t.agent_name())
            .filter(|_| cfg.name.is_empty())
            .unwrap_or_else(|| cfg.name.clone()),
        software_version: env!("CARGO_PKG_VERSION").into(),
        capabilities: vec![
            capabilities::STREAMS.into(),
            capabilities::OPENED_ACK.into(),
            capabilities::REQUESTS.into(),
            capabilities::RESET_REASONS.into(),
        ],
        credential: credential
            .map(|p| p.expose().to_owned())
            .unwrap_or_default(),
    }
}

pub(crate) async fn dial(state: &AgentState, idx: usize) -> Result<(Link, HelloAck), DialError> {
    let cfg = &state.config;
    let AgentMode::Poll(dialer) = &cfg.mode else {
        return Err(TransportError::Setup("not in polling mode".into()).into());
    };
    state.links.connecting(idx);
    let credential = credential(state).await?;
    let bearer = credential.as_ref().map(Secret::expose);
    let mut link = match dialer_for(state, dialer, idx)? {
        Some(other) => other.dial(bearer, DIAL_TIMEOUT).await?,
        None => dialer.dial(bearer, DIAL_TIMEOUT).await?,
    };
    state.links.authenticating(idx);
    let ack = handshake::dial(&mut link, hello(state, credential.as_ref())).await?;
    Ok((link, ack))
}

/// The dialer link `idx` uses instead of the configured URL's: another
/// replica's own address it was sent to, else its share of several
/// configured URLs.
fn dialer_for(
    state: &AgentState,
    base: &burrow_transport::Dialer,
    idx: usize,
) -> Result<Option<burrow_transport::Dialer>, DialError> {
    let moved = state
        .next_dial
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&idx);
    if let Some(url) = moved {
        match burrow_transport::TunnelUrl::parse(&url).map(|u| base.with_url(u)) {
            Ok(Ok(d)) => return Ok(Some(d)),
            Ok(Err(e)) => {
                debug!(link = idx, %url, error = %e, "replica address not dialable; using the configured URL")
            }
            Err(e) => {
                debug!(link = idx, %url, error = %e, "replica address not a URL; using the configured URL")
            }
        }
    }
    let urls = &state.config.more_urls;
    match idx % (urls.len() + 1) {
        0 => Ok(None),
        i => Ok(Some(base.with_url(urls[i - 1].clone())?)),
    }
}

/// Whether link `idx`, on `replica`, should go to another replica: a link
/// with a lower index is on the same one, and a replica the agent has no
/// link on is live. Returns that replica's own URL (empty: redial the
/// shared name and land where it sends).
fn move_to(state: &AgentState, idx: usize, replica: &str) -> Option<String> {
    let links = state.links.snapshot();
    let connected = |l: &&crate::LinkStatus| l.state == crate::LinkState::Connected;
    let shared = links
        .iter()
        .filter(connected)
        .any(|l| l.index < idx && l.gateway_replica.as_deref() == Some(replica));
    if !shared {
        return None;
    }
    let held: std::collections::HashSet<&str> = links
        .iter()
        .filter(connected)
        .filter_map(|l| l.gateway_replica.as_deref())
        .collect();
    pick_replica(state, idx, |(id, _)| !held.contains(id.as_str()))
}

/// The URL of a known replica that `fits`, for link `idx`: links choosing
/// at once spread over the ones that fit.
fn pick_replica(
    state: &AgentState,
    idx: usize,
    fits: impl Fn(&(String, String)) -> bool,
) -> Option<String> {
    let known = state.replicas.read().unwrap_or_else(|p| p.into_inner());
    let fit: Vec<&(String, String)> = known.iter().filter(|r| fits(r)).collect();
    (!fit.is_empty()).then(|| fit[idx % fit.len()].1.clone())
}

/// Runs link `idx` ([`run`]) and the streams it accepts on a
/// single-threaded runtime of its own, on its own thread: a link's reader,
/// writer and stream tasks wake each other all the time, and on one thread
/// those wake-ups are plain queue pushes instead of cross-thread ones.
/// Links still run in parallel with each other. Returns when the link has
/// stopped and its streams have finished (or, failing to start the
/// thread, after running the link here instead).
pub(crate) async fn run_on_own_thread(state: Arc<AgentState>, idx: usize) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(link = idx, error = %e, "no runtime of its own for the link; sharing the main one");
            return run(state, idx).await;
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let on_thread = state.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("burrow-link-{idx}"))
        .spawn(move || {
            rt.block_on(async {
                run(on_thread.clone(), idx).await;
                // Streams accepted on this link run on this runtime: keep
                // it until they are done. The tracker counts every link's
                // streams; links only stop together, at shutdown, and the
                // drain bounds the wait.
                on_thread.streams.wait().await;
            });
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = done_rx.await;
        }
        Err(e) => {
            warn!(link = idx, error = %e, "no thread of its own for the link; sharing the main one");
            run(state, idx).await;
        }
    }
}

pub(crate) async fn run(state: Arc<AgentState>, idx: usize) {
    let cfg = &state.config;
    let mut backoff = Backoff::new(cfg.reconnect_delay, cfg.max_reconnect_delay);
    // The last failure logged: repeats of the same failure go to debug, so a
    // gateway that is down for an hour costs one warning, not hundreds.
    let mut last_failure: Option<String> = None;
    let mut failures = 0u32;
    loop {
        if state.stopping.is_cancelled() {
            return;
        }
        let failure: String;
        let mut asked_wait = None;
        match dial(&state, idx).await {
            Ok((link, ack)) => {
                let gateway = match &cfg.mode {
                    AgentMode::Poll(d) => d.url.url.as_str(),
                    AgentMode::Listen { .. } => "",
                };
                info!(event = crate::event::LINK_UP, link = idx, %gateway, after_failures = failures, "link up");
                last_failure = None;
                failures = 0;
                let up_at = Instant::now();
                let (reason, asked, going_away, moving) =
                    serve(&state, link, &ack, Some(idx)).await;
                if state.stopping.is_cancelled() {
                    return;
                }
                if moving {
                    // Logged when decided; redialled with backoff.
                } else if going_away {
                    info!(
                        event = crate::event::LINK_DOWN,
                        link = idx,
                        reason = "the gateway is shutting down",
                        "the gateway closed the link; reconnecting"
                    );
                } else {
                    warn!(event = crate::event::LINK_DOWN, link = idx, reason = %reason, "link down; reconnecting");
                }
                if asked || going_away || up_at.elapsed() >= cfg.stable_after {
                    backoff.reset();
                }
                if going_away {
                    // Its replacement goes up before the old link closes:
                    // at once, on another replica if one is known.
                    let here = state
                        .links
                        .snapshot()
                        .into_iter()
                        .find(|l| l.index == idx)
                        .and_then(|l| l.gateway_replica);
                    let elsewhere = pick_replica(&state, idx, |(id, url)| {
                        Some(id) != here.as_ref() && !url.is_empty()
                    });
                    if let Some(url) = elsewhere {
                        state
                            .next_dial
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(idx, url);
                    }
                    continue;
                }
                failure = if moving {
                    "moving to another gateway replica".to_owned()
                } else if asked {
                    "reconnect asked for".to_owned()
                } else {
                    format!("link down: {reason}")
                };
            }
            Err(e) => {
                failures += 1;
                asked_wait = e.asked_wait();
                if let Some(m) = &state.metrics {
                    m.dial_failed(match &e {
                        DialError::Token(_) => DialFailure::Token,
                        DialError::Handshake(HandshakeError::Rejected { .. }) => {
                            DialFailure::Refused
                        }
                        _ => DialFailure::Unreachable,
                    });
                }
                // A refused token (its key removed, the gateway's database
                // replaced) is not retried: the next dial asks for a new one.
                if let (
                    Some(t),
                    DialError::Handshake(HandshakeError::Rejected {
                        code: RejectCode::Unauthorized,
                        ..
                    }),
                ) = (&state.tokens, &e)
                {
                    t.forget();
                }
                let msg = e.to_string();
                failure = msg.clone();
                if last_failure.as_deref() != Some(msg.as_str()) {
                    warn!(event = crate::event::GATEWAY_UNREACHABLE, link = idx, error = %msg, "cannot reach gateway; retrying with backoff");
                    last_failure = Some(msg);
                } else {
                    debug!(event = crate::event::GATEWAY_STILL_UNREACHABLE, link = idx, error = %msg, failures, "still cannot reach gateway");
                }
            }
        }
        let delay = match asked_wait {
            Some(asked) => backoff.next_delay_after(&mut rand::rng(), asked),
            None => backoff.next_delay(&mut rand::rng()),
        };
        state.links.failed(idx, &failure, delay);
        debug!(
            link = idx,
            delay_ms = delay.as_millis() as u64,
            "waiting before redial"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = state.reconnect.notified() => backoff.reset(),
            _ = state.stopping.cancelled() => return,
        }
    }
}

/// Longest a stopping agent waits for the gateway to acknowledge that a
/// link is draining (an older gateway never does).
pub(crate) const DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts a link as "unsettled" until it is refusing new streams (or gone),
/// so shutdown can wait for every link to stop receiving them.
struct Unsettled<'a>(&'a std::sync::atomic::AtomicUsize, bool);

impl<'a> Unsettled<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Unsettled(n, false)
    }
    fn settle(&mut self) {
        if !self.1 {
            self.1 = true;
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        self.settle();
    }
}

/// Serves streams on one link until it closes; returns why it closed and
/// whether a reconnect was asked for. `ack` is the gateway's hello answer;
/// `idx` the link's index, for its status (polling links).
///
/// On shutdown the link tells the gateway it is draining and keeps
/// accepting streams until the gateway acknowledges (streams the gateway
/// opened before it knew are served, not refused); after that new streams
/// are refused and open ones finish.
///
/// When the gateway says it is going away (it drains for a restart), this
/// returns at once with `going_away` set while the link goes on serving
/// its streams, and any the gateway still opens, until the gateway closes
/// it: the caller dials a replacement meanwhile.
pub(crate) async fn serve(
    state: &Arc<AgentState>,
    link: Link,
    ack: &HelloAck,
    idx: Option<usize>,
) -> (burrow_mux::CloseReason, bool, bool, bool) {
    let (away_tx, away_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve_link(state.clone(), link, ack.clone(), idx, away_tx));
    tokio::select! {
        done = task => done.unwrap_or((burrow_mux::CloseReason::Local, false, false, false)),
        Ok(moving) = away_rx => (burrow_mux::CloseReason::PeerClosed, false, !moving, moving),
    }
}

async fn serve_link(
    state: Arc<AgentState>,
    link: Link,
    ack: HelloAck,
    idx: Option<usize>,
    away: tokio::sync::oneshot::Sender<bool>,
) -> (burrow_mux::CloseReason, bool, bool, bool) {
    let state = &state;
    let ack = &ack;
    let mut away = Some(away);
    let config = burrow_mux::Config {
        dialer: true,
        heartbeat: Some(state.config.heartbeat),
        peer_reads_reasons: ack
            .capabilities
            .iter()
            .any(|c| c == capabilities::RESET_REASONS),
        ..burrow_mux::Config::default()
    };
    let thumb = link.peer_cert.map(|t| t.to_string());
    let (session, mut incoming) = Session::new(link.reader, link.writer, config);
    let rpc = Rpc::new(
        session.clone(),
        crate::answers::router(state),
        Peer {
            role: "gateway",
            answers: ack.capabilities.iter().any(|c| c == capabilities::REQUESTS),
            version: ack.software_version.clone(),
        },
    );
    let replica = capabilities::replica_of(&ack.capabilities).map(str::to_owned);
    if let Some(idx) = idx {
        state.links.up(
            idx,
            &session,
            &rpc,
            &ack.software_version,
            thumb,
            replica.as_deref(),
        );
    }
    if rpc.peer_answers() {
        let (state, rpc) = (state.clone(), rpc.clone());
        tokio::spawn(async move { state.sync_and_say(&rpc).await });
    } else if !state.live().routes.is_empty() {
        let body: String = state
            .live()
            .routes
            .iter()
            .map(|(host, url)| format!("{host}\t{url}\n"))
            .collect();
        let _ = session
            .send_control(control::ROUTES, bytes::Bytes::from(body))
            .await;
    }
    let mut unsettled = Unsettled::new(&state.unsettled_links);
    let mut asked = false;
    let mut going_away = false;
    let mut moving = false;
    let mut moved_at = Instant::now();
    let mut announced = false;
    let mut refusing = false;
    let ack_deadline = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(ack_deadline);
    loop {
        tokio::select! {
            _ = state.stopping.cancelled(), if !announced => {
                announced = true;
                ack_deadline.as_mut().reset(Instant::now() + DRAIN_ACK_TIMEOUT);
                if session.send_control(control::DRAINING, bytes::Bytes::new()).await.is_err() {
                    refusing = true;
                    unsettled.settle();
                }
            }
            _ = &mut ack_deadline, if announced && !refusing => {
                debug!("the gateway did not acknowledge draining; refusing new streams");
                refusing = true;
                unsettled.settle();
            }
            _ = state.reconnect.notified() => {
                asked = true;
                session.close();
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(100)), if moving && refusing => {
                if session.stream_count() == 0 || moved_at.elapsed() >= state.config.drain_timeout {
                    session.close();
                    break;
                }
            }
            e = incoming.next() => match e {
                Some(Event::Control(kind, body)) if rpc.on_control(kind, &body) => {}
                Some(Event::Control(control::DRAINING_ACK, _)) if announced => {
                    debug!("the gateway acknowledged draining; refusing new streams");
                    refusing = true;
                    unsettled.settle();
                }
                Some(Event::Control(control::GOING_AWAY, _)) => {
                    going_away = true;
                    if let Some(tx) = away.take() {
                        let _ = tx.send(false);
                    }
                }
                Some(Event::Control(control::REPLICAS, body)) => {
                    *state.replicas.write().unwrap_or_else(|p| p.into_inner()) =
                        burrow_wire::replicas::decode(&body);
                    if let (false, Some(idx), Some(r)) = (moving || announced, idx, replica.as_deref())
                        && let Some(url) = move_to(state, idx, r)
                    {
                        info!(event = crate::event::LINK_MOVING, link = idx, replica = %r, to = %url, "another link is on this gateway replica and one has none: moving this link");
                        if !url.is_empty() {
                            state.next_dial.lock().unwrap_or_else(|p| p.into_inner()).insert(idx, url);
                        }
                        // Drained, not cut: the gateway stops opening
                        // streams on it, those open finish, then it closes
                        // while its replacement is dialed.
                        moving = true;
                        moved_at = Instant::now();
                        announced = true;
                        ack_deadline.as_mut().reset(Instant::now() + DRAIN_ACK_TIMEOUT);
                        if session.send_control(control::DRAINING, bytes::Bytes::new()).await.is_err() {
                            session.close();
                            break;
                        }
                        if let Some(tx) = away.take() {
                            let _ = tx.send(true);
                        }
                    }
                }
                Some(Event::Control(control::RULES, body)) => {
                    let rules = burrow_wire::egress::decode_rules(&body);
                    // One entry per host pattern: the FQDN rules and the
                    // targets of routes, joined.
                    info!(targets = rules.len(), "egress targets from the gateway (its FQDN rules and route targets)");
                    *state.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
                }
                Some(Event::Control(..)) => {}
                Some(Event::Stream(stream)) => {
                    if refusing {
                        stream.reset(ResetCode::Busy);
                        continue;
                    }
                    let target = stream.target().unwrap_or_default().to_owned();
                    let span = debug_span!("stream", id = stream.id(), dest = %target);
                    state.streams.spawn(connect_target(state.clone(), stream, target).instrument(span));
                }
                None => break,
            },
            _ = state.close_links.cancelled() => {
                session.close();
                break;
            }
        }
    }
    unsettled.settle();
    (session.closed().await, asked, going_away, moving)
}

/// Connects a forward's `host:port` through the agent's one resolver
/// (the host map first, as for egress and routes).
async fn dial_forward(state: &AgentState, target: &str) -> Result<TcpStream, Failure> {
    // Parsed as the allow-list parsed it.
    let parsed =
        crate::allow::split_host_port(target).and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)));
    let Some((host, port)) = parsed else {
        return Err(Failure::NotAllowed(format!("{target} is not HOST:PORT")));
    };
    let addrs = crate::egress::lookup(state, host, port).await?;
    crate::egress::connect(state, host, &addrs).await
}

async fn connect_target(state: Arc<AgentState>, stream: burrow_mux::MuxStream, target: String) {
    if let Some(t) = burrow_wire::egress::Target::parse(&target) {
        return crate::egress::serve(state, stream, t).await;
    }
    if target.starts_with(burrow_wire::egress::PREFIX) {
        warn!(event = crate::event::STREAM_REFUSED, dest = %target, "refused stream: malformed egress target");
        stream.reset(ResetCode::NotAllowed);
        return;
    }
    let metrics = state.metrics.as_ref();
    let failed = || {
        if let Some(m) = metrics {
            m.failed(Kind::Forward);
        }
    };
    if !state.live().allow.allows(&target) {
        warn!(event = crate::event::STREAM_REFUSED, dest = %target, "refused stream: target is not in this agent's allow-list (--allow)");
        failed();
        stream.reset(ResetCode::NotAllowed);
        return;
    }
    let tcp = match dial_forward(&state, &target).await {
        Ok(tcp) => tcp,
        Err(f) => {
            warn!(event = crate::event::STREAM_REFUSED, dest = %target, reason = %f.line(), "cannot connect forward target");
            failed();
            f.refuse(&stream);
            return;
        }
    };
    if stream.confirm_opened().await.is_err() {
        return;
    }
    let _active = metrics.map(|m| m.active(Kind::Forward));
    let out = pump(stream, tcp).await;
    debug!(up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "stream closed");
    if let Some(m) = metrics {
        m.carried(Kind::Forward, out.stream_to_tcp, out.tcp_to_stream);
    }
}
