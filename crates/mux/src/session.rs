//! The session: stream table, reader task, writer task.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burrow_wire::{Frame, ResetCode};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use crate::stream::{MuxStream, OpenedWatch, StreamShared};
use crate::{Config, MISSED_HEARTBEATS, MuxError};

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// This side closed it ([`Session::close`] or every handle dropped).
    Local,
    /// The peer closed the carrier.
    PeerClosed,
    /// Nothing arrived for [`MISSED_HEARTBEATS`] heartbeat intervals.
    HeartbeatTimeout,
    /// A stream's open went unanswered and so did a ping sent after it
    /// ([`Session::answered`]): the link is dead, though heartbeats have not
    /// noticed yet.
    NoAnswer,
    /// The peer broke the protocol; the text says how.
    Protocol(String),
    /// The carrier failed.
    Io(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::HeartbeatTimeout => write!(
                f,
                "no heartbeat from peer for {MISSED_HEARTBEATS} intervals"
            ),
            CloseReason::NoAnswer => {
                f.write_str("the peer answered neither a stream's open nor a ping after it")
            }
            CloseReason::Protocol(why) => write!(f, "protocol violation: {why}"),
            CloseReason::Io(why) => write!(f, "i/o error: {why}"),
        }
    }
}

pub(crate) struct Table {
    pub(crate) streams: HashMap<u32, Arc<StreamShared>>,
    pub(crate) closed: Option<CloseReason>,
    next_id: u32,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    table: Mutex<Table>,
    pub(crate) data_tx: mpsc::Sender<Frame>,
    control: Mutex<VecDeque<Frame>>,
    control_notify: Notify,
    pub(crate) cancel: CancellationToken,
    /// Set when the writer task has ended (queued frames sent or given up).
    writer_done: CancellationToken,
    /// Pings in flight and the round trip they measured.
    pings: Mutex<Pings>,
    /// Stream payload bytes received and sent on the session.
    pub(crate) bytes_in: std::sync::atomic::AtomicU64,
    pub(crate) bytes_out: std::sync::atomic::AtomicU64,
}

/// Probe nonces have the top bit set; heartbeat nonces count from 1.
const PROBE_BIT: u64 = 1 << 63;

/// Shortest and (without heartbeats) longest wait for a probe's answer.
const PROBE_MIN: Duration = Duration::from_millis(500);
const PROBE_NO_HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pings {
    /// The last heartbeat ping: nonce and when it was sent.
    heartbeat: Option<(u64, Instant)>,
    /// Probes waiting for their pong.
    probes: HashMap<u64, tokio::sync::oneshot::Sender<()>>,
    next_probe: u64,
    /// Smoothed round trip (RFC 6298's 1/8 gain), once measured.
    srtt: Option<Duration>,
}

impl Pings {
    fn measured(&mut self, rtt: Duration) {
        self.srtt = Some(match self.srtt {
            Some(s) => (s * 7 + rtt) / 8,
            None => rtt,
        });
    }
}

/// Poisoning only follows a panic elsewhere; the state under these locks is
/// kept consistent at every unlock, so carrying on is sound.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// The reset frame for `stream_id`: with the finer code and the words
    /// only if the peer reads them.
    pub(crate) fn reset_frame(&self, stream_id: u32, code: ResetCode, reason: &str) -> Frame {
        if self.config.peer_reads_reasons {
            Frame::Reset {
                stream_id,
                code,
                reason: reason.to_owned(),
            }
        } else {
            Frame::Reset {
                stream_id,
                code: code.legacy(),
                reason: String::new(),
            }
        }
    }

    /// Queues a link-level frame that must not wait behind data (window,
    /// reset, pong). Bounded by the caller's limits: one window update per
    /// half-window consumed, one reset per stream, one pong per ping.
    pub(crate) fn push_control(&self, frame: Frame) {
        lock(&self.control).push_back(frame);
        self.control_notify.notify_one();
    }

    pub(crate) fn remove(&self, id: u32) {
        self.table().streams.remove(&id);
    }

    pub(crate) fn close_reason(&self) -> CloseReason {
        self.table().closed.clone().unwrap_or(CloseReason::Local)
    }

    /// How long a probe waits for its pong: four smoothed round trips, at
    /// least [`PROBE_MIN`], at most one heartbeat interval (one interval
    /// until a round trip has been measured).
    fn probe_bound(&self) -> Duration {
        let hb = self.config.heartbeat.unwrap_or(PROBE_NO_HEARTBEAT);
        match lock(&self.pings).srtt {
            Some(rtt) => (rtt * 4).clamp(PROBE_MIN.min(hb), hb),
            None => hb,
        }
    }

    fn on_pong(&self, nonce: u64) {
        let mut p = lock(&self.pings);
        if nonce & PROBE_BIT != 0 {
            if let Some(tx) = p.probes.remove(&nonce) {
                let _ = tx.send(());
            }
        } else if let Some((n, at)) = p.heartbeat
            && n == nonce
        {
            p.heartbeat = None;
            p.measured(at.elapsed());
        }
    }

    /// Ends the session: every stream sees `LinkLost`, the tasks stop.
    pub(crate) fn close(&self, reason: CloseReason) {
        let streams: Vec<_> = {
            let mut t = self.table();
            if t.closed.is_none() {
                t.closed = Some(reason);
            }
            t.streams.drain().map(|(_, s)| s).collect()
        };
        for s in streams {
            s.on_reset(ResetCode::LinkLost);
        }
        self.cancel.cancel();
    }
}

