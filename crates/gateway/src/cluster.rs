//! Replicas sharing one database. Each replica says in the store that it
//! is alive and which agents' links it holds (presence, with expiry, so a
//! dead replica's rows vanish); tells its agents which replicas exist, so
//! they spread their links over them; and carries a connection for an
//! agent it holds no link of to a replica that does, over a peer link:
//! the same mux over mutual TLS, where each side presents the gateway's
//! certificate and trusts the other by its pinned thumbprint (its own,
//! which replicas share, or one given with `--peer-thumbprint`). At most
//! one hop: a replica serving a hop uses its own links only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use burrow_mux::{MuxError, MuxStream, ResetCode, Session};
use burrow_store::{Replica, Store};
use burrow_transport::tls::{LiveIdentity, ServerTrust, Thumbprint, client_config};
use burrow_transport::{Dialer, Link, TunnelUrl, handshake, proxy::ProxyEnv};
use burrow_wire::{Hello, PROTOCOL_VERSION, Reject, RejectCode, capabilities, hop};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::refusal::{OpenFailure, Refusal};
use crate::registry::{Opening, Registry, Remote};

/// How often a replica refreshes its rows.
const BEAT: Duration = Duration::from_secs(1);
/// How long its rows live without a refresh.
const TTL: Duration = Duration::from_secs(5);
/// Longest a peer dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// This replica among the others.
pub(crate) struct Cluster {
    /// This replica's id.
    pub(crate) id: String,
    /// Where others reach it (empty: nowhere of its own).
    advertise: String,
    store: Store,
    links: Arc<Registry>,
    /// The gateway's certificate: presented to peers, and trusted in them.
    identity: Option<Arc<LiveIdentity>>,
    /// More peer certificates trusted (`--peer-thumbprint`).
    peer_trust: Vec<Thumbprint>,
    /// Peer links by URL.
    peers: std::sync::Mutex<HashMap<String, Session>>,
    draining: AtomicBool,
    /// Links came or went: write presence now.
    changed: tokio::sync::Notify,
    /// The last replica list sent to agents.
    known: std::sync::Mutex<Vec<(String, String)>>,
    /// The heartbeat interval of peer links.
    heartbeat: Duration,
}

impl Cluster {
    pub(crate) fn new(
        id: String,
        advertise: Option<&TunnelUrl>,
        store: Store,
        links: Arc<Registry>,
        identity: Option<Arc<LiveIdentity>>,
        peer_trust: Vec<Thumbprint>,
        heartbeat: Duration,
    ) -> Arc<Self> {
        Arc::new(Cluster {
            id,
            advertise: advertise.map(|u| u.url.clone()).unwrap_or_default(),
            store,
            links,
            identity,
            peer_trust,
            peers: std::sync::Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            known: std::sync::Mutex::new(Vec::new()),
            heartbeat,
        })
    }

    /// The certificates a peer may present.
    fn trusted(&self) -> Vec<Thumbprint> {
        let mut t = self.peer_trust.clone();
        if let Some(id) = &self.identity {
            t.push(id.thumbprint());
        }
        t
    }

