//! The edge's HTTP/1.1 path: visitor requests are parsed (head only),
//! routed by host, given their forwarding headers and passed through to the
//! service's tunnel stream; bodies are copied as they are, framed by
//! `Content-Length` or chunked encoding, never buffered whole or re-encoded.
//! Responses come back the same way. One task per visitor connection, one
//! tunnel stream per service connection, kept between requests.
//!
//! It serves HTTP/1.1 on Burrow's HTTPS edge and published hosts on the
//! gateway's own port (behind Caddy). On the gateway's port, the first
//! request for a host without a route hands the connection (and the bytes
//! read so far) to the general HTTP server: the tunnel endpoint, the admin
//! API, the token endpoint.
//!
//! Refused requests: a malformed head (400), a head over 64 KiB or with
//! over 100 fields (431), both `Content-Length` and `Transfer-Encoding`,
//! conflicting lengths, or a request coding other than chunked (400: the
//! ambiguities request smuggling lives on).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burrow_mux::{MuxStream, ResetCode};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::backend::{Down, Http, http_record};
// Hop-by-hop fields go; `Transfer-Encoding` and `Content-Length` stay:
// bodies pass through as they are framed.
use super::forwarding::{
    self, Bodies, Field, Front, Policy, forwarded_for, last_forwarded, visitor,
};
use super::pages::page_html;
use crate::catalog::route_target;
use crate::io::{Head, read_head, read_more};
use crate::names::normalize_host;

/// Largest request or response head.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a head.
const MAX_HEADERS: usize = 100;
/// Largest trailer section of a chunked body.
const MAX_TRAILERS: usize = 64 * 1024;

/// How a visitor connection ended.
pub(crate) enum Outcome<I> {
    /// Served and closed.
    Done,
    /// A request for a host without a route: the connection and everything
    /// read from it, for the general HTTP server.
    Handover(I, BytesMut),
}

/// Refuses a request the edge will not pass on.
struct HeadRefusal {
    status: u16,
    title: &'static str,
    text: &'static str,
}

const fn refusal(status: u16, title: &'static str, text: &'static str) -> HeadRefusal {
    HeadRefusal {
        status,
        title,
        text,
    }
}

/// How a message body is framed (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// A parsed visitor request.
struct RequestHead {
    /// Bytes of the head in the visitor's buffer.
    len: usize,
    method: String,
    /// Path without the query (query strings may carry secrets).
    path: String,
    host: String,
    framing: Framing,
    upgrade: bool,
    /// The visitor asked to close after this request (or spoke HTTP/1.0).
    close: bool,
    head_request: bool,
    /// The head for the service, forwarding headers included.
    out: Bytes,
    /// X-Forwarded-For's last address, for PROXY protocol behind Caddy.
    forwarded_for: Option<std::net::IpAddr>,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Are all field values text (UTF-8)? A value that is not is refused
/// whole rather than skipped: a lenient server behind the edge could read
/// framing from a field the edge ignored (`Content-Length: 40\xff`,
/// `Transfer-Encoding: \xff, chunked`) and find a second request in the
/// body.
fn all_text(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().all(|h| std::str::from_utf8(h.value).is_ok())
}

/// Comma-separated tokens of every `name` field, trimmed (compare them
/// without regard to case).
fn tokens<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 'a {
    forwarding::tokens(
        headers
            .iter()
            .filter(move |h| eq(h.name, name))
            .filter_map(|h| std::str::from_utf8(h.value).ok()),
    )
}

/// Whether the last coding `Transfer-Encoding` lists is chunked; `None`
/// without the field.
fn chunked_last(headers: &[httparse::Header<'_>]) -> Option<bool> {
    tokens(headers, "transfer-encoding")
        .last()
        .map(|t| eq(t, "chunked"))
}

/// The framing `Content-Length` fields give: `Ok(None)` without any,
/// an error for malformed or conflicting values.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, ()> {
    let mut found: Option<u64> = None;
    for v in tokens(headers, "content-length") {
        if !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let n: u64 = v.parse().map_err(|_| ())?;
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        found = Some(n);
    }
    Ok(found)
}

