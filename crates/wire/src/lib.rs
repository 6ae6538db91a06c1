//! Burrow's wire protocol: the frames that travel over one tunnel link.
//!
//! This crate does no I/O. [`Frame::decode`] reads one frame from a buffer
//! (returning `Ok(None)` when the buffer holds only part of one) and
//! [`Frame::encode`] appends one to a buffer. Every length a peer controls is
//! checked against a named maximum before anything is allocated.
//!
//! # Layout
//! - [`Frame`]: the frame types (hello, open, data, window, fin, reset,
//!   ping/pong, control) and their codec.
//! - [`Hello`], [`HelloAck`], [`Reject`]: the versioned handshake.
//! - [`ResetCode`], [`RejectCode`]: typed reasons a peer can act on.
//!
//! The normative description is `docs/protocol.md` at the repository root.

#![forbid(unsafe_code)]

use bytes::{Buf, BufMut, Bytes};

#[cfg(feature = "codec")]
mod codec;
pub mod egress;
mod frame;
mod hello;
pub mod rpc;

#[cfg(feature = "codec")]
pub use codec::FrameCodec;

pub use frame::{Frame, FrameType, ResetCode};
pub use hello::{Hello, HelloAck, Reject, RejectCode, capabilities};

/// Kinds of `Control` messages.
pub mod control {
    /// Agent to gateway: this agent is shutting down; open no more streams
    /// on this link. The agent keeps accepting streams until it gets
    /// [`DRAINING_ACK`], so none sent before the gateway knew is lost.
    pub const DRAINING: u16 = 1;
    /// Gateway to agent: no stream will be opened on this link any more.
    pub const DRAINING_ACK: u16 = 2;
    /// Gateway to agent: the FQDN rules that give this agent egress
    /// targets (replacing any earlier list; see [`crate::egress`]).
    pub const RULES: u16 = 3;
    /// Agent to gateway: routes this agent publishes from its own
    /// configuration, one `HOSTNAME\tURL` line each. The gateway accepts
    /// only host names under its public domain not owned by another agent.
    pub const ROUTES: u16 = 4;
    /// Either way: a request ([`crate::rpc::Request`]), to a side that
    /// announced [`crate::capabilities::REQUESTS`].
    pub const REQUEST: u16 = 5;
    /// Either way: (part of) the answer to a request
    /// ([`crate::rpc::Response`]).
    pub const RESPONSE: u16 = 6;
    /// Either way: the caller no longer wants the answer to a request.
    pub const CANCEL: u16 = 7;
    /// Gateway to agent: the gateway is shutting down and closes this
    /// link when its open streams have drained (a clean close, not a
    /// failure); reconnect then.
    pub const GOING_AWAY: u16 = 8;
    /// Gateway to agent: the live replicas sharing the gateway's database
    /// ([`crate::replicas`]), replacing any earlier list. An agent keeps
    /// its links on as many of them as it has links.
    pub const REPLICAS: u16 = 9;
}

/// The replica list of a [`control::REPLICAS`] message: one `ID\tURL`
/// line each (URL empty when the replica advertises no address of its
/// own; reach it through the shared name).
pub mod replicas {
    /// Most replicas one message lists.
    pub const MAX: usize = 256;

    /// The message body.
    pub fn encode(replicas: &[(String, String)]) -> String {
        replicas
            .iter()
            .take(MAX)
            .filter(|(id, url)| !id.contains(['\t', '\n']) && !url.contains(['\t', '\n']))
            .map(|(id, url)| format!("{id}\t{url}\n"))
            .collect()
    }

    /// (id, url) pairs; malformed lines are skipped, at most [`MAX`].
    pub fn decode(body: &[u8]) -> Vec<(String, String)> {
        String::from_utf8_lossy(body)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(id, _)| !id.is_empty())
            .take(MAX)
            .map(|(id, url)| (id.to_owned(), url.to_owned()))
            .collect()
    }
}

/// Streams one gateway replica opens on another's peer link: to the
/// agent the other holds links of, and the target to open through it.
pub mod hop {
    /// What a hop target starts with.
    pub const PREFIX: &str = "hop:";

    /// `hop:AGENT\nTARGET`.
    pub fn encode(agent: &str, target: &str) -> String {
        format!("{PREFIX}{agent}\n{target}")
    }

    /// (agent, target) of a hop target.
    pub fn parse(s: &str) -> Option<(&str, &str)> {
        let (agent, target) = s.strip_prefix(PREFIX)?.split_once('\n')?;
        (crate::valid_name(agent) && !target.is_empty()).then_some((agent, target))
    }
}

/// Version of the frame protocol spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;

/// How long a gateway at its handshake cap asks agents to wait before
/// redialing: the `Retry-After` of its 503 answers, and the wait a
/// [`RejectCode::Busy`] refusal means. Agents add jitter.
pub const BUSY_RETRY_AFTER_SECS: u64 = 2;

