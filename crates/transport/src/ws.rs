//! WebSocket carrier: one frame per binary message, framed by Burrow's
//! own [`codec::WsCodec`] straight over the connection (the upgrade
//! handshake is done here too), so a frame is read and written with no
//! message copies in between.

mod codec;

use std::io;

use base64::Engine;
use bytes::BytesMut;
use futures_util::StreamExt;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedParts};

use crate::{Link, TransportError, TunnelUrl};
use codec::{Role, WsCodec};

/// Paths the gateway serves the tunnel endpoint on.
pub const TUNNEL_PATHS: [&str; 2] = ["/tunnel", "/connect"];

/// The link's read buffer, and how many written bytes are buffered before
/// the writer flushes: large enough that bulk data fills whole TLS records.
const BUFFER: usize = 64 * 1024;
/// Largest upgrade response head the client reads.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A [`Link`] over an upgraded connection, with bytes already read from
/// it after the upgrade in `read`.
fn link<S>(io: S, read: &[u8], role: Role, peer: Option<std::net::SocketAddr>) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut parts = FramedParts::new::<burrow_wire::Frame>(io, WsCodec::new(role));
    // Made with its full capacity: a buffer that grew from empty would,
    // once shared with frames split off it, grow again only by what each
    // read needs, and reads would shrink to a few bytes.
    parts.read_buf = BytesMut::with_capacity(BUFFER.max(read.len()));
    parts.read_buf.extend_from_slice(read);
    parts.write_buf = BytesMut::with_capacity(BUFFER);
    let mut framed = Framed::from_parts(parts);
    framed.set_backpressure_boundary(BUFFER);
    let (writer, reader) = framed.split();
    Link {
        reader: Box::pin(reader),
        writer: Box::pin(writer),
        peer,
        peer_cert: None,
    }
}

/// Server side: wraps a connection the HTTP server has already upgraded,
/// with the bytes it had read past the upgrade request in `read`.
pub fn accept_upgraded<S>(io: S, read: &[u8], peer: Option<std::net::SocketAddr>) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    link(io, read, Role::Server, peer)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2:
/// base64 of the SHA-1 of the key and the protocol's GUID).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Client side: the WebSocket upgrade over a connected stream, with
/// `Authorization: Bearer <token>` when a token is given.
pub async fn client_handshake<S>(
    url: &TunnelUrl,
    token: Option<&str>,
    mut io: S,
    peer: Option<std::net::SocketAddr>,
) -> Result<Link, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_err = |why: String| TransportError::WebSocket(why);
    let uri: http::Uri = url
        .url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ws_err(e.to_string()))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or_default())
        .unwrap_or(url.authority.as_str());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = base64::engine::general_purpose::STANDARD.encode(rand::rng().random::<[u8; 16]>());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if let Some(token) = token {
        if http::HeaderValue::from_str(token).is_err() {
            return Err(ws_err(
                "credential contains characters not allowed in a header".into(),
            ));
        }
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    let lost = |e: io::Error| ws_err(format!("connection lost during the WebSocket upgrade: {e}"));
    io.write_all(request.as_bytes()).await.map_err(lost)?;
    io.flush().await.map_err(lost)?;

    let mut buf = BytesMut::with_capacity(4096);
    let (len, status, accept, upgrade, retry_after) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut fields);
        match res.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let field = |name: &str| {
                    res.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                };
                break (
                    n,
                    res.code.unwrap_or_default(),
                    field("sec-websocket-accept"),
                    field("upgrade"),
                    field("retry-after")
                        .and_then(|v| crate::client::parse_retry_after(v.as_bytes())),
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(ws_err("the upgrade response header is too large".into()));
            }
            // A TLS record (an alert, a handshake): plain HTTP was sent
            // to a port that speaks TLS.
            Err(_) if matches!(buf.first(), Some(0x15 | 0x16)) => {
                return Err(ws_err(format!(
                    "the server answered in TLS: {} speaks TLS, so connect with {}",
                    url.authority,
                    url.url.replacen("ws://", "wss://", 1)
                )));
            }
            Err(e) => {
                return Err(ws_err(format!("the upgrade response is not HTTP: {e}")));
            }
        }
        if io.read_buf(&mut buf).await.map_err(lost)? == 0 {
            return Err(ws_err(
                "the server closed the connection during the WebSocket upgrade".into(),
            ));
        }
    };
    if let (503, Some(retry_after)) = (status, retry_after) {
        return Err(TransportError::Busy { retry_after });
    }
    match status {
        101 => {}
        401 | 403 => return Err(TransportError::Unauthorized { status }),
        status => {
            return Err(TransportError::HttpStatus {
                status,
                url: url.url.clone(),
            });
        }
    }
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(ws_err(
            "the server switched to something other than WebSocket".into(),
        ));
    }
    if accept.as_deref() != Some(accept_key(key.as_bytes()).as_str()) {
        return Err(ws_err(
            "the server's Sec-WebSocket-Accept does not match the key sent".into(),
        ));
    }
    Ok(link(io, &buf[len..], Role::Client, peer))
}

#[cfg(test)]
mod accept_tests {
    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
