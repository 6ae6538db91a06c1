//! End to end: real `burrow gateway` and `burrow run` processes on
//! loopback, ports chosen by the kernel, readiness read from their logs.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use burrow_agent::event as agent_ev;
use burrow_e2e::servers::{self, echo_roundtrip, hashing_peer, send_and_hash};
use burrow_e2e::{Proc, Tunnel, TunnelOpts, WAIT, random_psk};
use burrow_gateway::event as gw_ev;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

fn over(scheme: &'static str) -> TunnelOpts {
    TunnelOpts {
        scheme,
        ..TunnelOpts::default()
    }
}

/// One test per carrier: `per_scheme!(check: wss, tls, ws)` makes the
/// tests `check::wss`, `check::tls` and `check::ws`, each running
/// `check(over(SCHEME))`.
macro_rules! per_scheme {
    ($check:ident: $($scheme:ident),+) => {
        mod $check {
            $(
                #[tokio::test]
                async fn $scheme() -> anyhow::Result<()> {
                    super::$check(super::over(stringify!($scheme))).await
                }
            )+
        }
    };
}

// 100 MB each way through one stream, checksummed.
per_scheme!(hundred_megabytes_each_way: wss, tls, ws);

async fn hundred_megabytes_each_way(opts: TunnelOpts) -> Result<()> {
    const N: u64 = 100 * 1000 * 1000;
    let (target, mut reports) = hashing_peer(N, 0xB0B).await;
    let t = Tunnel::start(bin(), &[target], opts).await?;
    let client = TcpStream::connect(t.forwards[0]).await?;
    let mine =
        tokio::time::timeout(Duration::from_secs(300), send_and_hash(client, N, 0xA11CE)).await??;
    let theirs = tokio::time::timeout(WAIT, reports.recv()).await?.unwrap();
    assert_eq!(mine.received_len, N, "client received all bytes");
    assert_eq!(theirs.received_len, N, "target received all bytes");
    assert_eq!(mine.received, theirs.sent, "target -> client bytes intact");
    assert_eq!(theirs.received, mine.sent, "client -> target bytes intact");
    assert_eq!(mine.sent, servers::pattern_hash(N, 0xA11CE));
    Ok(())
}

per_scheme!(a_thousand_concurrent_streams: wss, tls);

async fn a_thousand_concurrent_streams(opts: TunnelOpts) -> Result<()> {
    let echo = servers::echo().await;
    let t = Tunnel::start(bin(), &[echo], opts).await?;
    let fwd = t.forwards[0];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        tasks.spawn(async move {
            let mut s = TcpStream::connect(fwd).await?;
            let mut data = vec![0u8; 16 * 1024 + (i as usize * 37) % 4096];
            servers::Pattern::new(i + 1).fill(&mut data);
            let (mut r, mut w) = s.split();
            let send = async {
                w.write_all(&data).await?;
                w.shutdown().await
            };
            let mut got = Vec::new();
            let (a, b) = tokio::join!(send, r.read_to_end(&mut got));
            a?;
            b?;
            anyhow::ensure!(got == data, "stream {i}: echoed bytes differ");
            Ok::<_, anyhow::Error>(())
        });
    }
    let mut ok = 0;
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = tasks.join_next().await {
            r??;
            ok += 1;
        }
        Ok::<_, anyhow::Error>(())
    });
    all.await??;
    assert_eq!(ok, 1000);
    Ok(())
}

