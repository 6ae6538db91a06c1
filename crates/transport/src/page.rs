//! The small HTML page every listening port shows a browser: what it is,
//! its version and its certificate thumbprint, so an operator can confirm
//! a configuration. It never shows a secret.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tls::Thumbprint;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: `what` ("Burrow gateway"), this build's version, the
/// certificate thumbprint (if TLS), and one sentence of `note`.
pub fn html(what: &str, thumbprint: Option<Thumbprint>, note: &str) -> String {
    let what = escape(what);
    let tp = thumbprint.map_or_else(
        || "<p>No TLS on this port (a TLS proxy in front terminates it).</p>".to_owned(),
        |t| format!("<p>Certificate thumbprint (SHA-256): <code id=\"thumbprint\">{t}</code></p>"),
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{what}</title></head>\
         <body><h1>{what}</h1><p>Burrow version <span id=\"version\">{}</span>.</p>{tp}<p>{}</p></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(note),
    )
}

/// A response with a body and content type.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Serves `page` at `/` (404 elsewhere) on one HTTP/1.1 connection.
pub async fn serve_page<S>(io: S, page: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let page = Bytes::from(page);
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let page = page.clone();
        async move {
            Ok::<_, Infallible>(if req.uri().path() == "/" {
                respond(StatusCode::OK, "text/html; charset=utf-8", page)
            } else {
                respond(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "not found\n",
                )
            })
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), svc)
        .await;
}
