//! One HTTP/1.1 request on a connection already made, for the request
//! inspector: the answer's status, headers, timings and the first bytes of
//! its body. The gateway fetches through its own edge with it, the agent
//! straight from the internal service.

use std::time::{Duration, Instant};

use burrow_api::link::{Fetched, ProbeMethod};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// What the request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The answer's status.
    pub status: u16,
    /// The answer's headers, in order (values not UTF-8 are shown lossily).
    pub headers: Vec<(String, String)>,
    /// From `started` to the answer's head.
    pub head: Duration,
    /// From `started` to the end of the body kept.
    pub total: Duration,
    /// The first `limit` bytes of the body.
    pub body: Vec<u8>,
    /// Whether the body was longer than `limit`.
    pub truncated: bool,
}

/// How long one inspector fetch may take, connecting included (under the
/// link's default 10 s per call, so the gateway's answer arrives).
pub const PROBE_TIME: Duration = Duration::from_secs(8);

/// Runs `fetching` (connecting, then [`fetch`]) for at most
/// [`PROBE_TIME`] and gives its outcome as the link carries it: `via` says
/// from where, `started` is when the caller began (a failure's time counts
/// from there too).
pub async fn fetched(
    via: String,
    started: Instant,
    fetching: impl Future<Output = Result<Probed, String>>,
) -> Fetched {
    let got = tokio::time::timeout(PROBE_TIME, fetching)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", PROBE_TIME.as_secs())));
    match got {
        Ok(a) => Fetched::answered(
            via,
            a.status,
            a.headers,
            (a.head, a.total),
            &a.body,
            a.truncated,
        ),
        Err(why) => Fetched::failed(via, why, started.elapsed()),
    }
}

/// Sends `method path` with `Host: host` on `io` and reads the answer, at
/// most `limit` bytes of its body. `started` is when the caller began
/// (before connecting), so the timings include the connection. The caller
/// bounds the whole in time.
pub async fn fetch<IO>(
    io: IO,
    method: ProbeMethod,
    host: &str,
    path: &str,
    limit: usize,
    started: Instant,
) -> Result<Probed, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let method = match method {
        ProbeMethod::Get => Method::GET,
        ProbeMethod::Head => Method::HEAD,
    };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!("burrow-inspector/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("not a request: {e}"))?;
    let answer = sender.send_request(req).await;
    let out = async {
        let answer = answer.map_err(|e| format!("no answer: {e}"))?;
        let head = started.elapsed();
        let status = answer.status().as_u16();
        let headers = answer
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = answer.into_body();
        let mut kept = Vec::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the body broke off: {e}"))?;
            if let Some(data) = frame.data_ref() {
                let room = limit - kept.len();
                if data.len() > room {
                    kept.extend_from_slice(&data[..room]);
                    truncated = true;
                    break;
                }
                kept.extend_from_slice(data);
            }
        }
        Ok(Probed {
            status,
            headers,
            head,
            total: started.elapsed(),
            body: kept,
            truncated,
        })
    }
    .await;
    driver.abort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn served(
        answer: &'static [u8],
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Vec<u8>>) {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut asked = Vec::new();
            let mut buf = [0u8; 4096];
            while !asked.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = server.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                asked.extend_from_slice(&buf[..n]);
            }
            let _ = server.write_all(answer).await;
            let _ = server.shutdown().await;
            asked
        });
        (client, task)
    }

    #[tokio::test]
    async fn the_answer_is_read_and_the_body_cut_at_the_limit() {
        let (io, asked) =
            served(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-a: 1\r\n\r\n0123456789").await;
        let p = fetch(
            io,
            ProbeMethod::Get,
            "app.example.com",
            "/a?b=1",
            4,
            Instant::now(),
        )
        .await
        .expect("answered");
        assert_eq!(p.status, 200);
        assert_eq!(p.body, b"0123");
        assert!(p.truncated);
        assert!(p.headers.contains(&("x-a".into(), "1".into())));
        assert!(p.total >= p.head);
        let asked = String::from_utf8(asked.await.expect("served")).expect("text");
        assert!(asked.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{asked}");
        assert!(asked.to_lowercase().contains("host: app.example.com\r\n"));

        let (io, _) = served(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno").await;
        let p = fetch(io, ProbeMethod::Get, "h", "/", 4, Instant::now())
            .await
            .expect("answered");
        assert_eq!(
            (p.status, p.body.as_slice(), p.truncated),
            (404, &b"no"[..], false)
        );
    }

    #[tokio::test]
    async fn garbage_and_silence_are_errors() {
        let (io, _) = served(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(
            fetch(io, ProbeMethod::Get, "h", "/", 4, Instant::now())
                .await
                .is_err()
        );
        let (io, _) = served(b"").await;
        let e = fetch(io, ProbeMethod::Head, "h", "/", 4, Instant::now())
            .await
            .expect_err("closed");
        assert!(e.contains("no answer"), "{e}");
    }
}
