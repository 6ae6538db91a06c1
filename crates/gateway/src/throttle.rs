//! Credential failures, slowed down and counted per source address: the
//! one policy every credential check (admin API keys, the token endpoint,
//! the tunnel endpoint's pre-shared key and access tokens, the egress
//! proxy's credentials) goes through.
//!
//! Each address has a bucket of [`BURST`] attempts that refills at
//! [`REFILL_PER_SECOND`] (a generic cell rate: one "theoretical arrival
//! time" per address). Every attempt takes a slot while it is checked, and
//! a success gives it back, so only failures (and guesses in flight) use
//! the bucket up. While it has room, attempts go straight through. Once it
//! is empty, an attempt from that address waits for the next refill before
//! it is checked at all, up to [`MAX_WAIT`]; past that it is refused at
//! once. A valid client behind the same address is slowed, not locked
//! out, and clients of other addresses are not touched.
//!
//! Failures are logged as a rate: the first from an address in each
//! [`LOG_INTERVAL`] at once (with its reason), the rest as one line with
//! their count when the interval is over; each of those lines is also a
//! record of kind `auth` in the audit trail (the address, the check, the
//! count and the last reason), so a guessing run is a few records, not
//! one per guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use tracing::warn;

use crate::traffic::AuditSink;

/// Failures an address may have before its attempts wait.
pub(crate) const BURST: u32 = 20;
/// Failures per second an address may sustain.
pub(crate) const REFILL_PER_SECOND: u32 = 2;
/// Longest an attempt waits for its turn; beyond it, it is refused.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);
/// How often failures from one address are summed up in the log.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Addresses tracked at most; beyond it, idle ones are dropped first.
const MAX_TRACKED: usize = 50_000;

#[derive(Debug)]
struct Source {
    /// When the bucket is full again (the theoretical arrival time).
    tat: Instant,
    /// Failures not yet logged, and the last one's reason.
    unlogged: u64,
    last_reason: String,
    /// When the current log interval started, if one has.
    logged_at: Option<Instant>,
}

/// One credential check's throttle (its name is in the log lines).
pub(crate) struct Throttle {
    what: &'static str,
    /// Its label in `burrow_auth_failures_total`.
    check: &'static str,
    sources: Mutex<HashMap<IpAddr, Source>>,
    audit: AuditSink,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

/// An attempt allowed through: say how it went.
#[derive(Debug)]
#[must_use = "report the attempt's outcome with failed() or succeeded()"]
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    ip: IpAddr,
}

/// Too many failures from this address: try again in this many seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused(pub(crate) u64);

fn interval() -> Duration {
    Duration::from_secs(1) / REFILL_PER_SECOND
}

impl Throttle {
    pub(crate) fn new(what: &'static str, check: &'static str, audit: AuditSink) -> Self {
        Throttle {
            what,
            check,
            sources: Mutex::new(HashMap::new()),
            audit,
        }
    }

    /// The audit record of `n` failures from `ip`, the last for `reason`.
    fn audit(&self, ip: IpAddr, n: u64, reason: &str) {
        self.audit.record(burrow_store::Traffic {
            at: burrow_store::now_micros(),
            kind: burrow_store::TrafficKind::Auth,
            client: ip.to_string(),
            target: self.what.to_owned(),
            error: reason.to_owned(),
            failures: i64::try_from(n).unwrap_or(i64::MAX),
            ..burrow_store::Traffic::default()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for `ip`'s turn, or refuses it when the wait would be too long.
    /// Every attempt takes a slot until it is known to have succeeded, so
    /// guesses sent all at once count as much as guesses one by one.
    pub(crate) async fn attempt(&self, ip: IpAddr) -> Result<Attempt<'_>, Refused> {
        let wait = {
            let now = Instant::now();
            let mut map = self.lock();
            if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
                // Full buckets with nothing to log hold no information.
                map.retain(|_, s| s.tat > now || s.unlogged > 0);
                if map.len() >= MAX_TRACKED {
                    map.clear();
                }
            }
            let s = map.entry(ip).or_insert_with(|| Source {
                tat: now,
                unlogged: 0,
                last_reason: String::new(),
                logged_at: None,
            });
            let tolerance = interval() * (BURST - 1);
            let free_from = s.tat.checked_sub(tolerance).unwrap_or(now);
            let wait = free_from.saturating_duration_since(now);
            if wait > MAX_WAIT {
                return Err(Refused(wait.as_secs().max(1)));
            }
            s.tat = s.tat.max(now) + interval();
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(Attempt { throttle: self, ip })
    }

    fn record_failure(&self, ip: IpAddr, reason: &str) {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(s) = map.get_mut(&ip) else {
            return;
        };
        let fresh = s
            .logged_at
            .is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL);
        if fresh {
            let earlier = std::mem::take(&mut s.unlogged);
            s.logged_at = Some(now);
            let last = std::mem::take(&mut s.last_reason);
            drop(map);
            if earlier > 0 {
                warn!(event = crate::event::CREDENTIAL_FAILURES, check = self.what, source = %ip, failures = earlier, interval_seconds = LOG_INTERVAL.as_secs(), "credential failures from one address");
                self.audit(ip, earlier, &last);
            }
            warn!(event = crate::event::CREDENTIAL_REFUSED, check = self.what, source = %ip, %reason, "credential refused");
            self.audit(ip, 1, reason);
        } else {
            s.unlogged += 1;
            reason.clone_into(&mut s.last_reason);
        }
    }

    fn give_back(&self, ip: IpAddr) {
        if let Some(s) = self.lock().get_mut(&ip) {
            s.tat = s.tat.checked_sub(interval()).unwrap_or(s.tat);
        }
    }

    /// Writes the counts of failures not yet logged whose interval is over.
    pub(crate) fn flush(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut map = self.lock();
            for (ip, s) in map.iter_mut() {
                let over = s
                    .logged_at
                    .is_some_and(|t| now.duration_since(t) >= LOG_INTERVAL);
                if over && s.unlogged > 0 {
                    due.push((*ip, s.unlogged, std::mem::take(&mut s.last_reason)));
                    s.unlogged = 0;
                    s.logged_at = Some(now);
                }
            }
            map.retain(|_, s| s.tat > now || s.unlogged > 0);
        }
        for (ip, n, reason) in due {
            warn!(event = crate::event::CREDENTIAL_FAILURES, check = self.what, source = %ip, failures = n, interval_seconds = LOG_INTERVAL.as_secs(), last_reason = %reason, "credential failures from one address");
            self.audit(ip, n, &reason);
        }
    }
}

