//! The raw-TLS carrier: Burrow frames straight over a byte stream, no HTTP.

use burrow_wire::FrameCodec;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::Link;

/// Frames buffered before the writer flushes to the stream: large enough
/// that bulk data fills whole TLS records.
const WRITE_BOUNDARY: usize = 64 * 1024;

/// Wraps a connected byte stream (a TLS stream) into a [`Link`].
pub fn link<S>(io: S, peer: Option<std::net::SocketAddr>) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = Framed::with_capacity(io, FrameCodec, 64 * 1024);
    framed.set_backpressure_boundary(WRITE_BOUNDARY);
    let (writer, reader) = framed.split();
    Link {
        reader: Box::pin(reader),
        writer: Box::pin(writer),
        peer,
        peer_cert: None,
    }
}
