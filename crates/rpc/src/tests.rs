//! Two sessions over an in-memory pipe, each with its control loop.

use std::sync::atomic::{AtomicBool, AtomicUsize};

use burrow_mux::{Config, Event};
use burrow_wire::FrameCodec;
use serde::Deserialize;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::*;

struct Echo;
impl Call for Echo {
    const METHOD: &'static str = "test.echo";
    type Request = String;
    type Response = String;
}

struct Big;
impl Call for Big {
    const METHOD: &'static str = "test.big";
    type Request = usize;
    type Response = String;
}

struct Slow;
impl Call for Slow {
    const METHOD: &'static str = "test.slow";
    type Request = ();
    type Response = ();
}

struct Fails;
impl Call for Fails {
    const METHOD: &'static str = "test.fails";
    type Request = ();
    type Response = ();
}

struct Nobody;
impl Call for Nobody {
    const METHOD: &'static str = "test.nobody";
    type Request = ();
    type Response = ();
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Tick {
    n: u32,
}

struct Ticks;
impl Follow for Ticks {
    const METHOD: &'static str = "test.ticks";
    type Request = u32;
    type Item = Tick;
}

#[derive(Default)]
struct Seen {
    slow_cancelled: AtomicBool,
    ticks_gone: AtomicBool,
    slow_running: AtomicUsize,
}

fn router(seen: Arc<Seen>) -> Router {
    let s1 = seen.clone();
    let s2 = seen;
    Router::new()
        .call::<Echo, _, _>(|s| async move { Ok(s) })
        .call::<Big, _, _>(|n| async move { Ok("x".repeat(n)) })
        .call::<Fails, _, _>(|()| async { Err("the disk is full".to_owned()) })
        .call::<Slow, _, _>(move |()| {
            let seen = s1.clone();
            async move {
                seen.slow_running.fetch_add(1, Ordering::SeqCst);
                struct OnDrop(Arc<Seen>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.slow_cancelled.store(true, Ordering::SeqCst);
                    }
                }
                let _g = OnDrop(seen);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        })
        .follow::<Ticks, _, _>(move |upto, sink| {
            let seen = s2.clone();
            async move {
                // Dropped when the caller leaves (the work is cancelled).
                struct OnDrop(Arc<Seen>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.ticks_gone.store(true, Ordering::SeqCst);
                    }
                }
                let _g = OnDrop(seen);
                for n in 0..upto {
                    if sink.send(&Tick { n }).await.is_err() {
                        return Ok(());
                    }
                }
                if upto > 1000 {
                    // Keep following until the caller leaves.
                    sink.gone().await;
                }
                Ok(())
            }
        })
}

fn raw_side(io: tokio::io::DuplexStream, dialer: bool) -> (Session, burrow_mux::Incoming) {
    let (r, w) = tokio::io::split(io);
    Session::new(
        FramedRead::new(r, FrameCodec),
        FramedWrite::new(w, FrameCodec),
        Config {
            heartbeat: None,
            dialer,
            ..Config::default()
        },
    )
}

fn side(io: tokio::io::DuplexStream, dialer: bool, router: Router, peer: Peer) -> (Session, Rpc) {
    let (session, mut incoming) = raw_side(io, dialer);
    let rpc = Rpc::new(session.clone(), router, peer);
    let on = rpc.clone();
    tokio::spawn(async move {
        while let Some(e) = incoming.next().await {
            if let Event::Control(kind, body) = e {
                on.on_control(kind, &body);
            }
        }
    });
    (session, rpc)
}

fn peer(answers: bool) -> Peer {
    Peer {
        role: "agent",
        answers,
        version: "0.9.0".into(),
    }
}