/// Appends one header field to a head.
fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parses a request head at the start of `buf`: `Ok(None)` while it is
/// incomplete.
fn parse_request(
    buf: &[u8],
    client_ip: &str,
    front: Front,
) -> Result<Option<RequestHead>, HeadRefusal> {
    // Uninitialised: a request names a few fields, and zeroing room for
    // MAX_HEADERS of them cost more than parsing them.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(refusal(
                431,
                "Request header too large",
                "The request's header is larger than this gateway accepts.",
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refusal(
                431,
                "Request header too large",
                "The request has more header fields than this gateway accepts.",
            ));
        }
        Err(_) => {
            return Err(refusal(
                400,
                "Bad request",
                "The request is not valid HTTP/1.1.",
            ));
        }
    };
    if len > MAX_HEAD {
        return Err(refusal(
            431,
            "Request header too large",
            "The request's header is larger than this gateway accepts.",
        ));
    }
    let bad = |text| refusal(400, "Bad request", text);
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("The request line is incomplete."));
    };
    let headers = &*req.headers;
    if !all_text(headers) {
        return Err(bad("A header field's value is not valid text."));
    }

    // The target in origin form, and the host an absolute form names.
    let (target, authority) = match target.get(..8).map(str::to_ascii_lowercase) {
        Some(p) if p.starts_with("http://") || p == "https://" => {
            let rest = &target[p.find("//").map_or(0, |i| i + 2)..];
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let path = &rest[end..];
            let authority = rest[..end].rsplit('@').next().unwrap_or_default();
            let path = if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            (path, Some(authority))
        }
        _ => (target.to_owned(), None),
    };
    let host_fields: Vec<&str> = headers
        .iter()
        .filter(|h| eq(h.name, "host"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .collect();
    if host_fields.len() > 1 {
        return Err(bad("The request has more than one Host field."));
    }
    let Some(host) = authority
        .or(host_fields.first().copied())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(normalize_host)
    else {
        return Err(bad("The request names no host."));
    };

    let te = chunked_last(headers);
    let cl = content_length(headers)
        .map_err(|()| bad("The request's Content-Length is malformed or conflicting."))?;
    let framing = match (te, cl) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "The request has both Content-Length and Transfer-Encoding.",
            ));
        }
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) => {
            return Err(bad("The request's transfer coding is not chunked."));
        }
        (None, n) => Framing::Length(n.unwrap_or(0)),
    };
    // Borrowed from the buffer; allocated only when the field is there.
    let connection: Vec<&str> = tokens(headers, "connection").collect();
    let has = |t: &str| connection.iter().any(|c| eq(c, t));
    let upgrade = has("upgrade") && headers.iter().any(|h| eq(h.name, "upgrade"));
    let close = version == 0 || has("close");

    let mut out = Vec::with_capacity(len + 128);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if version == 0 {
        b" HTTP/1.0\r\nhost: "
    } else {
        b" HTTP/1.1\r\nhost: "
    });
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let policy = Policy {
        front,
        upgrade,
        connection: &connection,
        bodies: Bodies::AsFramed,
    };
    let mut prior_xff: Vec<&str> = Vec::new();
    let mut has_proto = false;
    for h in headers {
        match policy.request_field(h.name) {
            Field::Keep => {
                has_proto |= eq(h.name, "x-forwarded-proto");
                push_field(&mut out, h.name, h.value);
            }
            Field::Drop => {}
            Field::ForwardedFor => {
                if let Ok(v) = std::str::from_utf8(h.value) {
                    prior_xff.push(v);
                }
            }
        }
    }
    let forwarded_for_ip = last_forwarded(&prior_xff);
    out.extend_from_slice(b"x-forwarded-for: ");
    forwarded_for(&mut out, &prior_xff, client_ip);
    if let Some(proto) = front.proto(has_proto) {
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(proto.as_bytes());
    }
    out.extend_from_slice(b"\r\nx-forwarded-host: ");
    out.extend_from_slice(host.as_bytes());
    if upgrade {
        out.extend_from_slice(b"\r\nconnection: upgrade");
    }
    out.extend_from_slice(b"\r\n\r\n");

    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Some(RequestHead {
        len,
        head_request: method == "HEAD",
        method: method.to_owned(),
        path,
        host,
        framing,
        upgrade,
        close,
        out: Bytes::from(out),
        forwarded_for: forwarded_for_ip,
    }))
}

