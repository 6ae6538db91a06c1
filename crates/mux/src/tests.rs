//! Session tests over in-memory pipes. A tiny pipe buffer (`duplex(8)`)
//! shakes out deadlocks; paused time drives heartbeats.

use std::time::Duration;

use burrow_wire::{Frame, FrameCodec, ResetCode};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::{CloseReason, Config, Incoming, MuxError, Session};

fn session_over(io: DuplexStream, config: Config) -> (Session, Incoming) {
    let (r, w) = tokio::io::split(io);
    Session::new(
        FramedRead::new(r, FrameCodec),
        FramedWrite::new(w, FrameCodec),
        config,
    )
}

fn pair_with(buf: usize, window: u32) -> ((Session, Incoming), (Session, Incoming)) {
    let (a, b) = tokio::io::duplex(buf);
    let cfg = |dialer| Config {
        initial_window: window,
        heartbeat: None,
        dialer,
        ..Config::default()
    };
    (session_over(a, cfg(true)), session_over(b, cfg(false)))
}

/// A dialer with the default settings and an acceptor with `acceptor`'s
/// (heartbeats off on both).
fn pair_configured(acceptor: Config) -> ((Session, Incoming), (Session, Incoming)) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let dialer = Config {
        heartbeat: None,
        ..Config::default()
    };
    let acceptor = Config {
        heartbeat: None,
        dialer: false,
        ..acceptor
    };
    (session_over(a, dialer), session_over(b, acceptor))
}

fn pair() -> ((Session, Incoming), (Session, Incoming)) {
    pair_with(64 * 1024, 256 * 1024)
}

/// Echoes every accepted stream back, half-closing after EOF.
fn spawn_echo(mut incoming: Incoming) {
    tokio::spawn(async move {
        while let Some(mut s) = incoming.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = s.shutdown().await;
                // Keep the stream until the peer has read the FIN.
                let _ = s.read(&mut buf).await;
            });
        }
    });
}

#[tokio::test]
async fn open_echo_and_half_close() {
    let ((a, _ai), (_b, bi)) = pair_with(8, 256 * 1024);
    spawn_echo(bi);
    let mut s = a.open("svc:1").await.expect("open");
    s.write_all(b"hello through the mux").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.expect("read to EOF");
    assert_eq!(got, b"hello through the mux");
}

#[tokio::test]
async fn accepted_stream_carries_its_target() {
    let ((a, _ai), (_b, mut bi)) = pair();
    let _s = a.open("db.internal:5432").await.expect("open");
    let got = bi.accept().await.expect("accepted");
    assert_eq!(got.target(), Some("db.internal:5432"));
    assert_eq!(got.id() % 2, 0, "dialer opens even ids");
}

#[tokio::test]
async fn many_concurrent_streams_keep_their_bytes_apart() {
    let ((a, _ai), (_b, bi)) = pair_with(1024, 16 * 1024);
    spawn_echo(bi);
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..50_000u32)
                .map(|j| (i.wrapping_mul(31) ^ j) as u8)
                .collect();
            let mut s = a.open("echo").await.expect("open");
            let (mut r, mut w) = tokio::io::split(&mut s);
            let send = async {
                w.write_all(&data).await.expect("write");
                w.shutdown().await.expect("fin");
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(send, recv);
            n.expect("read");
            assert_eq!(Sha256::digest(&got), Sha256::digest(&data), "stream {i}");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test]
