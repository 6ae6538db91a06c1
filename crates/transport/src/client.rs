//! A small HTTPS client for the gateway's own HTTP endpoints (the token
//! endpoint, the admin API). It reaches them the way links do: through the
//! same HTTP proxy, with the same TLS policy and the same pinning, so an
//! agent that may dial the gateway may also fetch its tokens.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use crate::dial::Connected;
use crate::proxy::ProxyEnv;
use crate::{Dialer, TransportError, TunnelUrl};

/// Largest response body read.
pub const MAX_RESPONSE: usize = 1024 * 1024;

/// An HTTP(S) origin: `https://host[:port]` or `http://host[:port]`.
#[derive(Debug, Clone)]
pub struct HttpClient {
    dialer: Dialer,
    base: String,
    /// `Host` header: host and port as given.
    host: String,
}

/// A response: status and (bounded) body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
    /// How long the server asked to wait before retrying (`Retry-After`
    /// in seconds, on a 503 or 429).
    pub retry_after: Option<Duration>,
}

/// Longest `Retry-After` honoured: a server asking for more is waited on
/// this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A `Retry-After` value in seconds (the HTTP-date form is not used by
/// gateways and is ignored).
pub fn parse_retry_after(v: &[u8]) -> Option<Duration> {
    let secs: u64 = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

impl HttpClient {
    /// A client for `base` (`https://host[:port]`, or `http://` behind a
    /// TLS proxy). `tls` is needed for https (ALPN `http/1.1`).
    pub fn new(
        base: &str,
        tls: Option<Arc<ClientConfig>>,
        proxies: &ProxyEnv,
    ) -> Result<Self, TransportError> {
        let bad = |why: &str| TransportError::BadUrl {
            url: base.to_owned(),
            why: why.to_owned(),
        };
        let base = base.trim_end_matches('/');
        let (as_ws, rest) = if let Some(rest) = base.strip_prefix("https://") {
            (format!("wss://{rest}/"), rest)
        } else if let Some(rest) = base.strip_prefix("http://") {
            (format!("ws://{rest}/"), rest)
        } else {
            return Err(bad("expected https://HOST[:PORT] or http://HOST[:PORT]"));
        };
        if rest.contains('/') {
            return Err(bad("give the origin only: scheme, host and port, no path"));
        }
        let url = TunnelUrl::parse(&as_ws).map_err(|_| bad("not a valid origin"))?;
        let mut dialer = Dialer::new(url, tls, proxies)?;
        dialer.url.url = base.to_owned();
        Ok(HttpClient {
            dialer,
            base: base.to_owned(),
            host: rest.to_owned(),
        })
    }

    /// The origin, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the response, all within `timeout`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        tokio::time::timeout(timeout, self.request_inner(method, path, headers, body))
            .await
            .map_err(|_| TransportError::Timeout(self.base.clone()))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
    ) -> Result<HttpResponse, TransportError> {
        let failed = |why: String| TransportError::Http {
            url: format!("{}{path}", self.base),
            why,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::CONNECTION, "close")
            .body(Full::new(body))
            .map_err(|e| failed(e.to_string()))?;
        for (name, value) in headers {
            let v = HeaderValue::from_str(value)
                .map_err(|_| failed(format!("header {name} has characters HTTP does not allow")))?;
            req.headers_mut().insert(name.clone(), v);
        }
        let response = match self.dialer.connect_io().await? {
            Connected::Plain(tcp, _) => send(TokioIo::new(tcp), req).await,
            Connected::Tls(tls, _) => send(TokioIo::new(*tls), req).await,
        }
        .map_err(failed)?;
        Ok(response)
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<HttpResponse, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| parse_retry_after(v.as_bytes()));
    let body = Limited::new(res.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(HttpResponse {
        status,
        body,
        retry_after,
    })
}