#[tokio::test]
async fn a_target_that_never_reads_does_not_slow_the_others() -> Result<()> {
    const N: u64 = 20 * 1000 * 1000;
    let stuck = servers::never_reads().await;
    let (target, mut reports) = hashing_peer(N, 5).await;
    let t = Tunnel::start(bin(), &[stuck, target], TunnelOpts::default()).await?;
    // Fill the stuck stream: its writes stall once windows and socket
    // buffers are full, and must stay stalled.
    let stuck_fwd = t.forwards[0];
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let stuck_writer = tokio::spawn(async move {
        let mut s = TcpStream::connect(stuck_fwd).await?;
        let buf = vec![1u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            s.write_all(&buf).await?;
            n += buf.len() as u64;
            let _ = progress_tx.send(n);
        }
        #[allow(unreachable_code)]
        Ok::<_, std::io::Error>(())
    });
    // Wait until the stuck stream has moved some data into the tunnel.
    progress.wait_for(|n| *n >= 1024 * 1024).await?;
    // Meanwhile, 20 MB each way on another stream of the same agent.
    let client = TcpStream::connect(t.forwards[1]).await?;
    let mine =
        tokio::time::timeout(Duration::from_secs(120), send_and_hash(client, N, 9)).await??;
    let theirs = tokio::time::timeout(WAIT, reports.recv()).await?.unwrap();
    assert_eq!(mine.received, theirs.sent);
    assert_eq!(theirs.received, mine.sent);
    let stuck_bytes = *progress.borrow();
    assert!(!stuck_writer.is_finished(), "stuck stream still open");
    // Flow control bounds what the stuck stream could push: windows plus
    // socket buffers, far below what the other stream moved.
    assert!(
        stuck_bytes < 64 * 1024 * 1024,
        "stuck stream buffered {stuck_bytes} bytes"
    );
    stuck_writer.abort();
    Ok(())
}

#[tokio::test]
async fn killing_the_agent_resets_clients_and_a_restart_restores_the_forward() -> Result<()> {
    let echo = servers::echo().await;
    let mut t = Tunnel::start(bin(), &[echo], TunnelOpts::default()).await?;
    let mut s = TcpStream::connect(t.forwards[0]).await?;
    s.write_all(b"before").await?;
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"before");

    let mark = t.gateway.mark();
    t.agent.kill().await;
    // The client sees a reset (not EOF, not a hang).
    let err = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(e) = s.write_all(b"more").await {
                return e;
            }
            match s.read(&mut buf).await {
                Err(e) => return e,
                Ok(0) => return std::io::Error::other("clean EOF instead of a reset"),
                Ok(_) => {}
            }
        }
    })
    .await?;
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    t.gateway
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| v["links"] == 0)
        .await?;

    // With no live link, new connections are refused at once.
    let refused = echo_roundtrip(t.forwards[0], b"x").await;
    assert!(refused.is_err() || refused.as_ref().is_ok_and(|v| v.is_empty()));

    let mark = t.gateway.mark();
    t.restart_agent("info")?;
    t.wait_links(mark, 2).await?;
    assert_eq!(
        echo_roundtrip(t.forwards[0], b"after restart").await?,
        b"after restart"
    );
    Ok(())
}

