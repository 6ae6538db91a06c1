//! The traffic audit trail: every tunneled HTTP request and TCP stream,
//! written off the traffic path. Records go into a bounded queue (never
//! waiting: when it is full the record is counted as dropped, and the log
//! says so); a writer stores them in batches and keeps the table within
//! its retention (age and count). A batch the database refuses (a full
//! disk) is kept and retried, and the log says that, not "queue full";
//! records are lost only to a full queue, or when the gateway stops while
//! the database still refuses them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use burrow_store::{Store, Traffic, now_micros};
use tokio::sync::mpsc;

use crate::metrics::{Active, Kind, Metrics};
use tracing::{debug, info, warn};

/// Most records in one batch: one commit, one block per route in it.
const BATCH: usize = 8_192;

/// Retention and queue size.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Records waiting to be written, at most.
    pub queue: usize,
    /// Records older than this go.
    pub max_age: Duration,
    /// At most this many records are kept.
    pub max_records: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue: 10_000,
            max_age: Duration::from_secs(30 * 86_400),
            max_records: 1_000_000,
        }
    }
}

/// Where the traffic path hands records.
pub(crate) struct Recorder {
    tx: mpsc::Sender<Traffic>,
    dropped: AtomicU64,
    /// Queued and not yet written (or given up on).
    pending: AtomicU64,
}

impl Recorder {
    /// A recorder and the receiving end for [`writer`].
    pub(crate) fn new(queue: usize) -> (Self, mpsc::Receiver<Traffic>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            Recorder {
                tx,
                dropped: AtomicU64::new(0),
                pending: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Queues a record; never waits.
    pub(crate) fn record(&self, t: Traffic) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(t).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most `limit`) until every queued record is written.
    pub(crate) async fn flush(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.pending.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Records queued and not yet written.
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Records dropped so far (queue full, or a failed write).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The audit sink the traffic paths (edge, egress, forwards) record into:
/// a recorder when the gateway has a store, and the metrics when they are
/// enabled; nothing otherwise. Every tunneled stream and request ends
/// here, so this is where traffic is counted.
#[derive(Clone, Default)]
pub(crate) struct AuditSink {
    recorder: Option<Arc<Recorder>>,
    metrics: Option<Arc<Metrics>>,
}

impl AuditSink {
    /// A sink into `recorder`, counted in `metrics`.
    pub(crate) fn new(recorder: Option<Arc<Recorder>>, metrics: Option<Arc<Metrics>>) -> Self {
        AuditSink { recorder, metrics }
    }

    /// Records one tunneled request or stream, without waiting.
    pub(crate) fn record(&self, t: Traffic) {
        if let Some(m) = &self.metrics {
            m.finished(&t);
        }
        if let Some(r) = &self.recorder {
            r.record(t);
        }
    }

    /// A stream of `kind` starts: counted as active while the guard lives.
    pub(crate) fn active(&self, kind: Kind) -> Option<Active> {
        self.metrics.as_ref().map(|m| m.active(kind))
    }

    /// The metrics, when enabled.
    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The recorder, if there is one.
    pub(crate) fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }
}

/// How long the writer lets records gather before writing them: fewer,
/// larger blocks and commits (each commit also rewrites the table's and
/// the index's last pages, and half fills a last overflow page), at the
/// price of this much delay in the trail.
const GATHER: Duration = Duration::from_millis(100);

/// How often the writer empties the queue while records gather, so the
/// queue holds at most this long's records however long the gather is.
const TICK: Duration = Duration::from_millis(10);

/// How long the writer waits before retrying a batch the database refused.
const RETRY: Duration = Duration::from_secs(1);

/// How often retention is applied at the latest. Finding the count cutoff
/// walks the time index, so it is not done per batch.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Writes queued records in batches until the queue closes. Applies
/// retention at start, every [`PRUNE_EVERY`], and whenever a tenth of
/// `max_records` has been written since it last ran.
pub(crate) async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Traffic>,
    recorder: Arc<Recorder>,
    cfg: AuditConfig,
) {
    let mut reported = 0u64;
    // Blocks no larger than the count kept: retention drops whole blocks,
    // and a newest block larger than that would go whole, records and all.
    let cap = usize::try_from(cfg.max_records).map_or(BATCH, |n| n.clamp(1, BATCH));
    let mut batch = Vec::with_capacity(cap);
    let mut next_prune = tokio::time::Instant::now();
    let mut since_prune = 0i64;
    let prune_after = (cfg.max_records / 10).max(1);
    let mut failing: Option<tokio::time::Instant> = None;
    loop {
        if tokio::time::Instant::now() >= next_prune {
            prune(&store, &cfg).await;
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
            since_prune = 0;
        }
        let first = match tokio::time::timeout_at(next_prune, rx.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(_) => continue,
        };
        batch.push(first);
        // Let records gather, waking every tick (not for each record) to
        // take what came, until the gather ends or the batch is full.
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < cap && tokio::time::Instant::now() < until {
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + TICK)).await;
            while batch.len() < cap {
                match rx.try_recv() {
                    Ok(t) => batch.push(t),
                    Err(_) => break,
                }
            }
        }
        if !write(&store, &batch, &mut rx, &mut failing).await {
            recorder
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            warn!(
                records = batch.len(),
                "traffic audit records lost: the gateway stopped while the database refused them"
            );
        }
        since_prune += i64::try_from(batch.len()).unwrap_or(i64::MAX);
        if since_prune >= prune_after {
            prune(&store, &cfg).await;
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
            since_prune = 0;
        }
        recorder
            .pending
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
        let dropped = recorder.dropped();
        if dropped > reported {
            warn!(
                event = crate::event::AUDIT_QUEUE_FULL,
                dropped_total = dropped,
                dropped_now = dropped - reported,
                "traffic audit queue full: records dropped (traffic was not slowed)"
            );
            reported = dropped;
        }
    }
}