/// One multiplexed link. Cheap to clone; the session closes when
/// [`Session::close`] is called, the carrier fails, or every clone is dropped.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

/// Streams (and control messages) the peer opens towards this side.
pub struct Incoming {
    streams: mpsc::Receiver<MuxStream>,
    control: mpsc::Receiver<(u16, Bytes)>,
}

impl Incoming {
    /// Next stream the peer opened, or `None` once the session is closed.
    pub async fn accept(&mut self) -> Option<MuxStream> {
        self.streams.recv().await
    }

    /// Next control message the peer sent, or `None` once closed.
    pub async fn control(&mut self) -> Option<(u16, Bytes)> {
        self.control.recv().await
    }

    /// Next stream or control message, whichever comes first; `None` once
    /// the session is closed.
    pub async fn next(&mut self) -> Option<Event> {
        tokio::select! {
            s = self.streams.recv() => s.map(Event::Stream),
            c = self.control.recv() => c.map(|(kind, body)| Event::Control(kind, body)),
        }
    }
}

/// What the peer sent: a stream or a control message.
pub enum Event {
    /// A stream it opened.
    Stream(MuxStream),
    /// A control message: kind and body.
    Control(u16, Bytes),
}

impl Session {
    /// Starts a session over a carrier and spawns its reader and writer
    /// tasks on the current tokio runtime.
    ///
    /// The carrier's `Stream` must be cancel-safe in `next()` (WebSocket and
    /// `FramedRead` streams are). An error of kind `InvalidData` from it is
    /// reported as a protocol violation.
    pub fn new<R, W>(reader: R, writer: W, config: Config) -> (Session, Incoming)
    where
        R: Stream<Item = io::Result<Frame>> + Send + Unpin + 'static,
        W: Sink<Frame, Error = io::Error> + Send + Unpin + 'static,
    {
        let (data_tx, data_rx) = mpsc::channel(config.write_queue.max(1));
        let (accept_tx, accept_rx) = mpsc::channel(config.accept_backlog.max(1));
        let (control_tx, control_rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                streams: HashMap::new(),
                closed: None,
                next_id: if config.dialer { 2 } else { 1 },
            }),
            config,
            data_tx,
            control: Mutex::new(VecDeque::new()),
            control_notify: Notify::new(),
            cancel: cancel.clone(),
            writer_done: CancellationToken::new(),
            pings: Mutex::new(Pings::default()),
            bytes_in: std::sync::atomic::AtomicU64::new(0),
            bytes_out: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(read_loop(shared.clone(), reader, accept_tx, control_tx));
        tokio::spawn(write_loop(shared.clone(), writer, data_rx));
        let session = Session {
            shared,
            _guard: Arc::new(cancel.drop_guard()),
        };
        (
            session,
            Incoming {
                streams: accept_rx,
                control: control_rx,
            },
        )
    }

    /// Opens a stream to `target` on the peer. Returns at once: the open
    /// frame is queued, and bytes may be written before the peer has
    /// connected. A refusal arrives as a reset on the stream.
    pub async fn open(&self, target: &str) -> Result<MuxStream, MuxError> {
        self.open_inner(target, false).await
    }

    /// Like [`Session::open`], but asks the peer to confirm the connection,
    /// so [`MuxStream::opened`] resolves as soon as the target is connected.
    pub async fn open_with_ack(&self, target: &str) -> Result<MuxStream, MuxError> {
        self.open_inner(target, true).await
    }

    async fn open_inner(&self, target: &str, ack: bool) -> Result<MuxStream, MuxError> {
        let stream = {
            let mut t = self.shared.table();
            if let Some(reason) = &t.closed {
                return Err(MuxError::Closed(reason.clone()));
            }
            if t.streams.len() >= self.shared.config.max_streams {
                return Err(MuxError::TooManyStreams(self.shared.config.max_streams));
            }
            let id = t.next_id;
            t.next_id = id.checked_add(2).ok_or(MuxError::IdsExhausted)?;
            let s = Arc::new(StreamShared::new(id, self.shared.config.initial_window));
            t.streams.insert(id, s.clone());
            MuxStream::new(s, self.shared.clone(), None, false)
        };
        let frame = Frame::Open {
            stream_id: stream.id(),
            ack,
            target: target.to_owned(),
        };
        self.shared
            .data_tx
            .send(frame)
            .await
            .map_err(|_| MuxError::Closed(self.shared.close_reason()))?;
        Ok(stream)
    }

    /// Sends a control message (for features layered on the link).
    pub async fn send_control(&self, kind: u16, body: Bytes) -> Result<(), MuxError> {
        self.shared
            .data_tx
            .send(Frame::Control { kind, body })
            .await
            .map_err(|_| MuxError::Closed(self.shared.close_reason()))
    }

    /// Closes the session; open streams see a reset.
    pub fn close(&self) {
        self.shared.close(CloseReason::Local);
    }

    /// Has the session ended?
    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Waits until the session has ended and its writer has sent what was
    /// queued (bounded: a peer that stopped reading is given up on after a
    /// second), and says why it ended. A process may exit once this returns
    /// without losing a final `Fin`.
    pub async fn closed(&self) -> CloseReason {
        self.shared.cancel.cancelled().await;
        self.shared.writer_done.cancelled().await;
        self.shared.close_reason()
    }

    /// Waits until the peer answers `stream`'s open, as
    /// [`MuxStream::opened`] does, but does not wait on a dead link: if no
    /// answer comes within a few round trips (at most one heartbeat
    /// interval), a ping is sent, and if that goes unanswered for as long
    /// again, the session is closed ([`CloseReason::NoAnswer`]) and
    /// `Closed` returned, so the caller can use another link now instead of
    /// after heartbeats notice. An answering link with a slow target is
    /// waited on; bound the whole wait with a timeout.
    pub async fn answered(&self, stream: &MuxStream) -> Result<(), MuxError> {
        self.answered_watch(&stream.opened_watch()).await
    }

    /// As [`Session::answered`], for a stream another task holds.
    pub async fn answered_watch(&self, watch: &OpenedWatch) -> Result<(), MuxError> {
        let bound = self.shared.probe_bound();
        let opened = watch.opened();
        tokio::pin!(opened);
        if let Ok(r) = tokio::time::timeout(bound, &mut opened).await {
            return r;
        }
        tokio::select! {
            r = &mut opened => r,
            alive = self.probe(bound) => {
                if alive {
                    opened.await
                } else {
                    self.shared.close(CloseReason::NoAnswer);
                    Err(MuxError::Closed(self.shared.close_reason()))
                }
            }
        }
    }

    /// Pings the peer; whether the pong came within `within`.
    async fn probe(&self, within: Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let nonce = {
            let mut p = lock(&self.shared.pings);
            p.next_probe = p.next_probe.wrapping_add(1);
            let nonce = PROBE_BIT | p.next_probe;
            p.probes.insert(nonce, tx);
            nonce
        };
        let sent = Instant::now();
        self.shared.push_control(Frame::Ping { nonce });
        let ok = matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())));
        let mut p = lock(&self.shared.pings);
        p.probes.remove(&nonce);
        if ok {
            p.measured(sent.elapsed());
        }
        ok
    }

    /// Streams open right now.
    pub fn stream_count(&self) -> usize {
        self.shared.table().streams.len()
    }

    /// The smoothed heartbeat round trip, once one was measured.
    pub fn rtt(&self) -> Option<Duration> {
        lock(&self.shared.pings).srtt
    }

    /// Stream payload bytes (received, sent) on the session so far.
    pub fn bytes(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.shared.bytes_in.load(Relaxed),
            self.shared.bytes_out.load(Relaxed),
        )
    }
}

