//! Many flow-controlled byte streams over one framed link.
//!
//! A [`Session`] runs over any carrier that moves whole [`Frame`]s: a
//! `Stream` of incoming frames and a `Sink` of outgoing ones (a WebSocket,
//! a TLS byte stream with [`burrow_wire::FrameCodec`], an in-memory pipe).
//! It does not know which.
//!
//! # Layout
//! - [`Session`]: opens streams, accepts them through [`Incoming`], closes.
//! - [`MuxStream`]: one stream, both an `AsyncRead + AsyncWrite` and a
//!   chunk API ([`MuxStream::send`], [`MuxStream::recv`]) that the forwarder
//!   uses to move bytes without an intermediate buffer.
//! - [`pump`]: joins a stream and a TCP connection, propagating half-close
//!   and resets both ways.
//! - `session.rs`: the reader and writer tasks.
//!
//! # Flow control
//! Each stream starts with `initial_window` bytes of credit in each
//! direction. A receiver grants more ([`Frame::Window`]) only as its
//! application consumes data, so at most `initial_window` bytes of one stream
//! are ever buffered, and a stream whose reader stalls blocks only itself.
//! Data past the granted window is a protocol error that closes the link.

#![forbid(unsafe_code)]

mod pump;
mod session;
mod stream;

pub use burrow_wire::{Frame, ResetCode};
pub use pump::{PumpOutcome, pump};
pub use session::{CloseReason, Event, Incoming, Session};
pub use stream::{MuxStream, OpenedWatch};

use std::time::Duration;

/// Tunable limits of a session. [`Config::default`] suits a tunnel link.
#[derive(Debug, Clone)]
pub struct Config {
    /// Credit each stream starts with, per direction, in bytes; also the
    /// most one stream buffers.
    pub initial_window: u32,
    /// Most streams open at once on this session.
    pub max_streams: usize,
    /// Most opened-by-peer streams waiting for [`Incoming::accept`].
    pub accept_backlog: usize,
    /// Send a ping this often; drop the link after three silent intervals.
    /// `None` turns heartbeats off (tests, or a carrier with its own).
    pub heartbeat: Option<Duration>,
    /// Did this side dial the link? Dialers open even stream ids, acceptors
    /// odd ones, so both may open streams without colliding.
    pub dialer: bool,
    /// Frames that may wait for the writer at once (data and fin).
    pub write_queue: usize,
    /// Does the peer read reasons and the finer codes in resets (it
    /// announced [`burrow_wire::capabilities::RESET_REASONS`])? Without,
    /// [`MuxStream::reset_because`] sends the code it knows and no words.
    pub peer_reads_reasons: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_window: 1024 * 1024,
            max_streams: 16 * 1024,
            accept_backlog: 1024,
            heartbeat: Some(Duration::from_secs(30)),
            dialer: true,
            write_queue: 64,
            peer_reads_reasons: false,
        }
    }
}

/// The `event` field of the log line saying a drain ran out of time.
pub const DRAIN_TIMEOUT: &str = "drain_timeout";

/// Lets the stream tasks in `streams` finish, for at most `limit` (the
/// drain of a graceful shutdown). Returns whether they all finished; if
/// not, logs how many were left, to be reset when their links close.
pub async fn drain(streams: &tokio_util::task::TaskTracker, limit: Duration) -> bool {
    streams.close();
    let drained = tokio::time::timeout(limit, streams.wait()).await.is_ok();
    if !drained {
        tracing::info!(
            event = DRAIN_TIMEOUT,
            left = streams.len(),
            "drain timeout reached; resetting remaining streams"
        );
    }
    drained
}

/// How many missed heartbeat intervals make a link dead.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Errors from session operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// The session is closed; no stream can be opened on it.
    #[error("tunnel link closed: {0}")]
    Closed(CloseReason),
    /// The session holds `max_streams` streams already.
    #[error("too many streams on this link (limit {0})")]
    TooManyStreams(usize),
    /// Stream ids on this link are used up; open a new link.
    #[error("stream ids exhausted on this link")]
    IdsExhausted,
    /// The peer reset the stream.
    #[error("stream reset: {0}")]
    Reset(ResetCode),
}

impl From<MuxError> for std::io::Error {
    fn from(e: MuxError) -> Self {
        let kind = match e {
            MuxError::Reset(ResetCode::Refused) => std::io::ErrorKind::ConnectionRefused,
            MuxError::Reset(_) | MuxError::Closed(_) => std::io::ErrorKind::ConnectionReset,
            MuxError::TooManyStreams(_) | MuxError::IdsExhausted => {
                std::io::ErrorKind::ResourceBusy
            }
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests;
