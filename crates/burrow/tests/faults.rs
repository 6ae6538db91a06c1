//! Faults that must not lose data: a full disk under the gateway's
//! database, and streams cut at shutdown. Each case is bounded in time and
//! drives the real binary as users run it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use burrow_e2e::disk::SmallDisk;
use burrow_e2e::registered::{curl_via, setup};
use burrow_gateway::event as gw_ev;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// The FQDNs `list-fqdn --json` shows.
async fn listed(st: &burrow_e2e::registered::Setup) -> Result<Vec<String>> {
    let v = st.api_get("/fqdn-rules").await?;
    Ok(v.as_array()
        .context("a list")?
        .iter()
        .filter_map(|r| r["fqdn"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn a_full_disk_refuses_changes_and_loses_none_it_acknowledged() -> Result<()> {
    burrow_e2e::require!("curl", "root");
    let disk = SmallDisk::new("8m")?;
    let data = disk.path().join("gw");
    let data_arg = data.display().to_string();
    let root = tempfile::tempdir()?;
    std::fs::write(root.path().join("index.html"), "served\n")?;
    let (_svc, port) = burrow_e2e::registered::static_server(root.path(), None).await?;
    let mut st = setup(
        &bin(),
        &["--data-dir", &data_arg],
        &["--map-host", "svc.test=127.0.0.1"],
        true,
    )
    .await?;
    st.add_fqdn("svc.test", &[]).await?;
    let mut acked = vec!["svc.test".to_owned()];
    let proxy = st.proxy_url();
    let url = format!("http://svc.test:{port}/");
    let fetch = || async {
        let (_, body, _) = curl_via(&["-x", &proxy], &url).await?;
        anyhow::Ok(body)
    };
    assert_eq!(fetch().await?.trim(), "served");

    disk.fill()?;
    let mark = st.gateway.proc.mark();
    let mut refused = Vec::new();
    for i in 0..12 {
        let fqdn = format!("full{i}.test");
        let (code, out, err) = st
            .cli(&["add-fqdn", "--agent-name", "edge", "--fqdn", &fqdn])
            .await?;
        if code == 0 {
            acked.push(fqdn);
        } else {
            assert!(err.contains("disk is full"), "{fqdn}: {out} {err}");
            refused.push(fqdn);
        }
        // Traffic goes on while the audit trail cannot be written.
        assert_eq!(
            fetch().await?.trim(),
            "served",
            "traffic through a full disk"
        );
    }
    assert!(!refused.is_empty(), "the disk never filled: {acked:?}");
    let acked_full = acked.len() - 1;
    let now = listed(&st).await?;
    for f in &refused {
        assert!(!now.contains(f), "{f} was refused and is listed: {now:?}");
    }
    // The audit writer says its writes fail, not that its queue is full.
    st.gateway
        .proc
        .wait_event_after(mark, gw_ev::AUDIT_WRITES_FAILING, |_| true)
        .await?;
    assert_eq!(st.gateway.proc.count_events(gw_ev::AUDIT_QUEUE_FULL), 0);

    // Space is back: changes work again without a restart, and the kept
    // audit records are written.
    let mark = st.gateway.proc.mark();
    disk.free()?;
    for i in 0..3 {
        let fqdn = format!("after{i}.test");
        st.add_fqdn(&fqdn, &[]).await?;
        acked.push(fqdn);
    }
    st.gateway
        .proc
        .wait_event_after(mark, gw_ev::AUDIT_WRITES_RESUMED, |_| true)
        .await?;

    // After a restart: everything acknowledged, nothing refused.
    st.restart_gateway_with(&[]).await?;
    let after = listed(&st).await?;
    for f in &acked {
        assert!(
            after.contains(f),
            "{f} was acknowledged and is gone: {after:?}"
        );
    }
    for f in &refused {
        assert!(
            !after.contains(f),
            "{f} was refused and is stored: {after:?}"
        );
    }
    burrow_e2e::relay::report(
        "disk-full",
        &format!(
            "# A full disk under the gateway's database\n\n\
             The data directory on an 8 MiB tmpfs, filled to ENOSPC; 12 `add-fqdn` with traffic between them, space freed, 3 more, restart.\n\n\
             | added while full | refused (507, disk is full) | added after freeing | acknowledged and lost after restart |\n\
             |---|---|---|---|\n\
             | {acked_full} | {} | 3 | 0 |\n",
            refused.len()
        ),
    )?;
    Ok(())
}

/// Reads `conn` at about `rate` bytes per second until EOF, an error or
/// `limit`; calls `at_half_second` once, half a second in. Returns the bytes
/// read and how the read ended.
async fn slow_read(
    conn: &mut tokio::net::TcpStream,
    rate: u64,
    limit: std::time::Duration,
    mut at_half_second: impl FnMut(),
) -> (u64, std::io::Result<()>) {
    use tokio::io::AsyncReadExt as _;
    let start = tokio::time::Instant::now();
    let mut got = 0u64;
    let mut fired = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !fired && start.elapsed() >= std::time::Duration::from_millis(500) {
            at_half_second();
            fired = true;
        }
        if start.elapsed() > limit {
            return (got, Err(std::io::Error::other("read limit reached")));
        }
        match conn.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got += n as u64,
            Err(e) => return (got, Err(e)),
        }
        // Pace: sleep until the rate allows what was read.
        let due = std::time::Duration::from_secs_f64(got as f64 / rate as f64);
        tokio::time::sleep_until(start + due).await;
    }
}

#[tokio::test]
async fn a_stream_cut_by_the_drain_ends_in_a_reset_not_an_eof() -> Result<()> {
    const SIZE: u64 = 100 << 20;
    let (target, _hashes) = burrow_e2e::servers::hashing_peer(SIZE, 7).await;
    let st = setup(
        &bin(),
        &["--drain-timeout-seconds", "1"],
        &["--map-host", "bulk.test=127.0.0.1"],
        true,
    )
    .await?;
    st.add_fqdn("bulk.test", &[]).await?;
    // A small receive buffer, so the gateway's writes to this client block.
    let mut conn = connect_through(st.proxy(), target.port(), 64 * 1024).await?;
    // 5 MB/s: the 100 MiB download cannot finish within the drain.
    let (got, end) = slow_read(
        &mut conn,
        5_000_000,
        std::time::Duration::from_secs(30),
        || {
            st.gateway.proc.term().unwrap();
        },
    )
    .await;
    assert!(got < SIZE, "the download finished: the test did not cut it");
    burrow_e2e::relay::report(
        "drain",
        &format!(
            "# A download cut by the drain\n\n\
             A 100 MiB CONNECT download read at 5 MB/s; the gateway gets SIGTERM half a second in, with a 1 s drain.\n\n\
             | bytes read when cut | how the client's read ended |\n|---|---|\n\
             | {got} | {} |\n",
            match &end {
                Ok(()) => "clean EOF (silent truncation)".to_owned(),
                Err(e) => format!("{:?}", e.kind()),
            }
        ),
    )?;
    let e = end.expect_err(&format!(
        "the stream was cut at {got} of {SIZE} bytes and ended in a clean EOF (silent truncation)"
    ));
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    Ok(())
}

#[tokio::test]
async fn requests_to_a_frozen_agent_are_refused_at_once_not_after_heartbeats() -> Result<()> {
    burrow_e2e::require!("curl");
    let root = tempfile::tempdir()?;
    std::fs::write(root.path().join("index.html"), "served\n")?;
    let (_svc, port) = burrow_e2e::registered::static_server(root.path(), None).await?;
    // Default 30 s heartbeats: noticing a dead link by them takes 90 s.
    let mut st = setup(&bin(), &[], &["--map-host", "svc.test=127.0.0.1"], true).await?;
    st.add_fqdn("svc.test", &[]).await?;
    let proxy = st.proxy_url();
    let url = format!("http://svc.test:{port}/");
    // Within 10 s: heartbeats alone would take 90 s to give up.
    let fetch = || async {
        let (_, body, status) = curl_via(&["--max-time", "10", "-x", &proxy], &url).await?;
        anyhow::Ok((body, status))
    };
    assert_eq!(fetch().await?.1, "200");
    let pid = st
        .agent
        .as_ref()
        .and_then(|a| a.pid())
        .context("agent pid")?;
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
    };
    // Frozen: its links stay open but nothing answers on them.
    let mark = st.gateway.proc.mark();
    assert!(signal("-STOP")?.success());
    let (body, status) = fetch().await?;
    assert!(
        status == "502" && body.contains("offline"),
        "a frozen agent's links are given up on while the client waits: {status} {body}"
    );
    st.gateway
        .proc
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| {
            v.to_string().contains("answered neither")
        })
        .await?;
    // Thawed: it dials again and is served.
    let mark = st.gateway.proc.mark();
    assert!(signal("-CONT")?.success());
    st.gateway
        .proc
        .wait_event_after(mark, gw_ev::AGENT_LINK_UP, |_| true)
        .await?;
    assert_eq!(fetch().await?.1, "200");
    Ok(())
}

