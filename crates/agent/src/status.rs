//! What each link is doing, for whoever shows it (the web UI's dashboard):
//! its state, the last failure and next retry, its session's round trip,
//! streams and bytes, and the gateway it reached.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use burrow_mux::Session;
use burrow_rpc::Rpc;
use serde::Serialize;
use tokio::sync::watch;

/// A link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Getting a token, connecting, upgrading.
    Connecting,
    /// Connected; the hello is under way.
    Authenticating,
    /// Up.
    Connected,
    /// Down, waiting to redial.
    Reconnecting,
}

/// One link as shown.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    /// Which link (0-based).
    pub index: usize,
    /// What it is doing.
    pub state: LinkState,
    /// Since when (µs since the epoch).
    pub since: i64,
    /// Why the last dial or link failed.
    pub last_failure: Option<String>,
    /// When the next dial is due, while reconnecting (µs since the epoch).
    pub next_retry_at: Option<i64>,
    /// Times it came up after the first.
    pub reconnects: u64,
    /// The gateway's software version, once connected.
    pub gateway_version: Option<String>,
    /// The gateway certificate's SHA-1 thumbprint, once connected over TLS.
    pub gateway_thumbprint: Option<String>,
    /// The gateway replica it is connected to, when the gateway says.
    pub gateway_replica: Option<String>,
    /// Smoothed heartbeat round trip, once measured.
    pub rtt_ms: Option<f64>,
    /// Streams open on it now.
    pub open_streams: usize,
    /// Stream bytes received from the gateway, over every session.
    pub bytes_in: u64,
    /// Stream bytes sent to the gateway, over every session.
    pub bytes_out: u64,
}

struct Slot {
    shown: LinkStatus,
    ups: u64,
    session: Option<(Session, Rpc)>,
    /// Bytes of sessions that ended.
    before: (u64, u64),
}

/// Every link's status; a change bumps a counter watchers wait on.
pub(crate) struct Links {
    slots: Mutex<Vec<Slot>>,
    changed: watch::Sender<u64>,
}

pub(crate) fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Links {
    pub(crate) fn new(n: usize) -> Links {
        let now = micros(SystemTime::now());
        Links {
            slots: Mutex::new(
                (0..n)
                    .map(|index| Slot {
                        shown: LinkStatus {
                            index,
                            state: LinkState::Connecting,
                            since: now,
                            last_failure: None,
                            next_retry_at: None,
                            reconnects: 0,
                            gateway_version: None,
                            gateway_thumbprint: None,
                            gateway_replica: None,
                            rtt_ms: None,
                            open_streams: 0,
                            bytes_in: 0,
                            bytes_out: 0,
                        },
                        ups: 0,
                        session: None,
                        before: (0, 0),
                    })
                    .collect(),
            ),
            changed: watch::channel(0).0,
        }
    }

    fn with(&self, idx: usize, f: impl FnOnce(&mut Slot)) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let Some(slot) = slots.get_mut(idx) else {
                return;
            };
            f(slot);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn set_state(slot: &mut Slot, state: LinkState) {
        if slot.shown.state != state {
            slot.shown.state = state;
            slot.shown.since = micros(SystemTime::now());
        }
    }

    pub(crate) fn connecting(&self, idx: usize) {
        self.with(idx, |s| {
            Self::set_state(s, LinkState::Connecting);
            s.shown.next_retry_at = None;
        });
    }

    pub(crate) fn authenticating(&self, idx: usize) {
        self.with(idx, |s| Self::set_state(s, LinkState::Authenticating));
    }

    pub(crate) fn up(
        &self,
        idx: usize,
        session: &Session,
        rpc: &Rpc,
        version: &str,
        thumb: Option<String>,
        replica: Option<&str>,
    ) {
        self.with(idx, |s| {
            Self::set_state(s, LinkState::Connected);
            s.shown.gateway_replica = replica.map(str::to_owned);
            s.ups += 1;
            s.shown.reconnects = s.ups - 1;
            s.shown.last_failure = None;
            s.shown.gateway_version = Some(version.to_owned());
            s.shown.gateway_thumbprint = thumb;
            s.session = Some((session.clone(), rpc.clone()));
        });
    }

    /// The link (or its dial) failed; the next dial is in `retry`.
    pub(crate) fn failed(&self, idx: usize, why: &str, retry: Duration) {
        self.with(idx, |s| {
            if let Some((session, _)) = s.session.take() {
                let (i, o) = session.bytes();
                s.before = (s.before.0 + i, s.before.1 + o);
            }
            Self::set_state(s, LinkState::Reconnecting);
            s.shown.last_failure = Some(why.to_owned());
            s.shown.next_retry_at = Some(micros(SystemTime::now() + retry));
        });
    }

    /// Every link, with its session's live figures.
    pub(crate) fn snapshot(&self) -> Vec<LinkStatus> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|s| {
                let mut shown = s.shown.clone();
                let (mut i, mut o) = s.before;
                if let Some((session, _)) = &s.session {
                    let (si, so) = session.bytes();
                    i += si;
                    o += so;
                    shown.open_streams = session.stream_count();
                    shown.rtt_ms = session.rtt().map(|d| d.as_secs_f64() * 1000.0);
                }
                shown.bytes_in = i;
                shown.bytes_out = o;
                shown
            })
            .collect()
    }

    /// Requests to the gateway on a live link that answers them.
    pub(crate) fn gateway(&self) -> Option<Rpc> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter_map(|s| s.session.as_ref())
            .find(|(session, rpc)| !session.is_closed() && rpc.peer_answers())
            .map(|(_, rpc)| rpc.clone())
    }

    /// Waits for a change.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