/// A parsed service response.
struct ResponseHead {
    len: usize,
    status: u16,
    framing: Framing,
    /// The service will close (or spoke HTTP/1.0 without keep-alive).
    close: bool,
    /// The head for the visitor, without its final empty line.
    out: Vec<u8>,
}

/// Parses a response head at the start of `buf`: `Ok(None)` while it is
/// incomplete, `Err` for a malformed or oversized one.
fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, &'static str> {
    // Uninitialised, as for requests: zeroing room for MAX_HEADERS fields
    // per response is work the parse does not need.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err("its response header is too large");
        }
        Err(_) => return Err("its response is not valid HTTP/1.1"),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err("its response is not valid HTTP/1.1");
    };
    let headers = &*res.headers;
    if !all_text(headers) {
        return Err("a header field's value in its response is not valid text");
    }
    let connection: Vec<&str> = tokens(headers, "connection").collect();
    let has = |t: &str| connection.iter().any(|c| eq(c, t));
    let close = has("close") || (version == 0 && !has("keep-alive"));
    let te = chunked_last(headers);
    let framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status)
    {
        Framing::Length(0)
    } else if let Some(chunked) = te {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match content_length(headers) {
            Ok(Some(n)) => Framing::Length(n),
            Ok(None) => Framing::UntilClose,
            Err(()) => return Err("its response's Content-Length is malformed"),
        }
    };
    let mut out = Vec::with_capacity(len + 32);
    out.extend_from_slice(b"HTTP/1.1 ");
    // `httparse` gives three digits.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(res.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    let policy = Policy {
        front: Front::Edge,
        upgrade: status == 101,
        connection: &connection,
        bodies: Bodies::AsFramed,
    };
    for h in headers {
        if policy.response_field(h.name) {
            push_field(&mut out, h.name, h.value);
        }
    }
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        close,
        out,
    }))
}

/// Every line of chunked framing ends in CRLF (RFC 9112 §7.1): a bare LF
/// is read differently by different servers, so it is refused.
const BARE_LF: &str = "a chunked body's line ends in a bare LF";