/// Size of the fixed frame header: type (1), stream id (4), payload length (4).
pub const HEADER_LEN: usize = 9;

/// Largest payload of any frame. A header announcing more closes the link.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Largest payload of one `Data` frame a sender produces.
pub const MAX_DATA: usize = 32 * 1024;

/// Largest target (`host:port`) in an `Open` frame.
pub const MAX_TARGET_LEN: usize = 1024;

/// Largest agent or key name (Octopus Connection Agent's limit).
pub const MAX_NAME_LEN: usize = 200;

/// Largest free-text field (software version, rejection message).
pub const MAX_TEXT_LEN: usize = 1024;

/// Largest credential in a hello (a pre-shared key or a signed token).
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// Most capability strings one hello may carry.
pub const MAX_CAPABILITIES: usize = 64;

/// Why a frame could not be decoded. Any of these closes the link it came on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame type byte is not one this version knows.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The header announces a payload larger than [`MAX_PAYLOAD`].
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    Oversized {
        /// Announced length.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// A field inside the payload is longer than its limit.
    #[error("{field} of {len} bytes exceeds the maximum of {max}")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its announced length.
        len: usize,
        /// Its limit.
        max: usize,
    },
    /// The payload ended before a field was complete, or had bytes left over.
    #[error("malformed {frame} frame: {why}")]
    Malformed {
        /// Frame type name.
        frame: &'static str,
        /// What was wrong.
        why: &'static str,
    },
    /// A text field is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// A frame that must carry stream id 0 did not, or the reverse.
    #[error("{frame} frame on stream {stream_id} is not allowed")]
    BadStreamId {
        /// Frame type name.
        frame: &'static str,
        /// The stream id it carried.
        stream_id: u32,
    },
    /// A message (WebSocket message, or whole buffer) held a partial frame or
    /// trailing bytes.
    #[error("message holds {0} bytes that are not a whole frame")]
    TrailingBytes(usize),
}

/// Reads a `u16`-length-prefixed UTF-8 string with a limit.
pub(crate) fn get_str(
    buf: &mut Bytes,
    field: &'static str,
    frame: &'static str,
    max: usize,
) -> Result<String, WireError> {
    if buf.remaining() < 2 {
        return Err(WireError::Malformed {
            frame,
            why: "truncated string length",
        });
    }
    let len = usize::from(buf.get_u16());
    if len > max {
        return Err(WireError::FieldTooLong { field, len, max });
    }
    if buf.remaining() < len {
        return Err(WireError::Malformed {
            frame,
            why: "truncated string",
        });
    }
    let raw = buf.split_to(len);
    String::from_utf8(raw.to_vec()).map_err(|_| WireError::NotUtf8(field))
}

/// Writes a `u16`-length-prefixed string. Callers keep strings under their
/// limits, which are all below `u16::MAX`; longer input is cut at a char
/// boundary rather than producing a frame the peer must reject.
pub(crate) fn put_str(buf: &mut impl BufMut, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = &s[..end];
    // `end <= max <= MAX_CREDENTIAL_LEN`, far below u16::MAX.
    buf.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    buf.put_slice(s.as_bytes());
}

/// Is `name` a valid agent or key name: 1–200 characters of ASCII letters,
/// digits, `-` and `.`, not only dots? Names become URL path segments in
/// the admin API, where `.` and `..` are dot segments that clients and
/// proxies remove (RFC 3986 §5.2.4).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.bytes().all(|b| b == b'.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests {
    #[test]
    fn hop_targets_carry_a_valid_agent_and_a_target() {
        let t = super::hop::encode("home", "egress:git.internal:443;tls");
        assert_eq!(
            super::hop::parse(&t),
            Some(("home", "egress:git.internal:443;tls"))
        );
        for bad in [
            "hop:home",
            "hop:\nx",
            "hop:..\nx",
            "hop:a b\nx",
            "hop:home\n",
            "home\nx",
        ] {
            assert_eq!(super::hop::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replica_lists_and_ids_round_trip_and_skip_what_is_malformed() {
        let list = vec![
            ("gw-a".to_owned(), "tls://10.0.0.1:17200".to_owned()),
            ("gw-b".to_owned(), String::new()),
            ("bad\tid".to_owned(), String::new()),
        ];
        let body = super::replicas::encode(&list);
        assert_eq!(super::replicas::decode(body.as_bytes()), list[..2]);
        assert!(super::replicas::decode(b"\tno-id\nnotab\n").is_empty());
        let caps = vec!["streams".to_owned(), super::capabilities::replica("gw-a")];
        assert_eq!(super::capabilities::replica_of(&caps), Some("gw-a"));
        assert_eq!(super::capabilities::replica_of(&caps[..1]), None);
    }
}
