//! The hello exchange that opens every link.
//!
//! The agent sends [`Frame::Hello`] (whichever side dialed); the gateway
//! answers [`Frame::HelloAck`] or [`Frame::Reject`] (and closes). A
//! listening agent that does not trust the gateway dialing it sends
//! [`Frame::Reject`] instead of its hello. Each read has a
//! timeout, so a peer that connects and says nothing holds nothing for long.

use std::time::Duration;

use burrow_wire::{Frame, Hello, HelloAck, PROTOCOL_VERSION, Reject, RejectCode, valid_name};
use futures_util::{SinkExt, StreamExt};

use crate::Link;

/// Longest wait for the peer's hello or answer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer sent nothing in time.
    #[error("peer sent no hello within {0:?}")]
    Timeout(Duration),
    /// The link closed during the handshake.
    #[error("link closed during the handshake")]
    Closed,
    /// The link failed.
    #[error("link error during the handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something other than the expected frame.
    #[error("expected {expected}, got a {got:?} frame")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: burrow_wire::FrameType,
    },
    /// The other side refused the link.
    #[error("link refused ({code:?}): {message}")]
    Rejected {
        /// Machine-readable reason.
        code: RejectCode,
        /// What to do about it.
        message: String,
    },
}

async fn next_frame(link: &mut Link, timeout: Duration) -> Result<Frame, HandshakeError> {
    match tokio::time::timeout(timeout, link.reader.next()).await {
        Err(_) => Err(HandshakeError::Timeout(timeout)),
        Ok(None) => Err(HandshakeError::Closed),
        Ok(Some(Err(e))) => Err(HandshakeError::Io(e)),
        Ok(Some(Ok(f))) => Ok(f),
    }
}

/// Dialing side: sends `hello`, waits for the answer.
pub async fn dial(link: &mut Link, hello: Hello) -> Result<HelloAck, HandshakeError> {
    link.writer.send(Frame::Hello(hello)).await?;
    match next_frame(link, HANDSHAKE_TIMEOUT).await? {
        Frame::HelloAck(ack) => Ok(ack),
        Frame::Reject(r) => Err(HandshakeError::Rejected {
            code: r.code,
            message: r.message,
        }),
        other => Err(HandshakeError::Unexpected {
            expected: "hello-ack",
            got: other.frame_type(),
        }),
    }
}

/// Accepting side: reads the hello and checks what every link must satisfy
/// (protocol version, agent name). On failure the peer has been sent a
/// [`Reject`] saying what to do.
pub async fn accept(link: &mut Link) -> Result<Hello, HandshakeError> {
    let hello = match next_frame(link, HANDSHAKE_TIMEOUT).await? {
        Frame::Hello(h) => h,
        // A listening agent refuses a gateway it does not trust this way.
        Frame::Reject(r) => {
            return Err(HandshakeError::Rejected {
                code: r.code,
                message: r.message,
            });
        }
        other => {
            return Err(HandshakeError::Unexpected {
                expected: "hello",
                got: other.frame_type(),
            });
        }
    };
    let refusal = if hello.version != PROTOCOL_VERSION {
        Some(Reject {
            code: RejectCode::VersionMismatch,
            message: format!(
                "agent speaks protocol {}, gateway speaks {PROTOCOL_VERSION} (gateway {}): run the same Burrow release on both sides",
                hello.version,
                env!("CARGO_PKG_VERSION")
            ),
        })
    } else if !valid_name(&hello.agent_name) {
        Some(Reject {
            code: RejectCode::BadName,
            message:
                "agent names are 1-200 characters of letters, digits, '-' and '.', not only dots"
                    .into(),
        })
    } else {
        None
    };
    if let Some(r) = refusal {
        let (code, message) = (r.code, r.message.clone());
        reject(link, r).await;
        return Err(HandshakeError::Rejected { code, message });
    }
    Ok(hello)
}

/// Sends a refusal and closes the link, bounded in time.
pub async fn reject(link: &mut Link, reject: Reject) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = link.writer.send(Frame::Reject(reject)).await;
        let _ = link.writer.close().await;
    })
    .await;
}

/// Accepting side: takes the link.
pub async fn ack(link: &mut Link, capabilities: Vec<String>) -> Result<(), HandshakeError> {
    link.writer
        .send(Frame::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            software_version: env!("CARGO_PKG_VERSION").into(),
            capabilities,
        }))
        .await?;
    Ok(())
}
