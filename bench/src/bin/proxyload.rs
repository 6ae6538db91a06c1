//! A load client for the egress proxy, since iperf3 and wrk cannot speak
//! HTTP CONNECT: the same three measurements through a fixed forward
//! (plain TCP to the forward's port) and through the proxy (CONNECT, then
//! the same bytes), so `bench/egress.sh` can put them side by side.
//!
//! ```text
//! proxyload serve                         # prints "echo=PORT sink=PORT"
//! proxyload run --echo ADDR --sink ADDR [--proxy ADDR --echo-name H:P --sink-name H:P] [--seconds S]
//! ```
//! `run` prints one JSON line: bulk Gbit/s (one connection into a sink),
//! keep-alive round trips per second (16 connections, 64-byte echoes) and
//! new connections per second (16 workers: connect, one echo, close).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WORKERS: usize = 16;
const MSG: usize = 64;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn serve() -> Res<()> {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "echo={} sink={}",
        echo.local_addr()?.port(),
        sink.local_addr()?.port()
    );
    let e = tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let k = tokio::spawn(async move {
        while let Ok((mut s, _)) = sink.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let _ = tokio::join!(e, k);
    Ok(())
}

/// How to reach a target: straight to an address, or CONNECT through a
/// proxy to a name.
#[derive(Clone)]
enum Via {
    Direct(SocketAddr),
    Proxy(SocketAddr, String),
}

async fn open(via: &Via) -> Res<TcpStream> {
    match via {
        Via::Direct(a) => {
            let s = TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            Ok(s)
        }
        Via::Proxy(p, target) => {
            let mut s = TcpStream::connect(p).await?;
            s.set_nodelay(true)?;
            s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
                .await?;
            // The proxy sends nothing after its head until the client
            // speaks, so reading in chunks cannot swallow tunnel bytes.
            let mut head = Vec::with_capacity(64);
            let mut b = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).await?;
                if n == 0 || head.len() > 8192 {
                    return Err("proxy closed during CONNECT".into());
                }
                head.extend_from_slice(&b[..n]);
            }
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err(String::from_utf8_lossy(&head).into_owned().into());
            }
            Ok(s)
        }
    }
}

async fn bulk(via: &Via, secs: f64) -> Res<f64> {
    let mut s = open(via).await?;
    let buf = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        s.write_all(&buf).await?;
        sent += buf.len() as u64;
    }
    s.shutdown().await?;
    Ok(sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9)
}

async fn echo_once(s: &mut TcpStream) -> Res<()> {
    let msg = [7u8; MSG];
    s.write_all(&msg).await?;
    let mut got = [0u8; MSG];
    s.read_exact(&mut got).await?;
    Ok(())
}

/// Runs `WORKERS` copies of `work` until `secs` pass; returns ops/s.
async fn rate<F, Fut>(secs: f64, work: F) -> Res<f64>
where
    F: Fn(Arc<AtomicBool>, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = Res<()>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(work(stop.clone(), done.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn run(args: &[String]) -> Res<()> {
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let echo: SocketAddr = get("--echo").ok_or("--echo ADDR")?.parse()?;
    let sink: SocketAddr = get("--sink").ok_or("--sink ADDR")?.parse()?;
    let secs: f64 = get("--seconds").unwrap_or_else(|| "4".into()).parse()?;
    let (echo_via, sink_via) = match get("--proxy") {
        Some(p) => {
            let p: SocketAddr = p.parse()?;
            (
                Via::Proxy(p, get("--echo-name").ok_or("--echo-name HOST:PORT")?),
                Via::Proxy(p, get("--sink-name").ok_or("--sink-name HOST:PORT")?),
            )
        }
        None => (Via::Direct(echo), Via::Direct(sink)),
    };
    let gbps = bulk(&sink_via, secs).await?;
    let v = echo_via.clone();
    let keepalive = rate(secs, move |stop, done| {
        let v = v.clone();
        async move {
            let mut s = open(&v).await?;
            while !stop.load(Ordering::Relaxed) {
                echo_once(&mut s).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await?;
    let v = echo_via.clone();
    let newconn = rate(secs, move |stop, done| {
        let v = v.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                let mut s = open(&v).await?;
                echo_once(&mut s).await?;
                drop(s);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await?;
    println!(
        "{{\"bulk_gbps\": {gbps:.3}, \"keepalive_rps\": {keepalive:.0}, \"newconn_rps\": {newconn:.0}}}"
    );
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("serve") => rt.block_on(serve()),
        Some("run") => rt.block_on(run(&args[1..])),
        _ => Err("usage: proxyload serve | proxyload run --echo ADDR --sink ADDR [--proxy ADDR --echo-name H:P --sink-name H:P] [--seconds S]".into()),
    }
}
