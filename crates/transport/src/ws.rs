//! WebSocket carrier: one frame per binary message.

use std::io;

use burrow_wire::{Frame, HEADER_LEN, MAX_PAYLOAD};
use futures_util::{SinkExt, StreamExt, future};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{Link, TransportError, TunnelUrl};

/// Paths the gateway serves the tunnel endpoint on.
pub const TUNNEL_PATHS: [&str; 2] = ["/tunnel", "/connect"];

/// Read size over plain TCP: one read can take many frames.
pub const READ_CHUNK_TCP: usize = 64 * 1024;
/// Read size over TLS: a read returns at most about one TLS record, and
/// tungstenite zero-fills its whole read chunk before each read, so a
/// larger chunk only costs memset time (8% of the agent's CPU at 64 KiB).
pub const READ_CHUNK_TLS: usize = 18 * 1024;

/// WebSocket limits: a message holds one frame, so nothing larger than the
/// largest frame is ever buffered. `read_chunk` is [`READ_CHUNK_TCP`] or
/// [`READ_CHUNK_TLS`].
pub fn config(read_chunk: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(HEADER_LEN + MAX_PAYLOAD))
        .max_frame_size(Some(HEADER_LEN + MAX_PAYLOAD))
        .write_buffer_size(64 * 1024)
        .read_buffer_size(read_chunk)
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        // A peer that died mid-link is a lost connection, not a protocol breach.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer"),
        tungstenite::Error::Capacity(c) => io::Error::new(io::ErrorKind::InvalidData, c),
        tungstenite::Error::Protocol(p) => io::Error::new(io::ErrorKind::InvalidData, p),
        other => io::Error::other(other),
    }
}

/// Wraps an established WebSocket into a [`Link`].
pub fn link<S>(ws: WebSocketStream<S>, peer: Option<std::net::SocketAddr>) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let reader = stream.filter_map(|msg| {
        future::ready(match msg {
            Ok(Message::Binary(b)) => Some(
                Frame::decode_message(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            ),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
            Ok(Message::Close(_)) => None,
            Ok(Message::Text(_)) => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "text message on a tunnel link",
            ))),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => None,
            Err(e) => Some(Err(to_io(e))),
        })
    });
    let writer = sink
        .sink_map_err(to_io)
        .with(|f: Frame| future::ready(Ok::<_, io::Error>(Message::Binary(f.to_bytes()))));
    Link {
        reader: Box::pin(reader),
        writer: Box::pin(writer),
        peer,
        peer_cert: None,
    }
}

/// Server side: wraps a connection the HTTP server has already upgraded
/// (`tls`: whether it runs over TLS).
pub async fn accept_upgraded<S>(io: S, peer: Option<std::net::SocketAddr>, tls: bool) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let chunk = if tls { READ_CHUNK_TLS } else { READ_CHUNK_TCP };
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config(chunk))).await;
    link(ws, peer)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(key)
}

/// Client side: the WebSocket upgrade over a connected stream, with
/// `Authorization: Bearer <token>` when a token is given.
pub async fn client_handshake<S>(
    url: &TunnelUrl,
    token: Option<&str>,
    io: S,
    peer: Option<std::net::SocketAddr>,
) -> Result<Link, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut request = url
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| TransportError::WebSocket(e.to_string()))?;
    if let Some(token) = token {
        let auth = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            TransportError::WebSocket(
                "credential contains characters not allowed in a header".into(),
            )
        })?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, auth);
    }
    let chunk = if url.scheme.is_tls() {
        READ_CHUNK_TLS
    } else {
        READ_CHUNK_TCP
    };
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(request, io, Some(config(chunk)))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => {
                let status = resp.status().as_u16();
                if status == 401 || status == 403 {
                    TransportError::Unauthorized { status }
                } else {
                    TransportError::HttpStatus {
                        status,
                        url: url.url.clone(),
                    }
                }
            }
            other => TransportError::WebSocket(other.to_string()),
        })?;
    Ok(link(ws, peer))
}
