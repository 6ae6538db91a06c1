#![allow(clippy::unwrap_used)]

use super::*;

fn client() -> SocketAddr {
    "192.0.2.7:5555".parse().unwrap()
}

fn req(raw: &str, front: Front) -> Result<Option<RequestHead>, HeadRefusal> {
    parse_request(raw.as_bytes(), &client().ip().to_string(), front)
}

fn head(raw: &str) -> RequestHead {
    match req(raw, Front::Edge) {
        Ok(Some(h)) => h,
        Ok(None) => panic!("incomplete: {raw:?}"),
        Err(r) => panic!("refused {}: {}", r.status, r.text),
    }
}

fn refused(raw: &str) -> u16 {
    match req(raw, Front::Edge) {
        Err(r) => r.status,
        Ok(_) => panic!("accepted: {raw:?}"),
    }
}

fn out(h: &RequestHead) -> String {
    String::from_utf8(h.out.to_vec()).unwrap()
}

#[test]
fn a_get_is_routed_by_host_and_given_forwarding_headers() {
    let h = head(
        "GET /a/b?token=secret HTTP/1.1\r\nHost: App.Example.com:8443\r\nAccept: */*\r\n\r\nNEXT",
    );
    assert_eq!(h.host, "app.example.com");
    assert_eq!(h.path, "/a/b", "no query in the audit path");
    assert_eq!(h.method, "GET");
    assert_eq!(h.framing, Framing::Length(0));
    assert!(!h.close && !h.upgrade && !h.head_request);
    assert_eq!(
        h.len,
        "GET /a/b?token=secret HTTP/1.1\r\nHost: App.Example.com:8443\r\nAccept: */*\r\n\r\n".len()
    );
    assert_eq!(
        out(&h),
        "GET /a/b?token=secret HTTP/1.1\r\nhost: app.example.com\r\nAccept: */*\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\nx-forwarded-host: app.example.com\r\n\r\n"
    );
}

#[test]
fn an_incomplete_head_waits_for_more() {
    assert!(matches!(
        req("GET / HTTP/1.1\r\nHost: a\r\n", Front::Edge),
        Ok(None)
    ));
}

#[test]
fn forwarding_headers_append_behind_a_proxy_and_replace_on_the_edge() {
    let raw = "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n";
    let behind = match req(raw, Front::Proxy) {
        Ok(Some(h)) => h,
        _ => panic!("refused"),
    };
    let o = out(&behind);
    assert!(
        o.contains("x-forwarded-for: 203.0.113.9, 192.0.2.7\r\n"),
        "{o}"
    );
    assert!(o.contains("X-Forwarded-Proto: https\r\n"), "{o}");
    assert!(!o.contains("x-forwarded-proto: http\r\n"), "{o}");
    assert!(!o.contains("evil"), "{o}");
    assert_eq!(behind.forwarded_for, Some("203.0.113.9".parse().unwrap()));
    let o = out(&head(raw));
    assert!(o.contains("x-forwarded-proto: https\r\n"), "{o}");
    assert!(
        !o.contains("X-Forwarded-Proto"),
        "the visitor's own claim goes: {o}"
    );
}

#[test]
fn hop_by_hop_fields_and_the_ones_connection_names_are_dropped() {
    let h = head(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nUpgrade: h2c\r\nX-Kept: 2\r\n\r\n",
    );
    let o = out(&h);
    for gone in [
        "X-Secret",
        "Keep-Alive",
        "TE:",
        "Proxy-Authorization",
        "Upgrade",
        "Connection",
    ] {
        assert!(!o.contains(gone), "{gone} in {o}");
    }
    assert!(o.contains("X-Kept: 2\r\n"));
    assert!(!h.upgrade, "Upgrade without Connection: upgrade is not one");
}

#[test]
fn an_upgrade_keeps_its_fields() {
    let h = head(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
    );
    assert!(h.upgrade);
    let o = out(&h);
    assert!(
        o.contains("Upgrade: websocket\r\n") && o.contains("connection: upgrade\r\n"),
        "{o}"
    );
}

#[test]
fn absolute_form_names_the_host_and_goes_out_in_origin_form() {
    let h = head("GET http://user@Svc.Test:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(h.host, "svc.test");
    assert!(out(&h).starts_with("GET /p?q=1 HTTP/1.1\r\nhost: svc.test\r\n"));
    let h = head("GET https://svc.test HTTP/1.1\r\n\r\n");
    assert!(out(&h).starts_with("GET / HTTP/1.1\r\n"));
}

#[test]
fn bodies_are_framed_by_length_or_chunks() {
    let h = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(12));
    assert!(
        out(&h).contains("Content-Length: 12\r\n"),
        "passed on as it is"
    );
    let h = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    let h = head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(out(&h).contains("Transfer-Encoding: gzip, chunked\r\n"));
}