async fn a_stalled_reader_blocks_only_its_own_stream() {
    let window = 64 * 1024;
    let ((a, _ai), (_b, mut bi)) = pair_with(4096, window);
    // Stream 1: the receiver never reads.
    let stalled = a.open("stalled").await.expect("open");
    let _held = bi.accept().await.expect("accept stalled");
    let writer = tokio::spawn(async move {
        let _ = stalled.send(Bytes::from(vec![7u8; 10 * 1024 * 1024])).await;
    });
    // Stream 2: must move 4 MiB regardless.
    let fast = a.open("fast").await.expect("open");
    let rx = bi.accept().await.expect("accept fast");
    let total = 4 * 1024 * 1024;
    let send = async {
        fast.send(Bytes::from(vec![1u8; total]))
            .await
            .expect("send");
        fast.finish().await.expect("fin");
    };
    let recv = async {
        let mut n = 0;
        while let Some(c) = rx.recv().await.expect("recv") {
            n += c.len();
        }
        n
    };
    let ((), n) = tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(send, recv) })
        .await
        .expect("fast stream finished while the other is stalled");
    assert_eq!(n, total);
    assert!(
        !writer.is_finished(),
        "stalled stream cannot have sent 10 MiB"
    );
    writer.abort();
}

#[tokio::test]
async fn dropping_a_stream_resets_it_at_the_peer() {
    let ((a, _ai), (_b, mut bi)) = pair();
    let s = a.open("x").await.expect("open");
    let peer = bi.accept().await.expect("accept");
    drop(s);
    assert_eq!(
        peer.recv().await,
        Err(MuxError::Reset(ResetCode::Cancelled))
    );
}