/// (caller, answering side's session, what the answering side saw)
fn pair() -> (Rpc, Session, Arc<Seen>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let seen = Arc::new(Seen::default());
    let (_, caller) = side(a, true, Router::new(), peer(true));
    let (answering, _) = side(b, false, router(seen.clone()), peer(true));
    (caller, answering, seen)
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn calls_are_answered_and_large_answers_joined() {
    let (rpc, _s, _) = pair();
    assert_eq!(rpc.call::<Echo>(&"hi".into()).await, Ok("hi".into()));
    // Several control messages' worth, joined, both ways.
    let n = 3 * MAX_BODY + 17;
    assert_eq!(rpc.call::<Big>(&n).await.map(|s| s.len()), Ok(n));
    let long = "y".repeat(2 * MAX_BODY + 5);
    assert_eq!(rpc.call::<Echo>(&long).await, Ok(long));
    let too_long = "z".repeat(MAX_REQUEST);
    assert!(matches!(
        rpc.call::<Echo>(&too_long).await,
        Err(RpcError::Codec { .. })
    ));
    // Many at once (more than the peer answers at a time: they wait
    // their turn), each gets its own answer.
    let all = futures_util::future::join_all((0..100).map(|i| {
        let rpc = rpc.clone();
        async move { rpc.call::<Echo>(&i.to_string()).await }
    }))
    .await;
    for (i, a) in all.into_iter().enumerate() {
        assert_eq!(a, Ok(i.to_string()));
    }
}

#[tokio::test]
async fn failures_say_why() {
    let (rpc, _s, _) = pair();
    assert_eq!(
        rpc.call::<Fails>(&()).await,
        Err(RpcError::Failed("the disk is full".into()))
    );
    let e = rpc.call::<Nobody>(&()).await.expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "test.nobody is not supported by agent version 0.9.0"
    );
    // A call method asked as a follow is unknown too.
    struct EchoFollow;
    impl Follow for EchoFollow {
        const METHOD: &'static str = "test.echo";
        type Request = String;
        type Item = String;
    }
    let mut f = rpc.follow::<EchoFollow>(&"x".into()).await.expect("sent");
    assert!(matches!(
        f.next().await,
        Some(Err(RpcError::UnknownMethod { .. }))
    ));
    assert!(f.next().await.is_none());
    let e = rpc
        .call_with::<Big>(
            &100_000,
            Options {
                max_answer: 1000,
                ..Options::default()
            },
        )
        .await;
    assert_eq!(e, Err(RpcError::TooLarge(1000)));
    // Still usable.
    assert_eq!(rpc.call::<Echo>(&"ok".into()).await, Ok("ok".into()));
}

#[tokio::test]
async fn an_old_peer_is_named() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (_, caller) = side(a, true, Router::new(), peer(false));
    let _other = side(b, false, Router::new(), peer(true));
    let e = caller.call::<Echo>(&"x".into()).await.expect_err("old");
    assert_eq!(e.to_string(), "not supported by agent version 0.9.0");
}