/// Writes one batch, retrying every [`RETRY`] while the database refuses
/// it (records keep queueing meanwhile). The first refusal of a streak is
/// logged, and its end. False if the queue closed (the gateway is
/// stopping) while the database still refused the batch.
async fn write(
    store: &Store,
    batch: &[Traffic],
    rx: &mut mpsc::Receiver<Traffic>,
    failing: &mut Option<tokio::time::Instant>,
) -> bool {
    loop {
        match store.insert_traffic(batch).await {
            Ok(()) => {
                if let Some(since) = failing.take() {
                    info!(
                        event = crate::event::AUDIT_WRITES_RESUMED,
                        after_s = since.elapsed().as_secs(),
                        "traffic audit writes resumed"
                    );
                }
                return true;
            }
            Err(e) => {
                if failing.is_none() {
                    warn!(event = crate::event::AUDIT_WRITES_FAILING,
                        error = %e,
                        records = batch.len(),
                        "traffic audit records not written: kept in memory and retried every second"
                    );
                    *failing = Some(tokio::time::Instant::now());
                }
                if rx.is_closed() {
                    return false;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Applies retention: age, then count.
async fn prune(store: &Store, cfg: &AuditConfig) {
    let max_age = i64::try_from(cfg.max_age.as_micros()).unwrap_or(i64::MAX);
    match store
        .prune_traffic(now_micros().saturating_sub(max_age), cfg.max_records)
        .await
    {
        Ok(0) => {}
        Ok(n) => debug!(records = n, "traffic audit pruned"),
        Err(e) => debug!(error = %e, "traffic audit not pruned"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_count_limit_keeps_the_newest_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_in(dir.path()).await.expect("store");
        let (r, rx) = Recorder::new(100);
        let r = Arc::new(r);
        // Eight records waiting at once, as a burst within one gather.
        for i in 0..8 {
            r.record(Traffic {
                at: now_micros() + i,
                kind: burrow_store::TrafficKind::Http,
                path: format!("/n{i}"),
                ..Traffic::default()
            });
        }
        let cfg = AuditConfig {
            max_records: 3,
            ..AuditConfig::default()
        };
        let task = tokio::spawn(writer(store.clone(), rx, r.clone(), cfg));
        r.flush(Duration::from_secs(10)).await;
        let kept = store
            .traffic(&burrow_store::TrafficFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("lists");
        let paths: Vec<&str> = kept.iter().map(|t| t.path.as_str()).collect();
        assert!(
            (1..=3).contains(&paths.len()) && paths[0] == "/n7",
            "{paths:?}"
        );
        task.abort();
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (r, _rx) = Recorder::new(2);
        for _ in 0..5 {
            r.record(Traffic::default());
        }
        assert_eq!(r.dropped(), 3);
    }
}