/// Follows chunked framing over bytes passing through, to find where the
/// body ends.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    /// How many bytes of `data` belong to the body (all of them until its
    /// end is seen).
    fn feed(&mut self, data: &[u8]) -> Result<usize, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < data.len() && self.state != Done {
            let b = data[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return Err("a chunk size is too large");
                        }
                        let d = (b as char).to_digit(16).unwrap_or_default();
                        self.size = self.size * 16 + u64::from(d);
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = Extension,
                    b'\r' if self.digits > 0 => self.state = SizeLf,
                    b'\n' => return Err(BARE_LF),
                    _ => return Err("a chunk size is malformed"),
                },
                Extension => match b {
                    b'\r' => self.state = SizeLf,
                    b'\n' => return Err(BARE_LF),
                    _ => {}
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err("a chunk size line is malformed");
                    }
                    self.end_size_line();
                }
                Data => {
                    let n = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - i);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => match b {
                    b'\r' => self.state = DataLf,
                    b'\n' => return Err(BARE_LF),
                    _ => return Err("a chunk is longer than its size"),
                },
                DataLf => {
                    if b != b'\n' {
                        return Err("a chunk is longer than its size");
                    }
                    self.state = Size;
                }
                TrailerStart => match b {
                    b'\r' => self.state = EndLf,
                    b'\n' => return Err(BARE_LF),
                    _ => self.state = TrailerLine,
                },
                TrailerLine | TrailerLf => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err("the trailer section is too large");
                    }
                    self.state = match (self.state, b) {
                        (_, b'\r') => TrailerLf,
                        (TrailerLf, b'\n') => TrailerStart,
                        (_, b'\n') => return Err(BARE_LF),
                        _ => TrailerLine,
                    };
                }
                EndLf => {
                    if b != b'\n' {
                        return Err("the chunked body's end is malformed");
                    }
                    self.state = Done;
                }
                Done => {}
            }
            i += 1;
        }
        Ok(i)
    }

    fn end_size_line(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
        self.digits = 0;
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Tracks how much of a body has passed.
enum BodyLeft {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl BodyLeft {
    fn new(f: Framing) -> Self {
        match f {
            Framing::Length(n) => BodyLeft::Length(n),
            Framing::Chunked => BodyLeft::Chunked(Chunked::default()),
            Framing::UntilClose => BodyLeft::UntilClose,
        }
    }

    fn done(&self) -> bool {
        match self {
            BodyLeft::Length(n) => *n == 0,
            BodyLeft::Chunked(c) => c.done(),
            BodyLeft::UntilClose => false,
        }
    }

    /// How many bytes of `data` belong to the body.
    fn take(&mut self, data: &[u8]) -> Result<usize, &'static str> {
        match self {
            BodyLeft::Length(n) => {
                let k = usize::try_from(*n).unwrap_or(usize::MAX).min(data.len());
                *n -= k as u64;
                Ok(k)
            }
            BodyLeft::Chunked(c) => c.feed(data),
            BodyLeft::UntilClose => Ok(data.len()),
        }
    }
}

/// A service connection kept between a visitor's requests.
struct ServiceStream {
    host: String,
    /// The route's agent and internal URL it was opened for: a route
    /// changed since takes effect at the next request.
    agent: String,
    target: String,
    /// The PROXY protocol addresses it was opened with.
    proxy: Option<(SocketAddr, SocketAddr)>,
    stream: MuxStream,
    /// Bytes received beyond what has been passed on.
    buf: BytesMut,
}

/// Why an exchange ended early.
enum Failed {
    /// Before anything was sent to the visitor: it gets a 502 (or 504)
    /// page.
    Service(Down),
    /// The service closed or reset the connection without a byte of
    /// response: on a kept connection, it had dropped it while idle (the
    /// request can be sent again on a new one).
    Unanswered,
    /// The visitor went away, or the response broke off midway.
    Broken,
    /// The visitor's request body is not framed as its head says: it
    /// gets a 400 page, and neither connection is used again.
    BadBody,
}

/// What one exchange did.
struct Exchange {
    status: u16,
    to_service: u64,
    from_service: u64,
    /// The visitor's connection stays open for another request.
    keep_visitor: bool,
    /// The service's connection can carry another request.
    keep_backend: bool,
    /// The connection switched protocols and was tunneled to its end.
    upgraded: bool,
}

/// Serves HTTP/1.1 visitor requests on `io`, whose first bytes may already
/// be in `buf`. `idle` bounds the wait for each request head.
pub(crate) async fn serve<I>(
    http: Arc<Http>,
    io: I,
    mut buf: BytesMut,
    client: SocketAddr,
    local: SocketAddr,
    front: Front,
    idle: Duration,
) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut r, mut w) = tokio::io::split(io);
    // Formatted once per connection, not per request.
    let client_ip = client.ip().to_string();
    let client_str = client.to_string();
    let mut backend: Option<ServiceStream> = None;
    // One timer for the connection, re-armed only when it fires before
    // the current deadline (not once per request).
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        // The next request head, whole within `idle`.
        let deadline = tokio::time::Instant::now() + idle;
        let mut head = match read_head(&mut r, &mut buf, deadline, &mut timer, |b| {
            parse_request(b, &client_ip, front)
        })
        .await
        {
            Head::Read(h) => h,
            Head::Refused(no) => {
                if write_page(&mut w, false, no.status, no.title, no.text, true)
                    .await
                    .is_ok()
                {
                    linger(&mut r, &mut w).await;
                }
                return Outcome::Done;
            }
            Head::Ended => return Outcome::Done,
        };
        let Some(route) = http.route_for(&head.host) else {
            if front == Front::Proxy {
                return Outcome::Handover(r.unsplit(w), buf);
            }
            let page = http.unknown_host_page(&head.host);
            http.record_unrouted(client_str.clone(), &head.method, &head.host, &head.path);
            let _ = buf.split_to(head.len);
            let close = head.close || head.framing != Framing::Length(0);
            if write_html(&mut w, head.head_request, 404, page, close)
                .await
                .is_err()
                || close
            {
                return Outcome::Done;
            }
            continue;
        };
        let _ = buf.split_to(head.len);
        let started = Instant::now();
        let record = http_record(
            &route,
            client_str.clone(),
            std::mem::take(&mut head.method),
            head.host.clone(),
            std::mem::take(&mut head.path),
        );
        let _active = http.audit.active(crate::metrics::Kind::Http);
        // With PROXY protocol the service connection states one visitor:
        // a kept one serves only requests from that visitor.
        let proxy = route
            .proxy_protocol
            .then(|| (visitor(front, head.forwarded_for, client), local));
        // The kept service connection if it is for this host and route as
        // they are now, and unused; else a new one. A kept one the service
        // closed meanwhile gets the request again on a new one, when
        // nothing of it is lost.
        let replayable = head.framing == Framing::Length(0) && !head.upgrade;
        let mut kept = backend.take().filter(|b| {
            b.host == head.host
                && b.agent == route.agent
                && b.target == route.target
                && b.proxy == proxy
                && b.buf.is_empty()
                && b.stream.is_quiet()
        });
        let result = loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(b) => b,
                None => {
                    let Some(mut target) = route_target(&route) else {
                        tracing::warn!(host = %head.host, target = %route.target, "route has an unusable internal URL");
                        break Err(Failed::Service(Down::service(
                            "its internal URL is not usable",
                        )));
                    };
                    target.proxy = proxy;
                    match http.open(&route, &head.host, &target).await {
                        Ok(stream) => ServiceStream {
                            host: head.host.clone(),
                            agent: route.agent.clone(),
                            target: route.target.clone(),
                            proxy,
                            stream,
                            buf: BytesMut::new(),
                        },
                        Err(why) => break Err(Failed::Service(why)),
                    }
                }
            };
            match exchange(&mut r, &mut buf, &mut w, &mut conn, &head).await {
                Err(Failed::Unanswered) if reused && replayable => continue,
                Ok(x) => break Ok((x, conn)),
                Err(e) => {
                    conn.stream.reset(ResetCode::Cancelled);
                    break Err(e);
                }
            }
        };
        match result {
            Ok((x, conn)) => {
                http.record(burrow_store::Traffic {
                    status: i64::from(x.status),
                    bytes_in: i64::try_from(x.to_service).unwrap_or(i64::MAX),
                    bytes_out: i64::try_from(x.from_service).unwrap_or(i64::MAX),
                    duration_ms: if x.upgraded { 0 } else { elapsed_ms(started) },
                    ..record
                });
                if x.keep_backend {
                    backend = Some(conn);
                }
                if !x.keep_visitor {
                    let _ = w.shutdown().await;
                    return Outcome::Done;
                }
            }
            Err(Failed::Service(down)) => {
                debug!(host = %head.host, why = %down.why, "edge request failed at the service");
                // A request body not yet read cannot be skipped reliably.
                let close = !replayable || head.close;
                let failed = write_page(
                    &mut w,
                    head.head_request,
                    down.status,
                    down.title,
                    &down.text(&head.host),
                    close,
                )
                .await;
                http.record(burrow_store::Traffic {
                    status: i64::from(down.status),
                    duration_ms: elapsed_ms(started),
                    error: down.cause,
                    ..record
                });
                if failed.is_err() || close {
                    return Outcome::Done;
                }
            }
            Err(Failed::Unanswered) => {
                let down =
                    Down::service("the internal service closed the connection without answering");
                let _ = write_page(
                    &mut w,
                    head.head_request,
                    down.status,
                    down.title,
                    &down.text(&head.host),
                    true,
                )
                .await;
                http.record(burrow_store::Traffic {
                    status: 502,
                    duration_ms: elapsed_ms(started),
                    error: down.cause,
                    ..record
                });
                return Outcome::Done;
            }
            Err(Failed::BadBody) => {
                let _ = write_page(
                    &mut w,
                    head.head_request,
                    400,
                    "Bad request",
                    "The request's body is not framed as its header says.",
                    true,
                )
                .await;
                http.record(burrow_store::Traffic {
                    status: 400,
                    duration_ms: elapsed_ms(started),
                    error: "the request's body is not framed as its header says".into(),
                    ..record
                });
                linger(&mut r, &mut w).await;
                return Outcome::Done;
            }
            Err(Failed::Broken) => {
                http.record(burrow_store::Traffic {
                    duration_ms: elapsed_ms(started),
                    ..record
                });
                return Outcome::Done;
            }
        }
    }
}