/// How long a closing session may take to send what it has queued.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest the control queue may grow before the peer is judged not to be
/// reading (it keeps pinging or resetting while refusing our writes).
fn control_limit(config: &Config) -> usize {
    config.max_streams * 2 + 1024
}

async fn read_loop<R>(
    shared: Arc<Shared>,
    mut reader: R,
    accept_tx: mpsc::Sender<MuxStream>,
    control_tx: mpsc::Sender<(u16, Bytes)>,
) where
    R: Stream<Item = io::Result<Frame>> + Unpin,
{
    let hb = shared.config.heartbeat;
    let mut ticker = tokio::time::interval(hb.unwrap_or(std::time::Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is now: one ping at the start measures the round trip
    // that bounds [`Session::answered`]'s probes from the first stream on.
    // Dead once silent for MISSED_HEARTBEATS intervals, to the instant: the
    // deadline is re-armed lazily (when it fires early because frames came
    // since), not on every frame.
    let dead_after = hb.unwrap_or_default() * MISSED_HEARTBEATS;
    let mut last_seen = Instant::now();
    let deadline = tokio::time::sleep_until(last_seen + dead_after);
    tokio::pin!(deadline);
    let mut nonce = 0u64;
    let reason = loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break CloseReason::Local,
            item = reader.next() => match item {
                None => break CloseReason::PeerClosed,
                Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    break CloseReason::Protocol(e.to_string())
                }
                Some(Err(e)) => break CloseReason::Io(e.to_string()),
                Some(Ok(frame)) => {
                    last_seen = Instant::now();
                    if let Err(reason) = on_frame(&shared, frame, &accept_tx, &control_tx) {
                        break reason;
                    }
                }
            },
            () = &mut deadline, if hb.is_some() => {
                let due = last_seen + dead_after;
                if Instant::now() >= due {
                    break CloseReason::HeartbeatTimeout;
                }
                deadline.as_mut().reset(due);
            }
            _ = ticker.tick(), if hb.is_some() => {
                nonce = nonce.wrapping_add(1) & !PROBE_BIT;
                lock(&shared.pings).heartbeat = Some((nonce, Instant::now()));
                shared.push_control(Frame::Ping { nonce });
            }
        }
    };
    debug!(%reason, "session reader stopped");
    shared.close(reason);
}