#[tokio::test]
async fn explicit_reset_code_reaches_the_opener() {
    let ((a, _ai), (_b, mut bi)) = pair();
    let s = a.open("nowhere:1").await.expect("open");
    let peer = bi.accept().await.expect("accept");
    peer.reset(ResetCode::Refused);
    assert_eq!(s.opened().await, Err(MuxError::Reset(ResetCode::Refused)));
    let e: std::io::Error = MuxError::Reset(ResetCode::Refused).into();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_reset_carries_its_reason_only_to_a_peer_that_reads_it() {
    for reads in [true, false] {
        let ((opener, _ai), (_b, mut bi)) = pair_configured(Config {
            peer_reads_reasons: reads,
            ..Config::default()
        });
        let s = opener.open_with_ack("git.corp:443").await.expect("open");
        let watch = s.opened_watch();
        let peer = bi.accept().await.expect("accept");
        peer.reset_because(ResetCode::NameNotFound, "cannot resolve git.corp");
        let got = s.opened().await;
        if reads {
            assert_eq!(got, Err(MuxError::Reset(ResetCode::NameNotFound)));
            assert_eq!(
                s.refusal(),
                Some((ResetCode::NameNotFound, "cannot resolve git.corp".into()))
            );
            assert_eq!(
                watch.refusal(),
                Some((ResetCode::NameNotFound, "cannot resolve git.corp".into()))
            );
        } else {
            assert_eq!(got, Err(MuxError::Reset(ResetCode::Unreachable)));
            assert_eq!(s.refusal(), Some((ResetCode::Unreachable, String::new())));
        }
    }
}

#[tokio::test]
async fn opened_resolves_on_confirmation() {
    let ((a, _ai), (_b, mut bi)) = pair();
    let s = a.open_with_ack("x").await.expect("open");
    let peer = bi.accept().await.expect("accept");
    peer.confirm_opened().await.expect("confirm");
    s.opened().await.expect("opened");
}

#[tokio::test]
async fn closing_a_session_resets_its_streams_and_refuses_opens() {
    let ((a, _ai), (b, mut bi)) = pair();
    let s = a.open("x").await.expect("open");
    let peer = bi.accept().await.expect("accept");
    b.close();
    assert!(matches!(peer.recv().await, Err(MuxError::Closed(_))));
    assert!(matches!(
        s.recv().await,
        Err(MuxError::Closed(CloseReason::PeerClosed))
    ));
    assert!(matches!(a.open("y").await, Err(MuxError::Closed(_))));
    assert_eq!(a.closed().await, CloseReason::PeerClosed);
}

#[tokio::test]
async fn stream_limit_refuses_with_busy() {
    let ((a, _ai), (_b, mut bi)) = pair_configured(Config {
        max_streams: 1,
        ..Config::default()
    });
    let _first = a.open("1").await.expect("open");
    let _kept = bi.accept().await.expect("accept");
    let second = a.open("2").await.expect("open");
    assert_eq!(second.opened().await, Err(MuxError::Reset(ResetCode::Busy)));
}

/// A raw peer: frames written by hand, to break the rules on purpose.
async fn raw_peer() -> (
    (Session, Incoming),
    FramedWrite<tokio::io::WriteHalf<DuplexStream>, FrameCodec>,
    FramedRead<tokio::io::ReadHalf<DuplexStream>, FrameCodec>,
) {
    let (x, y) = tokio::io::duplex(64 * 1024);
    let s = session_over(
        x,
        Config {
            heartbeat: None,
            dialer: false,
            initial_window: 1000,
            ..Config::default()
        },
    );
    let (r, w) = tokio::io::split(y);
    (
        s,
        FramedWrite::new(w, FrameCodec),
        FramedRead::new(r, FrameCodec),
    )
}

#[tokio::test]
async fn data_past_the_window_closes_the_link() {
    let ((s, mut inc), mut w, _r) = raw_peer().await;
    w.send(Frame::Open {
        stream_id: 2,
        ack: false,
        target: "t".into(),
    })
    .await
    .expect("send");
    let _st = inc.accept().await.expect("accept");
    w.send(Frame::Data {
        stream_id: 2,
        payload: Bytes::from(vec![0u8; 1001]),
    })
    .await
    .expect("send");
    let reason = s.closed().await;
    assert!(
        matches!(&reason, CloseReason::Protocol(why) if why.contains("past a window")),
        "{reason}"
    );
}

#[tokio::test]
async fn malformed_frame_closes_the_link_with_a_reason() {
    let (x, y) = tokio::io::duplex(1024);
    let (s, _i) = session_over(
        x,
        Config {
            heartbeat: None,
            ..Config::default()
        },
    );
    let (_r, mut w) = tokio::io::split(y);
    w.write_all(&[0xEE, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .expect("write");
    let reason = s.closed().await;
    assert!(
        matches!(&reason, CloseReason::Protocol(why) if why.contains("unknown frame type")),
        "{reason}"
    );
}

#[tokio::test]
async fn oversized_frame_header_closes_the_link() {
    let (x, y) = tokio::io::duplex(1024);
    let (s, _i) = session_over(
        x,
        Config {
            heartbeat: None,
            ..Config::default()
        },
    );
    let (_r, mut w) = tokio::io::split(y);
    w.write_all(&[0x12, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    let reason = s.closed().await;
    assert!(
        matches!(&reason, CloseReason::Protocol(why) if why.contains("exceeds the maximum")),
        "{reason}"
    );
}

#[tokio::test]
async fn wrong_parity_open_is_a_protocol_error() {
    let ((s, _inc), mut w, _r) = raw_peer().await;
    // The raw peer is the dialer (even ids); an odd id is ours to use.
    w.send(Frame::Open {
        stream_id: 3,
        ack: false,
        target: "t".into(),
    })
    .await
    .expect("send");
    assert!(matches!(s.closed().await, CloseReason::Protocol(_)));
}

#[tokio::test]
async fn pings_are_answered() {
    let ((_s, _inc), mut w, mut r) = raw_peer().await;
    w.send(Frame::Ping { nonce: 42 }).await.expect("send");
    let f = r.next().await.expect("frame").expect("decoded");
    assert_eq!(f, Frame::Pong { nonce: 42 });
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_after_three_heartbeats() {
    let (x, _y) = tokio::io::duplex(1024); // `_y` stays open but never speaks
    let (s, _i) = session_over(
        x,
        Config {
            heartbeat: Some(Duration::from_secs(30)),
            ..Config::default()
        },
    );
    let start = tokio::time::Instant::now();
    assert_eq!(s.closed().await, CloseReason::HeartbeatTimeout);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(90) && waited <= Duration::from_millis(90_010),
        "dropped after {waited:?}"
    );
}

type RawWrite = FramedWrite<tokio::io::WriteHalf<DuplexStream>, FrameCodec>;
type RawRead = FramedRead<tokio::io::ReadHalf<DuplexStream>, FrameCodec>;

/// A session with 5 s heartbeats, and the raw frames of its peer.
fn heartbeating_raw_peer() -> (Session, RawWrite, RawRead) {
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (s, _i) = session_over(
        x,
        Config {
            heartbeat: Some(Duration::from_secs(5)),
            ..Config::default()
        },
    );
    let (r, w) = tokio::io::split(y);
    (
        s,
        FramedWrite::new(w, FrameCodec),
        FramedRead::new(r, FrameCodec),
    )
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_falls_silent_is_dropped_at_three_intervals_not_four() {
    // The peer answers pings, then stops at a moment that falls just after
    // a ping: the worst case for a check made only at ping times.
    let (s, mut w, mut r) = heartbeating_raw_peer();
    let mut last_answer = tokio::time::Instant::now();
    for _ in 0..4 {
        match r.next().await.expect("frame").expect("decoded") {
            Frame::Ping { nonce } => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                w.send(Frame::Pong { nonce }).await.expect("pong");
                last_answer = tokio::time::Instant::now();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Silent from here (the halves stay open).
    assert_eq!(s.closed().await, CloseReason::HeartbeatTimeout);
    let silent = last_answer.elapsed();
    assert!(
        silent >= Duration::from_secs(15) && silent <= Duration::from_millis(15_010),
        "dropped {silent:?} after the last frame; 3 intervals are 15 s"
    );
    drop((w, r));
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_an_idle_link_alive() {
    let (x, y) = tokio::io::duplex(1024);
    let cfg = |dialer| Config {
        heartbeat: Some(Duration::from_secs(30)),
        dialer,
        ..Config::default()
    };
    let (a, _ai) = session_over(x, cfg(true));
    let (b, _bi) = session_over(y, cfg(false));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        !a.is_closed() && !b.is_closed(),
        "idle link with heartbeats stays up"
    );
}

#[tokio::test]
async fn dropping_every_session_handle_closes_the_link() {
    let ((a, _ai), (b, _bi)) = pair();
    drop(a);
    assert_eq!(b.closed().await, CloseReason::PeerClosed);
}

#[tokio::test]
async fn small_and_large_payloads_interleave_in_order() {
    let ((a, _ai), (_b, mut bi)) = pair_with(512, 256 * 1024);
    let s = a.open("x").await.expect("open");
    let peer = bi.accept().await.expect("accept");
    let mut expected = Vec::new();
    let send = async {
        for i in 0..400u32 {
            // Mostly tiny writes, with a large one now and then.
            let len = if i % 50 == 49 {
                40_000
            } else {
                1 + (i as usize % 7)
            };
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            s.send(Bytes::from(chunk)).await.expect("send");
        }
        s.finish().await.expect("fin");
    };
    let recv = async {
        // Read slowly at first so small payloads pile up in the tail.
        tokio::task::yield_now().await;
        let mut got = Vec::new();
        while let Some(c) = peer.recv().await.expect("recv") {
            got.extend_from_slice(&c);
        }
        got
    };
    let ((), got) = tokio::join!(send, recv);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes reordered or lost");
}

#[tokio::test]
async fn without_ack_no_opened_frame_is_sent_and_data_resolves_opened() {
    let ((s, mut inc), mut w, mut r) = raw_peer().await;
    w.send(Frame::Open {
        stream_id: 2,
        ack: false,
        target: "t".into(),
    })
    .await
    .expect("send");
    let st = inc.accept().await.expect("accept");
    st.confirm_opened().await.expect("no-op");
    st.send(Bytes::from_static(b"hi")).await.expect("send");
    // The first frame the raw peer sees is the data, not an Opened.
    let f = r.next().await.expect("frame").expect("decoded");
    assert_eq!(
        f,
        Frame::Data {
            stream_id: 2,
            payload: Bytes::from_static(b"hi")
        }
    );
    drop(s);
}

#[tokio::test(start_paused = true)]
async fn a_writer_blocked_on_a_silent_peer_is_released_when_the_session_times_out() {
    // An 8-byte pipe the peer never reads: the first frame blocks the writer.
    let (x, mut y) = tokio::io::duplex(8);
    let (s, _i) = session_over(
        x,
        Config {
            heartbeat: Some(Duration::from_secs(30)),
            ..Config::default()
        },
    );
    let _st = s.open("target:1").await.expect("open");
    assert_eq!(s.closed().await, CloseReason::HeartbeatTimeout);
    // Once both tasks have let go of the carrier, writing into it fails.
    // A writer still stuck would keep it open and this would time out.
    let probe = tokio::time::timeout(Duration::from_secs(3600), async {
        loop {
            if let Err(e) = y.write_all(&[0u8; 64]).await {
                return e;
            }
        }
    })
    .await
    .expect("carrier released after the session closed");
    assert_eq!(probe.kind(), std::io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn a_link_closed_right_after_a_clean_finish_still_reads_to_eof() {
    let ((a, _ai), (b, mut bi)) = pair();
    let s = a.open("x").await.expect("open");
    let peer = bi.accept().await.expect("accept");
    peer.send(Bytes::from_static(b"last words"))
        .await
        .expect("send");
    peer.finish().await.expect("fin");
    s.finish().await.expect("fin");
    assert_eq!(peer.recv().await, Ok(None), "peer saw our fin");
    drop(peer); // both ways finished: a clean drop, no reset
    // The peer's side closes the link at once, as a draining agent does.
    b.close();
    a.closed().await;
    assert_eq!(s.recv().await, Ok(Some(Bytes::from_static(b"last words"))));
    assert_eq!(s.recv().await, Ok(None), "clean EOF, not a reset");
    // Writing is over, though: the link is gone.
    assert!(s.send(Bytes::from_static(b"more")).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_streams_but_not_past_its_limit() {
    let done = tokio_util::task::TaskTracker::new();
    done.spawn(tokio::time::sleep(Duration::from_secs(5)));
    assert!(
        crate::drain(&done, Duration::from_secs(10)).await,
        "finished in time"
    );

    let stuck = tokio_util::task::TaskTracker::new();
    stuck.spawn(std::future::pending::<()>());
    let start = tokio::time::Instant::now();
    assert!(
        !crate::drain(&stuck, Duration::from_secs(10)).await,
        "one left"
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "gave up at the limit"
    );
}

/// A pipe's write half that counts the writes made into it.
struct CountedWrites {
    io: tokio::io::WriteHalf<DuplexStream>,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncWrite for CountedWrites {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(_))) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn frames_queued_in_one_turn_go_out_in_one_write() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let cfg = |dialer| Config {
        heartbeat: None,
        dialer,
        ..Config::default()
    };
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (ar, aw) = tokio::io::split(a);
    let (dialer, _incoming) = Session::new(
        FramedRead::new(ar, FrameCodec),
        FramedWrite::new(
            CountedWrites {
                io: aw,
                writes: writes.clone(),
            },
            FrameCodec,
        ),
        cfg(true),
    );
    let (_peer, mut accepted) = session_over(b, cfg(false));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(s) = accepted.accept().await {
            held.push(s);
        }
    });
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(dialer.open("t:1").await.expect("open"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = writes.load(std::sync::atomic::Ordering::Relaxed);
    // Eight tasks in a chain: each queues one frame, then wakes the next.
    // They all run in one turn of the runtime, but the link's writer is
    // woken by the first and would run between them.
    let (start, mut next) = tokio::sync::oneshot::channel::<()>();
    let mut tasks = Vec::new();
    for s in streams {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let wait = std::mem::replace(&mut next, rx);
        tasks.push(tokio::spawn(async move {
            let _ = wait.await;
            s.send(Bytes::from_static(b"x")).await.expect("send");
            let _ = tx.send(());
            s
        }));
    }
    // Every task waits on its turn before the chain starts.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = start.send(());
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await.expect("task"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during = writes.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        (1..=2).contains(&during),
        "{during} writes for 8 frames queued in one turn"
    );
}

#[tokio::test]
async fn a_pump_blocked_on_a_slow_client_resets_it_as_soon_as_the_stream_breaks() {
    let ((a, _ai), (_b, mut bi)) = pair();
    // A TCP client that does not read, with small buffers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    let mut client = sock.connect(addr).await.expect("connect");
    let (server_side, _) = listener.accept().await.expect("accept");
    let s = a.open("download").await.expect("open");
    let pumped = tokio::spawn(crate::pump(s, server_side));
    let remote = bi.accept().await.expect("accepted");
    // Fill every buffer on the way, so the pump waits to write.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    for _ in 0..64 {
        if tokio::time::timeout(Duration::from_millis(200), remote.send(chunk.clone()))
            .await
            .is_err()
        {
            break;
        }
    }
    remote.reset(ResetCode::ConnectionReset);
    // The pump ends now, not when the client reads.
    let out = tokio::time::timeout(Duration::from_secs(5), pumped)
        .await
        .expect("the pump noticed the reset while waiting to write")
        .expect("joined");
    assert!(out.error.is_some(), "{out:?}");
    // The client reads what reached it, then a reset, never a clean EOF.
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match client.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    assert_eq!(
        end.expect_err("a clean EOF after a broken stream").kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

/// A raw peer over a fresh session with 5 s heartbeats: answers two pings
/// (20 ms later each), then keeps answering only if `keep_answering`.
async fn peer_that_answers(keep_answering: bool) -> (Session, tokio::task::JoinHandle<()>) {
    let (s, mut w, mut r) = heartbeating_raw_peer();
    for _ in 0..2 {
        loop {
            if let Frame::Ping { nonce } = r.next().await.expect("frame").expect("decoded") {
                tokio::time::sleep(Duration::from_millis(20)).await;
                w.send(Frame::Pong { nonce }).await.expect("pong");
                break;
            }
        }
    }
    let task = tokio::spawn(async move {
        while let Some(Ok(f)) = r.next().await {
            if let (Frame::Ping { nonce }, true) = (f, keep_answering) {
                let _ = w.send(Frame::Pong { nonce }).await;
            }
        }
    });
    (s, task)
}

#[tokio::test(start_paused = true)]
async fn an_open_on_a_dead_link_fails_within_a_few_round_trips_not_heartbeats() {
    let (s, _peer) = peer_that_answers(false).await;
    let stream = s.open_with_ack("somewhere").await.expect("open");
    let start = tokio::time::Instant::now();
    let r = s.answered(&stream).await;
    let waited = start.elapsed();
    assert_eq!(r, Err(MuxError::Closed(CloseReason::NoAnswer)));
    assert!(s.is_closed());
    // Two probe bounds of 4 x 20 ms, floored at 500 ms each; heartbeats
    // would have taken 15 s.
    assert!(waited <= Duration::from_millis(1_010), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn an_open_on_a_live_link_with_a_slow_target_is_waited_on() {
    let (s, _peer) = peer_that_answers(true).await;
    let stream = s.open_with_ack("slow").await.expect("open");
    let r = tokio::time::timeout(Duration::from_secs(12), s.answered(&stream)).await;
    assert!(r.is_err(), "still waiting for the target: {r:?}");
    assert!(!s.is_closed(), "a live link is kept");
}
