//! [`WsCodec`]: Burrow frames as WebSocket binary messages (RFC 6455),
//! read and written straight from and into the link's buffers.
//!
//! One Burrow frame per message, sent unfragmented; a client masks what
//! it sends with a fresh random key per frame, a server refuses unmasked
//! frames and a client refuses masked ones. Fragmented messages from an
//! intermediary are put back together, within the same size limit. Pings
//! are answered with the next frame written (the mux writes at least its
//! own keep-alive), pongs are ignored, a close ends the stream, and a text
//! message or a reserved bit is a protocol error.

use std::io;

use burrow_wire::{Frame, HEADER_LEN, MAX_PAYLOAD};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use tokio_util::codec::{Decoder, Encoder};

/// Largest message: one Burrow frame.
pub(crate) const MAX_MESSAGE: usize = HEADER_LEN + MAX_PAYLOAD;
/// Largest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Which end of the WebSocket this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Dials and masks what it sends.
    Client,
    /// Accepts and requires masked frames.
    Server,
}

/// The codec. Decoder and encoder share one value (the link's reader and
/// writer halves lock it in turn), which is how a ping read is answered by
/// the next write.
pub(crate) struct WsCodec {
    role: Role,
    /// Masking keys (client only): unpredictable, as RFC 6455 §10.3 asks.
    rng: Option<rand::rngs::StdRng>,
    /// A fragmented binary message being put back together.
    partial: Option<BytesMut>,
    /// A ping's payload, to echo in a pong with the next write.
    pong: Option<Bytes>,
    /// A close was received: everything after it is ignored.
    closed: bool,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl WsCodec {
    pub(crate) fn new(role: Role) -> Self {
        WsCodec {
            role,
            rng: (role == Role::Client).then(rand::rngs::StdRng::from_os_rng),
            partial: None,
            pong: None,
            closed: false,
        }
    }

    /// Appends one WebSocket frame whose payload `write` appends (`len`
    /// bytes), masked when this end is the client.
    fn put_frame(
        &mut self,
        dst: &mut BytesMut,
        opcode: u8,
        len: usize,
        write: impl FnOnce(&mut BytesMut),
    ) {
        dst.reserve(14 + len);
        dst.put_u8(0x80 | opcode);
        let mask_bit = if self.rng.is_some() { 0x80 } else { 0 };
        if len < 126 {
            dst.put_u8(mask_bit | len as u8);
        } else if let Ok(n) = u16::try_from(len) {
            dst.put_u8(mask_bit | 126);
            dst.put_u16(n);
        } else {
            dst.put_u8(mask_bit | 127);
            dst.put_u64(len as u64);
        }
        match &mut self.rng {
            Some(rng) => {
                let key: [u8; 4] = rng.random();
                dst.put_slice(&key);
                let start = dst.len();
                write(dst);
                apply_mask(&mut dst[start..], key);
            }
            None => write(dst),
        }
    }
}

/// XORs `data` with the repeated 4-byte `key`, eight bytes at a time.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key starts over.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// A WebSocket frame header: `(fin, opcode, mask, payload length, header length)`,
/// or `None` while incomplete.
type Header = (bool, u8, Option<[u8; 4]>, u64, usize);

fn parse_header(src: &[u8]) -> io::Result<Option<Header>> {
    let (Some(&b0), Some(&b1)) = (src.first(), src.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(invalid(
            "WebSocket frame with reserved bits set (no extension was agreed)",
        ));
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => match src.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match src.get(2..10) {
            Some(b) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(b);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(k) = src.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some((b0 & 0x80 != 0, b0 & 0x0f, mask, len, at)))
}

impl Decoder for WsCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame>> {
        loop {
            if self.closed {
                src.clear();
                return Ok(None);
            }
            let Some((fin, opcode, mask, len, at)) = parse_header(src)? else {
                return Ok(None);
            };
            match (self.role, mask) {
                (Role::Server, None) => {
                    return Err(invalid("unmasked WebSocket frame from a client"));
                }
                (Role::Client, Some(_)) => {
                    return Err(invalid("masked WebSocket frame from a server"));
                }
                _ => {}
            }
            let control = opcode & 0x8 != 0;
            if control && (!fin || len > MAX_CONTROL as u64) {
                return Err(invalid("fragmented or oversized WebSocket control frame"));
            }
            let so_far = self.partial.as_ref().map_or(0, BytesMut::len) as u64;
            if !control && so_far + len > MAX_MESSAGE as u64 {
                return Err(invalid(format!(
                    "WebSocket message of over {} bytes exceeds the maximum of {MAX_MESSAGE}",
                    so_far + len
                )));
            }
            // Bounded above: at most MAX_MESSAGE.
            let len = len as usize;
            if src.len() < at + len {
                src.reserve(at + len - src.len());
                return Ok(None);
            }
            src.advance(at);
            let mut payload = src.split_to(len);
            if let Some(key) = mask {
                apply_mask(&mut payload, key);
            }
            match opcode {
                OP_BINARY if self.partial.is_some() => {
                    return Err(invalid("new WebSocket message inside a fragmented one"));
                }
                OP_BINARY if fin => {
                    return Frame::decode_message(payload.freeze())
                        .map(Some)
                        .map_err(|e| invalid(e.to_string()));
                }
                OP_BINARY => self.partial = Some(payload),
                OP_CONTINUATION => {
                    let Some(mut whole) = self.partial.take() else {
                        return Err(invalid("WebSocket continuation without a message"));
                    };
                    whole.unsplit(payload);
                    if fin {
                        return Frame::decode_message(whole.freeze())
                            .map(Some)
                            .map_err(|e| invalid(e.to_string()));
                    }
                    self.partial = Some(whole);
                }
                OP_TEXT => return Err(invalid("text message on a tunnel link")),
                OP_CLOSE => self.closed = true,
                OP_PING => self.pong = Some(payload.freeze()),
                OP_PONG => {}
                other => {
                    return Err(invalid(format!("unknown WebSocket opcode {other:#x}")));
                }
            }
        }
    }

    /// At the end of the stream: the frames left, then an error if it
    /// stopped inside one (a peer that died mid-link is a lost
    /// connection, not a protocol breach).
    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame>> {
        match self.decode(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection lost in the middle of a WebSocket frame",
            )),
        }
    }
}

impl Encoder<Frame> for WsCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> io::Result<()> {
        if let Some(p) = self.pong.take() {
            self.put_frame(dst, OP_PONG, p.len(), |d| d.put_slice(&p));
        }
        let len = item.encoded_len();
        self.put_frame(dst, OP_BINARY, len, |d| item.encode(d));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