/// The gateway's resident memory, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

/// Polls `pid`'s RSS until it holds still for a second (at most 15 s).
async fn settled_rss(pid: u32) -> Result<u64> {
    let mut last = rss_kib(pid)?;
    let mut still = 0;
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = rss_kib(pid)?;
        if now.abs_diff(last) < 64 {
            still += 1;
            if still >= 10 {
                return Ok(now);
            }
        } else {
            still = 0;
        }
        last = now;
    }
    Ok(last)
}

/// A CONNECT to `bulk.test:PORT` through the proxy, from a client with a
/// receive buffer of `rcvbuf` bytes; the connection after the `200`.
async fn connect_through(
    proxy: std::net::SocketAddr,
    port: u16,
    rcvbuf: u32,
) -> Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(rcvbuf)?;
    let mut conn = sock.connect(proxy).await?;
    conn.write_all(
        format!("CONNECT bulk.test:{port} HTTP/1.1\r\nHost: bulk.test:{port}\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).await?;
        head.push(b[0]);
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(conn)
}

/// A CONNECT through the proxy whose client then never reads.
async fn stalled_client(proxy: std::net::SocketAddr, port: u16) -> Result<tokio::net::TcpStream> {
    connect_through(proxy, port, 4096).await
}

#[tokio::test]
async fn a_stalled_stream_holds_one_window_and_gives_it_back() -> Result<()> {
    const STALLED: usize = 50;
    const WINDOW_KIB: u64 = 1024;
    let (target, _hashes) = burrow_e2e::servers::hashing_peer(64 << 20, 9).await;
    let st = setup(&bin(), &[], &["--map-host", "bulk.test=127.0.0.1"], true).await?;
    st.add_fqdn("bulk.test", &[]).await?;
    let pid = st.gateway.proc.pid().context("gateway pid")?;
    // One stalled stream first, so what is allocated once is in the baseline.
    let warm = stalled_client(st.proxy(), target.port()).await?;
    let base = settled_rss(pid).await?;
    let mut held = Vec::new();
    for _ in 0..STALLED {
        held.push(stalled_client(st.proxy(), target.port()).await?);
    }
    let stalled = settled_rss(pid).await?;
    let per_stream = stalled.saturating_sub(base) / STALLED as u64;
    drop(held);
    drop(warm);
    // mimalloc hands freed pages back when the threads that own them next
    // allocate (a few connections do), not while the gateway is idle.
    for _ in 0..3 {
        drop(stalled_client(st.proxy(), target.port()).await?);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let after = settled_rss(pid).await?;
    burrow_e2e::relay::report(
        "stalled-streams",
        &format!(
            "# Stalled streams\n\n\
             {} CONNECT downloads whose clients never read (1 MiB stream window).\n\n\
             | gateway RSS, one stalled | with {} | per stalled stream | after they closed (and a few new connections) |\n\
             |---|---|---|---|\n\
             | {base} KiB | {stalled} KiB | {per_stream} KiB | {after} KiB |\n",
            STALLED + 1,
            STALLED + 1
        ),
    )?;
    assert!(
        per_stream <= WINDOW_KIB + WINDOW_KIB / 4,
        "a stalled stream costs {per_stream} KiB; its window is {WINDOW_KIB} KiB"
    );
    assert!(
        after <= base + (stalled - base) / 4,
        "memory was not given back: {after} KiB after, {base} KiB before"
    );
    Ok(())
}

/// Outcomes of whole-file reads through a forward while faults happen.
#[derive(Default, Debug)]
struct Reads {
    complete: u32,
    reset: u32,
    corrupt: u32,
    hung: u32,
}

impl Reads {
    fn add(&mut self, o: &Reads) {
        self.complete += o.complete;
        self.reset += o.reset;
        self.corrupt += o.corrupt;
        self.hung += o.hung;
    }

    /// One read of `size` pattern bytes through `fwd`, bounded in time.
    async fn one(&mut self, fwd: std::net::SocketAddr, size: u64, want: [u8; 32]) {
        let Ok(mut conn) = tokio::net::TcpStream::connect(fwd).await else {
            self.reset += 1;
            return;
        };
        match tokio::time::timeout(
            std::time::Duration::from_secs(30),
            burrow_e2e::relay::read_hashed(&mut conn),
        )
        .await
        {
            Err(_) => self.hung += 1,
            Ok((_, _, Err(_))) => self.reset += 1,
            Ok((n, h, Ok(()))) if n == size && h == want => self.complete += 1,
            // A clean end with the wrong bytes, or too few: silent corruption.
            Ok((n, _, Ok(()))) => {
                eprintln!("clean EOF after {n} of {size} bytes, or a wrong hash");
                self.corrupt += 1;
            }
        }
    }
}

fn relay_opts(scheme: &'static str, extra: &[&str]) -> burrow_e2e::TunnelOpts {
    let mut agent_extra = burrow_e2e::strings(&[
        "--reconnect-delay-seconds",
        "0.2",
        "--max-reconnect-delay-seconds",
        "1",
    ]);
    agent_extra.extend(burrow_e2e::strings(extra));
    burrow_e2e::TunnelOpts {
        scheme,
        relay: true,
        agent_extra,
        gateway_extra: burrow_e2e::strings(extra),
        ..burrow_e2e::TunnelOpts::default()
    }
}

/// A server sending `size` pattern bytes (`seed`) per connection, and a
/// tunnel (wss or tls, `extra` flags on both sides) to it whose agent dials
/// through a fault relay: (the server's reports, the bytes' hash, tunnel).
async fn relayed(
    size: u64,
    seed: u64,
    scheme: &'static str,
    extra: &[&str],
) -> Result<(
    tokio::sync::mpsc::Receiver<burrow_e2e::servers::Hashes>,
    [u8; 32],
    burrow_e2e::Tunnel,
)> {
    let (target, peer) = burrow_e2e::servers::hashing_peer(size, seed).await;
    let want = burrow_e2e::servers::pattern_hash(size, seed);
    let t = burrow_e2e::Tunnel::start(bin(), &[target], relay_opts(scheme, extra)).await?;
    Ok((peer, want, t))
}

#[tokio::test]
async fn link_kills_during_checksummed_transfers_corrupt_and_hang_nothing() -> Result<()> {
    const SIZE: u64 = 32 << 20;
    let (_peer, want, mut t) = relayed(SIZE, 11, "wss", &[]).await?;
    let fwd = t.forwards[0];
    let mut reads = Reads::default();
    let mut reconnect_ms = Vec::new();
    const KILLS: usize = 5;
    for _ in 0..KILLS {
        // A transfer in flight when the links die.
        let mut during = Reads::default();
        let read = during.one(fwd, SIZE, want);
        let kill = async {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let mark = t.gateway.mark();
            let at = std::time::Instant::now();
            t.relay.as_ref().context("relay")?.kill_all();
            t.wait_links(mark, 2).await?;
            anyhow::Ok(at.elapsed().as_millis())
        };
        let ((), back) = tokio::join!(read, kill);
        reconnect_ms.push(back?);
        reads.add(&during);
        // And one after: the tunnel works again.
        reads.one(fwd, SIZE, want).await;
    }
    let stats = &t.relay.as_ref().context("relay")?.stats;
    let killed = stats.killed.load(std::sync::atomic::Ordering::Relaxed);
    let moved = stats.bytes.load(std::sync::atomic::Ordering::Relaxed);
    burrow_e2e::relay::report(
        "link-kills",
        &format!(
            "# Link kills during checksummed transfers\n\n\
             {KILLS} times, every link through the relay reset 150 ms into a {} MiB download over wss (2 links), then one more download.\n\n\
             | complete | reset | corrupt | hung | connections killed | bytes relayed | reconnect (ms, each kill) |\n\
             |---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {killed} | {moved} | {:?} |\n",
            SIZE >> 20,
            reads.complete,
            reads.reset,
            reads.corrupt,
            reads.hung,
            reconnect_ms
        ),
    )?;
    assert_eq!((reads.corrupt, reads.hung), (0, 0), "{reads:?}");
    assert!(
        killed >= 2 * KILLS as u64,
        "the relay killed {killed} connections"
    );
    assert!(reads.complete >= KILLS as u32, "{reads:?}");
    Ok(())
}

#[tokio::test]
async fn a_blackholed_path_is_noticed_by_heartbeats_and_recovers() -> Result<()> {
    const SIZE: u64 = 4 << 20;
    let (_peer, want, mut t) =
        relayed(SIZE, 12, "wss", &["--heartbeat-interval-seconds", "1"]).await?;
    let fwd = t.forwards[0];
    let mut reads = Reads::default();
    reads.one(fwd, SIZE, want).await;
    let mark = t.gateway.mark();
    let at = std::time::Instant::now();
    t.relay.as_ref().context("relay")?.blackhole(true);
    t.gateway
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| v["links"] == 0)
        .await?;
    let noticed = at.elapsed();
    let reasons: Vec<String> = t
        .gateway
        .output()
        .lines()
        .filter(|l| l.contains("agent link down"))
        .map(str::to_owned)
        .collect();
    assert!(
        reasons.iter().all(|l| l.contains("heartbeat")),
        "links dropped for another reason: {reasons:?}"
    );
    // The path comes back: the agent dials again and transfers are whole.
    let mark = t.gateway.mark();
    t.relay.as_ref().context("relay")?.blackhole(false);
    t.wait_links(mark, 2).await?;
    let back = at.elapsed();
    for _ in 0..3 {
        reads.one(fwd, SIZE, want).await;
    }
    burrow_e2e::relay::report(
        "blackhole",
        &format!(
            "# A blackholed path\n\n\
             The relay stops moving bytes both ways (connections stay open); heartbeats every 1 s on both sides.\n\n\
             | links dropped by heartbeat after | path restored, both links back after | downloads whole after |\n\
             |---|---|---|\n\
             | {:.2} s (3 intervals: 3 s) | {:.2} s | {} of 3 |\n",
            noticed.as_secs_f64(),
            back.as_secs_f64(),
            reads.complete - 1
        ),
    )?;
    assert_eq!(reads.complete, 4, "{reads:?}");
    Ok(())
}

#[tokio::test]
async fn bytes_flipped_past_tcp_are_refused_by_tls_never_delivered() -> Result<()> {
    const SIZE: u64 = 16 << 20;
    for scheme in ["wss", "tls"] {
        let (_peer, want, mut t) = relayed(SIZE, 13, scheme, &[]).await?;
        let fwd = t.forwards[0];
        let mut reads = Reads::default();
        const FLIPS: u64 = 3;
        for _ in 0..FLIPS {
            let mut during = Reads::default();
            // Armed before the download starts, the flip lands in its data
            // (or in the agent's answer to its open).
            let mark = t.gateway.mark();
            t.relay.as_ref().context("relay")?.corrupt(1);
            let read = during.one(fwd, SIZE, want);
            let flip = async {
                // The gateway refuses the record and drops the link; the
                // agent dials again.
                t.gateway
                    .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |_| true)
                    .await?;
                t.wait_links(mark, 2).await?;
                anyhow::Ok(())
            };
            let ((), flipped) = tokio::join!(read, flip);
            flipped?;
            reads.add(&during);
            reads.one(fwd, SIZE, want).await;
        }
        let corrupted = t
            .relay
            .as_ref()
            .context("relay")?
            .stats
            .corrupted
            .load(std::sync::atomic::Ordering::Relaxed);
        burrow_e2e::relay::report(
            &format!("corruption-{scheme}"),
            &format!(
                "# Bytes flipped past TCP ({scheme}://)\n\n\
                 {FLIPS} times, one byte flipped in the agent-to-gateway stream as a {} MiB download starts (in its data or the agent's answer to its open) (TCP's checksum cannot see it: the relay flips after TCP), then one more download.\n\n\
                 | bytes flipped | complete | reset | corrupt | hung |\n|---|---|---|---|---|\n\
                 | {corrupted} | {} | {} | {} | {} |\n",
                SIZE >> 20,
                reads.complete,
                reads.reset,
                reads.corrupt,
                reads.hung
            ),
        )?;
        assert_eq!(corrupted, FLIPS, "{scheme}");
        assert_eq!((reads.corrupt, reads.hung), (0, 0), "{scheme}: {reads:?}");
        assert!(reads.complete >= FLIPS as u32, "{scheme}: {reads:?}");
    }
    Ok(())
}