#[tokio::test]
async fn the_agent_reconnects_by_itself_after_the_gateway_returns() -> Result<()> {
    let echo = servers::echo().await;
    let opts = TunnelOpts {
        agent_extra: vec![
            "--reconnect-delay-seconds".into(),
            "0.2".into(),
            "--max-reconnect-delay-seconds".into(),
            "1".into(),
        ],
        agent_log: "info,burrow_agent=debug".into(),
        ..TunnelOpts::default()
    };
    let mut t = Tunnel::start(bin(), &[echo], opts).await?;
    assert_eq!(echo_roundtrip(t.forwards[0], b"one").await?, b"one");

    let mark = t.agent.mark();
    t.gateway.kill().await;
    for link in 0..2u64 {
        let v = t
            .agent
            .wait_event_after(mark, agent_ev::LINK_DOWN, |v| v["link"] == link)
            .await?;
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.contains("protocol violation"),
            "a dead gateway is not a protocol error: {v}"
        );
    }
    // "A while": several failed redials on each link, backing off.
    for link in 0..2u64 {
        t.agent
            .wait_event_after(mark, agent_ev::GATEWAY_STILL_UNREACHABLE, |v| {
                v["link"] == link && v["failures"].as_u64() >= Some(3)
            })
            .await?;
    }
    // One warning per link for the outage, not one per attempt.
    assert_eq!(
        t.agent.count_events(agent_ev::GATEWAY_UNREACHABLE),
        2,
        "{}",
        t.agent.output()
    );

    let agent_mark = t.agent.mark();
    t.restart_gateway().await?;
    t.wait_links(0, 2).await?;
    for link in 0..2u64 {
        t.agent
            .wait_event_after(agent_mark, agent_ev::LINK_UP, |v| {
                v["link"] == link && v["after_failures"].as_u64() >= Some(3)
            })
            .await?;
    }
    assert_eq!(echo_roundtrip(t.forwards[0], b"two").await?, b"two");
    Ok(())
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_401_and_one_log_line() -> Result<()> {
    let psk = random_psk();
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &["gateway".into(), "--listen".into(), "127.0.0.1:0".into()],
        &[("BURROW_PSK", &psk)],
    )?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    let addr = burrow_e2e::addr_field(&up, "addr")?;
    let thumbprint = up["thumbprint"].as_str().unwrap_or_default().to_owned();
    let wrong = random_psk();
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &[
            "run".into(),
            "--connect-url".into(),
            format!("wss://{addr}/tunnel"),
            "--gateway-thumbprint".into(),
            thumbprint,
            "--agent-name".into(),
            "intruder".into(),
            "--links".into(),
            "1".into(),
            "--allow".into(),
            "127.0.0.1:1".into(),
        ],
        &[("BURROW_PSK", &wrong)],
    )?;
    let v = agent.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?;
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the credentials"),
        "{v}"
    );
    let g = gw.wait_event(gw_ev::CREDENTIAL_REFUSED).await?;
    assert_eq!(g["reason"], "wrong pre-shared key");
    assert_eq!(g["check"], "agent link");
    assert_eq!(gw.count_events(gw_ev::AGENT_LINK_UP), 0);
    // The key never appears in either log.
    assert!(!gw.output().contains(&psk) && !gw.output().contains(&wrong));
    assert!(!agent.output().contains(&wrong));
    Ok(())
}

async fn expect_start_failure(args: &[&str], env: &[(&str, &str)], needle: &str) -> Result<()> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut p = Proc::spawn("burrow", &bin(), &args, env)?;
    let code = p.wait_exit().await?;
    assert_ne!(code, Some(0), "must fail: {args:?}");
    assert!(
        p.output().contains(needle),
        "{args:?}: expected {needle:?} in:\n{}",
        p.output()
    );
    Ok(())
}

#[tokio::test]
async fn bad_configuration_is_refused_at_start_with_a_clear_message() -> Result<()> {
    let short = "too-short-key";
    expect_start_failure(
        &["gateway", "--listen", "127.0.0.1:0"],
        &[("BURROW_PSK", short)],
        "openssl rand -base64 32",
    )
    .await?;
    expect_start_failure(
        &[
            "run",
            "--connect-url",
            "ws://127.0.0.1:9/tunnel",
            "--agent-name",
            "a",
        ],
        &[("BURROW_PSK", short)],
        "at least 32",
    )
    .await?;
    let psk = random_psk();
    expect_start_failure(
        &["gateway", "--listen", "127.0.0.1:0"],
        &[("BURROW_DATABASE_URL", "mysql://db/burrow")],
        "unsupported database URL",
    )
    .await?;
    expect_start_failure(
        &[
            "run",
            "--connect-url",
            "ws://127.0.0.1:9/tunnel",
            "--agent-name",
            "bad name",
        ],
        &[("BURROW_PSK", &psk)],
        "invalid agent name",
    )
    .await?;
    expect_start_failure(
        &["gateway", "--forward", "15432=home:db:5432"],
        &[("BURROW_PSK", &psk)],
        "LISTEN=AGENT:HOST:PORT",
    )
    .await?;
    expect_start_failure(
        &[
            "run",
            "--connect-url",
            "http://x/tunnel",
            "--agent-name",
            "a",
        ],
        &[("BURROW_PSK", &psk)],
        "unsupported scheme",
    )
    .await?;
    Ok(())
}

