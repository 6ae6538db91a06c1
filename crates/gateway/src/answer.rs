//! The body type of the gateway's own whole answers (the admin API, the
//! token endpoint, the tunnel port's pages), and their JSON form.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// A whole answer's body.
pub(crate) type Body = Full<Bytes>;

/// A JSON answer (one line, `application/json`).
pub(crate) fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