/// Polls (bounded) until `p` has logged `event` `n` times after `mark`.
async fn logged_after(p: &burrow_e2e::Proc, mark: usize, event: &str, n: usize) -> Result<()> {
    for _ in 0..600 {
        let seen = p.events_after(mark, event);
        if seen >= n {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "event {event:?} logged {} of {n} times",
        p.events_after(mark, event)
    )
}

#[tokio::test]
async fn a_hundred_agents_come_back_after_the_gateway_is_killed() -> Result<()> {
    const AGENTS: usize = 100;
    const SIZE: u64 = 1 << 20;
    let (_peer, want, mut t) = relayed(SIZE, 14, "wss", &[]).await?;
    // 99 more agents of other names (one link each) on the same gateway.
    let mut others = Vec::new();
    let mark = t.gateway.mark();
    for i in 1..AGENTS {
        let mut args = t.agent_args.clone();
        let at = args
            .iter()
            .position(|a| a == "--agent-name")
            .context("--agent-name")?
            + 1;
        args[at] = format!("extra-{i}");
        let links = args
            .iter()
            .position(|a| a == "--links")
            .context("--links")?
            + 1;
        args[links] = "1".into();
        let data = args
            .iter()
            .position(|a| a == "--data-dir")
            .context("--data-dir")?
            + 1;
        args[data] = t
            .dir
            .path()
            .join(format!("agent-{i}"))
            .display()
            .to_string();
        others.push(burrow_e2e::Proc::spawn(
            "agent",
            &t.bin,
            &args,
            &[("BURROW_PSK", &t.psk), ("BURROW_LOG", "warn")],
        )?);
    }
    logged_after(&t.gateway, mark, gw_ev::AGENT_LINK_UP, AGENTS - 1).await?;
    let links = AGENTS + 1;
    // kill -9: no drain, no goodbye.
    t.gateway.kill().await;
    let at = std::time::Instant::now();
    t.restart_gateway().await?;
    logged_after(&t.gateway, 0, gw_ev::AGENT_LINK_UP, links).await?;
    let back = at.elapsed();
    let mut reads = Reads::default();
    for _ in 0..3 {
        reads.one(t.forwards[0], SIZE, want).await;
    }
    burrow_e2e::relay::report(
        "gateway-kill",
        &format!(
            "# The gateway killed under {AGENTS} agents\n\n\
             {AGENTS} agent processes ({links} links) on one gateway; `kill -9` the gateway and start it again on the same ports.\n\n\
             | all {links} links back after | downloads whole after |\n|---|---|\n\
             | {:.2} s (reconnect delay 0.2 s, at most 1 s) | {} of 3 |\n",
            back.as_secs_f64(),
            reads.complete
        ),
    )?;
    assert_eq!(reads.complete, 3, "{reads:?}");
    for mut o in others {
        o.kill().await;
    }
    Ok(())
}

#[tokio::test]
async fn a_forwarded_connection_to_a_frozen_agent_is_reset_at_once() -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const SIZE: u64 = 1 << 20;
    // Default 30 s heartbeats: noticing a dead link by them takes 90 s.
    let (_peer, want, mut t) = relayed(SIZE, 15, "wss", &[]).await?;
    let fwd = t.forwards[0];
    let mut reads = Reads::default();
    reads.one(fwd, SIZE, want).await;
    assert_eq!(reads.complete, 1);
    let pid = t.agent.pid().context("agent pid")?;
    let mark = t.gateway.mark();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()?
            .success()
    );
    // Each of the agent's links is given up on by the connection that finds
    // it dead; the client is reset, not left waiting.
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(fwd).await?;
        conn.write_all(b"hello").await?;
        let mut buf = [0u8; 1024];
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf))
            .await
            .context("the client was left waiting on a dead link")?;
        assert!(
            matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
                || matches!(end, Ok(0)),
            "{end:?}"
        );
    }
    t.gateway
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| {
            v.to_string().contains("answered neither")
        })
        .await?;
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status()?
            .success()
    );
    t.wait_links(mark, 2).await?;
    reads.one(fwd, SIZE, want).await;
    assert_eq!(reads.complete, 2, "{reads:?}");
    Ok(())
}

