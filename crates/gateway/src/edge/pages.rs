//! The edge's small HTML pages (landing, tunnel down, bad request): one
//! look, text escaped, never an internal error text.

use burrow_transport::page::{escape, respond};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, combinators::BoxBody};

/// The body type of the edge's answers (streamed from services, or ours).
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// An answer of ours with `body`.
pub(crate) fn full(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    respond(status, content_type, body).map(|b| b.map_err(|e| match e {}).boxed())
}

/// The HTML of a small page (landing, tunnel down, bad request).
pub(crate) fn page_html(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{t}</h1><p>{x}</p><p><small>Burrow</small></p></body></html>\n",
        t = escape(title),
        x = escape(text)
    )
}

/// A small page as an answer.
pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    full(status, "text/html; charset=utf-8", page_html(title, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let html = page_html("Nothing <here>", "<script>alert(1)</script>");
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        assert!(html.contains("<title>Nothing &lt;here&gt;</title>"));
        let r = page(StatusCode::NOT_FOUND, "Nothing here", "<script>");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
