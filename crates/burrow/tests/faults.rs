//! Faults that must not lose data: a full disk under the gateway's
//! database, and streams cut at shutdown. Each case is bounded in time and
//! drives the real binary as users run it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burrow_e2e::disk::SmallDisk;
use burrow_e2e::registered::{run, setup};

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
        let (_, out, _) = run(
            "curl",
            &["-s", "--max-time", "20", "-x", &proxy, &url],
            Path::new("/"),
            &[],
        )
        .await?;
        anyhow::Ok(out)
    };
    assert_eq!(fetch().await?.trim(), "served");

    disk.fill()?;
    let mark = st.gateway.mark();
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
    let now = listed(&st).await?;
    for f in &refused {
        assert!(!now.contains(f), "{f} was refused and is listed: {now:?}");
    }
    // The audit writer says its writes fail, not that its queue is full.
    st.gateway
        .wait_log_after(mark, "traffic audit records not written", |_| true)
        .await?;
    assert_eq!(st.gateway.count_logs("traffic audit queue full"), 0);

    // Space is back: changes work again without a restart, and the kept
    // audit records are written.
    let mark = st.gateway.mark();
    disk.free()?;
    for i in 0..3 {
        let fqdn = format!("after{i}.test");
        st.add_fqdn(&fqdn, &[]).await?;
        acked.push(fqdn);
    }
    st.gateway
        .wait_log_after(mark, "traffic audit writes resumed", |_| true)
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
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(64 * 1024)?;
    let mut conn = sock.connect(st.proxy).await?;
    let port = target.port();
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
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // 5 MB/s: the 100 MiB download cannot finish within the drain.
    let (got, end) = slow_read(
        &mut conn,
        5_000_000,
        std::time::Duration::from_secs(30),
        || {
            st.gateway.term().unwrap();
        },
    )
    .await;
    assert!(got < SIZE, "the download finished: the test did not cut it");
    let e = end.expect_err(&format!(
        "the stream was cut at {got} of {SIZE} bytes and ended in a clean EOF (silent truncation)"
    ));
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    Ok(())
}

#[tokio::test]
async fn requests_to_a_frozen_agent_are_refused_at_once_not_after_heartbeats() -> Result<()> {
    let root = tempfile::tempdir()?;
    std::fs::write(root.path().join("index.html"), "served\n")?;
    let (_svc, port) = burrow_e2e::registered::static_server(root.path(), None).await?;
    // Default 30 s heartbeats: noticing a dead link by them takes 90 s.
    let mut st = setup(&bin(), &[], &["--map-host", "svc.test=127.0.0.1"], true).await?;
    st.add_fqdn("svc.test", &[]).await?;
    let proxy = st.proxy_url();
    let url = format!("http://svc.test:{port}/");
    let fetch = || async {
        let (_, out, _) = run(
            "curl",
            &[
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--max-time",
                "10",
                "-x",
                &proxy,
                &url,
            ],
            Path::new("/"),
            &[],
        )
        .await?;
        anyhow::Ok(out)
    };
    assert!(fetch().await?.ends_with("\n200"));
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
    let mark = st.gateway.mark();
    assert!(signal("-STOP")?.success());
    let out = fetch().await?;
    assert!(
        out.ends_with("\n502") && out.contains("offline"),
        "a frozen agent's links are given up on while the client waits: {out}"
    );
    st.gateway
        .wait_log_after(mark, "agent link down", |v| {
            v.to_string().contains("answered neither")
        })
        .await?;
    // Thawed: it dials again and is served.
    let mark = st.gateway.mark();
    assert!(signal("-CONT")?.success());
    st.gateway
        .wait_log_after(mark, "agent link up", |_| true)
        .await?;
    assert!(fetch().await?.ends_with("\n200"));
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

/// A CONNECT through the proxy whose client then never reads.
async fn stalled_client(proxy: std::net::SocketAddr, port: u16) -> Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(4096)?;
    let mut conn = sock.connect(proxy).await?;
    conn.write_all(
        format!("CONNECT bulk.test:{port} HTTP/1.1\r\nHost: bulk.test\r\n\r\n").as_bytes(),
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

#[tokio::test]
async fn a_stalled_stream_holds_one_window_and_gives_it_back() -> Result<()> {
    const STALLED: usize = 50;
    const WINDOW_KIB: u64 = 1024;
    let (target, _hashes) = burrow_e2e::servers::hashing_peer(64 << 20, 9).await;
    let st = setup(&bin(), &[], &["--map-host", "bulk.test=127.0.0.1"], true).await?;
    st.add_fqdn("bulk.test", &[]).await?;
    let pid = st.gateway.pid().context("gateway pid")?;
    // One stalled stream first, so what is allocated once is in the baseline.
    let warm = stalled_client(st.proxy, target.port()).await?;
    let base = settled_rss(pid).await?;
    let mut held = Vec::new();
    for _ in 0..STALLED {
        held.push(stalled_client(st.proxy, target.port()).await?);
    }
    let stalled = settled_rss(pid).await?;
    let per_stream = stalled.saturating_sub(base) / STALLED as u64;
    drop(held);
    drop(warm);
    // mimalloc hands freed pages back when the threads that own them next
    // allocate (a few connections do), not while the gateway is idle.
    for _ in 0..3 {
        drop(stalled_client(st.proxy, target.port()).await?);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let after = settled_rss(pid).await?;
    eprintln!(
        "gateway RSS: {base} KiB with one stalled stream, {stalled} KiB with {} ({per_stream} KiB each), {after} KiB after they closed",
        STALLED + 1
    );
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
