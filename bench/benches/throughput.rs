//! Micro-benchmarks, each beside its baseline in the same Criterion group so
//! the ratio comes from one run on one machine:
//! - `codec`: encode + decode of a 32 KiB data frame vs a plain memcpy.
//! - `loopback_8MiB`: 8 MiB through one stream of a mux session over a real
//!   loopback WebSocket vs the same bytes over a direct loopback TCP socket.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;

use burrow_mux::{Config, Session};
use burrow_wire::{Frame, MAX_DATA};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const TOTAL: usize = 8 * 1024 * 1024;

fn codec(c: &mut Criterion) {
    let payload = Bytes::from(vec![7u8; MAX_DATA]);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(MAX_DATA as u64));
    g.bench_function("memcpy (baseline)", |b| {
        b.iter(|| {
            let mut v = BytesMut::with_capacity(MAX_DATA);
            v.extend_from_slice(&payload);
            std::hint::black_box(v.freeze())
        })
    });
    g.bench_function("data frame encode+decode", |b| {
        b.iter(|| {
            let f = Frame::Data {
                stream_id: 2,
                payload: payload.clone(),
            };
            std::hint::black_box(Frame::decode_message(f.to_bytes()).unwrap())
        })
    });
    g.finish();
}

/// A TCP sink that reads everything and acknowledges the total with one byte.
async fn sink() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0;
                while n < TOTAL {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let _ = s.write_all(&[1]).await;
            });
        }
    });
    addr
}

/// Answers a WebSocket upgrade request (as the gateway's HTTP server
/// does) and returns the connection, ready for frames.
async fn upgrade(mut tcp: tokio::net::TcpStream) -> tokio::net::TcpStream {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let accept = burrow_transport::ws::accept_key(key.trim().as_bytes());
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(reply.as_bytes()).await.unwrap();
    tcp
}

/// A mux session pair over a loopback WebSocket; the accepting side drains
/// each stream and acknowledges with one byte.
async fn mux_pair() -> Session {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let _ = tcp.set_nodelay(true);
        let tcp = upgrade(tcp).await;
        let link = burrow_transport::ws::accept_upgraded(tcp, &[], None);
        let (_s, mut inc) = Session::new(
            link.reader,
            link.writer,
            Config {
                dialer: false,
                heartbeat: None,
                ..Config::default()
            },
        );
        while let Some(st) = inc.accept().await {
            tokio::spawn(async move {
                // Drain to EOF, then acknowledge and finish: both ways end
                // cleanly, so dropping the stream sends no reset.
                let mut n = 0;
                while let Ok(Some(c)) = st.recv().await {
                    n += c.len();
                }
                if n == TOTAL {
                    let _ = st.send(Bytes::from_static(&[1])).await;
                }
                let _ = st.finish().await;
            });
        }
    });
    let url = burrow_transport::TunnelUrl::parse(&format!("ws://{addr}/tunnel")).unwrap();
    // The bench server does not check credentials.
    let dialer = burrow_transport::Dialer::new(url, None, &Default::default()).unwrap();
    let link = dialer
        .dial(Some("bench"), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let (s, _inc) = Session::new(
        link.reader,
        link.writer,
        Config {
            heartbeat: None,
            ..Config::default()
        },
    );
    s
}

fn loopback(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let chunk = Bytes::from(vec![3u8; 64 * 1024]);
    let (sink_addr, session) = rt.block_on(async { (sink().await, mux_pair().await) });
    let mut g = c.benchmark_group("loopback_8MiB");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(20);
    g.bench_function("direct tcp (baseline)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = TcpStream::connect(sink_addr).await.unwrap();
            let _ = s.set_nodelay(true);
            for _ in 0..TOTAL / chunk.len() {
                s.write_all(&chunk).await.unwrap();
            }
            let mut ack = [0u8; 1];
            s.read_exact(&mut ack).await.unwrap();
        })
    });
    g.bench_function("mux stream over ws", |b| {
        b.to_async(&rt).iter(|| async {
            let st = session.open("sink").await.unwrap();
            for _ in 0..TOTAL / chunk.len() {
                st.send(chunk.clone()).await.unwrap();
            }
            st.finish().await.unwrap();
            let ack = st.recv().await.unwrap();
            assert_eq!(ack.as_deref(), Some(&[1u8][..]));
            assert_eq!(st.recv().await.unwrap(), None);
        })
    });
    g.finish();
}

criterion_group!(benches, codec, loopback);
criterion_main!(benches);
