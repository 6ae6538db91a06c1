//! The egress proxy's HTTP side: `CONNECT host:port` (any TCP protocol,
//! TLS end to end) and absolute-URI `http://` requests, which the proxy
//! rewrites to origin form (with TLS originated by the agent for rules
//! marked so).

use std::net::SocketAddr;

use burrow_mux::{ResetCode, pump};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::reach::{Proxy, ProxyAuth, REQUEST_TIMEOUT};
use crate::io::{Head, read_head};

/// Largest HTTP request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

async fn reply(tcp: &mut TcpStream, status: u16, reason: &str, extra: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Where a request head ends in `buf`, if it is all there.
fn head_end(buf: &[u8]) -> Result<Option<usize>, ()> {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some(i + 4)),
        None if buf.len() >= MAX_HEAD => Err(()),
        None => Ok(None),
    }
}

fn basic_ok(auth: &ProxyAuth, header: Option<&[u8]>) -> bool {
    use base64::Engine as _;
    let Some(v) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some(b64) = v.trim().strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let (u, p) = match raw.iter().position(|b| *b == b':') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => return false,
    };
    auth.check(u, p)
}

/// Splits `host:port` (IPv6 in brackets); `None` without a valid port.
fn host_port(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port?,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok().filter(|p: &u16| *p > 0)?)),
        None => Some((authority.to_owned(), default_port?)),
    }
}

pub(crate) async fn serve(
    proxy: &Proxy,
    mut tcp: TcpStream,
    mut buf: BytesMut,
    client: SocketAddr,
) {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let Head::Read(head_len) = read_head(&mut tcp, &mut buf, deadline, &mut timer, head_end).await
    else {
        reply(
            &mut tcp,
            400,
            "Bad Request",
            "",
            "burrow: incomplete or oversized request head\n",
        )
        .await;
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(
        req.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        reply(
            &mut tcp,
            400,
            "Bad Request",
            "",
            "burrow: malformed HTTP request\n",
        )
        .await;
        return;
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("").to_owned();
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if let Some(auth) = &proxy.auth {
        let given = header("proxy-authorization");
        // A request without credentials is the usual first leg of the
        // challenge, not a guess: it is not counted.
        let refused = match given {
            None => Some("proxy credentials required"),
            Some(_) => match proxy.throttles.proxy.attempt(client.ip()).await {
                Err(_) => Some("too many wrong proxy credentials from this address: retry later"),
                Ok(attempt) if basic_ok(auth, given) => {
                    attempt.succeeded();
                    None
                }
                Ok(attempt) => {
                    attempt.failed("wrong proxy credentials (HTTP)");
                    Some("wrong proxy credentials")
                }
            },
        };
        if let Some(why) = refused {
            reply(
                &mut tcp,
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"burrow\"\r\n",
                &format!("burrow: {why}\n"),
            )
            .await;
            return;
        }
    }
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let (host, port, rewritten) = if connect {
        let Some((h, p)) = host_port(&target, None) else {
            reply(
                &mut tcp,
                400,
                "Bad Request",
                "",
                "burrow: CONNECT needs host:port\n",
            )
            .await;
            return;
        };
        (h, p, None)
    } else {
        let Ok(uri) = target.parse::<http::Uri>() else {
            reply(
                &mut tcp,
                400,
                "Bad Request",
                "",
                "burrow: malformed request target\n",
            )
            .await;
            return;
        };
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(a)) => {
                let Some((h, p)) = host_port(a.as_str(), Some(80)) else {
                    reply(
                        &mut tcp,
                        400,
                        "Bad Request",
                        "",
                        "burrow: bad host in request target\n",
                    )
                    .await;
                    return;
                };
                if req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("host"))
                    .count()
                    > 1
                {
                    reply(
                        &mut tcp,
                        400,
                        "Bad Request",
                        "",
                        "burrow: more than one Host field\n",
                    )
                    .await;
                    return;
                }
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                // The URI's authority is the host (RFC 9112 §3.2.2): the
                // client's Host field, whatever it says, is replaced.
                let authority = a.as_str().rsplit('@').next().unwrap_or_default();
                let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
                for h in req.headers.iter() {
                    let n = h.name.to_ascii_lowercase();
                    if matches!(
                        n.as_str(),
                        "host"
                            | "proxy-authorization"
                            | "proxy-connection"
                            | "connection"
                            | "keep-alive"
                    ) {
                        continue;
                    }
                    head.push_str(h.name);
                    head.push_str(": ");
                    head.push_str(&String::from_utf8_lossy(h.value));
                    head.push_str("\r\n");
                }
                head.push_str("Connection: close\r\n\r\n");
                (h, p, Some(head))
            }
            (Some(_), _) => {
                reply(
                    &mut tcp,
                    400,
                    "Bad Request",
                    "",
                    "burrow: only http:// URLs are proxied as requests; use CONNECT for https\n",
                )
                .await;
                return;
            }
            _ => {
                reply(&mut tcp, 400, "Bad Request", "", "burrow: this is an egress proxy: send CONNECT host:port or an absolute http:// URL\n").await;
                return;
            }
        }
    };
    // TLS origination applies to plain-HTTP requests for a rule marked so,
    // to port 443 unless the URL names one.
    let explicit_port = !connect
        && target
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.port_u16())
            .is_some();
    let origination = rewritten.is_some();
    let port = if origination && !explicit_port && proxy.rule_tls(&host) {
        443
    } else {
        port
    };
    let (stream, agent) = match proxy.reach(&host, port, origination).await {
        Ok(s) => s,
        Err(r) => {
            let (status, reason, body) = r.http();
            info!(%client, %host, port, status, reason = %body.trim(), "proxy request refused");
            proxy.refused(client, (&host, port), &r, status, &body);
            reply(&mut tcp, status, reason, "", &body).await;
            return;
        }
    };
    let _active = proxy.audit.active(crate::metrics::Kind::Egress);
    debug!(%client, %host, port, connect, "proxy stream open");
    let rest = Bytes::copy_from_slice(&buf[head_len..]);
    let sent = (rest.len() + rewritten.as_ref().map_or(0, String::len)) as u64;
    match rewritten {
        None => {
            if tcp
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                stream.reset(ResetCode::Cancelled);
                return;
            }
        }
        Some(head) => {
            if stream.send(Bytes::from(head)).await.is_err() {
                return;
            }
        }
    }
    if !rest.is_empty() && stream.send(rest).await.is_err() {
        return;
    }
    let started = (burrow_store::now_micros(), std::time::Instant::now());
    let out = pump(stream, tcp).await;
    debug!(%client, %host, up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "proxy stream closed");
    proxy.record(started, agent, client, (&host, port), sent, &out);
}
