//! One configuration file per role (`--config`): the examples in
//! `deploy/` check out, bad files are refused naming the key, the order is
//! defaults < file < variables < flags, and a running gateway and agent
//! reload it (SIGHUP or an edit) without dropping a transfer.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use burrow_e2e::servers::{self, echo_roundtrip, free_port};
use burrow_e2e::{Proc, addr_field, random_psk, strings as s};
use burrow_gateway::event as gw_ev;
use burrow_transport::event::SETTING;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// `burrow ARGS` run to its end: (exit code, stdout, stderr).
async fn burrow(args: &[&str], env: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output(),
    )
    .await??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn the_example_files_check_out_and_bad_ones_are_refused_naming_the_key() -> Result<()> {
    for (file, role) in [
        ("deploy/agent.toml", "burrow run"),
        ("deploy/gateway.toml", "burrow gateway"),
    ] {
        let f = repo(file).display().to_string();
        let (code, out, err) = burrow(&["config", "check", &f], &[]).await?;
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains(&format!("valid for {role}")), "{out}");
    }
    let dir = tempfile::tempdir()?;
    let cases = [
        (
            "conect-url = \"wss://g:1/connect\"\n",
            "did you mean `connect-url`",
        ),
        (
            "links = 99\n",
            "key `links`: invalid value '99' for '--links",
        ),
        ("allow = [\"nope\"]\n", "key `allow`: invalid value 'nope'"),
        (
            "allow-loopback = \"yes\"\n",
            "key `allow-loopback` is true or false",
        ),
        ("links = [1, 2]\n", "takes one value"),
        ("[agent]\nlinks = 2\n", "unknown key `agent`"),
        ("links = \n", "not valid TOML"),
        (
            "psk = \"0123456789abcdef0123456789abcdef\"\npsk-file = \"/k\"\n",
            "cannot be used with",
        ),
    ];
    for (text, want) in cases {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, text)?;
        let f = f.display().to_string();
        let (code, _, err) = burrow(&["config", "check", "--role", "agent", &f], &[]).await?;
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        // Refused the same way at start, before anything runs.
        let (code, _, err) = burrow(&["run", "--config", &f], &[]).await?;
        assert_eq!(code, 2, "{text}: {err}");
        assert!(
            err.contains(want) || err.contains("cannot be used"),
            "{text}: {err}"
        );
    }
    let (code, _, err) = burrow(&["config", "check", "/nonexistent.toml"], &[]).await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read it"), "{err}");
    Ok(())
}

#[tokio::test]
async fn defaults_then_the_file_then_variables_then_flags() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("agent.toml");
    std::fs::write(
        &f,
        "connect-url = \"ws://127.0.0.1:9/tunnel\"\nagent-name = \"ordered\"\nlinks = 3\n\
         heartbeat-interval-seconds = 7\nreconnect-delay-seconds = 9\n",
    )?;
    let psk = random_psk();
    let fs = f.display().to_string();
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &s(&["run", "--config", &fs, "--links", "4"]),
        &[("BURROW_PSK", &psk), ("HEARTBEAT_INTERVAL_SECONDS", "11")],
    )?;
    for (flag, value, source) in [
        ("--links", "4", "flag".to_owned()),
        (
            "--heartbeat-interval-seconds",
            "11",
            "variable HEARTBEAT_INTERVAL_SECONDS".to_owned(),
        ),
        ("--reconnect-delay-seconds", "9", format!("file {fs}")),
        ("--agent-name", "ordered", format!("file {fs}")),
        ("--max-reconnect-delay-seconds", "300", "default".to_owned()),
    ] {
        let v = agent
            .wait_event_after(0, SETTING, |v| v["setting"] == flag)
            .await?;
        assert_eq!(
            (v["value"].as_str(), v["source"].as_str()),
            (Some(value), Some(source.as_str())),
            "{v}"
        );
    }
    agent.kill().await;
    Ok(())
}