fn protocol(why: String) -> Result<(), CloseReason> {
    Err(CloseReason::Protocol(why))
}

fn on_frame(
    shared: &Arc<Shared>,
    frame: Frame,
    accept_tx: &mpsc::Sender<MuxStream>,
    control_tx: &mpsc::Sender<(u16, Bytes)>,
) -> Result<(), CloseReason> {
    let find = |id: u32| shared.table().streams.get(&id).cloned();
    match frame {
        Frame::Data { stream_id, payload } => {
            shared
                .bytes_in
                .fetch_add(payload.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if let Some(s) = find(stream_id) {
                s.on_data(payload)
                    .or_else(|why| protocol(format!("stream {stream_id}: {why}")))?;
            }
        }
        Frame::Window {
            stream_id,
            increment,
        } => {
            if let Some(s) = find(stream_id) {
                s.on_window(increment)
                    .or_else(|why| protocol(format!("stream {stream_id}: {why}")))?;
            }
        }
        Frame::Fin { stream_id } => {
            if let Some(s) = find(stream_id) {
                s.on_fin();
            }
        }
        Frame::Opened { stream_id } => {
            if let Some(s) = find(stream_id) {
                s.on_opened();
            }
        }
        Frame::Reset {
            stream_id,
            code,
            reason,
        } => {
            let s = shared.table().streams.remove(&stream_id);
            if let Some(s) = s {
                s.on_peer_reset(code, reason);
            }
        }
        Frame::Open {
            stream_id,
            ack,
            target,
        } => {
            let peer_parity = if shared.config.dialer { 1 } else { 0 };
            if stream_id % 2 != peer_parity {
                return protocol(format!("peer opened stream {stream_id} with our parity"));
            }
            let stream = {
                let mut t = shared.table();
                if t.streams.contains_key(&stream_id) {
                    return protocol(format!("peer reopened live stream {stream_id}"));
                }
                if t.streams.len() >= shared.config.max_streams {
                    None
                } else {
                    let s = Arc::new(StreamShared::new(stream_id, shared.config.initial_window));
                    t.streams.insert(stream_id, s.clone());
                    Some(s)
                }
            };
            let Some(s) = stream else {
                warn!(
                    stream_id,
                    limit = shared.config.max_streams,
                    "refusing stream: at stream limit"
                );
                shared.push_control(shared.reset_frame(stream_id, ResetCode::Busy, ""));
                return Ok(());
            };
            let stream = MuxStream::new(s, shared.clone(), Some(target), ack);
            if let Err(e) = accept_tx.try_send(stream) {
                warn!(stream_id, "refusing stream: accept backlog full");
                // Dropping the stream resets it with `Cancelled`; say `Busy`.
                let stream = match e {
                    mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
                };
                stream.reset(ResetCode::Busy);
            }
        }
        Frame::Ping { nonce } => shared.push_control(Frame::Pong { nonce }),
        Frame::Pong { nonce } => shared.on_pong(nonce),
        Frame::Control { kind, body } => {
            if control_tx.try_send((kind, body)).is_err() {
                warn!(kind, "dropping control message: consumer is behind");
            }
        }
        Frame::Hello(_) | Frame::HelloAck(_) | Frame::Reject(_) => {
            return protocol("handshake frame after the handshake".into());
        }
    }
    if lock(&shared.control).len() > control_limit(&shared.config) {
        return protocol("peer does not read its link (control queue overflow)".into());
    }
    Ok(())
}

async fn write_loop<W>(shared: Arc<Shared>, mut writer: W, mut data_rx: mpsc::Receiver<Frame>)
where
    W: Sink<Frame, Error = io::Error> + Unpin,
{
    // Marks the writer done however it ends (return, abort, or panic), so
    // `Session::closed` can never wait forever.
    let _done = shared.writer_done.clone().drop_guard();
    let run = async {
        // Whether the writer has let the other ready tasks run since it
        // last found the queue empty.
        let mut yielded = false;
        loop {
            let control: Vec<Frame> = lock(&shared.control).drain(..).collect();
            for f in control {
                writer.feed(f).await?;
            }
            match data_rx.try_recv() {
                Ok(f) => {
                    writer.feed(f).await?;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
            }
            // Before writing, once: let the tasks that are ready now (the
            // runtime polls for I/O first) queue their frames too, so
            // they go out in this write instead of one write each. Under
            // load that is most of the link's writes saved; idle, it
            // costs one turn of the scheduler.
            if !yielded {
                yielded = true;
                tokio::task::yield_now().await;
                continue;
            }
            yielded = false;
            writer.flush().await?;
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return Ok(()),
                _ = shared.control_notify.notified() => {}
                f = data_rx.recv() => match f {
                    Some(f) => writer.feed(f).await?,
                    None => return Ok(()),
                },
            }
        }
    };
    // On close the writer first sends what is queued (it stops by itself
    // once idle), but a writer blocked on a peer that stopped reading must
    // not outlive the session by the minutes TCP takes to give up.
    let result: io::Result<()> = {
        let mut run = std::pin::pin!(run);
        tokio::select! {
            r = &mut run => r,
            _ = shared.cancel.cancelled() => {
                tokio::time::timeout(CLOSE_GRACE, &mut run).await.unwrap_or(Ok(()))
            }
        }
    };
    match result {
        Ok(()) => {
            // Best effort: send what is queued and a clean close, bounded.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                loop {
                    let control: Vec<Frame> = lock(&shared.control).drain(..).collect();
                    for f in control {
                        writer.feed(f).await?;
                    }
                    match data_rx.try_recv() {
                        Ok(f) => writer.feed(f).await?,
                        Err(_) => break,
                    }
                }
                writer.close().await
            })
            .await;
        }
        Err(e) => {
            debug!(error = %e, "session writer failed");
            shared.close(CloseReason::Io(e.to_string()));
        }
    }
}
