//! Requests and answers on a link's control messages, either way.
//!
//! A side that announced [`crate::capabilities::REQUESTS`] in its hello
//! accepts [`crate::control::REQUEST`] messages and answers each with one or
//! more [`crate::control::RESPONSE`] messages carrying the request's id; the
//! caller may give up with [`crate::control::CANCEL`]. Bodies are opaque
//! here (JSON in practice); every length is bounded by the control message
//! itself ([`crate::MAX_PAYLOAD`]). The layout is in `docs/protocol.md`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{MAX_PAYLOAD, WireError, get_str, put_str};

/// Longest method name.
pub const MAX_METHOD_LEN: usize = 64;

/// Largest body of one request or response message: a control message's
/// payload less the largest header (`kind`, id, method, flags).
pub const MAX_BODY: usize = MAX_PAYLOAD - 2 - 4 - 2 - MAX_METHOD_LEN - 1;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the caller, unique among its open requests on the link.
    pub id: u32,
    /// What is asked (`gateway.traffic`, ...).
    pub method: String,
    /// The caller takes a stream of items, not one answer.
    pub stream: bool,
    /// More of the arguments follow in further requests with this id
    /// (arguments larger than one message).
    pub more: bool,
    /// The arguments (or this part of them).
    pub body: Bytes,
}

/// What one response message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The last (or only) part of the answer.
    Done,
    /// A part; more follow. In a stream, one item.
    Part,
    /// The request failed; the body is a UTF-8 message. Nothing follows.
    Failed,
    /// The answering side does not know the method. Nothing follows.
    Unknown,
    /// The answering side has too many requests open. Nothing follows.
    Busy,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Done => 0,
            Status::Part => 1,
            Status::Failed => 2,
            Status::Unknown => 3,
            Status::Busy => 4,
        }
    }

    fn from_code(c: u8) -> Option<Status> {
        Some(match c {
            0 => Status::Done,
            1 => Status::Part,
            2 => Status::Failed,
            3 => Status::Unknown,
            4 => Status::Busy,
            _ => return None,
        })
    }

    /// Whether nothing follows a message with this status.
    pub fn is_last(self) -> bool {
        self != Status::Part
    }
}

/// One response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: u32,
    /// What it says.
    pub status: Status,
    /// The part of the answer, or the failure message.
    pub body: Bytes,
}

const F_REQ: &str = "request";
const F_RESP: &str = "response";
const F_CANCEL: &str = "cancel";

fn body_check(len: usize) -> Result<(), WireError> {
    if len > MAX_BODY {
        return Err(WireError::FieldTooLong {
            field: "body",
            len,
            max: MAX_BODY,
        });
    }
    Ok(())
}

fn get_id(p: &mut Bytes, frame: &'static str) -> Result<u32, WireError> {
    if p.remaining() < 4 {
        return Err(WireError::Malformed {
            frame,
            why: "truncated",
        });
    }
    Ok(p.get_u32())
}

impl Request {
    /// The control body. Fails if the method or body is too long.
    pub fn encode(&self) -> Result<Bytes, WireError> {
        if self.method.len() > MAX_METHOD_LEN {
            return Err(WireError::FieldTooLong {
                field: "method",
                len: self.method.len(),
                max: MAX_METHOD_LEN,
            });
        }
        body_check(self.body.len())?;
        let mut b = BytesMut::with_capacity(4 + 2 + self.method.len() + 1 + self.body.len());
        b.put_u32(self.id);
        put_str(&mut b, &self.method, MAX_METHOD_LEN);
        b.put_u8(u8::from(self.stream) | (u8::from(self.more) << 1));
        b.put_slice(&self.body);
        Ok(b.freeze())
    }

