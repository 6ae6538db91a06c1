//! Frame types and their codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{
    HEADER_LEN, Hello, HelloAck, MAX_DATA, MAX_PAYLOAD, MAX_TARGET_LEN, MAX_TEXT_LEN, Reject,
    WireError, get_str, put_str,
};

/// Why a stream was reset. Unknown codes from newer peers decode as
/// [`ResetCode::Other`] so old builds keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetCode {
    /// The stream was abandoned by its owner (e.g. the client went away).
    Cancelled,
    /// The target refused the connection.
    Refused,
    /// The target could not be reached (DNS failure, no route, timeout).
    Unreachable,
    /// The target is not allowed by the receiving side's configuration.
    NotAllowed,
    /// The link carrying the stream was lost.
    LinkLost,
    /// The peer broke the protocol on this stream (e.g. data past its window).
    ProtocolError,
    /// The receiving side is at its stream limit or shutting down.
    Busy,
    /// The peer's TCP connection was reset.
    ConnectionReset,
    /// The target's name did not resolve. Sent only to a peer that
    /// announced [`crate::capabilities::RESET_REASONS`] (others get
    /// [`ResetCode::Unreachable`]), as are the codes below.
    NameNotFound,
    /// Connecting the target (or its TLS handshake) took too long.
    TimedOut,
    /// The target's TLS certificate was refused (expired, wrong name,
    /// unknown issuer).
    Certificate,
    /// TLS with the target failed other than by its certificate.
    Tls,
    /// A code this build does not know.
    Other(u16),
}

impl ResetCode {
    /// Wire value of the code.
    pub fn to_u16(self) -> u16 {
        match self {
            ResetCode::Cancelled => 1,
            ResetCode::Refused => 2,
            ResetCode::Unreachable => 3,
            ResetCode::NotAllowed => 4,
            ResetCode::LinkLost => 5,
            ResetCode::ProtocolError => 6,
            ResetCode::Busy => 7,
            ResetCode::ConnectionReset => 8,
            ResetCode::NameNotFound => 9,
            ResetCode::TimedOut => 10,
            ResetCode::Certificate => 11,
            ResetCode::Tls => 12,
            ResetCode::Other(c) => c,
        }
    }

    /// Code for a wire value.
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ResetCode::Cancelled,
            2 => ResetCode::Refused,
            3 => ResetCode::Unreachable,
            4 => ResetCode::NotAllowed,
            5 => ResetCode::LinkLost,
            6 => ResetCode::ProtocolError,
            7 => ResetCode::Busy,
            8 => ResetCode::ConnectionReset,
            9 => ResetCode::NameNotFound,
            10 => ResetCode::TimedOut,
            11 => ResetCode::Certificate,
            12 => ResetCode::Tls,
            c => ResetCode::Other(c),
        }
    }

    /// The code a peer without [`crate::capabilities::RESET_REASONS`]
    /// knows: the finer failures to reach a target are all
    /// [`ResetCode::Unreachable`] to it.
    pub fn legacy(self) -> Self {
        match self {
            ResetCode::NameNotFound
            | ResetCode::TimedOut
            | ResetCode::Certificate
            | ResetCode::Tls => ResetCode::Unreachable,
            c => c,
        }
    }
}

impl std::fmt::Display for ResetCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetCode::Cancelled => f.write_str("cancelled"),
            ResetCode::Refused => f.write_str("connection refused by target"),
            ResetCode::Unreachable => f.write_str("target unreachable"),
            ResetCode::NotAllowed => f.write_str("target not allowed"),
            ResetCode::LinkLost => f.write_str("tunnel link lost"),
            ResetCode::ProtocolError => f.write_str("protocol error"),
            ResetCode::Busy => f.write_str("peer busy"),
            ResetCode::ConnectionReset => f.write_str("connection reset"),
            ResetCode::NameNotFound => f.write_str("target name not found"),
            ResetCode::TimedOut => f.write_str("timed out connecting target"),
            ResetCode::Certificate => f.write_str("target's TLS certificate refused"),
            ResetCode::Tls => f.write_str("TLS with target failed"),
            ResetCode::Other(c) => write!(f, "reset code {c}"),
        }
    }
}

/// `Open` flag: answer with `Opened` once the target is connected.
const OPEN_ACK: u8 = 0x01;

