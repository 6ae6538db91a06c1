//! The egress proxy's SOCKS5 side (RFC 1928): CONNECT only, names
//! resolved by the agent; user and password (RFC 1929) when the proxy has
//! credentials.

use std::net::SocketAddr;

use burrow_mux::pump;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::reach::{Proxy, REQUEST_TIMEOUT};
use crate::io::Rewind;

/// The connection, with what was read to tell SOCKS5 from HTTP in front.
type Conn = Rewind<TcpStream>;

async fn reply(tcp: &mut Conn, code: u8) {
    let _ = tcp.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await;
}

/// Reads exactly `buf.len()` bytes within the request timeout.
async fn read_exact(c: &mut Conn, buf: &mut [u8]) -> Option<()> {
    tokio::time::timeout(REQUEST_TIMEOUT, c.read_exact(buf))
        .await
        .ok()?
        .ok()?;
    Some(())
}

/// Serves one SOCKS5 client whose first bytes are `first`.
pub(crate) async fn serve(proxy: &Proxy, tcp: TcpStream, first: BytesMut, client: SocketAddr) {
    let mut tcp = Rewind::new(first, tcp);
    let mut hdr = [0u8; 2];
    if read_exact(&mut tcp, &mut hdr).await.is_none() {
        return;
    }
    let mut methods = vec![0u8; usize::from(hdr[1])];
    if read_exact(&mut tcp, &mut methods).await.is_none() {
        return;
    }
    let want = if proxy.auth.is_some() { 2 } else { 0 };
    if !methods.contains(&want) {
        let _ = tcp.write_all(&[5, 0xFF]).await;
        info!(%client, "SOCKS5 client refused: no acceptable authentication method");
        return;
    }
    if tcp.write_all(&[5, want]).await.is_err() {
        return;
    }
    if let Some(auth) = &proxy.auth {
        let mut v = [0u8; 2];
        if read_exact(&mut tcp, &mut v).await.is_none() {
            return;
        }
        let mut user = vec![0u8; usize::from(v[1])];
        let mut plen = [0u8; 1];
        if read_exact(&mut tcp, &mut user).await.is_none()
            || read_exact(&mut tcp, &mut plen).await.is_none()
        {
            return;
        }
        let mut pass = vec![0u8; usize::from(plen[0])];
        if read_exact(&mut tcp, &mut pass).await.is_none() {
            return;
        }
        let Ok(attempt) = proxy.throttles.proxy.attempt(client.ip()).await else {
            let _ = tcp.write_all(&[1, 1]).await;
            return;
        };
        if !auth.check(&user, &pass) {
            let _ = tcp.write_all(&[1, 1]).await;
            attempt.failed("wrong proxy credentials (SOCKS5)");
            return;
        }
        attempt.succeeded();
        if tcp.write_all(&[1, 0]).await.is_err() {
            return;
        }
    }
    let mut req = [0u8; 4];
    if read_exact(&mut tcp, &mut req).await.is_none() {
        return;
    }
    if req[0] != 5 {
        return;
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            if read_exact(&mut tcp, &mut a).await.is_none() {
                return;
            }
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            if read_exact(&mut tcp, &mut a).await.is_none() {
                return;
            }
            std::net::Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut n = [0u8; 1];
            if read_exact(&mut tcp, &mut n).await.is_none() {
                return;
            }
            let mut name = vec![0u8; usize::from(n[0])];
            if read_exact(&mut tcp, &mut name).await.is_none() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            reply(&mut tcp, 0x08).await;
            return;
        }
    };
    let mut p = [0u8; 2];
    if read_exact(&mut tcp, &mut p).await.is_none() {
        return;
    }
    let port = u16::from_be_bytes(p);
    if req[1] != 1 {
        reply(&mut tcp, 0x07).await;
        return;
    }
    let (stream, agent) = match proxy.reach(&host, port, false).await {
        Ok(s) => s,
        Err(r) => {
            let (_, _, why) = r.http();
            info!(%client, %host, port, reason = %why.trim(), "SOCKS5 request refused");
            let code = r.socks();
            proxy.refused(
                client,
                (&host, port),
                &r,
                0,
                &format!("{} (SOCKS5 reply {code})", why.trim()),
            );
            reply(&mut tcp, code).await;
            return;
        }
    };
    let _active = proxy.audit.active(crate::metrics::Kind::Egress);
    reply(&mut tcp, 0).await;
    let (tcp, rest) = tcp.into_parts();
    let sent = rest.len() as u64;
    if !rest.is_empty() && stream.send(Bytes::from(rest)).await.is_err() {
        return;
    }
    let started = (burrow_store::now_micros(), std::time::Instant::now());
    let out = pump(stream, tcp).await;
    debug!(%client, %host, up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "SOCKS5 stream closed");
    proxy.record(started, agent, client, (&host, port), sent, &out);
}