/// Sends `chunks` × 64 KiB through `addr` (an echo), paced, reading the
/// echo back: (SHA-256 sent, SHA-256 received, bytes received).
async fn paced_transfer(
    addr: std::net::SocketAddr,
    chunks: usize,
) -> Result<([u8; 32], [u8; 32], u64)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut r, mut w) = tcp.into_split();
    let send = async move {
        let mut h = Sha256::new();
        let mut rng = servers::Pattern::new(7);
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..chunks {
            rng.fill(&mut buf);
            h.update(&buf);
            w.write_all(&buf).await?;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        w.shutdown().await?;
        Ok::<_, anyhow::Error>(<[u8; 32]>::from(h.finalize()))
    };
    let recv = async move {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            n += k as u64;
            h.update(&buf[..k]);
        }
        Ok::<_, anyhow::Error>((<[u8; 32]>::from(h.finalize()), n))
    };
    let (sent, (got, n)) = tokio::try_join!(send, recv)?;
    Ok((sent, got, n))
}

/// The next `config_reloaded` line after `mark`.
async fn reloaded(p: &mut Proc, mark: usize) -> Result<serde_json::Value> {
    tokio::time::timeout(
        Duration::from_secs(15),
        p.wait_event_after(mark, "config_reloaded", |_| true),
    )
    .await?
}

/// Writes `text` to `path` whole (a rename, as editors save).
fn save(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[tokio::test]
async fn forwards_and_the_allow_list_reload_while_a_transfer_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let psk = random_psk();
    let (echo1, echo2) = (servers::echo().await, servers::echo().await);
    let (p1, p2) = (free_port()?, free_port()?);
    let fwd1 = format!("127.0.0.1:{p1}=edge:{echo1}");
    let fwd2 = format!("127.0.0.1:{p2}=edge:{echo2}");
    let gw_file = dir.path().join("gateway.toml");
    let agent_file = dir.path().join("agent.toml");
    let gw_text = |forwards: &[&str]| {
        let list: Vec<String> = forwards.iter().map(|f| format!("{f:?}")).collect();
        format!("no-tls = true\nforward = [{}]\n", list.join(", "))
    };
    save(&gw_file, &gw_text(&[&fwd1]))?;
    let gws = gw_file.display().to_string();
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &s(&["gateway", "--listen", "127.0.0.1:0", "--config", &gws]),
        &[("BURROW_PSK", &psk)],
    )?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    let tunnel = addr_field(&up, "addr")?;
    let agent_text = |allow: &[&str]| {
        let list: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "connect-url = \"ws://{tunnel}/tunnel\"\nagent-name = \"edge\"\nallow = [{}]\n",
            list.join(", ")
        )
    };
    let (e1, e2) = (echo1.to_string(), echo2.to_string());
    save(&agent_file, &agent_text(&[&e1]))?;
    let agents = agent_file.display().to_string();
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &s(&["run", "--config", &agents]),
        &[("BURROW_PSK", &psk)],
    )?;
    gw.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    let f1: std::net::SocketAddr = format!("127.0.0.1:{p1}").parse()?;
    let f2: std::net::SocketAddr = format!("127.0.0.1:{p2}").parse()?;
    assert_eq!(echo_roundtrip(f1, b"one").await?, b"one");
    assert!(
        tokio::net::TcpStream::connect(f2).await.is_err(),
        "no second forward yet"
    );

    // A transfer through the first forward, ~6 s long, across every reload.
    let transfer = tokio::spawn(paced_transfer(f1, 240));

    // Add the second forward (gateway) and its target (agent).
    let (gm, am) = (gw.mark(), agent.mark());
    save(&gw_file, &gw_text(&[&fwd1, &fwd2]))?;
    save(&agent_file, &agent_text(&[&e1, &e2]))?;
    let v = reloaded(&mut gw, gm).await?;
    assert!(v["changed"].as_str().unwrap().contains("added"), "{v}");
    let v = reloaded(&mut agent, am).await?;
    assert_eq!(v["changed"], "allow", "{v}");
    assert_eq!(echo_roundtrip(f2, b"two").await?, b"two");

    // The agent no longer allows the second target: refused there.
    let am = agent.mark();
    save(&agent_file, &agent_text(&[&e1]))?;
    reloaded(&mut agent, am).await?;
    assert!(
        echo_roundtrip(f2, b"x")
            .await
            .map_or(true, |b| b.is_empty()),
        "the agent refuses a target it no longer allows"
    );

    // The gateway drops the second forward: its port closes.
    let gm = gw.mark();
    save(&gw_file, &gw_text(&[&fwd1]))?;
    let v = reloaded(&mut gw, gm).await?;
    assert!(v["changed"].as_str().unwrap().contains("removed"), "{v}");
    assert!(
        tokio::net::TcpStream::connect(f2).await.is_err(),
        "the forward is gone"
    );

    // A broken file is refused whole; the running configuration serves on.
    let gm = gw.mark();
    save(&gw_file, &(gw_text(&[&fwd1, &fwd2]) + "forwrd = []\n"))?;
    let v = tokio::time::timeout(
        Duration::from_secs(15),
        gw.wait_event_after(gm, "config_refused", |_| true),
    )
    .await??;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("did you mean `forward`"),
        "{v}"
    );
    assert!(
        tokio::net::TcpStream::connect(f2).await.is_err(),
        "nothing of it was applied"
    );
    assert_eq!(echo_roundtrip(f1, b"still").await?, b"still");

    // SIGHUP re-reads (the file fixed again): nothing changed.
    let gm = gw.mark();
    save(&gw_file, &gw_text(&[&fwd1]))?;
    let v = reloaded(&mut gw, gm).await?;
    let gm = gw.mark();
    let pid = gw.pid().context("pid")?.to_string();
    let hup = tokio::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await?;
    assert!(hup.success());
    let hv = reloaded(&mut gw, gm).await?;
    assert_eq!(hv["trigger"], "SIGHUP", "{hv} after {v}");
    assert_eq!(hv["changed"], "nothing", "{hv}");

    let (sent, got, n) = tokio::time::timeout(Duration::from_secs(60), transfer).await???;
    assert_eq!(n, 240 * 64 * 1024, "every byte came back");
    assert_eq!(sent, got, "checksum intact across the reloads");
    agent.kill().await;
    gw.kill().await;
    Ok(())
}