/// Frame type byte, as written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// [`Frame::Hello`]
    Hello = 0x01,
    /// [`Frame::HelloAck`]
    HelloAck = 0x02,
    /// [`Frame::Reject`]
    Reject = 0x03,
    /// [`Frame::Open`]
    Open = 0x10,
    /// [`Frame::Opened`]
    Opened = 0x11,
    /// [`Frame::Data`]
    Data = 0x12,
    /// [`Frame::Window`]
    Window = 0x13,
    /// [`Frame::Fin`]
    Fin = 0x14,
    /// [`Frame::Reset`]
    Reset = 0x15,
    /// [`Frame::Ping`]
    Ping = 0x20,
    /// [`Frame::Pong`]
    Pong = 0x21,
    /// [`Frame::Control`]
    Control = 0x30,
}

impl FrameType {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0x01 => FrameType::Hello,
            0x02 => FrameType::HelloAck,
            0x03 => FrameType::Reject,
            0x10 => FrameType::Open,
            0x11 => FrameType::Opened,
            0x12 => FrameType::Data,
            0x13 => FrameType::Window,
            0x14 => FrameType::Fin,
            0x15 => FrameType::Reset,
            0x20 => FrameType::Ping,
            0x21 => FrameType::Pong,
            0x30 => FrameType::Control,
            other => return Err(WireError::UnknownType(other)),
        })
    }

    fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::HelloAck => "hello-ack",
            FrameType::Reject => "reject",
            FrameType::Open => "open",
            FrameType::Opened => "opened",
            FrameType::Data => "data",
            FrameType::Window => "window",
            FrameType::Fin => "fin",
            FrameType::Reset => "reset",
            FrameType::Ping => "ping",
            FrameType::Pong => "pong",
            FrameType::Control => "control",
        }
    }

    /// Does this frame type belong to a stream (non-zero id) rather than the
    /// link (id 0)?
    fn is_stream_frame(self) -> bool {
        matches!(
            self,
            FrameType::Open
                | FrameType::Opened
                | FrameType::Data
                | FrameType::Window
                | FrameType::Fin
                | FrameType::Reset
        )
    }
}

/// One frame on a tunnel link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame from the dialing side: who it is and what it speaks.
    Hello(Hello),
    /// The accepting side's answer when it takes the link.
    HelloAck(HelloAck),
    /// The accepting side's answer when it refuses the link; the link closes.
    Reject(Reject),
    /// Open stream `stream_id` to `target` (`host:port`).
    Open {
        /// New stream's id.
        stream_id: u32,
        /// Should the receiver answer [`Frame::Opened`] once the target is
        /// connected? Openers that do not wait for it save a frame.
        ack: bool,
        /// Where the receiving side should connect.
        target: String,
    },
    /// The receiving side connected the target of stream `stream_id`.
    Opened {
        /// The stream.
        stream_id: u32,
    },
    /// Bytes for stream `stream_id`; counts against the receiver's window.
    Data {
        /// The stream.
        stream_id: u32,
        /// The bytes (at most [`MAX_DATA`] from a conforming sender).
        payload: Bytes,
    },
    /// The sender consumed `increment` more bytes of stream `stream_id`; the
    /// peer may send that much more.
    Window {
        /// The stream.
        stream_id: u32,
        /// Credit granted, in bytes (non-zero).
        increment: u32,
    },
    /// The sender will write no more on stream `stream_id` (TCP half-close).
    Fin {
        /// The stream.
        stream_id: u32,
    },
    /// Stream `stream_id` is aborted in both directions.
    Reset {
        /// The stream.
        stream_id: u32,
        /// Why.
        code: ResetCode,
        /// Why, in words (at most [`crate::MAX_TEXT_LEN`] bytes), or empty.
        /// Sent only to a peer that announced
        /// [`crate::capabilities::RESET_REASONS`].
        reason: String,
    },
    /// Liveness probe; the peer answers with a [`Frame::Pong`] carrying the same nonce.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Answer to a [`Frame::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Envelope for link-level messages of later features (routes, rules,
    /// checks). `kind` says how to read `body`.
    Control {
        /// Message kind.
        kind: u16,
        /// Message body (bounded by [`MAX_PAYLOAD`]).
        body: Bytes,
    },
}