#[test]
fn ambiguous_or_malformed_requests_are_refused() {
    // The ambiguities request smuggling lives on.
    assert_eq!(
        refused(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        400
    );
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        400
    );
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
        400
    );
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        400
    );
    assert_eq!(
        refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        400
    );
    assert_eq!(refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_eq!(
        refused("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        400,
        "no host"
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: \r\n\r\n"),
        400,
        "empty host"
    );
    assert_eq!(refused("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(refused("NOT HTTP AT ALL\r\n\r\n"), 400);
    assert_eq!(refused("GET / HTTP/1.1\r\nHost a\r\n\r\n"), 400);
}

#[test]
fn oversized_heads_are_refused_with_431() {
    let long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n",
        "x".repeat(MAX_HEAD)
    );
    assert_eq!(refused(&long), 431, "incomplete and already too large");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_HEADERS {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(refused(&many), 431);
}

#[test]
fn http_1_0_and_connection_close_close_after_the_response() {
    assert!(head("GET / HTTP/1.0\r\nHost: a\r\n\r\n").close);
    assert!(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").close);
    assert!(out(&head("GET / HTTP/1.0\r\nHost: a\r\n\r\n")).starts_with("GET / HTTP/1.0\r\n"));
    assert!(head("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").head_request);
}

fn res(raw: &str, head_request: bool) -> ResponseHead {
    match parse_response(raw.as_bytes(), head_request) {
        Ok(Some(r)) => r,
        Ok(None) => panic!("incomplete"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn responses_are_framed_as_rfc_9112_says() {
    let r = res("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
    assert_eq!(
        (r.status, r.framing, r.close),
        (200, Framing::Length(5), false)
    );
    assert_eq!(r.len, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".len());
    let r = res("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
    assert_eq!(r.framing, Framing::Length(0), "HEAD: no body");
    for s in ["204 No Content", "304 Not Modified", "100 Continue"] {
        let r = res(&format!("HTTP/1.1 {s}\r\nContent-Length: 5\r\n\r\n"), false);
        assert_eq!(r.framing, Framing::Length(0), "{s}");
    }
    let r = res(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        false,
    );
    assert_eq!(r.framing, Framing::Chunked, "chunked wins over a length");
    let r = res("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
    assert_eq!(r.framing, Framing::UntilClose);
    let r = res("HTTP/1.1 200 OK\r\n\r\n", false);
    assert_eq!(r.framing, Framing::UntilClose);
    let r = res("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
    assert!(r.close, "HTTP/1.0 without keep-alive closes");
    let r = res(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        false,
    );
    assert!(!r.close);
    let r = res(
        "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 1\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(r.close);
    let o = String::from_utf8(r.out).unwrap();
    assert_eq!(o, "HTTP/1.1 200 OK\r\nX-End: 2\r\nContent-Length: 0\r\n");
}

#[test]
fn broken_responses_are_errors() {
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    assert!(parse_response(b"SMTP ready\r\n\r\n", false).is_err());
    let big = format!("HTTP/1.1 200 OK\r\nX: {}", "y".repeat(MAX_HEAD + 1));
    assert!(parse_response(big.as_bytes(), false).is_err());
    assert!(matches!(
        parse_response(b"HTTP/1.1 200 OK\r\n", false),
        Ok(None)
    ));
}

const CHUNKED: &str =
    "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";

#[test]
fn chunked_framing_finds_the_end_whole_or_byte_by_byte() {
    let with_next = format!("{CHUNKED}GET / HTTP/1.1\r\n");
    let mut c = Chunked::default();
    assert_eq!(c.feed(with_next.as_bytes()), Ok(CHUNKED.len()));
    assert!(c.done());
    let mut c = Chunked::default();
    let mut taken = 0;
    for b in CHUNKED.as_bytes() {
        assert!(!c.done());
        taken += c.feed(std::slice::from_ref(b)).unwrap();
    }
    assert!(c.done());
    assert_eq!(taken, CHUNKED.len());
    let mut c = Chunked::default();
    assert_eq!(c.feed(b"0\r\n\r\nrest"), Ok(5));
    assert!(c.done());
}

#[test]
fn bare_lf_in_chunked_framing_is_refused() {
    for bad in [
        &b"3\nabc\r\n0\r\n\r\n"[..],
        b"3;x\nabc\r\n0\r\n\r\n",
        b"3\r\nabc\n0\r\n\r\n",
        b"0\r\n\n",
        b"0\r\nX-T: t\n\r\n",
    ] {
        assert_eq!(
            Chunked::default().feed(bad),
            Err(BARE_LF),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn header_values_that_are_not_text_are_refused() {
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \xff, chunked\r\nContent-Length: 40\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Anything: \xc3\x28\r\n\r\n",
    ] {
        let r = parse_request(raw, "127.0.0.1", Front::Edge);
        assert!(
            matches!(&r, Err(f) if f.status == 400),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // UTF-8 text in an ordinary field still passes.
    let ok = "GET / HTTP/1.1\r\nHost: a\r\nX-Name: Zoë\r\n\r\n";
    assert!(matches!(
        parse_request(ok.as_bytes(), "127.0.0.1", Front::Edge),
        Ok(Some(_))
    ));
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\xff\r\n\r\n", false).is_err());
}

#[test]
fn malformed_chunks_are_errors() {
    for bad in [
        &b"zz\r\n"[..],
        b"\r\n",
        b"3\r\nabcd\r\n",
        b"3\rX",
        b"1234567890abcdef0\r\n",
    ] {
        assert!(Chunked::default().feed(bad).is_err(), "{bad:?}");
    }
    let mut c = Chunked::default();
    c.feed(b"0\r\n").unwrap();
    let huge = vec![b'x'; MAX_TRAILERS + 2];
    assert!(c.feed(&huge).is_err(), "endless trailers");
}

#[test]
fn body_tracking_counts_lengths_and_leaves_the_rest() {
    let mut b = BodyLeft::new(Framing::Length(4));
    assert_eq!(b.take(b"ab"), Ok(2));
    assert!(!b.done());
    assert_eq!(b.take(b"cdEXTRA"), Ok(2));
    assert!(b.done());
    let mut b = BodyLeft::new(Framing::UntilClose);
    assert_eq!(b.take(b"anything"), Ok(8));
    assert!(!b.done());
    assert!(BodyLeft::new(Framing::Length(0)).done());
}

/// An edge context with no routes, store or links.
fn bare_http() -> Arc<Http> {
    let links = Arc::new(crate::registry::Registry::default());
    Arc::new(Http {
        catalog: Arc::new(crate::catalog::Catalog::new(
            None,
            crate::names::OwnNames::default(),
            None,
            links.clone(),
        )),
        links,
        audit: crate::traffic::AuditSink::default(),
    })
}

/// Reads one landing page (404, keep-alive) off `io`.
async fn read_landing_page(io: &mut tokio::io::DuplexStream) {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 404"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= len {
                return;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_idle_limit_counts_from_the_last_answer_and_closes_a_head_left_unfinished() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::time::{Duration, Instant, sleep};
    let (mut visitor, io) = tokio::io::duplex(64 * 1024);
    let local: SocketAddr = "127.0.0.1:443".parse().unwrap();
    let idle = Duration::from_secs(10);
    let server = tokio::spawn(serve(
        bare_http(),
        io,
        BytesMut::new(),
        client(),
        local,
        Front::Edge,
        idle,
    ));
    let start = Instant::now();
    let get = b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n";
    visitor.write_all(get).await.unwrap();
    read_landing_page(&mut visitor).await;
    // A second request 6 s later: the limit now counts from its answer,
    // past the first one's 10 s.
    sleep(Duration::from_secs(6)).await;
    visitor.write_all(get).await.unwrap();
    read_landing_page(&mut visitor).await;
    sleep(Duration::from_secs(9)).await;
    // 15 s in: open still. Half a head, never finished.
    visitor
        .write_all(b"GET / HTTP/1.1\r\nHost: now")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let n = visitor.read_to_end(&mut rest).await.unwrap();
    let closed_at = start.elapsed();
    assert_eq!(n, 0, "no answer to an unfinished head");
    assert!(
        closed_at >= Duration::from_secs(16) && closed_at < Duration::from_secs(17),
        "closed {closed_at:?} after the start; 10 s after the second answer is 16 s"
    );
    assert!(matches!(server.await.unwrap(), Outcome::Done));
}