    /// How this replica calls another's admin API (HTTPS, pinned to the
    /// certificates a peer may present); `None` without the gateway's
    /// certificate.
    pub(crate) fn admin_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.identity.as_ref()?;
        client_config(
            None,
            &ServerTrust::Pinned(self.trusted()),
            "gateway replica",
            "--peer-thumbprint on the replicas, or one certificate for all",
            burrow_transport::tls::ALPN_HTTP1,
        )
        .ok()
    }

    /// Whether `cert` is a peer's.
    pub(crate) fn trusts(&self, cert: Option<Thumbprint>) -> bool {
        cert.is_some_and(|c| self.trusted().contains(&c))
    }

    /// An agent's links came or went.
    pub(crate) fn links_changed(&self) {
        self.changed.notify_one();
    }

    /// The replicas agents may spread over (live, not draining), as the
    /// `REPLICAS` message lists them.
    pub(crate) fn replica_list(&self) -> Vec<(String, String)> {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn me(&self) -> Replica {
        Replica {
            id: self.id.clone(),
            advertise_url: self.advertise.clone(),
            draining: self.draining.load(Ordering::Relaxed),
        }
    }

    async fn beat(&self) {
        let ttl = i64::try_from(TTL.as_micros()).unwrap_or(i64::MAX);
        if let Err(e) = self.store.announce_replica(&self.me(), ttl).await {
            debug!(error = %e, "replica not announced");
            return;
        }
        let agents = self.links.held();
        if let Err(e) = self.store.set_presence(&self.id, &agents, ttl).await {
            debug!(error = %e, "presence not written");
        }
        let list: Vec<(String, String)> = match self.store.replicas().await {
            Ok(r) => r
                .into_iter()
                .filter(|r| !r.draining)
                .map(|r| (r.id, r.advertise_url))
                .collect(),
            Err(e) => {
                debug!(error = %e, "replicas not read");
                return;
            }
        };
        let changed = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *known != list;
            *known = list.clone();
            changed
        };
        if changed {
            info!(event = crate::event::REPLICAS_CHANGED, replicas = list.len(), ids = %list.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(","), "replicas changed");
            let body = Bytes::from(burrow_wire::replicas::encode(&list));
            for s in self.links.sessions() {
                let _ = s
                    .send_control(burrow_wire::control::REPLICAS, body.clone())
                    .await;
            }
        }
    }

    /// Keeps this replica's rows fresh until `stop`, then marks it
    /// draining (agents are told to go elsewhere) until `gone`, when its
    /// rows are removed.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken, gone: CancellationToken) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.changed.notified() => {}
                () = stop.cancelled(), if !self.draining.load(Ordering::Relaxed) => {
                    self.draining.store(true, Ordering::Relaxed);
                }
                () = gone.cancelled() => break,
            }
            self.beat().await;
        }
        if let Err(e) = self.store.remove_replica(&self.id).await {
            debug!(error = %e, "replica rows left to expire");
        }
    }

    /// Opens `target` through `agent` via a replica holding its links.
    async fn open_remote(&self, agent: &str, target: &str) -> Result<MuxStream, OpenFailure> {
        let holders = match self.store.presence(agent).await {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "presence not read");
                return Err(OpenFailure::Offline);
            }
        };
        let hop_target = hop::encode(agent, target);
        let mut holders: Vec<_> = holders
            .into_iter()
            .filter(|h| h.replica.id != self.id && !h.replica.advertise_url.is_empty())
            .collect();
        // A draining replica only when no other holds the agent's links.
        holders.sort_by_key(|h| h.replica.draining);
        for h in holders {
            let url = &h.replica.advertise_url;
            let session = match self.peer(url).await {
                Ok(s) => s,
                Err(why) => {
                    debug!(replica = %h.replica.id, %url, %why, "peer not reached");
                    continue;
                }
            };
            let stream = match session.open_with_ack(&hop_target).await {
                Ok(s) => s,
                Err(_) => {
                    self.forget(url);
                    continue;
                }
            };
            match tokio::time::timeout(crate::refusal::OPEN_TIMEOUT, session.answered(&stream))
                .await
            {
                Ok(Ok(())) => return Ok(stream),
                // That replica has lost the agent's links (or drains): the
                // next one may have them.
                Ok(Err(MuxError::Reset(ResetCode::Busy))) => continue,
                Ok(Err(MuxError::Reset(code))) => {
                    return Err(OpenFailure::Reset(Refusal {
                        code,
                        reason: stream.refusal().map(|(_, r)| r).unwrap_or_default(),
                    }));
                }
                Ok(Err(_)) => {
                    self.forget(url);
                    continue;
                }
                Err(_) => {
                    stream.reset(ResetCode::Cancelled);
                    return Err(OpenFailure::Timeout);
                }
            }
        }
        Err(OpenFailure::Offline)
    }

    fn forget(&self, url: &str) {
        if let Some(s) = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url)
        {
            s.close();
        }
    }

    /// The peer link to `url`, dialed if there is none.
    async fn peer(&self, url: &str) -> Result<Session, String> {
        if let Some(s) = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .filter(|s| !s.is_closed())
        {
            return Ok(s.clone());
        }
        let session = self.dial(url).await?;
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_owned(), session.clone());
        Ok(session)
    }

    async fn dial(&self, url: &str) -> Result<Session, String> {
        let identity = self
            .identity
            .clone()
            .ok_or("peer links need the gateway's certificate (not --no-tls)")?;
        let parsed = TunnelUrl::parse(url).map_err(|e| e.to_string())?;
        // Raw TLS to the advertised host and port, whatever its scheme.
        let raw =
            TunnelUrl::parse(&format!("tls://{}", parsed.authority)).map_err(|e| e.to_string())?;
        let cfg = client_config(
            Some(identity),
            &ServerTrust::Pinned(self.trusted()),
            "gateway replica",
            "--peer-thumbprint on the replicas, or one certificate for all",
            raw.scheme.alpn(),
        )
        .map_err(|e| e.to_string())?;
        let dialer =
            Dialer::new(raw, Some(cfg), &ProxyEnv::default()).map_err(|e| e.to_string())?;
        let mut link: Link = dialer
            .dial(None, DIAL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            agent_name: self.id.clone(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                capabilities::STREAMS.into(),
                capabilities::OPENED_ACK.into(),
                capabilities::RESET_REASONS.into(),
                capabilities::PEER.into(),
            ],
            credential: String::new(),
        };
        let ack = handshake::dial(&mut link, hello)
            .await
            .map_err(|e| e.to_string())?;
        let config = burrow_mux::Config {
            dialer: true,
            heartbeat: Some(self.heartbeat),
            peer_reads_reasons: ack
                .capabilities
                .iter()
                .any(|c| c == capabilities::RESET_REASONS),
            ..burrow_mux::Config::default()
        };
        let (session, mut incoming) = Session::new(link.reader, link.writer, config);
        info!(event = crate::event::PEER_LINK_UP, %url, replica = capabilities::replica_of(&ack.capabilities).unwrap_or_default(), "peer link up");
        tokio::spawn(async move {
            // The other side opens nothing on it.
            while let Some(e) = incoming.next().await {
                if let burrow_mux::Event::Stream(s) = e {
                    s.reset(ResetCode::NotAllowed);
                }
            }
        });
        Ok(session)
    }
}