#[tokio::test]
async fn a_timeout_cancels_the_work() {
    let (rpc, _s, seen) = pair();
    let e = rpc
        .call_with::<Slow>(
            &(),
            Options {
                timeout: Duration::from_millis(200),
                ..Options::default()
            },
        )
        .await;
    assert!(matches!(e, Err(RpcError::Timeout { .. })), "{e:?}");
    eventually("the handler is cancelled", || {
        seen.slow_cancelled.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn too_many_at_once_are_busy() {
    let (rpc, _s, seen) = pair();
    let mut slow = Vec::new();
    for _ in 0..MAX_SERVED {
        let rpc = rpc.clone();
        slow.push(tokio::spawn(async move { rpc.call::<Slow>(&()).await }));
    }
    eventually("all slow calls run", || {
        seen.slow_running.load(Ordering::SeqCst) == MAX_SERVED
    })
    .await;
    // A caller waits its turn rather than being refused...
    let waiting = rpc
        .call_with::<Echo>(
            &"x".into(),
            Options {
                timeout: Duration::from_millis(300),
                ..Options::default()
            },
        )
        .await;
    assert!(
        matches!(waiting, Err(RpcError::Timeout { .. })),
        "{waiting:?}"
    );
    // ...and a peer that does not wait is refused.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let seen = Arc::new(Seen::default());
    let (raw, mut answers) = raw_side(a, true);
    let (_answering, _) = side(b, false, router(seen.clone()), peer(true));
    for id in 1..=u32::try_from(MAX_SERVED + 1).expect("small") {
        let req = Request {
            id,
            method: Slow::METHOD.into(),
            stream: false,
            more: false,
            body: Bytes::from_static(b"null"),
        };
        raw.send_control(control::REQUEST, req.encode().expect("encodes"))
            .await
            .expect("sent");
    }
    let (kind, body) = tokio::time::timeout(Duration::from_secs(5), answers.control())
        .await
        .expect("an answer")
        .expect("open");
    assert_eq!(kind, control::RESPONSE);
    let busy = Response::decode(body).expect("decodes");
    assert_eq!((busy.id, busy.status), (33, Status::Busy));
    assert_eq!(seen.slow_running.load(Ordering::SeqCst), MAX_SERVED);
    for s in slow {
        s.abort();
    }
}

#[tokio::test]
async fn following_streams_until_either_side_stops() {
    let (rpc, _s, seen) = pair();
    let mut f = rpc.follow::<Ticks>(&5).await.expect("sent");
    for n in 0..5 {
        assert_eq!(f.next().await, Some(Ok(Tick { n })));
    }
    assert!(f.next().await.is_none(), "the handler finished");
    let mut f = rpc.follow::<Ticks>(&2000).await.expect("sent");
    assert_eq!(f.next().await, Some(Ok(Tick { n: 0 })));
    drop(f);
    eventually("the handler sees the caller leave", || {
        seen.ticks_gone.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn a_follower_that_falls_behind_is_cut_off() {
    let (rpc, _s, seen) = pair();
    let mut f = rpc.follow::<Ticks>(&1500).await.expect("sent");
    eventually("the handler is cut off", || {
        seen.ticks_gone.load(Ordering::SeqCst)
    })
    .await;
    let mut items = 0;
    let end = loop {
        match f.next().await {
            Some(Ok(_)) => items += 1,
            other => break other,
        }
    };
    assert_eq!(items, FOLLOW_BACKLOG);
    assert_eq!(end, Some(Err(RpcError::Lagged)));
    assert!(f.next().await.is_none());
}

#[tokio::test]
async fn a_closed_link_ends_every_request() {
    let (rpc, answering, seen) = pair();
    let slow = {
        let rpc = rpc.clone();
        tokio::spawn(async move { rpc.call::<Slow>(&()).await })
    };
    let mut f = rpc.follow::<Ticks>(&2000).await.expect("sent");
    assert!(f.next().await.is_some());
    eventually("slow call runs", || {
        seen.slow_running.load(Ordering::SeqCst) == 1
    })
    .await;
    answering.close();
    assert_eq!(slow.await.expect("joined"), Err(RpcError::Closed));
    // Items already queued may come first; then the stream ends.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), f.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => {
                assert_eq!(e, RpcError::Closed);
                break;
            }
            Ok(None) => break,
            Err(_) => panic!("the follow never ended"),
        }
    }
    eventually("the answering side stops its work", || {
        seen.slow_cancelled.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(rpc.call::<Echo>(&"x".into()).await, Err(RpcError::Closed));
}

#[tokio::test]
async fn malformed_messages_are_dropped_and_the_link_stays() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (raw, mut answers) = raw_side(a, true);
    let seen = Arc::new(Seen::default());
    let (answering, _) = side(b, false, router(seen), peer(true));
    for (kind, body) in [
        (control::REQUEST, &b""[..]),
        (control::REQUEST, b"\0\0\0\x01\xff\xff"),
        (control::RESPONSE, b"\0\0\0\x09\x07"),
        (control::RESPONSE, b"\0\0\0\x09\x00{}"),
        (control::CANCEL, b"\0"),
        (control::CANCEL, b"\0\0\0\x05"),
        // Bad JSON for a known method: answered with a failure.
        (control::REQUEST, b"\0\0\0\x02\0\x09test.echo\0{not json"),
        // Then a good request.
        (control::REQUEST, b"\0\0\0\x03\0\x09test.echo\0\"hi\""),
    ] {
        raw.send_control(kind, Bytes::copy_from_slice(body))
            .await
            .expect("sent");
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        let (kind, body) = tokio::time::timeout(Duration::from_secs(5), answers.control())
            .await
            .expect("answers")
            .expect("open");
        assert_eq!(kind, control::RESPONSE);
        got.push(Response::decode(body).expect("decodes"));
    }
    got.sort_by_key(|r| r.id);
    assert_eq!((got[0].id, got[0].status), (2, Status::Failed));
    assert!(String::from_utf8_lossy(&got[0].body).starts_with("bad request"));
    assert_eq!(
        (got[1].id, got[1].status, &got[1].body[..]),
        (3, Status::Done, &b"\"hi\""[..])
    );
    assert!(!answering.is_closed());
}

#[tokio::test]
async fn a_request_in_too_many_parts_is_refused() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (raw, mut answers) = raw_side(a, true);
    let seen = Arc::new(Seen::default());
    let (answering, _) = side(b, false, router(seen), peer(true));
    let part = Bytes::from(vec![b' '; MAX_BODY - 100]);
    for _ in 0..=MAX_REQUEST / part.len() {
        let req = Request {
            id: 4,
            method: Echo::METHOD.into(),
            stream: false,
            more: true,
            body: part.clone(),
        };
        raw.send_control(control::REQUEST, req.encode().expect("encodes"))
            .await
            .expect("sent");
    }
    let (_, body) = tokio::time::timeout(Duration::from_secs(5), answers.control())
        .await
        .expect("answers")
        .expect("open");
    let r = Response::decode(body).expect("decodes");
    assert_eq!((r.id, r.status), (4, Status::Failed));
    assert!(String::from_utf8_lossy(&r.body).contains("larger than"));
    assert!(!answering.is_closed());
}