    /// Reads a control body.
    pub fn decode(mut p: Bytes) -> Result<Request, WireError> {
        let id = get_id(&mut p, F_REQ)?;
        let method = get_str(&mut p, "method", F_REQ, MAX_METHOD_LEN)?;
        if !p.has_remaining() {
            return Err(WireError::Malformed {
                frame: F_REQ,
                why: "truncated",
            });
        }
        let flags = p.get_u8();
        if flags > 3 {
            return Err(WireError::Malformed {
                frame: F_REQ,
                why: "unknown flags",
            });
        }
        body_check(p.len())?;
        Ok(Request {
            id,
            method,
            stream: flags & 1 == 1,
            more: flags & 2 == 2,
            body: p,
        })
    }
}

impl Response {
    /// The control body. Fails if the body is too long.
    pub fn encode(&self) -> Result<Bytes, WireError> {
        body_check(self.body.len())?;
        let mut b = BytesMut::with_capacity(5 + self.body.len());
        b.put_u32(self.id);
        b.put_u8(self.status.code());
        b.put_slice(&self.body);
        Ok(b.freeze())
    }

    /// Reads a control body.
    pub fn decode(mut p: Bytes) -> Result<Response, WireError> {
        let id = get_id(&mut p, F_RESP)?;
        if !p.has_remaining() {
            return Err(WireError::Malformed {
                frame: F_RESP,
                why: "truncated",
            });
        }
        let status = Status::from_code(p.get_u8()).ok_or(WireError::Malformed {
            frame: F_RESP,
            why: "unknown status",
        })?;
        body_check(p.len())?;
        Ok(Response {
            id,
            status,
            body: p,
        })
    }
}

/// The control body of a cancel for request `id`.
pub fn encode_cancel(id: u32) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// Reads a cancel's control body.
pub fn decode_cancel(mut p: Bytes) -> Result<u32, WireError> {
    let id = get_id(&mut p, F_CANCEL)?;
    if p.has_remaining() {
        return Err(WireError::TrailingBytes(p.len()));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let r = Request {
            id: 7,
            method: "gateway.traffic".into(),
            stream: true,
            more: true,
            body: Bytes::from_static(b"{\"limit\":5}"),
        };
        assert_eq!(Request::decode(r.encode().expect("encode")), Ok(r));
        for status in [
            Status::Done,
            Status::Part,
            Status::Failed,
            Status::Unknown,
            Status::Busy,
        ] {
            let a = Response {
                id: u32::MAX,
                status,
                body: Bytes::from_static(b"x"),
            };
            assert_eq!(Response::decode(a.encode().expect("encode")), Ok(a));
        }
        assert_eq!(decode_cancel(encode_cancel(9)), Ok(9));
    }

    #[test]
    fn bad_bodies_are_refused() {
        let long = Request {
            id: 1,
            method: "m".repeat(MAX_METHOD_LEN + 1),
            stream: false,
            more: false,
            body: Bytes::new(),
        };
        assert!(matches!(
            long.encode(),
            Err(WireError::FieldTooLong {
                field: "method",
                ..
            })
        ));
        let big = Response {
            id: 1,
            status: Status::Done,
            body: Bytes::from(vec![0; MAX_BODY + 1]),
        };
        assert!(big.encode().is_err());
        // The largest body fits one control message.
        let most = Request {
            id: 1,
            method: "m".repeat(MAX_METHOD_LEN),
            stream: false,
            more: false,
            body: Bytes::from(vec![0; MAX_BODY]),
        };
        assert!(2 + most.encode().expect("fits").len() <= MAX_PAYLOAD);
        for junk in [&b""[..], b"\0\0\0", b"\0\0\0\x01", b"\0\0\0\x01\x09"] {
            assert!(Response::decode(Bytes::copy_from_slice(junk)).is_err());
            assert!(Request::decode(Bytes::copy_from_slice(junk)).is_err());
        }
        // A request with flags other than "stream" and "more".
        let mut b = BytesMut::new();
        b.put_u32(1);
        put_str(&mut b, "m", MAX_METHOD_LEN);
        b.put_u8(4);
        assert!(Request::decode(b.freeze()).is_err());
        assert!(decode_cancel(Bytes::from_static(b"\0\0\0\x01\0")).is_err());
    }
}