/// A hand-driven agent link with an empty capability list.
async fn raw_link(
    addr: std::net::SocketAddr,
    psk: &str,
    name: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>> {
    burrow_e2e::raw_agent_link(addr, psk, name, "test", &[]).await
}

#[tokio::test]
async fn malformed_and_oversized_frames_close_only_the_offending_link() -> Result<()> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let echo = servers::echo().await;
    // Plain ws:// so the test can write frames by hand.
    let mut t = Tunnel::start(bin(), &[echo], over("ws")).await?;

    // Unknown frame type.
    let mut ws = raw_link(t.tunnel_addr, &t.psk, "rogue-1").await?;
    ws.send(Message::Binary(vec![0xEE, 0, 0, 0, 0, 0, 0, 0, 0].into()))
        .await?;
    let v = t
        .gateway
        .wait_event_after(0, gw_ev::AGENT_LINK_DOWN, |v| v["agent"] == "rogue-1")
        .await?;
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown frame type"),
        "{v}"
    );

    // A frame header announcing more than the maximum payload.
    let mut ws = raw_link(t.tunnel_addr, &t.psk, "rogue-2").await?;
    let mut bad = vec![0x12, 0, 0, 0, 2, 0x7f, 0xff, 0xff, 0xff];
    bad.extend_from_slice(&[0; 16]);
    ws.send(Message::Binary(bad.into())).await?;
    let v = t
        .gateway
        .wait_event_after(0, gw_ev::AGENT_LINK_DOWN, |v| v["agent"] == "rogue-2")
        .await?;
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeds the maximum"),
        "{v}"
    );

    // A WebSocket message larger than any frame may be.
    let mut ws = raw_link(t.tunnel_addr, &t.psk, "rogue-3").await?;
    let _ = ws
        .send(Message::Binary(vec![0u8; 1024 * 1024].into()))
        .await;
    let v = t
        .gateway
        .wait_event_after(0, gw_ev::AGENT_LINK_DOWN, |v| v["agent"] == "rogue-3")
        .await?;
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("protocol violation"),
        "{v}"
    );

    // The real agent's links were not touched.
    assert_eq!(t.gateway.count_events(gw_ev::AGENT_LINK_DOWN), 3);
    assert_eq!(
        echo_roundtrip(t.forwards[0], b"still fine").await?,
        b"still fine"
    );
    Ok(())
}

