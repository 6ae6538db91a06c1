//! Target servers for end-to-end tests, all on `127.0.0.1:0`.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Deterministic pseudo-random bytes (xorshift), so both ends can hash
/// what was meant to be sent without storing it.
pub struct Pattern(u64);

impl Pattern {
    /// A pattern seeded with `seed` (non-zero).
    pub fn new(seed: u64) -> Self {
        Pattern(seed | 1)
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// A loopback listener on a free port with a deep accept queue.
fn listener() -> TcpListener {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    s.listen(4096).unwrap()
}

/// Accepts forever; a failed accept (e.g. EMFILE) is reported and retried
/// rather than ending the loop, which would drop the listener and reset
/// every queued connection.
async fn accept(l: &TcpListener) -> TcpStream {
    loop {
        match l.accept().await {
            Ok((s, _)) => return s,
            Err(e) => {
                eprintln!("test server accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// `n` pattern bytes from `seed`, handed out 64 KiB at a time.
struct PatternChunks {
    pattern: Pattern,
    buf: Vec<u8>,
    left: u64,
}

impl PatternChunks {
    fn new(n: u64, seed: u64) -> Self {
        PatternChunks {
            pattern: Pattern::new(seed),
            buf: vec![0u8; 64 * 1024],
            left: n,
        }
    }

    fn next_chunk(&mut self) -> Option<&[u8]> {
        if self.left == 0 {
            return None;
        }
        let k = self.left.min(self.buf.len() as u64) as usize;
        self.left -= k as u64;
        self.pattern.fill(&mut self.buf[..k]);
        Some(&self.buf[..k])
    }
}

/// Sends `msg` to `addr`, half-closes, and returns everything read back
/// (from an echo target, the same bytes).
pub async fn echo_roundtrip(addr: SocketAddr, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(msg).await?;
    s.shutdown().await?;
    let mut got = Vec::new();
    tokio::time::timeout(crate::WAIT, s.read_to_end(&mut got)).await??;
    Ok(got)
}

/// An echo server: copies every connection back to itself, half-closing
/// after EOF.
pub async fn echo() -> SocketAddr {
    let l = listener();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let mut s = accept(&l).await;
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    addr
}

/// What a [`hashing_peer`] connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// SHA-256 of everything received.
    pub received: [u8; 32],
    /// Bytes received.
    pub received_len: u64,
    /// SHA-256 of everything sent.
    pub sent: [u8; 32],
}

/// Sends `n` pattern bytes (then half-closes) while reading to EOF, hashing
/// both directions.
pub async fn send_and_hash(s: TcpStream, n: u64, seed: u64) -> std::io::Result<Hashes> {
    let (mut r, mut w) = s.into_split();
    let send = async move {
        let mut chunks = PatternChunks::new(n, seed);
        let mut h = Sha256::new();
        while let Some(c) = chunks.next_chunk() {
            h.update(c);
            w.write_all(c).await?;
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>(h.finalize().into())
    };
    let recv = async move {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let k = r.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            total += k as u64;
            h.update(&buf[..k]);
        }
        Ok::<_, std::io::Error>((h.finalize().into(), total))
    };
    let (sent, (received, received_len)) = tokio::try_join!(send, recv)?;
    Ok(Hashes {
        received,
        received_len,
        sent,
    })
}

/// A server that, per connection, sends `n` pattern bytes (seed `seed`)
/// while hashing what it receives; reports each connection's [`Hashes`].
pub async fn hashing_peer(n: u64, seed: u64) -> (SocketAddr, mpsc::Receiver<Hashes>) {
    let l = listener();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let s = accept(&l).await;
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(h) = send_and_hash(s, n, seed).await {
                    let _ = tx.send(h).await;
                }
            });
        }
    });
    (addr, rx)
}

/// A server that accepts and holds connections but never reads them.
pub async fn never_reads() -> SocketAddr {
    let l = listener();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let s = accept(&l).await;
            held.push(s);
        }
    });
    addr
}

/// SHA-256 of `n` pattern bytes from `seed`.
pub fn pattern_hash(n: u64, seed: u64) -> [u8; 32] {
    let mut chunks = PatternChunks::new(n, seed);
    let mut h = Sha256::new();
    while let Some(c) = chunks.next_chunk() {
        h.update(c);
    }
    h.finalize().into()
}

/// A service that answers with its name, the headers a proxy sets, and
/// `/big?n=BYTES` with that many pattern bytes (streamed).
pub const WEB_SERVICE: &str = r#"
import http.server, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/big"):
            n = int(self.path.split("n=")[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = bytes(range(256)) * 256
            while n > 0:
                part = chunk[: min(n, len(chunk))]
                self.wfile.write(part)
                n -= len(part)
            return
        h = self.headers
        body = f"service={name} path={self.path} host={h.get('Host')} xff={h.get('X-Forwarded-For')} proto={h.get('X-Forwarded-Proto')} fhost={h.get('X-Forwarded-Host')} peer={self.client_address[1]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// Starts [`WEB_SERVICE`] as `name`; returns the child and its port.
pub async fn web_service(name: &str) -> anyhow::Result<(tokio::process::Child, u16)> {
    python_server(WEB_SERVICE, &[name]).await
}

/// Starts `python3 -c SCRIPT ARGS…`, a server that prints the port it
/// listens on as its first line; the child (killed when dropped) and that
/// port, within 20 s.
pub async fn python_server(
    script: &str,
    args: &[&str],
) -> anyhow::Result<(tokio::process::Child, u16)> {
    use anyhow::Context as _;
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut line = String::new();
    let out = child.stdout.take().context("the server's stdout")?;
    let mut out = tokio::io::BufReader::new(out);
    tokio::time::timeout(std::time::Duration::from_secs(20), out.read_line(&mut line))
        .await
        .context("the server did not say its port within 20 s")??;
    Ok((child, line.trim().parse().context("the server's port")?))
}

/// A port free on 127.0.0.1 just now (for a server that must be told its
/// port before it starts, such as Caddy).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