/// Closes after a refusal without resetting: a socket closed with unread
/// bytes sends a reset, which can destroy the answer before the client
/// reads it. Sends our end's FIN, then reads and drops what the client
/// still sends, for a bounded time and amount.
async fn linger<R, W>(r: &mut R, w: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = w.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut sink = [0u8; 8192];
        let mut left = 1usize << 20;
        while left > 0 {
            match r.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn elapsed_ms(t: Instant) -> i64 {
    i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX)
}

async fn write_page<W: AsyncWrite + Unpin>(
    w: &mut W,
    head_only: bool,
    status: u16,
    title: &str,
    text: &str,
    close: bool,
) -> io::Result<()> {
    write_html(w, head_only, status, page_html(title, text), close).await
}

/// Writes an HTML answer.
async fn write_html<W: AsyncWrite + Unpin>(
    w: &mut W,
    head_only: bool,
    status: u16,
    mut body: String,
    close: bool,
) -> io::Result<()> {
    let len = body.len();
    if head_only {
        body.clear();
    }
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {len}\r\n{}\r\n",
        if close { "connection: close\r\n" } else { "" }
    );
    w.write_all(format!("{head}{body}").as_bytes()).await?;
    w.flush().await
}

/// Passes one request to the service and its response back.
async fn exchange<R, W>(
    r: &mut R,
    buf: &mut BytesMut,
    w: &mut W,
    conn: &mut ServiceStream,
    head: &RequestHead,
) -> Result<Exchange, Failed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stream = &conn.stream;
    let sent_head = head.out.len() as u64;
    // The request head, with the body bytes already read if they end it.
    let mut req_left = BodyLeft::new(head.framing);
    let k = req_left.take(buf).map_err(|_| Failed::BadBody)?;
    let first = if k == 0 {
        // Most requests: the head alone, shared, not copied.
        head.out.clone()
    } else {
        let mut first = Vec::with_capacity(head.out.len() + k);
        first.extend_from_slice(&head.out);
        first.extend_from_slice(&buf.split_to(k));
        Bytes::from(first)
    };
    let mut to_service = first.len() as u64;
    stream
        .send(first)
        .await
        .map_err(|e| Failed::Service(Down::service(e.to_string())))?;
    let req_done = AtomicBool::new(req_left.done());
    let mut x = if req_left.done() {
        // Nothing more to send (most requests): just the response.
        let mut x = response(stream, &mut conn.buf, w, head, &req_done).await?;
        x.to_service = to_service;
        x
    } else {
        // The rest of the body and the response, side by side: the
        // service may answer before it has read everything (or ask for
        // it with 100 Continue first).
        let upload = async {
            while !req_left.done() {
                if buf.is_empty() && read_more(r, buf).await.map_err(|_| Failed::Broken)? == 0 {
                    return Err(Failed::Broken);
                }
                let k = req_left.take(buf).map_err(|_| Failed::BadBody)?;
                to_service += k as u64;
                stream
                    .send(buf.split_to(k).freeze())
                    .await
                    .map_err(|_| Failed::Broken)?;
            }
            req_done.store(true, Ordering::Release);
            Ok::<u64, Failed>(to_service)
        };
        let download = response(stream, &mut conn.buf, w, head, &req_done);
        let (downloaded, uploaded) = {
            let mut upload = std::pin::pin!(upload);
            let mut download = std::pin::pin!(download);
            let mut uploaded = None;
            loop {
                tokio::select! {
                    biased;
                    d = &mut download => break (d, uploaded),
                    u = &mut upload, if uploaded.is_none() => uploaded = Some(u?),
                }
            }
        };
        let mut x = downloaded?;
        match uploaded {
            Some(n) => x.to_service = n,
            // The service answered before the request body ended: neither
            // connection is in a state to carry another request.
            None => {
                x.to_service = sent_head;
                x.keep_backend = false;
                x.keep_visitor = false;
            }
        }
        x
    };
    if x.upgraded {
        let (up, down) = tunnel(r, buf, w, stream, &mut conn.buf).await;
        x.to_service += up;
        x.from_service += down;
    }
    Ok(x)
}