impl Frame {
    /// Type byte of this frame.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::HelloAck(_) => FrameType::HelloAck,
            Frame::Reject(_) => FrameType::Reject,
            Frame::Open { .. } => FrameType::Open,
            Frame::Opened { .. } => FrameType::Opened,
            Frame::Data { .. } => FrameType::Data,
            Frame::Window { .. } => FrameType::Window,
            Frame::Fin { .. } => FrameType::Fin,
            Frame::Reset { .. } => FrameType::Reset,
            Frame::Ping { .. } => FrameType::Ping,
            Frame::Pong { .. } => FrameType::Pong,
            Frame::Control { .. } => FrameType::Control,
        }
    }

    /// Stream id this frame carries (0 for link frames).
    pub fn stream_id(&self) -> u32 {
        match self {
            Frame::Open { stream_id, .. }
            | Frame::Opened { stream_id }
            | Frame::Data { stream_id, .. }
            | Frame::Window { stream_id, .. }
            | Frame::Fin { stream_id }
            | Frame::Reset { stream_id, .. } => *stream_id,
            _ => 0,
        }
    }

    /// Number of bytes [`Frame::encode`] will append.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        match self {
            Frame::Hello(h) => h.encoded_len(),
            Frame::HelloAck(a) => a.encoded_len(),
            Frame::Reject(r) => r.encoded_len(),
            Frame::Open { target, .. } => 1 + 2 + target.len().min(MAX_TARGET_LEN),
            Frame::Opened { .. } | Frame::Fin { .. } => 0,
            Frame::Data { payload, .. } => payload.len(),
            Frame::Window { .. } => 4,
            Frame::Reset { reason, .. } => 2 + cut_text(reason).len(),
            Frame::Ping { .. } | Frame::Pong { .. } => 8,
            Frame::Control { body, .. } => 2 + body.len(),
        }
    }

    /// Appends this frame to `buf`.
    ///
    /// A `Data` or `Control` payload larger than the protocol allows is a
    /// caller bug; it is encoded anyway and the peer will refuse it.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.frame_type() as u8);
        buf.put_u32(self.stream_id());
        let len = self.payload_len();
        buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        match self {
            Frame::Hello(h) => h.encode(buf),
            Frame::HelloAck(a) => a.encode(buf),
            Frame::Reject(r) => r.encode(buf),
            Frame::Open { target, ack, .. } => {
                buf.put_u8(if *ack { OPEN_ACK } else { 0 });
                put_str(buf, target, MAX_TARGET_LEN)
            }
            Frame::Opened { .. } | Frame::Fin { .. } => {}
            Frame::Data { payload, .. } => buf.put_slice(payload),
            Frame::Window { increment, .. } => buf.put_u32(*increment),
            Frame::Reset { code, reason, .. } => {
                buf.put_u16(code.to_u16());
                buf.put_slice(cut_text(reason).as_bytes());
            }
            Frame::Ping { nonce } | Frame::Pong { nonce } => buf.put_u64(*nonce),
            Frame::Control { kind, body } => {
                buf.put_u16(*kind);
                buf.put_slice(body);
            }
        }
    }

    /// Encodes this frame into a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }

    /// Decodes one frame from the front of `buf`, consuming it.
    ///
    /// Returns `Ok(None)` (consuming nothing) when `buf` holds only part of
    /// a frame. The header is checked before the payload is waited for, so an
    /// oversized length is refused at once rather than buffered.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some((ty, stream_id, len)) = parse_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(len).freeze();
        decode_payload(ty, stream_id, payload).map(Some)
    }

    /// Decodes a message that must hold exactly one frame (one WebSocket
    /// binary message). Payloads are sliced from `msg` without copying.
    pub fn decode_message(mut msg: Bytes) -> Result<Frame, WireError> {
        let Some((ty, stream_id, len)) = parse_header(&msg)? else {
            return Err(WireError::TrailingBytes(msg.len()));
        };
        if msg.len() != HEADER_LEN + len {
            return Err(WireError::TrailingBytes(
                msg.len().abs_diff(HEADER_LEN + len),
            ));
        }
        msg.advance(HEADER_LEN);
        decode_payload(ty, stream_id, msg)
    }
}

