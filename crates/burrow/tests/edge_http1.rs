//! The edge's HTTP/1.1 pass-through path end to end: bodies framed by
//! length and by chunks both ways, 100 Continue, HEAD and 204, responses
//! that end with the connection, pipelining, keep-alive across a service
//! that closes idle connections, refused requests, and the gateway port
//! handing a connection to its own server midway. curl on the HTTPS edge,
//! raw sockets on the gateway's port (plain, as behind Caddy).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_e2e::registered::{Setup, run, setup};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// A service with bodies: POST answers with how the body was framed, its
/// length and SHA-256 (it decodes chunked bodies itself); GET `/chunked`
/// answers in chunks, `/close` until the connection closes, `/empty` with
/// 204; other GETs with the path, the service's own port and the
/// service-side peer port. Idle connections are closed after 1 s.
const SERVICE: &str = r#"
import http.server, hashlib
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 1
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data, "chunked"
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0"))), "length"
    def reply(self, body, code=200):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        data, how = self.body()
        self.reply(f"{how} {len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "42")
        self.end_headers()
    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                part = f"part{i};".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until-close body\n")
            self.close_connection = True
        elif self.path == "/empty":
            self.send_response(204)
            self.end_headers()
        else:
            self.reply(f"get path={self.path} xff={self.headers.get('X-Forwarded-For')} srv={self.server.server_address[1]} peer={self.client_address[1]}\n".encode())
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

async fn service() -> Result<(tokio::process::Child, u16)> {
    burrow_e2e::servers::python_server(SERVICE, &[]).await
}

/// curl over HTTP/1.1 against the HTTPS edge.
async fn curl(edge: SocketAddr, path: &str, extra: &[&str]) -> Result<(i32, String, String)> {
    let url = format!("https://app.tunnel.test:{}{path}", edge.port());
    let resolve = format!("app.tunnel.test:{}:127.0.0.1", edge.port());
    let mut args = vec!["--http1.1", "-sS", "-k", "--resolve", resolve.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    run("curl", &args, Path::new("/"), &[]).await
}

#[tokio::test]
async fn http1_bodies_pass_through_with_their_framing() -> Result<()> {
    burrow_e2e::require!("curl");
    let flags = [
        "--edge-https-listen",
        "127.0.0.1:0",
        "--edge-http-listen",
        "off",
        "--public-domain",
        "tunnel.test",
    ];
    let st = setup(&bin(), &flags, &[], true).await?;
    let edge = st.edge().context("edge address")?;
    let (_svc, port) = service().await?;
    st.add_route("app.tunnel.test", port).await?;

    // A 3 MiB upload by length: curl asks for 100 Continue first (over
    // 1 MiB), which the service sends and the edge passes on.
    let file = st.dir.path().join("upload.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&file, &data)?;
    let sha = hex::encode(Sha256::digest(&data));
    let at_file = format!("@{}", file.display());
    let (code, out, err) = curl(edge, "/up", &["-v", "--data-binary", &at_file]).await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("length {} {sha}\n", data.len()));
    assert!(
        err.contains("100 Continue"),
        "interim response passed on: {err}"
    );
    // The same upload chunked.
    let (code, out, err) = curl(
        edge,
        "/up",
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &at_file,
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("chunked {} {sha}\n", data.len()));
    // Responses: chunked, until close, HEAD, 204.
    let (code, out, err) = curl(edge, "/chunked", &[]).await?;
    assert_eq!((code, out.as_str()), (0, "part0;part1;part2;"), "{err}");
    let (code, out, err) = curl(edge, "/close", &[]).await?;
    assert_eq!((code, out.as_str()), (0, "until-close body\n"), "{err}");
    let (code, out, err) = curl(edge, "/", &["-I"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("HTTP/1.1 200") && out.to_ascii_lowercase().contains("content-length: 42"),
        "{out}"
    );
    let (code, out, err) = curl(edge, "/empty", &["-w", "%{http_code}"]).await?;
    assert_eq!((code, out.as_str()), (0, "204"), "{err}");
    // Keep-alive end to end: two requests, one service connection.
    let second = format!("https://app.tunnel.test:{}/b", edge.port());
    let (code, out, err) = curl(edge, "/a", &[&second]).await?;
    assert_eq!(code, 0, "{err}");
    let peers = burrow_e2e::service_peers(&out);
    assert_eq!(peers.len(), 2, "{out}");
    assert_eq!(peers[0], peers[1], "one service connection for both: {out}");
    assert!(out.contains("xff=127.0.0.1"), "{out}");

    // Audit: the uploads with their byte counts.
    let rec = st
        .traffic_until("kind=http&host=app.tunnel.test", |r| {
            r["method"] == "POST" && r["bytes_in"].as_i64().unwrap_or(0) >= 3 * 1024 * 1024
        })
        .await?;
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(rec["path"], "/up", "{rec}");
    Ok(())
}

/// The gateway port's address (plain HTTP with --no-tls).
fn gateway_addr(st: &Setup) -> Result<SocketAddr> {
    let url = &st.env()[0].1;
    let hostport = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .context("CONNECT_URL")?;
    Ok(hostport.parse()?)
}

/// Sends `req` and reads until the gateway closes (within 10 s).
async fn exchange_to_close(addr: SocketAddr, req: &[u8]) -> Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(req).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .context("the gateway did not close the connection")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads one response with a Content-Length body from `s`.
async fn read_response(s: &mut TcpStream) -> Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await??;
        if n == 0 {
            bail!("closed mid-head: {}", String::from_utf8_lossy(&buf));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .context("content-length")?
        .parse()?;
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body)).await??;
    Ok(format!("{head}{}", String::from_utf8_lossy(&body)))
}

#[tokio::test]
async fn the_gateway_port_serves_published_hosts_and_refuses_what_it_must() -> Result<()> {
    burrow_e2e::require!("curl");
    let mut st = setup(&bin(), &["--no-tls"], &[], true).await?;
    let gw = gateway_addr(&st)?;
    let (_svc, port) = service().await?;
    st.add_route("app.tunnel.test", port).await?;

    // Pipelined requests come back in order; the last asks to close.
    let out = exchange_to_close(
        gw,
        b"GET /one HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\nGET /two HTTP/1.1\r\nHost: app.tunnel.test\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let one = out.find("path=/one").context(out.clone())?;
    let two = out.find("path=/two").context(out.clone())?;
    assert!(one < two, "{out}");
    assert!(out.contains("connection: close"), "{out}");

    // A connection that asks for something else is handed to the
    // gateway's own server midway: here the admin API, without a key.
    let out = exchange_to_close(
        gw,
        b"GET /x HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\nGET /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert!(out.contains("path=/x"), "{out}");
    assert!(out.contains("HTTP/1.1 401"), "{out}");

    // HTTP/1.0: answered, then closed.
    let out = exchange_to_close(gw, b"GET /ten HTTP/1.0\r\nHost: app.tunnel.test\r\n\r\n").await?;
    assert!(
        out.contains("path=/ten") && out.contains("connection: close"),
        "{out}"
    );

    // Refused: the smuggling ambiguity, an oversized head, garbage. Each
    // gets its status and the connection closes; nothing reaches the
    // service.
    let smuggle = b"POST /s HTTP/1.1\r\nHost: app.tunnel.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n";
    let out = exchange_to_close(gw, smuggle).await?;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(!out.contains("smuggled"), "{out}");
    // Framing fields whose values are not text, which a lenient service
    // could read differently; and bare LF in chunked framing.
    let inner = "GET /smuggled HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n";
    for head in [
        [
            format!("Content-Length: {}", inner.len()).as_bytes(),
            b"\xff",
        ]
        .concat(),
        b"Transfer-Encoding: \xff, chunked\r\nContent-Length: 40".to_vec(),
    ] {
        let mut raw = b"POST /s HTTP/1.1\r\nHost: app.tunnel.test\r\n".to_vec();
        raw.extend_from_slice(&head);
        raw.extend_from_slice(b"\r\n\r\n0\r\n\r\n");
        raw.extend_from_slice(inner.as_bytes());
        let out = exchange_to_close(gw, &raw).await?;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(
            !out.contains("smuggled") && !out.contains("length "),
            "{out}"
        );
    }
    let bare = format!(
        "POST /s HTTP/1.1\r\nHost: app.tunnel.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n{inner}"
    );
    let out = exchange_to_close(gw, bare.as_bytes()).await?;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(
        !out.contains("smuggled") && !out.contains("chunked "),
        "{out}"
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.tunnel.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(70 * 1024)
    );
    let out = exchange_to_close(gw, big.as_bytes()).await?;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let out = exchange_to_close(
        gw,
        b"GET / HTTP/1.1\r\nHost: app.tunnel.test\r\nBad Header\r\n\r\n",
    )
    .await?;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    // Keep-alive across a service that closes idle connections (after
    // 1 s): the next request gets a new service connection, not an error.
    let mut s = TcpStream::connect(gw).await?;
    s.write_all(b"GET /k1 HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
        .await?;
    let first = read_response(&mut s).await?;
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    s.write_all(b"GET /k2 HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
        .await?;
    let second = read_response(&mut s).await?;
    assert!(
        first.contains("path=/k1") && second.contains("path=/k2"),
        "{first}\n{second}"
    );
    let peer = |r: &str| {
        burrow_e2e::service_peers(r)
            .first()
            .map(|p| (*p).to_owned())
    };
    assert_ne!(peer(&first), peer(&second), "a new service connection");

    // The route is pointed at another service between two requests on
    // one connection: the next request goes there (the kept service
    // connection is for the route as it was).
    let (_other, other_port) = service().await?;
    st.add_route("app.tunnel.test", other_port).await?;
    s.write_all(b"GET /moved HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
        .await?;
    let moved = read_response(&mut s).await?;
    assert!(
        moved.contains("path=/moved") && moved.contains(&format!("srv={other_port} ")),
        "{moved}"
    );

    // The agent goes away between two requests on one connection: the
    // second gets the tunnel-down page.
    st.kill_agent().await?;
    s.write_all(b"GET /k3 HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
        .await?;
    let third = read_response(&mut s).await?;
    assert!(
        third.starts_with("HTTP/1.1 502") && third.contains("Tunnel down"),
        "{third}"
    );

    // Every answered request is in the audit, with its status.
    let rec = st
        .traffic_until("kind=http&status=502", |r| r["path"] == "/k3")
        .await?;
    assert_eq!(rec["host"], "app.tunnel.test", "{rec}");
    st.traffic_until("kind=http", |r| r["path"] == "/k2" && r["status"] == 200)
        .await?;
    Ok(())
}