impl Attempt<'_> {
    /// The credential was wrong: counts against the address, logged as a
    /// rate.
    pub(crate) fn failed(self, reason: &str) {
        if let Some(m) = self.throttle.audit.metrics() {
            m.auth_failed(self.throttle.check);
        }
        self.throttle.record_failure(self.ip, reason);
    }

    /// The credential was right: its slot is given back.
    pub(crate) fn succeeded(self) {
        self.throttle.give_back(self.ip);
    }
}

/// The throttles of the gateway's credential checks.
#[derive(Debug)]
pub(crate) struct Throttles {
    /// Admin API keys.
    pub(crate) admin: Throttle,
    /// Client assertions at the token endpoint.
    pub(crate) token: Throttle,
    /// Pre-shared keys, access tokens and certificates of agent links.
    pub(crate) tunnel: Throttle,
    /// The egress proxy's client credentials.
    pub(crate) proxy: Throttle,
}

impl Throttles {
    /// The four throttles, their counts recorded in `audit`.
    pub(crate) fn new(audit: &AuditSink) -> Self {
        Throttles {
            admin: Throttle::new("admin API key", "admin", audit.clone()),
            token: Throttle::new("client assertion", "token", audit.clone()),
            tunnel: Throttle::new("agent link", "tunnel", audit.clone()),
            proxy: Throttle::new("proxy credentials", "proxy", audit.clone()),
        }
    }

    /// Logs pending failure counts every [`LOG_INTERVAL`], until `stop`.
    pub(crate) async fn report(&self, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(LOG_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for t in [&self.admin, &self.token, &self.tunnel, &self.proxy] {
                t.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test(start_paused = true)]
    async fn failures_past_the_burst_wait_then_are_refused_and_others_are_untouched() {
        let t = Throttle::new("test", "test", AuditSink::default());
        let start = tokio::time::Instant::now();
        for _ in 0..BURST {
            t.attempt(A).await.unwrap().failed("wrong");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes through");
        // The next waits for a refill.
        t.attempt(A).await.unwrap().failed("wrong");
        assert!(start.elapsed() >= interval() / 2, "{:?}", start.elapsed());
        // Another address is not slowed.
        let before = tokio::time::Instant::now();
        t.attempt(B).await.unwrap().succeeded();
        assert_eq!(before.elapsed(), Duration::ZERO);
        // Attempts queued at once beyond MAX_WAIT are refused at once.
        let n = MAX_WAIT.as_secs() as u32 * REFILL_PER_SECOND + 5;
        let all = futures_util::future::join_all((0..n).map(|_| t.attempt(A))).await;
        let mut refused = 0;
        for r in all {
            match r {
                Ok(a) => a.failed("wrong"),
                Err(Refused(s)) => {
                    assert!(s >= 1);
                    refused += 1;
                }
            }
        }
        assert!(refused >= 4, "{refused}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_valid_client_behind_a_busy_address_is_slowed_not_locked_out() {
        let t = Throttle::new("test", "test", AuditSink::default());
        for _ in 0..BURST * 2 {
            if let Ok(a) = t.attempt(A).await {
                a.failed("wrong");
            }
        }
        let before = tokio::time::Instant::now();
        let a = t.attempt(A).await.unwrap();
        assert!(before.elapsed() <= MAX_WAIT);
        a.succeeded();
        // And the bucket refills: after a quiet while, no wait at all.
        tokio::time::sleep(interval() * BURST * 3).await;
        let before = tokio::time::Instant::now();
        t.attempt(A).await.unwrap().succeeded();
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_logged_once_per_interval_with_a_count() {
        let t = Throttle::new("test", "test", AuditSink::default());
        for _ in 0..5 {
            t.attempt(A).await.unwrap().failed("wrong");
        }
        {
            let map = t.lock();
            let s = map.get(&A).unwrap();
            assert_eq!(s.unlogged, 4, "one logged at once, four counted");
        }
        tokio::time::sleep(LOG_INTERVAL).await;
        t.flush();
        assert_eq!(t.lock().get(&A).map_or(0, |s| s.unlogged), 0);
    }
}