#[tokio::test]
async fn targets_outside_the_allow_list_are_refused_by_the_agent() -> Result<()> {
    let echo = servers::echo().await;
    let other = servers::echo().await;
    // The gateway forwards to `other`, but the agent only allows `echo`.
    let opts = TunnelOpts::default();
    let mut t = Tunnel::start(bin(), &[echo], opts).await?;
    let psk = t.psk.clone();
    let mut gw2 = Proc::spawn(
        "gateway2",
        &bin(),
        &[
            "gateway".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--no-tls".into(),
            "--forward".into(),
            format!("127.0.0.1:0={}:{other}", t.agent_name),
        ],
        &[("BURROW_PSK", &psk)],
    )?;
    let addr = burrow_e2e::addr_field(&gw2.wait_event(gw_ev::TUNNEL_LISTENING).await?, "addr")?;
    let fwd = burrow_e2e::addr_field(&gw2.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    let mut agent2 = Proc::spawn(
        "agent2",
        &bin(),
        &[
            "run".into(),
            "--connect-url".into(),
            format!("ws://{addr}/connect"),
            "--agent-name".into(),
            t.agent_name.clone(),
            "--allow".into(),
            echo.to_string(),
        ],
        &[("BURROW_PSK", &psk)],
    )?;
    gw2.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    let got = echo_roundtrip(fwd, b"let me in").await;
    assert!(
        got.is_err() || got.as_ref().is_ok_and(|v| v.is_empty()),
        "{got:?}"
    );
    let v = agent2.wait_event(agent_ev::STREAM_REFUSED).await?;
    assert!(v.to_string().contains(&other.to_string()), "{v}");
    // The allowed path still works on the first tunnel.
    assert_eq!(echo_roundtrip(t.forwards[0], b"ok").await?, b"ok");
    t.agent.kill().await;
    Ok(())
}

/// The README's forward: a target by a name only the agent's host map
/// knows (`--map-host`), as egress and routes resolve; a target it cannot
/// resolve shows up in the gateway's log with the agent's words.
#[tokio::test]
async fn a_forward_target_resolves_through_the_host_map_and_its_failure_reaches_the_gateway_log()
-> Result<()> {
    let echo = servers::echo().await;
    let psk = random_psk();
    let port = echo.port();
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &[
            "gateway".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--no-tls".into(),
            "--forward".into(),
            format!("127.0.0.1:0=home:db.internal:{port},127.0.0.1:0=home:gone.invalid:5432"),
        ],
        &[("BURROW_PSK", &psk)],
    )?;
    let addr = burrow_e2e::addr_field(&gw.wait_event(gw_ev::TUNNEL_LISTENING).await?, "addr")?;
    let db = gw
        .wait_event_after(0, gw_ev::FORWARD_LISTENING, |v| {
            v["dest"]
                .as_str()
                .is_some_and(|d| d.starts_with("db.internal"))
        })
        .await?;
    let gone = gw
        .wait_event_after(0, gw_ev::FORWARD_LISTENING, |v| {
            v["dest"]
                .as_str()
                .is_some_and(|d| d.starts_with("gone.invalid"))
        })
        .await?;
    let (db, gone) = (
        burrow_e2e::addr_field(&db, "listen")?,
        burrow_e2e::addr_field(&gone, "listen")?,
    );
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &[
            "run".into(),
            "--connect-url".into(),
            format!("ws://{addr}/connect"),
            "--agent-name".into(),
            "home".into(),
            "--allow".into(),
            format!("db.internal:{port},gone.invalid:5432"),
            "--map-host".into(),
            "db.internal=127.0.0.1".into(),
        ],
        &[("BURROW_PSK", &psk)],
    )?;
    gw.wait_event(gw_ev::AGENT_LINK_UP).await?;
    assert_eq!(echo_roundtrip(db, b"by name").await?, b"by name");
    let got = echo_roundtrip(gone, b"nobody").await;
    assert!(
        got.is_err() || got.as_ref().is_ok_and(|v| v.is_empty()),
        "{got:?}"
    );
    let v = gw.wait_event(gw_ev::FORWARD_TARGET_FAILED).await?;
    assert_eq!(v["agent"], "home", "{v}");
    assert_eq!(v["dest"], "gone.invalid:5432", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot resolve gone.invalid") && reason.contains("--map-host"),
        "{v}"
    );
    assert_eq!(v["code"], "target name not found", "{v}");
    agent.kill().await;
    Ok(())
}

/// Opens a connection through a forward and proves it with one echo.
async fn connect_and_ping(fwd: std::net::SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(fwd).await?;
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await?;
    anyhow::ensure!(&buf == b"ping");
    Ok(s)
}

