//! One stream: its shared state and the user-facing handle.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use burrow_wire::{Frame, MAX_DATA, ResetCode};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::PollSender;

use crate::MuxError;
use crate::session::{Shared, lock};

/// Payloads smaller than this are copied into [`State::tail`].
const SMALL: usize = 1024;
/// Largest the tail grows before it is queued as a chunk.
const TAIL_MAX: usize = 16 * 1024;

#[derive(Default)]
struct State {
    recv: VecDeque<Bytes>,
    /// Small payloads received after everything in `recv`, in order.
    tail: BytesMut,
    /// Bytes the peer may still send before we grant more.
    recv_window: u32,
    /// Bytes consumed by the application and not yet granted back.
    unacked: u32,
    /// Bytes received and not yet read (in `recv` and `tail`).
    queued: usize,
    /// Everything queued is in buffers of its own (see `on_data`).
    owned: bool,
    remote_fin: bool,
    local_fin: bool,
    reset: Option<ResetCode>,
    /// The peer's reason in words for `reset`, if it gave one.
    reason: String,
    /// The peer reset the stream before it was opened: it refused it.
    refused: bool,
    send_credit: u64,
    opened: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    open_waker: Option<Waker>,
}

impl State {
    /// Why reads fail, if they do. A lost link does not undo what the peer
    /// finished sending before it went: buffered data and the EOF are still
    /// read (a gateway closing its links right after the last stream ended
    /// must not turn that stream's clean end into a reset). An explicit
    /// reset discards everything, as a TCP RST does.
    fn read_error(&self) -> Option<ResetCode> {
        match self.reset {
            Some(ResetCode::LinkLost) if self.remote_fin => None,
            other => other,
        }
    }

    /// Moves the tail to the back of the queue, leaving it unallocated so an
    /// idle stream holds no buffer.
    fn flush_tail(&mut self) {
        if !self.tail.is_empty() {
            let t = std::mem::take(&mut self.tail).freeze();
            self.recv.push_back(t);
        }
    }

    /// The front chunk, taking the tail when the queue is empty.
    fn front(&mut self) -> Option<&mut Bytes> {
        if self.recv.is_empty() {
            self.flush_tail();
        }
        self.recv.front_mut()
    }
}