impl Remote for Cluster {
    fn open<'a>(&'a self, agent: &'a str, target: &'a str) -> Opening<'a> {
        Box::pin(self.open_remote(agent, target))
    }
}

/// Serves a peer link: each stream is a hop to an agent this replica holds
/// links of, opened on those links only, and counted in `streams`.
pub(crate) async fn serve_peer(
    cluster: Arc<Cluster>,
    links: Arc<Registry>,
    streams: tokio_util::task::TaskTracker,
    mut link: Link,
    hello: Hello,
    heartbeat: Duration,
) {
    let replica = hello.agent_name.clone();
    if !cluster.trusts(link.peer_cert) {
        let presented = link
            .peer_cert
            .map_or_else(|| "no certificate".to_owned(), |t| t.to_string());
        warn!(event = crate::event::PEER_REFUSED, %replica, certificate = %presented, "peer link refused: its certificate is not a trusted replica's (--peer-thumbprint)");
        handshake::reject(
            &mut link,
            Reject {
                code: RejectCode::Unauthorized,
                message: "not a trusted gateway replica: present the gateway's certificate, or one in --peer-thumbprint".into(),
            },
        )
        .await;
        return;
    }
    let caps = vec![
        capabilities::STREAMS.into(),
        capabilities::RESET_REASONS.into(),
        capabilities::replica(&cluster.id),
    ];
    if handshake::ack(&mut link, caps).await.is_err() {
        return;
    }
    let config = burrow_mux::Config {
        dialer: false,
        heartbeat: Some(heartbeat),
        peer_reads_reasons: hello
            .capabilities
            .iter()
            .any(|c| c == capabilities::RESET_REASONS),
        ..burrow_mux::Config::default()
    };
    let (session, mut incoming) = Session::new(link.reader, link.writer, config);
    info!(event = crate::event::PEER_LINK_UP, %replica, "peer link accepted");
    while let Some(e) = incoming.next().await {
        let burrow_mux::Event::Stream(s) = e else {
            continue;
        };
        let links = links.clone();
        // Counted with the gateway's streams: a drain waits for hops too.
        streams.spawn(async move {
            let Some((agent, target)) = s.target().and_then(hop::parse) else {
                s.reset(ResetCode::NotAllowed);
                return;
            };
            let (agent, target) = (agent.to_owned(), target.to_owned());
            match crate::open::open_local(&links, &agent, &target).await {
                Ok(mut inner) => {
                    if s.confirm_opened().await.is_err() {
                        inner.reset(ResetCode::Cancelled);
                        return;
                    }
                    let mut outer = s;
                    let r = tokio::io::copy_bidirectional(&mut outer, &mut inner).await;
                    debug!(%agent, result = ?r, "hop closed");
                }
                Err(f) => {
                    let (code, reason) = match f {
                        OpenFailure::Offline => (
                            ResetCode::Busy,
                            format!("agent {agent} has no live link on this replica"),
                        ),
                        OpenFailure::Reset(r) => (r.code, r.reason),
                        OpenFailure::Timeout => (
                            ResetCode::TimedOut,
                            format!("agent {agent} did not connect in time"),
                        ),
                        OpenFailure::Failed(why) => (ResetCode::Refused, why),
                    };
                    s.reset_because(code, &reason);
                }
            }
        });
    }
    drop(session);
}