/// Reads the service's response and passes it to the visitor.
async fn response<W: AsyncWrite + Unpin>(
    stream: &MuxStream,
    bbuf: &mut BytesMut,
    w: &mut W,
    head: &RequestHead,
    req_done: &AtomicBool,
) -> Result<Exchange, Failed> {
    let mut from_service = 0u64;
    loop {
        // A response head (interim ones are passed on as they are).
        let res = loop {
            match parse_response(bbuf, head.head_request) {
                Ok(Some(res)) => break res,
                Ok(None) => {}
                Err(why) if from_service == 0 => {
                    return Err(Failed::Service(Down::service(format!(
                        "the internal service failed: {why}"
                    ))));
                }
                Err(_) => return Err(Failed::Broken),
            }
            match stream.recv().await {
                Ok(Some(chunk)) => bbuf.extend_from_slice(&chunk),
                _ if from_service > 0 => return Err(Failed::Broken),
                // Closed or reset before a byte of answer (on a kept
                // connection: the service dropped it while idle).
                Ok(None) | Err(_) if bbuf.is_empty() => return Err(Failed::Unanswered),
                Ok(None) => {
                    return Err(Failed::Service(Down::service(
                        "the internal service's response broke off",
                    )));
                }
                Err(e) => return Err(Failed::Service(Down::service(e.to_string()))),
            }
        };
        from_service += res.len as u64;
        if res.status == 101 {
            if !head.upgrade {
                return Err(Failed::Service(Down::service(
                    "the internal service switched protocols unasked",
                )));
            }
            let h = bbuf.split_to(res.len);
            w.write_all(&h).await.map_err(|_| Failed::Broken)?;
            w.flush().await.map_err(|_| Failed::Broken)?;
            return Ok(Exchange {
                status: 101,
                to_service: 0,
                from_service,
                keep_visitor: false,
                keep_backend: false,
                upgraded: true,
            });
        }
        if (100..200).contains(&res.status) {
            let h = bbuf.split_to(res.len);
            w.write_all(&h).await.map_err(|_| Failed::Broken)?;
            w.flush().await.map_err(|_| Failed::Broken)?;
            continue;
        }
        let _ = bbuf.split_to(res.len);
        let mut left = BodyLeft::new(res.framing);
        let close =
            head.close || res.framing == Framing::UntilClose || !req_done.load(Ordering::Acquire);
        let mut out = res.out;
        out.extend_from_slice(if close {
            b"connection: close\r\n\r\n"
        } else {
            b"\r\n"
        });
        // The head and the body bytes already here, in one write.
        let k = left.take(bbuf).map_err(|_| Failed::Broken)?;
        out.extend_from_slice(&bbuf.split_to(k));
        from_service += k as u64;
        w.write_all(&out).await.map_err(|_| Failed::Broken)?;
        while !left.done() {
            let chunk = match stream.recv().await {
                Ok(Some(c)) => c,
                Ok(None) if res.framing == Framing::UntilClose => break,
                Ok(None) | Err(_) => return Err(Failed::Broken),
            };
            let k = left.take(&chunk).map_err(|_| Failed::Broken)?;
            from_service += k as u64;
            w.write_all(&chunk[..k]).await.map_err(|_| Failed::Broken)?;
            if k < chunk.len() {
                // More than the response: nothing to reuse.
                bbuf.extend_from_slice(&chunk[k..]);
            }
        }
        w.flush().await.map_err(|_| Failed::Broken)?;
        let keep_backend = !res.close && res.framing != Framing::UntilClose && bbuf.is_empty();
        return Ok(Exchange {
            status: res.status,
            to_service: 0,
            from_service,
            keep_visitor: !close,
            keep_backend,
            upgraded: false,
        });
    }
}

/// After 101 Switching Protocols: bytes both ways until both ends close.
async fn tunnel<R, W>(
    r: &mut R,
    buf: &mut BytesMut,
    w: &mut W,
    stream: &MuxStream,
    bbuf: &mut BytesMut,
) -> (u64, u64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let up = async {
        let mut n = 0u64;
        loop {
            if buf.is_empty() {
                match read_more(r, buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            n += buf.len() as u64;
            if stream.send(buf.split().freeze()).await.is_err() {
                break;
            }
        }
        let _ = stream.finish().await;
        n
    };
    let down = async {
        let mut n = bbuf.len() as u64;
        if !bbuf.is_empty() && w.write_all(&bbuf.split()).await.is_err() {
            return n;
        }
        while let Ok(Some(chunk)) = stream.recv().await {
            n += chunk.len() as u64;
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
        n
    };
    tokio::join!(up, down)
}

#[cfg(test)]
mod tests;
