//! [`FrameCodec`]: frames over a byte stream, for `tokio_util::codec`.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::{Frame, HEADER_LEN, MAX_PAYLOAD};

/// Frames over a byte stream. Decoding errors become
/// `io::ErrorKind::InvalidData` carrying the [`crate::WireError`].
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        match Frame::decode(src) {
            Ok(Some(f)) => Ok(Some(f)),
            Ok(None) => {
                // Reserve for the rest of this frame, never more than the cap.
                if src.len() >= HEADER_LEN {
                    let len = u32::from_be_bytes([src[5], src[6], src[7], src[8]]) as usize;
                    src.reserve((HEADER_LEN + len.min(MAX_PAYLOAD)).saturating_sub(src.len()));
                }
                Ok(None)
            }
            Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.reserve(item.encoded_len());
        item.encode(dst);
        Ok(())
    }
}
