//! Feeds arbitrary bytes to every decoder entry point. Any panic, or a
//! decoded frame that does not re-encode to the bytes it came from, is a bug.
#![no_main]

use burrow_wire::{Frame, FrameCodec};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // As one WebSocket message.
    if let Ok(frame) = Frame::decode_message(Bytes::copy_from_slice(data)) {
        let again = Frame::decode_message(frame.to_bytes()).expect("re-decodes");
        assert_eq!(again, frame);
    }
    // As a byte stream, split at an arbitrary point.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut codec = FrameCodec;
    let mut buf = BytesMut::from(&data[..cut]);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = codec.decode(&mut buf) {
        frames.push(f);
    }
    buf.extend_from_slice(&data[cut..]);
    while let Ok(Some(f)) = codec.decode(&mut buf) {
        frames.push(f);
    }
    for f in frames {
        assert_eq!(f.to_bytes().len(), f.encoded_len());
    }
});