/// Uses an open connection once more, then ends it cleanly both ways.
async fn pong_and_finish(s: &mut TcpStream) -> Result<()> {
    let mut buf = [0u8; 4];
    s.write_all(b"pong").await.context("write during drain")?;
    s.read_exact(&mut buf).await.context("read during drain")?;
    anyhow::ensure!(&buf == b"pong");
    s.shutdown().await.context("half-close")?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .await
        .context("read to EOF (not a reset)")?;
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_open_streams_before_exiting() -> Result<()> {
    let echo = servers::echo().await;
    let opts = TunnelOpts {
        gateway_extra: vec!["--drain-timeout-seconds".into(), "20".into()],
        ..TunnelOpts::default()
    };
    let mut t = Tunnel::start(bin(), &[echo], opts).await?;
    let mut s = connect_and_ping(t.forwards[0]).await?;
    let agent_mark = t.agent.mark();
    t.gateway.term()?;
    t.gateway.wait_event(gw_ev::DRAINING).await?;
    // New connections are no longer accepted...
    let refused = TcpStream::connect(t.forwards[0]).await;
    assert!(refused.is_err(), "forward still accepting during drain");
    // ...but the open stream keeps working until it finishes.
    pong_and_finish(&mut s).await?;
    assert_eq!(t.gateway.wait_exit().await?, Some(0));
    assert_eq!(t.gateway.count_events(gw_ev::STOPPED), 1);
    assert_eq!(
        t.gateway.count_events(burrow_mux::DRAIN_TIMEOUT),
        0,
        "finished before the timeout"
    );
    // The agent was told: a clean close is information, not a warning.
    for link in 0..2u64 {
        let v = t
            .agent
            .wait_event_after(agent_mark, agent_ev::LINK_DOWN, |v| v["link"] == link)
            .await?;
        assert_eq!(v["level"], "INFO", "{v}");
        assert_eq!(v["reason"], "the gateway is shutting down", "{v}");
    }
    Ok(())
}

#[tokio::test]
async fn agent_sigterm_refuses_new_streams_and_lets_open_ones_finish() -> Result<()> {
    let echo = servers::echo().await;
    let opts = TunnelOpts {
        agent_extra: vec!["--drain-timeout-seconds".into(), "20".into()],
        ..TunnelOpts::default()
    };
    let mut t = Tunnel::start(bin(), &[echo], opts).await?;
    let mut s = connect_and_ping(t.forwards[0]).await?;
    t.agent.term()?;
    t.agent.wait_event(agent_ev::DRAINING).await?;
    let refused = echo_roundtrip(t.forwards[0], b"new").await;
    assert!(
        refused.is_err() || refused.as_ref().is_ok_and(|v| v.is_empty()),
        "new stream accepted while draining: {refused:?}"
    );
    pong_and_finish(&mut s).await?;
    assert_eq!(t.agent.wait_exit().await?, Some(0));
    assert_eq!(t.agent.count_events(agent_ev::STOPPED), 1);
    assert_eq!(t.agent.count_events(burrow_mux::DRAIN_TIMEOUT), 0);
    Ok(())
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn the_tunnel_port_answers_plain_http_without_secrets() -> Result<()> {
    let echo = servers::echo().await;
    let mut t = Tunnel::start(bin(), &[echo], over("ws")).await?;
    // Without TLS the gateway says so at start.
    let up = t.gateway.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    assert!(
        up["message"]
            .as_str()
            .unwrap_or_default()
            .contains("WITHOUT TLS"),
        "{up}"
    );
    let page = http_get(t.tunnel_addr, "/").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{page}"
    );
    assert!(
        page.contains("Burrow gateway") && page.contains("No TLS on this port"),
        "{page}"
    );
    assert!(!page.contains(&t.agent_name), "agent names are not public");
    assert!(!page.contains(&t.psk), "the key never appears on the page");
    let health = http_get(t.tunnel_addr, "/healthz").await?;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let no_upgrade = http_get(t.tunnel_addr, "/tunnel").await?;
    assert!(no_upgrade.starts_with("HTTP/1.1 426"), "{no_upgrade}");
    let missing = http_get(t.tunnel_addr, "/nope").await?;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    Ok(())
}

/// The gateway binds its listeners before it connects to its database: a
/// pool's outgoing connections take ephemeral ports, and a listen port in
/// that range must not be taken by them first. A stand-in database checks,
/// when the gateway connects to it, that the listen port is already bound.
#[tokio::test]
async fn listeners_are_bound_before_the_database_is_connected() -> Result<()> {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let db = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let db_addr = db.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok((conn, _)) = db.accept().await {
            // Anything but "in use" means the port was still free.
            let taken = std::net::TcpListener::bind(listen)
                .err()
                .map(|e| e.kind() == std::io::ErrorKind::AddrInUse);
            let _ = tx.send(taken);
            drop(conn);
        }
    });
    let dir = tempfile::tempdir()?;
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &[
            "gateway".into(),
            "--listen".into(),
            listen.to_string(),
            "--no-tls".into(),
            "--proxy-listen".into(),
            "off".into(),
            "--database-url".into(),
            format!("postgres://burrow@{db_addr}/test?connect_timeout=5"),
        ],
        &[("BURROW_DATA_DIR", &dir.path().display().to_string())],
    )?;
    let taken = tokio::time::timeout(WAIT, rx)
        .await
        .context("the gateway never connected to its database")??;
    assert_eq!(
        taken,
        Some(true),
        "the listen port was free when the database was connected"
    );
    // The stand-in closed the connection: the gateway says it cannot open
    // the database, and exits.
    let code = gw.wait_exit().await?;
    assert_ne!(code, Some(0));
    assert!(
        gw.output().contains("cannot open the database"),
        "{}",
        gw.output()
    );
    Ok(())
}