/// Reads and checks the fixed header without consuming anything.
fn parse_header(buf: &[u8]) -> Result<Option<(FrameType, u32, usize)>, WireError> {
    let Some(hdr) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let ty = FrameType::from_u8(hdr[0])?;
    let stream_id = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]);
    let len = u32::from_be_bytes([hdr[5], hdr[6], hdr[7], hdr[8]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(WireError::Oversized {
            len,
            max: MAX_PAYLOAD,
        });
    }
    if ty.is_stream_frame() != (stream_id != 0) {
        return Err(WireError::BadStreamId {
            frame: ty.name(),
            stream_id,
        });
    }
    Ok(Some((ty, stream_id, len)))
}

/// `s` cut to at most [`MAX_TEXT_LEN`] bytes, at a char boundary.
fn cut_text(s: &str) -> &str {
    let mut end = s.len().min(MAX_TEXT_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn exact(payload: &Bytes, n: usize, frame: &'static str) -> Result<(), WireError> {
    if payload.len() == n {
        Ok(())
    } else {
        Err(WireError::Malformed {
            frame,
            why: "wrong payload length",
        })
    }
}

fn decode_payload(ty: FrameType, stream_id: u32, mut p: Bytes) -> Result<Frame, WireError> {
    let name = ty.name();
    let frame = match ty {
        FrameType::Hello => Frame::Hello(Hello::decode(&mut p)?),
        FrameType::HelloAck => Frame::HelloAck(HelloAck::decode(&mut p)?),
        FrameType::Reject => Frame::Reject(Reject::decode(&mut p)?),
        FrameType::Open => {
            if !p.has_remaining() {
                return Err(WireError::Malformed {
                    frame: name,
                    why: "missing flags",
                });
            }
            let flags = p.get_u8();
            if flags & !OPEN_ACK != 0 {
                return Err(WireError::Malformed {
                    frame: name,
                    why: "unknown open flags",
                });
            }
            let target = get_str(&mut p, "target", name, MAX_TARGET_LEN)?;
            Frame::Open {
                stream_id,
                ack: flags & OPEN_ACK != 0,
                target,
            }
        }
        FrameType::Opened => {
            exact(&p, 0, name)?;
            Frame::Opened { stream_id }
        }
        FrameType::Data => {
            if p.len() > MAX_DATA {
                return Err(WireError::FieldTooLong {
                    field: "data payload",
                    len: p.len(),
                    max: MAX_DATA,
                });
            }
            return Ok(Frame::Data {
                stream_id,
                payload: p,
            });
        }
        FrameType::Window => {
            exact(&p, 4, name)?;
            let increment = p.get_u32();
            if increment == 0 {
                return Err(WireError::Malformed {
                    frame: name,
                    why: "zero window increment",
                });
            }
            Frame::Window {
                stream_id,
                increment,
            }
        }
        FrameType::Fin => {
            exact(&p, 0, name)?;
            Frame::Fin { stream_id }
        }
        FrameType::Reset => {
            if p.len() < 2 || p.len() > 2 + MAX_TEXT_LEN {
                return Err(WireError::Malformed {
                    frame: name,
                    why: "wrong payload length",
                });
            }
            let code = ResetCode::from_u16(p.get_u16());
            // Strict, as every string on the wire: a lossy reading could
            // grow past the limit and not re-encode to what arrived.
            let reason =
                String::from_utf8(p.to_vec()).map_err(|_| WireError::NotUtf8("reset reason"))?;
            p.advance(p.len());
            Frame::Reset {
                stream_id,
                code,
                reason,
            }
        }
        FrameType::Ping | FrameType::Pong => {
            exact(&p, 8, name)?;
            let nonce = p.get_u64();
            if ty == FrameType::Ping {
                Frame::Ping { nonce }
            } else {
                Frame::Pong { nonce }
            }
        }
        FrameType::Control => {
            if p.len() < 2 {
                return Err(WireError::Malformed {
                    frame: name,
                    why: "missing kind",
                });
            }
            let kind = p.get_u16();
            return Ok(Frame::Control { kind, body: p });
        }
    };
    if p.has_remaining() {
        return Err(WireError::Malformed {
            frame: name,
            why: "trailing bytes in payload",
        });
    }
    Ok(frame)
}