#[tokio::test]
async fn the_agent_reloads_its_routes_and_its_log_level() -> Result<()> {
    burrow_e2e::require!("curl", "python3");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("agent.toml");
    save(&file, "log-level = \"info\"\n")?;
    let fs = file.display().to_string();
    let mut st = burrow_e2e::registered::setup_with_env(
        &bin(),
        &[
            "--edge-https-listen",
            "127.0.0.1:0",
            "--public-domain",
            "tunnel.test",
        ],
        &["--config", &fs],
        true,
        &[("BURROW_LOG", "")],
    )
    .await?;
    let edge = st.edge().context("edge")?;
    let (_svc, port) = servers::web_service("inside").await?;
    let get = |host: &'static str| async move {
        let url = format!("https://{host}:{}/x", edge.port());
        let resolve = format!("{host}:{}:127.0.0.1", edge.port());
        let (_, out, _) = burrow_e2e::registered::run(
            "curl",
            &["-sSk", "--resolve", &resolve, &url],
            Path::new("/"),
            &[],
        )
        .await?;
        Ok::<_, anyhow::Error>(out)
    };
    let before = get("app.tunnel.test").await?;
    assert!(!before.starts_with("service=inside"), "{before}");

    let agent = st.agent.as_mut().context("agent")?;
    let mark = agent.mark();
    save(
        &file,
        &format!("log-level = \"debug\"\nroute = [\"app.tunnel.test=http://127.0.0.1:{port}\"]\n"),
    )?;
    let v = reloaded(agent, mark).await?;
    let changed = v["changed"].as_str().unwrap_or_default().to_owned();
    assert!(
        changed.contains("route") && changed.contains("log-level"),
        "{v}"
    );
    burrow_e2e::until(
        Duration::from_secs(10),
        "the route served at the edge",
        || async { Ok(get("app.tunnel.test").await?.starts_with("service=inside")) },
    )
    .await?;
    // The stream that served it logs at debug when it ends, which may be
    // just after curl has the answer.
    let agent = st.agent.as_ref().context("agent")?;
    burrow_e2e::until(
        Duration::from_secs(10),
        "debug lines once the level is debug",
        || async {
            Ok(agent
                .output()
                .lines()
                .skip(mark)
                .any(|l| l.contains("\"level\":\"DEBUG\"")))
        },
    )
    .await?;

    let agent = st.agent.as_mut().context("agent")?;
    let mark = agent.mark();
    save(&file, "log-level = \"info\"\n")?;
    let v = reloaded(agent, mark).await?;
    assert!(
        v["changed"].as_str().unwrap_or_default().contains("route"),
        "{v}"
    );
    burrow_e2e::until(Duration::from_secs(10), "the route withdrawn", || async {
        Ok(!get("app.tunnel.test").await?.starts_with("service=inside"))
    })
    .await?;
    Ok(())
}
