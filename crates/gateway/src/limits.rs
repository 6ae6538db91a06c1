//! Connection caps per listener and per source address: an idle flood on
//! one port (20,000 connections is 400 MB and every file descriptor) is
//! refused at accept, and counted in the log once per interval. And what
//! every accept loop takes: when to stop, where to serve.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::warn;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::shard::Shards;

/// How often refusals at a cap are summed up in the log.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A listener's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections open at once on the listener.
    pub total: usize,
    /// Of those, from one source address.
    pub per_address: usize,
}

/// One listener's count of open connections, in all and per address.
#[derive(Debug)]
pub(crate) struct Limiter {
    what: &'static str,
    caps: Caps,
    total: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    logged_at: Mutex<Option<Instant>>,
}

/// One open connection's place under the caps, given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    ip: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut map = self
            .limiter
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Listener,
    Address,
}

impl Limiter {
    pub(crate) fn new(what: &'static str, caps: Caps) -> Arc<Self> {
        Arc::new(Limiter {
            what,
            caps,
            total: Arc::new(Semaphore::new(caps.total.max(1))),
            per_address: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            logged_at: Mutex::new(None),
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Over> {
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Over::Listener)?;
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.caps.per_address.max(1) {
            return Err(Over::Address);
        }
        *n += 1;
        Ok(Permit {
            limiter: self.clone(),
            ip,
            _total: total,
        })
    }

    /// Counts a refusal; logs the count once per interval.
    fn refused(&self, ip: IpAddr, over: Over) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut at = self.logged_at.lock().unwrap_or_else(|p| p.into_inner());
        if at.is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL) {
            *at = Some(now);
            drop(at);
            let cap = match over {
                Over::Listener => "the listener's",
                Over::Address => "one address's",
            };
            warn!(event = crate::event::CONNECTIONS_CAPPED,
                listener = self.what,
                last_source = %ip,
                refused_total = n,
                max_connections = self.caps.total,
                max_per_address = self.caps.per_address,
                "connections refused at {cap} cap (counted since start)"
            );
        }
    }
}

/// A link's place among the handshakes under way (capped, so a reconnect
/// storm is told to come back instead of swamping the gateway and its
/// database).
pub(crate) enum Slot {
    /// Counted until its hello is done.
    Held(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit),
    /// None was free: refused as busy once its hello is read.
    Busy,
    /// Not counted: links this gateway dials itself.
    Uncounted,
}

/// How long a stopping accept loop waits for one more connection already
/// in the listener's queue before closing it.
const BACKLOG_GRACE: Duration = Duration::from_millis(20);

/// What an accept loop uses of the gateway.
#[derive(Clone)]
pub(crate) struct Accepting {
    /// Cancelled when the gateway stops accepting.
    pub(crate) stop: CancellationToken,
    /// Where connections are served.
    pub(crate) shards: Arc<Shards>,
    /// Tasks waited for while draining.
    pub(crate) streams: TaskTracker,
}

impl Accepting {
    /// Next connection on `listener`, or `None` once the gateway stops
    /// accepting. A failed accept (EMFILE and friends) is logged and
    /// retried after a pause instead of spinning.
    pub(crate) async fn next(
        &self,
        listener: &TcpListener,
        what: &'static str,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            if self.stop.is_cancelled() {
                // Connections the kernel completed before the listener
                // closes are served (and drained), not reset with it.
                return match tokio::time::timeout(BACKLOG_GRACE, listener.accept()).await {
                    Ok(Ok(c)) => Some(c),
                    _ => None,
                };
            }
            tokio::select! {
                _ = self.stop.cancelled() => continue,
                r = listener.accept() => match r {
                    Ok(c) => return Some(c),
                    Err(e) => {
                        warn!(error = %e, listener = what, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// Next connection on `listener` that fits under `limiter`'s caps, or
    /// `None` once the gateway stops accepting. Connections over a cap are
    /// closed at once.
    pub(crate) async fn accept(
        &self,
        listener: &TcpListener,
        limiter: &Arc<Limiter>,
    ) -> Option<(TcpStream, SocketAddr, Permit)> {
        loop {
            let (tcp, peer) = self.next(listener, limiter.what).await?;
            match limiter.admit(peer.ip()) {
                Ok(permit) => return Some((tcp, peer, permit)),
                Err(over) => {
                    limiter.refused(peer.ip(), over);
                    drop(tcp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn caps_hold_per_listener_and_per_address_and_free_on_drop() {
        let l = Limiter::new(
            "test",
            Caps {
                total: 3,
                per_address: 2,
            },
        );
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Over::Address);
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Over::Listener);
        drop(a1);
        let _b2 = l.admit(b).unwrap();
        assert!(l.per_address.lock().unwrap().get(&b) == Some(&2));
    }
}