pub(crate) struct StreamShared {
    id: u32,
    window: u32,
    state: Mutex<State>,
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

impl StreamShared {
    pub(crate) fn new(id: u32, window: u32) -> Self {
        StreamShared {
            id,
            window,
            state: Mutex::new(State {
                recv_window: window,
                send_credit: u64::from(window),
                ..State::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn on_data(&self, payload: Bytes) -> Result<(), String> {
        let mut st = self.state();
        if st.reset.is_some() {
            return Ok(());
        }
        if st.remote_fin {
            return Err("data after fin".into());
        }
        let n = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if n > st.recv_window {
            return Err(format!(
                "{n} bytes of data past a window of {}",
                st.recv_window
            ));
        }
        st.recv_window -= n;
        st.opened = true;
        st.queued += payload.len();
        // A reader that keeps up takes payloads as they came: slices of the
        // carrier's read buffers. One that falls behind would keep those
        // whole buffers (and the other streams' frames in them) alive for as
        // long as it stalls: past a quarter window queued, what is queued is
        // copied into buffers of its own, once, and so is what comes until
        // the reader catches up. A stalled stream then holds its window and
        // no more; a fast reader never pays for a copy.
        let backlogged = st.queued > self.window as usize / 4;
        if backlogged && !st.owned {
            for chunk in st.recv.iter_mut() {
                *chunk = Bytes::copy_from_slice(chunk);
            }
            st.owned = true;
        }
        if payload.len() >= SMALL {
            st.flush_tail();
            let payload = if backlogged {
                Bytes::copy_from_slice(&payload)
            } else {
                payload
            };
            st.recv.push_back(payload);
        } else if !payload.is_empty() {
            // A small payload is a slice of the carrier's whole read buffer;
            // queued as is, many of them would pin many buffers. Copy it into
            // the owned tail instead, so buffered memory tracks buffered bytes.
            if st.tail.len() + payload.len() > TAIL_MAX {
                st.flush_tail();
            }
            st.tail.extend_from_slice(&payload);
        }
        let (r, o) = (st.read_waker.take(), st.open_waker.take());
        drop(st);
        wake(r);
        wake(o);
        Ok(())
    }

    pub(crate) fn on_window(&self, increment: u32) -> Result<(), String> {
        let mut st = self.state();
        st.send_credit += u64::from(increment);
        if st.send_credit > u64::from(u32::MAX) {
            return Err("window grown past 4 GiB".into());
        }
        let w = st.write_waker.take();
        drop(st);
        wake(w);
        Ok(())
    }

    pub(crate) fn on_fin(&self) {
        let mut st = self.state();
        st.remote_fin = true;
        st.opened = true;
        let (r, o) = (st.read_waker.take(), st.open_waker.take());
        drop(st);
        wake(r);
        wake(o);
    }

    pub(crate) fn on_opened(&self) {
        let mut st = self.state();
        st.opened = true;
        let o = st.open_waker.take();
        drop(st);
        wake(o);
    }

    /// The peer's code and words, if it reset the stream before it was
    /// opened.
    fn refusal(&self) -> Option<(ResetCode, String)> {
        let st = self.state();
        match st.reset {
            Some(code) if st.refused => Some((code, st.reason.clone())),
            _ => None,
        }
    }

    /// The peer reset the stream, saying why.
    pub(crate) fn on_peer_reset(&self, code: ResetCode, reason: String) {
        {
            let mut st = self.state();
            if st.reset.is_none() {
                st.refused = !st.opened;
                st.reason = reason;
            }
        }
        self.on_reset(code);
    }

    pub(crate) fn on_reset(&self, code: ResetCode) {
        let mut st = self.state();
        st.reset.get_or_insert(code);
        let (r, w, o) = (
            st.read_waker.take(),
            st.write_waker.take(),
            st.open_waker.take(),
        );
        drop(st);
        wake(r);
        wake(w);
        wake(o);
    }
}

/// Waits for a stream's open to be answered ([`MuxStream::opened_watch`]).
pub struct OpenedWatch {
    shared: Arc<StreamShared>,
    session: Arc<Shared>,
}

impl OpenedWatch {
    /// If the peer refused the stream (reset it before it was opened):
    /// its code and its words (empty if it gave none).
    pub fn refusal(&self) -> Option<(ResetCode, String)> {
        self.shared.refusal()
    }

    /// As [`MuxStream::opened`].
    pub async fn opened(&self) -> Result<(), MuxError> {
        poll_fn(|cx| {
            let mut st = self.shared.state();
            if let Some(code) = st.reset {
                return Poll::Ready(Err(stream_error(&self.session, code)));
            }
            if st.opened {
                return Poll::Ready(Ok(()));
            }
            st.open_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The error for a stream reset with `code`: a lost link reads as the
/// session's close.
fn stream_error(session: &Shared, code: ResetCode) -> MuxError {
    if code == ResetCode::LinkLost && session.cancel.is_cancelled() {
        return MuxError::Closed(session.close_reason());
    }
    MuxError::Reset(code)
}

/// One stream of a [`crate::Session`].
///
/// Implements `AsyncRead + AsyncWrite`; `poll_shutdown` half-closes (the
/// peer reads EOF). The chunk methods [`MuxStream::send`] and
/// [`MuxStream::recv`] move [`Bytes`] without copying and take `&self`, so
/// one task can read and write at once. Dropping a stream that was not
/// closed both ways resets it.
pub struct MuxStream {
    shared: Arc<StreamShared>,
    session: Arc<Shared>,
    target: Option<String>,
    /// The opener asked for an `Opened` answer.
    ack_requested: bool,
    write_tx: Option<PollSender<Frame>>,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream")
            .field("id", &self.shared.id)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl MuxStream {
    pub(crate) fn new(
        shared: Arc<StreamShared>,
        session: Arc<Shared>,
        target: Option<String>,
        ack_requested: bool,
    ) -> Self {
        MuxStream {
            shared,
            session,
            target,
            ack_requested,
            write_tx: None,
        }
    }

    /// Stream id on its link.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// For a stream the peer opened: the target it named.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    fn err(&self, code: ResetCode) -> MuxError {
        stream_error(&self.session, code)
    }

    fn closed_err(&self) -> MuxError {
        MuxError::Closed(self.session.close_reason())
    }

    /// Waits for credit, takes up to `want` bytes of it.
    fn poll_credit(&self, cx: &mut Context<'_>, want: usize) -> Poll<Result<usize, MuxError>> {
        let mut st = self.shared.state();
        if let Some(code) = st.reset {
            return Poll::Ready(Err(self.err(code)));
        }
        if st.local_fin {
            return Poll::Ready(Err(MuxError::Reset(ResetCode::Cancelled)));
        }
        if st.send_credit == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = want.min(MAX_DATA).min(st.send_credit as usize);
        st.send_credit -= n as u64;
        Poll::Ready(Ok(n))
    }

    /// Sends all of `data`, waiting for credit as needed. Not cancel-safe:
    /// a cancelled send may have sent part of `data`.
    pub async fn send(&self, mut data: Bytes) -> Result<(), MuxError> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_credit(cx, data.len())).await?;
            let payload = data.split_to(n);
            self.session
                .bytes_out
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            self.session
                .data_tx
                .send(Frame::Data {
                    stream_id: self.shared.id,
                    payload,
                })
                .await
                .map_err(|_| self.closed_err())?;
        }
        Ok(())
    }

    /// Half-closes: the peer reads EOF after the data already sent.
    pub async fn finish(&self) -> Result<(), MuxError> {
        {
            let mut st = self.shared.state();
            if let Some(code) = st.reset {
                return Err(self.err(code));
            }
            if st.local_fin {
                return Ok(());
            }
            st.local_fin = true;
        }
        self.session
            .data_tx
            .send(Frame::Fin {
                stream_id: self.shared.id,
            })
            .await
            .map_err(|_| self.closed_err())
    }

    /// Records `n` consumed bytes and grants them back once half a window
    /// has been consumed.
    fn consumed(&self, st: &mut State, n: usize) {
        st.unacked += n as u32;
        if st.unacked >= self.shared.window / 2 && !st.remote_fin {
            let increment = std::mem::take(&mut st.unacked);
            st.recv_window += increment;
            self.session.push_control(Frame::Window {
                stream_id: self.shared.id,
                increment,
            });
        }
    }

    fn poll_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Result<Option<Bytes>, MuxError>> {
        let mut st = self.shared.state();
        if let Some(code) = st.read_error() {
            return Poll::Ready(Err(self.err(code)));
        }
        if let Some(front) = st.front() {
            let chunk = if front.len() <= max {
                let c = std::mem::take(front);
                st.recv.pop_front();
                c
            } else {
                front.split_to(max)
            };
            st.queued = st.queued.saturating_sub(chunk.len());
            if st.queued == 0 {
                st.owned = false;
            }
            self.consumed(&mut st, chunk.len());
            return Poll::Ready(Ok(Some(chunk)));
        }
        if st.remote_fin {
            return Poll::Ready(Ok(None));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Next chunk of received bytes, `Ok(None)` at EOF (the peer
    /// half-closed), or the reason the stream was reset. Cancel-safe.
    pub async fn recv(&self) -> Result<Option<Bytes>, MuxError> {
        poll_fn(|cx| self.poll_chunk(cx, usize::MAX)).await
    }

    /// Resolves with the error [`MuxStream::recv`] would return once the
    /// stream is reset or its link lost (data the peer finished sending
    /// before a lost link still counts as readable). For a task that waits
    /// on something else, e.g. writing received data to a slow client, and
    /// must stop at once when the stream breaks. Cancel-safe; shares the
    /// read waker, so do not poll it while another task is in `recv`.
    pub async fn broken(&self) -> MuxError {
        poll_fn(|cx| {
            let mut st = self.shared.state();
            if let Some(code) = st.read_error() {
                return Poll::Ready(self.err(code));
            }
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Tells the opener that the target is connected, if it asked to know
    /// ([`crate::Session::open_with_ack`]); otherwise does nothing.
    pub async fn confirm_opened(&self) -> Result<(), MuxError> {
        if !self.ack_requested {
            return Ok(());
        }
        self.session
            .data_tx
            .send(Frame::Opened {
                stream_id: self.shared.id,
            })
            .await
            .map_err(|_| self.closed_err())
    }

    /// Waits until the peer says the target is connected (or sends data or
    /// half-closes), or resets the stream. Without
    /// [`crate::Session::open_with_ack`] only data, a half-close or a reset
    /// resolve it.
    pub async fn opened(&self) -> Result<(), MuxError> {
        self.opened_watch().opened().await
    }

    /// A handle that waits as [`MuxStream::opened`] does without holding
    /// the stream, for a task that watches while another moves the bytes.
    pub fn opened_watch(&self) -> OpenedWatch {
        OpenedWatch {
            shared: self.shared.clone(),
            session: self.session.clone(),
        }
    }

    /// Whether nothing has happened on the receiving side: no data queued,
    /// no half-close, no reset. A stream kept between requests is only
    /// reused while it is quiet (otherwise the peer closed it, or sent
    /// bytes nobody asked for).
    pub fn is_quiet(&self) -> bool {
        let st = self.shared.state();
        st.reset.is_none() && !st.remote_fin && st.recv.is_empty() && st.tail.is_empty()
    }

    /// Aborts the stream both ways, telling the peer why.
    pub fn reset(&self, code: ResetCode) {
        self.reset_because(code, "");
    }

    /// Aborts the stream both ways, telling the peer why with a code and
    /// in words (a peer that reads neither the words nor a finer code gets
    /// the code it knows, [`ResetCode::legacy`]).
    pub fn reset_because(&self, code: ResetCode, reason: &str) {
        let first = {
            let mut st = self.shared.state();
            let first = st.reset.is_none();
            st.reset.get_or_insert(code);
            first
        };
        if first {
            self.session
                .push_control(self.session.reset_frame(self.shared.id, code, reason));
        }
        self.session.remove(self.shared.id);
        self.shared.on_reset(code);
    }

    /// As [`OpenedWatch::refusal`].
    pub fn refusal(&self) -> Option<(ResetCode, String)> {
        self.shared.refusal()
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let clean = {
            let st = self.shared.state();
            st.reset.is_some() || (st.local_fin && st.remote_fin)
        };
        if clean {
            self.session.remove(self.shared.id);
        } else {
            self.reset(ResetCode::Cancelled);
        }
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // At most what fits; the rest of the front chunk stays queued.
        match ready!(self.poll_chunk(cx, buf.remaining())) {
            Ok(Some(chunk)) => buf.put_slice(&chunk),
            Ok(None) => {} // EOF: nothing written
            Err(e) => return Poll::Ready(Err(e.into())),
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        let tx = this
            .write_tx
            .get_or_insert_with(|| PollSender::new(this.session.data_tx.clone()));
        // Reserve a queue slot first so credit is taken only when it can be used.
        if ready!(tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(this.closed_err().into()));
        }
        let n = match this.poll_credit(cx, buf.len()) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                if let Some(tx) = this.write_tx.as_mut() {
                    tx.abort_send();
                }
                return Poll::Ready(Err(e.into()));
            }
            Poll::Pending => {
                if let Some(tx) = this.write_tx.as_mut() {
                    tx.abort_send();
                }
                return Poll::Pending;
            }
        };
        this.session
            .bytes_out
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let frame = Frame::Data {
            stream_id: this.shared.id,
            payload: Bytes::copy_from_slice(&buf[..n]),
        };
        let sent = this.write_tx.as_mut().map(|tx| tx.send_item(frame));
        match sent {
            Some(Ok(())) => Poll::Ready(Ok(n)),
            _ => Poll::Ready(Err(this.closed_err().into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        {
            let st = this.shared.state();
            if let Some(code) = st.reset {
                return Poll::Ready(Err(this.err(code).into()));
            }
            if st.local_fin {
                return Poll::Ready(Ok(()));
            }
        }
        let tx = this
            .write_tx
            .get_or_insert_with(|| PollSender::new(this.session.data_tx.clone()));
        if ready!(tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(this.closed_err().into()));
        }
        this.shared.state().local_fin = true;
        let fin = Frame::Fin {
            stream_id: this.shared.id,
        };
        match this.write_tx.as_mut().map(|tx| tx.send_item(fin)) {
            Some(Ok(())) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(this.closed_err().into())),
        }
    }
}