#[tokio::test]
async fn a_slow_path_delays_but_breaks_nothing() -> Result<()> {
    const SIZE: u64 = 256 << 10;
    let (_peer, want, t) = relayed(SIZE, 16, "wss", &["--heartbeat-interval-seconds", "1"]).await?;
    let fwd = t.forwards[0];
    // 100 ms on every chunk (of up to 16 KiB) each way: a slow path with a
    // tenth of a heartbeat interval of latency, about 160 KB/s.
    let mark = t.gateway.mark();
    t.relay
        .as_ref()
        .context("relay")?
        .delay(std::time::Duration::from_millis(100));
    let mut reads = Reads::default();
    let at = std::time::Instant::now();
    for _ in 0..2 {
        reads.one(fwd, SIZE, want).await;
    }
    let took = at.elapsed();
    // Heartbeats held over the whole time (several intervals).
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let dropped = t.gateway.events_after(mark, gw_ev::AGENT_LINK_DOWN);
    t.relay
        .as_ref()
        .context("relay")?
        .delay(std::time::Duration::ZERO);
    burrow_e2e::relay::report(
        "slow-path",
        &format!(
            "# A slow path\n\n\
             100 ms added to every chunk (up to 16 KiB) each way between agent and gateway, chunks in order: about 160 KB/s; heartbeats every 1 s.\n\n\
             | downloads of {} KiB whole | time for both | links dropped |\n|---|---|---|\n\
             | {} of 2 | {:.1} s | {dropped} |\n",
            SIZE >> 10,
            reads.complete,
            took.as_secs_f64()
        ),
    )?;
    assert_eq!((reads.complete, dropped), (2, 0), "{reads:?}");
    Ok(())
}
