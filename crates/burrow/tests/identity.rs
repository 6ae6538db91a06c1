//! Identity and registration end to end, as an operator types it: real
//! `burrow` processes on loopback, the management CLI against the admin
//! API, agents authenticating with key pairs made by `burrow keygen` or
//! openssl, SQLite files and PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burrow_agent::event as agent_ev;
use burrow_e2e::cli::{Cli, Gateway};
use burrow_e2e::servers::{self, echo_roundtrip};
use burrow_e2e::{Proc, addr_field, admin_key, strings as s};
use burrow_gateway::event as gw_ev;
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// Runs `burrow ARGS` with only `env`: (exit code, stdout, stderr).
async fn cli(args: &[&str], env: &[(String, String)]) -> Result<(i32, String, String)> {
    Cli::new(&bin(), env.to_vec()).run(args).await
}

/// Starts a gateway on `data_dir` with a forward to `target` through agent
/// `agent`, and `extra` variables.
async fn gateway(
    data_dir: &Path,
    admin: &str,
    agent: &str,
    target: SocketAddr,
    extra: &[(&str, &str)],
) -> Result<Gateway> {
    let forward = format!("127.0.0.1:0={agent}:{target}");
    Gateway::start(&bin(), data_dir, admin, &["--forward", &forward], extra).await
}

/// The gateway's forward (each gateway here has one).
fn fwd(gw: &Gateway) -> SocketAddr {
    gw.forward.expect("the gateway was started with a forward")
}

/// `burrow keygen` into `dir`; returns (private path, public PEM, fingerprint).
async fn keygen(dir: &Path, name: &str) -> Result<(PathBuf, String, String)> {
    let k = Cli::new(&bin(), Vec::new()).keygen(dir, name).await?;
    Ok((k.private, k.public_pem, k.fingerprint))
}

/// Starts an agent with exactly the variables `register` printed, plus the
/// gateway's thumbprint and the private key (as `key_var`).
fn run_agent(
    gw: &Gateway,
    vars: &HashMap<String, String>,
    key_var: (&str, &str),
    allow: SocketAddr,
    label: &str,
) -> Result<Proc> {
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push((
        "GATEWAY_THUMBPRINT",
        gw.thumbprint.as_deref().unwrap_or_default(),
    ));
    env.push(key_var);
    env.push(("RECONNECT_DELAY_SECONDS", "0.2"));
    env.push(("MAX_RECONNECT_DELAY_SECONDS", "1"));
    Proc::spawn(
        label,
        &bin(),
        &s(&["run", "--allow", &allow.to_string()]),
        &env,
    )
}

fn agent_row<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|r| r["agent_name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn octopus_connection_agents_whole_flow_keygen_register_run_traffic_list() -> Result<()> {
    burrow_e2e::require!("curl");
    let dir = tempfile::tempdir()?;
    let echo = servers::echo().await;
    let mut gw = gateway(&dir.path().join("gw"), &admin_key(), "edge-1", echo, &[]).await?;
    let (private, public, fingerprint) = keygen(dir.path(), "edge-1").await?;
    let vars = gw.cli.register("edge-1", "key-1", &public).await?;
    for k in [
        "AUTH_SERVER_DOMAIN",
        "AUTH_SERVER_CLIENT_ID",
        "API_AUDIENCE",
        "CONNECT_URL",
    ] {
        assert!(
            vars.get(k).is_some_and(|v| !v.is_empty()),
            "{k} missing: {vars:?}"
        );
    }
    assert_eq!(vars["CONNECT_URL"], gw.connect_url());

    // Registered, not yet connected.
    let list = gw.cli.json(&["list-agents"]).await?;
    assert_eq!(agent_row(&list, "edge-1")["connected"], false);

    let mark = gw.proc.mark();
    let pem = std::fs::read_to_string(&private)?;
    let mut agent = run_agent(
        &gw,
        &vars,
        ("AUTH_SERVER_PRIVATE_KEY_PEM", &pem),
        echo,
        "agent",
    )?;
    gw.wait_links(mark, "edge-1", 2).await?;
    assert_eq!(
        echo_roundtrip(fwd(&gw), b"through the tunnel").await?,
        b"through the tunnel"
    );
    // The forward's stream is in the traffic audit, bytes each way.
    let url = gw
        .connect_url()
        .replace("wss://", "https://")
        .replace("/connect", "/api/v1/traffic?kind=forward");
    let auth = format!("Authorization: Bearer {}", gw.admin_key());
    let started = Instant::now();
    let record = loop {
        let out = tokio::process::Command::new("curl")
            .args(["-sSk", "-H", &auth, &url])
            .output()
            .await?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(r) = v["records"].as_array().and_then(|a| a.first()) {
            break r.clone();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "no forward record: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (record["bytes_in"].as_i64(), record["bytes_out"].as_i64()),
        (Some(18), Some(18)),
        "{record}"
    );
    assert_eq!(record["target"], echo.to_string());
    let issued = gw.proc.wait_event(gw_ev::TOKEN_ISSUED).await?;
    assert_eq!(
        (issued["agent"].as_str(), issued["key"].as_str()),
        (Some("edge-1"), Some("key-1"))
    );

    let list = gw.cli.json(&["list-agents"]).await?;
    let row = agent_row(&list, "edge-1");
    assert_eq!(row["connected"], true, "{list}");
    assert_eq!(row["links"], 2);
    assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        row["remote_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{row}"
    );
    assert!(row["last_seen"].as_i64().is_some());
    // One gateway: its own links, as one replica's.
    let replicas = row["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1, "{row}");
    assert_eq!(replicas[0]["links"], 2, "{row}");
    assert!(row["uptime_seconds"].is_u64(), "{row}");
    let (code, table, _) = gw.cli.run(&["list-agents"]).await?;
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("edge-1") && l.contains(" connected")),
        "{table}"
    );

    let keys = gw
        .cli
        .json(&["list-keys", "--agent-name", "edge-1"])
        .await?;
    assert_eq!(keys[0]["key_name"], "key-1");
    assert_eq!(keys[0]["algorithm"], "RSA");
    assert_eq!(keys[0]["bits"], 2048);
    assert_eq!(keys[0]["fingerprint"], fingerprint.as_str());
    let (_, table, _) = gw.cli.run(&["list-keys", "--agent-name", "edge-1"]).await?;
    assert!(
        table.starts_with("KEY NAME") && table.contains(&fingerprint),
        "{table}"
    );

    // Neither the private key nor the admin key reaches a log.
    let secret_line = pem.lines().nth(1).unwrap();
    for p in [&gw.proc, &agent] {
        assert!(
            !p.output().contains(secret_line),
            "{} logged the private key",
            p.name
        );
        assert!(
            !p.output().contains(gw.admin_key()),
            "{} logged the admin key",
            p.name
        );
    }
    agent.kill().await;
    Ok(())
}

#[tokio::test]
async fn the_agent_renews_its_token_and_redials_with_it_after_a_gateway_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("gw");
    let admin = admin_key();
    let echo = servers::echo().await;
    let lifetime = [("BURROW_ACCESS_TOKEN_LIFETIME_SECONDS", "3")];
    let mut gw = gateway(&data, &admin, "edge-1", echo, &lifetime).await?;
    let (private, public, _) = keygen(dir.path(), "edge-1").await?;
    let vars = gw.cli.register("edge-1", "key-1", &public).await?;
    let path = private.display().to_string();
    let mark = gw.proc.mark();
    let _agent = run_agent(
        &gw,
        &vars,
        ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", &path),
        echo,
        "agent",
    )?;
    gw.wait_links(mark, "edge-1", 2).await?;
    // Tokens live 3 s and are renewed with a third left: after the first,
    // at least three more within ~8 s, with no link activity needed.
    for _ in 0..3 {
        let m = gw.proc.mark();
        gw.proc
            .wait_event_after(m, gw_ev::TOKEN_ISSUED, |_| true)
            .await?;
    }
    assert!(gw.proc.count_events(gw_ev::TOKEN_ISSUED) >= 4);
    // Every earlier token has expired by now. A gateway killed and started
    // again (same SQLite file, same port) takes the agent's current token.
    gw.proc.kill().await;
    gw.restart_with(&[]).await?;
    gw.proc
        .wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| v["links"].as_u64() == Some(2))
        .await?;
    assert_eq!(
        echo_roundtrip(fwd(&gw), b"after restart").await?,
        b"after restart"
    );
    Ok(())
}

/// Sequential requests through `addr` until `stop`, at most `max` of them
/// and for at most `limit`; returns (done, failed).
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    max: usize,
    limit: Duration,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut done = 0;
        let mut failed = Vec::new();
        while done < max && started.elapsed() < limit && !stop.load(Ordering::Relaxed) {
            let msg = format!("request {done}");
            match echo_roundtrip(addr, msg.as_bytes()).await {
                Ok(got) if got == msg.as_bytes() => {}
                Ok(got) => failed.push(format!("{msg}: got {} bytes", got.len())),
                Err(e) => failed.push(format!("{msg}: {e}")),
            }
            done += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (done, failed)
    })
}

#[tokio::test]
async fn key_rotation_under_load_fails_no_request() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let echo = servers::echo().await;
    let mut gw = gateway(&dir.path().join("gw"), &admin_key(), "edge-1", echo, &[]).await?;
    let old_dir = dir.path().join("old");
    let new_dir = dir.path().join("new");
    std::fs::create_dir_all(&old_dir)?;
    std::fs::create_dir_all(&new_dir)?;
    let (old_private, old_public, _) = keygen(&old_dir, "edge-1").await?;
    let vars = gw
        .cli
        .register("edge-1", "key-2026-01", &old_public)
        .await?;
    let mark = gw.proc.mark();
    let old_path = old_private.display().to_string();
    let mut old_agent = run_agent(
        &gw,
        &vars,
        ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", &old_path),
        echo,
        "agent-old",
    )?;
    gw.wait_links(mark, "edge-1", 2).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(fwd(&gw), stop.clone(), 5_000, Duration::from_secs(60));

    // Octopus Connection Agent's procedure: add the new key, start the agent on it, stop
    // the old one, check the keys, remove the old key.
    let (new_private, new_public, new_fp) = keygen(&new_dir, "edge-1").await?;
    let (code, _, err) = gw
        .cli
        .run(&[
            "add-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-2026-02",
            "--public-key",
            &new_public,
        ])
        .await?;
    assert_eq!(code, 0, "{err}");
    let mark = gw.proc.mark();
    let new_path = new_private.display().to_string();
    let mut new_agent = run_agent(
        &gw,
        &vars,
        ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", &new_path),
        echo,
        "agent-new",
    )?;
    gw.wait_links(mark, "edge-1", 4).await?;
    old_agent.term()?;
    assert_eq!(old_agent.wait_exit().await?, Some(0));
    let keys = gw
        .cli
        .json(&["list-keys", "--agent-name", "edge-1"])
        .await?;
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{keys}");
    let (code, out, err) = gw
        .cli
        .run(&[
            "remove-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-2026-01",
        ])
        .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed key key-2026-01"), "{out}");
    let keys = gw
        .cli
        .json(&["list-keys", "--agent-name", "edge-1"])
        .await?;
    assert_eq!(keys[0]["fingerprint"], new_fp.as_str());
    // More traffic on the new key alone, then stop the load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (done, failed) = traffic.await?;
    assert!(done >= 20, "the load ran: {done} requests");
    assert!(
        failed.is_empty(),
        "{} of {done} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    eprintln!("rotation: {done} requests, none failed");
    assert_eq!(echo_roundtrip(fwd(&gw), b"new key").await?, b"new key");
    new_agent.kill().await;
    Ok(())
}

#[tokio::test]
async fn removing_a_key_or_unregistering_closes_live_links_within_seconds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let echo = servers::echo().await;
    let mut gw = gateway(&dir.path().join("gw"), &admin_key(), "edge-1", echo, &[]).await?;
    let (private, public, _) = keygen(dir.path(), "edge-1").await?;
    let vars = gw.cli.register("edge-1", "key-1", &public).await?;
    let mark = gw.proc.mark();
    let path = private.display().to_string();
    let mut agent = run_agent(
        &gw,
        &vars,
        ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", &path),
        echo,
        "agent",
    )?;
    gw.wait_links(mark, "edge-1", 2).await?;

    // The last key is protected.
    let (code, _, err) = gw
        .cli
        .run(&[
            "remove-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-1",
        ])
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(echo_roundtrip(fwd(&gw), b"still up").await?, b"still up");

    let mark = gw.proc.mark();
    let started = Instant::now();
    let (code, out, err) = gw
        .cli
        .run(&[
            "remove-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-1",
            "--force",
        ])
        .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 live links closed"), "{out}");
    gw.proc
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| v["links"] == 0)
        .await?;
    eprintln!("links closed {:?} after remove-key", started.elapsed());
    // The agent cannot come back: its token was earned with the removed
    // key, and a new one is refused.
    let why = agent
        .wait_event_after(0, agent_ev::GATEWAY_UNREACHABLE, |v| {
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not verify") || e.contains("no registered keys"))
        })
        .await?;
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("refused the agent's key"),
        "{why}"
    );
    assert_eq!(gw.proc.count_events(gw_ev::AGENT_LINK_UP), 2);

    // Unregister: the agent's links close and its client id is unknown.
    let (code, _, err) = gw
        .cli
        .run(&[
            "add-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-1b",
            "--public-key",
            &public,
        ])
        .await?;
    assert_eq!(code, 0, "{err}");
    let mark = gw.proc.mark();
    gw.wait_links(mark, "edge-1", 2).await?;
    let mark = gw.proc.mark();
    let (code, out, err) = gw
        .cli
        .run(&["unregister", "--agent-name", "edge-1"])
        .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 live links closed"), "{out}");
    gw.proc
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| v["links"] == 0)
        .await?;
    let amark = agent.mark();
    agent
        .wait_event_after(amark, agent_ev::GATEWAY_UNREACHABLE, |v| {
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("unknown client id"))
        })
        .await?;
    assert!(
        gw.cli
            .json(&["list-agents"])
            .await?
            .as_array()
            .unwrap()
            .is_empty()
    );
    agent.kill().await;
    Ok(())
}

#[tokio::test]
async fn a_key_removed_through_another_gateway_on_the_same_database_closes_links() -> Result<()> {
    // Two gateways on one SQLite file, as replicas share one database: the
    // key is removed through the second; the first closes the links its
    // sweep finds unbacked.
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("gw");
    let admin = admin_key();
    let echo = servers::echo().await;
    let mut a = gateway(&data, &admin, "edge-1", echo, &[]).await?;
    let b = gateway(&data, &admin, "edge-1", echo, &[]).await?;
    let (private, public, _) = keygen(dir.path(), "edge-1").await?;
    let vars = a.cli.register("edge-1", "key-1", &public).await?;
    let mark = a.proc.mark();
    let path = private.display().to_string();
    let _agent = run_agent(
        &a,
        &vars,
        ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", &path),
        echo,
        "agent",
    )?;
    a.wait_links(mark, "edge-1", 2).await?;
    let mark = a.proc.mark();
    let started = Instant::now();
    let (code, _, err) = b
        .cli
        .run(&[
            "remove-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-1",
            "--force",
        ])
        .await?;
    assert_eq!(code, 0, "{err}");
    a.proc
        .wait_event_after(mark, gw_ev::REVOKED_LINKS_CLOSED, |_| true)
        .await?;
    a.proc
        .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| v["links"] == 0)
        .await?;
    eprintln!(
        "links closed {:?} after remove-key on the other gateway",
        started.elapsed()
    );
    Ok(())
}

/// Posts a client assertion to the token endpoint with curl; returns
/// (HTTP status, JSON body).
async fn token_request(gw: &Gateway, assertion: &str) -> Result<(u16, Value)> {
    let url = gw
        .connect_url()
        .replace("wss://", "https://")
        .replace("/connect", "/oauth2/token");
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            &url,
            "-d",
            "grant_type=client_credentials",
        ])
        .args([
            "-d",
            "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ])
        .args(["--data-urlencode", &format!("client_assertion={assertion}")])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').context("curl output")?;
    Ok((
        code.trim().parse()?,
        serde_json::from_str(body).unwrap_or(Value::Null),
    ))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn each_bad_assertion_is_refused_with_its_own_reason() -> Result<()> {
    burrow_e2e::require!("curl");
    use burrow_auth::assertion::sign;
    let dir = tempfile::tempdir()?;
    let echo = servers::echo().await;
    let gw = gateway(&dir.path().join("gw"), &admin_key(), "edge-1", echo, &[]).await?;
    let (private, public, _) = keygen(dir.path(), "edge-1").await?;
    let vars = gw.cli.register("edge-1", "key-1", &public).await?;
    let pem = std::fs::read(&private)?;
    let (cid, aud) = (
        vars["AUTH_SERVER_CLIENT_ID"].as_str(),
        vars["API_AUDIENCE"].as_str(),
    );

    let good = sign(&pem, cid, Some("key-1"), aud, now(), 60)?;
    let (code, v) = token_request(&gw, &good).await?;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["agent_name"], "edge-1");
    assert!(v["expires_in"].as_u64().is_some_and(|e| e > 0));

    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir)?;
    let (other_private, _, _) = keygen(&other_dir, "x").await?;
    let other = std::fs::read(&other_private)?;
    let claims = serde_json::json!({"iss": cid, "sub": cid, "aud": aud, "iat": now(), "exp": now() + 60, "jti": "n0ne"});
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "kid": "key-1"})),
        b64(&claims)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("replayed", good.clone(), "replayed"),
        (
            "expired",
            sign(&pem, cid, None, aud, now() - 1000, 60)?,
            "expired",
        ),
        (
            "future-dated",
            sign(&pem, cid, None, aud, now() + 600, 60)?,
            "in the future",
        ),
        (
            "wrong audience",
            sign(&pem, cid, None, "urn:someone-else", now(), 60)?,
            "audience",
        ),
        ("alg none", alg_none, "alg none"),
        (
            "unknown key name",
            sign(&pem, cid, Some("key-9"), aud, now(), 60)?,
            "has no key named",
        ),
        (
            "unregistered key",
            sign(&other, cid, None, aud, now(), 60)?,
            "does not verify",
        ),
        (
            "unknown client",
            sign(&pem, "burrow-0000", None, aud, now(), 60)?,
            "unknown client id",
        ),
        ("garbage", "not.a.jwt".into(), "malformed"),
    ];
    for (what, assertion, needle) in cases {
        let (code, v) = token_request(&gw, &assertion).await?;
        assert_eq!(code, 401, "{what}: {v}");
        assert_eq!(v["error"], "invalid_client", "{what}");
        let d = v["error_description"].as_str().unwrap_or_default();
        assert!(d.contains(needle), "{what}: {d}");
    }
    // Guessing is throttled per address: past 20 refusals, each guess
    // waits for its turn (sequential guesses are slowed to 2 a second, not
    // refused), and guesses sent all at once beyond what 5 s of turns
    // allow get 429, whatever client id they claim.
    let started = std::time::Instant::now();
    for _ in 0..22 {
        let bad = sign(&other, cid, None, aud, now(), 60)?;
        let (code, v) = token_request(&gw, &bad).await?;
        assert_eq!(code, 401, "{v}");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "slowed: {:?}",
        started.elapsed()
    );
    // A valid assertion from the same address is slowed, not locked out.
    let (code, v) = token_request(&gw, &sign(&pem, cid, None, aud, now(), 60)?).await?;
    assert_eq!(code, 200, "{v}");
    let mut guesses = Vec::new();
    for i in 0..40 {
        let id = format!("burrow-guess-{i}");
        guesses.push(sign(&other, &id, None, aud, now(), 60)?);
    }
    let answers =
        futures_util::future::join_all(guesses.iter().map(|g| token_request(&gw, g))).await;
    let mut throttled = 0;
    for a in answers {
        let (code, v) = a?;
        match code {
            401 => {}
            429 => {
                throttled += 1;
                assert!(
                    v["error_description"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("retry in"),
                    "{v}"
                );
            }
            c => bail!("unexpected status {c}: {v}"),
        }
    }
    assert!(throttled > 0, "a new client id per guess is throttled too");
    // Wrong grant type.
    let url = gw
        .connect_url()
        .replace("wss://", "https://")
        .replace("/connect", "/oauth2/token");
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
            "-d",
            "grant_type=password",
        ])
        .output()
        .await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    Ok(())
}

#[tokio::test]
async fn bad_input_and_bad_admin_keys_are_refused_and_change_nothing() -> Result<()> {
    burrow_e2e::require!("openssl");
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let echo = servers::echo().await;
    let gw = gateway(&d.join("gw"), &admin_key(), "edge-1", echo, &[]).await?;
    let (_, public, _) = keygen(d, "edge-1").await?;

    // A 1024-bit RSA key made by openssl: refused, exit 2, nothing stored.
    for args in [
        vec!["genrsa", "-out", "small.pem", "1024"],
        vec!["rsa", "-in", "small.pem", "-pubout", "-out", "small.pub"],
    ] {
        let st = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(d)
            .stderr(std::process::Stdio::null())
            .status()?;
        assert!(st.success());
    }
    let small = std::fs::read_to_string(d.join("small.pub"))?;
    let (code, _, err) = gw
        .cli
        .run(&[
            "register",
            "--agent-name",
            "tiny",
            "--key-name",
            "k",
            "--public-key",
            &small,
        ])
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2048"), "{err}");
    // The same key at the agent (PKCS#8 as openssl writes it, and PKCS#1):
    // refused at start in the same words, not as a signing error.
    let st = std::process::Command::new("openssl")
        .args([
            "rsa",
            "-in",
            "small.pem",
            "-traditional",
            "-out",
            "small1.pem",
        ])
        .current_dir(d)
        .stderr(std::process::Stdio::null())
        .status()?;
    assert!(st.success());
    for pem in ["small.pem", "small1.pem"] {
        let path = d.join(pem).display().to_string();
        let env = [
            ("CONNECT_URL", gw.connect_url().to_owned()),
            ("AUTH_SERVER_CLIENT_ID", "burrow-x".to_owned()),
            ("API_AUDIENCE", "urn:burrow:tunnel:x".to_owned()),
            ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", path),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let (code, _, err) = cli(&["run", "--agent-name", "tiny"], &env).await?;
        assert_ne!(code, 0, "{err}");
        assert!(
            err.contains("this RSA key has 1024 bits")
                && err.contains("at least 2048")
                && err.contains("burrow keygen")
                && !err.contains("TooSmall"),
            "{pem}: {err}"
        );
    }
    // Bad names: exit 2, caught before anything is sent.
    let long = "a".repeat(201);
    for (agent, key) in [
        ("bad name", "k"),
        ("ok", "bad/key"),
        (long.as_str(), "k"),
        ("", "k"),
    ] {
        let (code, _, err) = gw
            .cli
            .run(&[
                "register",
                "--agent-name",
                agent,
                "--key-name",
                key,
                "--public-key",
                &public,
            ])
            .await?;
        assert_eq!(code, 2, "{agent:.20}/{key}: {err}");
        assert!(err.contains("1-200 letters"), "{err}");
    }
    // A malformed FQDN for the agent's rules: refused by the gateway (400,
    // exit 2), and the agent is not half-registered.
    let (code, _, err) = gw
        .cli
        .run(&[
            "register",
            "--agent-name",
            "edge-9",
            "--key-name",
            "k",
            "--public-key",
            &public,
            "--fqdn",
            "bad host",
        ])
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid FQDN"), "{err}");
    assert!(agent_row(&gw.cli.json(&["list-agents"]).await?, "edge-9").is_null());
    // 200 characters is fine.
    let max = "b".repeat(200);
    gw.cli.register(&max, "k", &public).await?;
    // Missing admin key: clap usage error (2).
    let env: Vec<_> = gw
        .cli
        .env()
        .to_vec()
        .into_iter()
        .filter(|(k, _)| k != "BURROW_ADMIN_KEY")
        .collect();
    let (code, _, err) = cli(&["list-agents"], &env).await?;
    assert_eq!(code, 2, "{err}");
    // Wrong admin key: refused by the gateway (1).
    let mut env = gw.cli.env().to_vec();
    env[1].1 = admin_key();
    let (code, _, err) = cli(&["list-agents"], &env).await?;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("401") && err.contains("unknown or wrong admin API key"),
        "{err}"
    );
    // An admin key that expires: works, then is refused with a clear message.
    let created = gw
        .cli
        .json(&["admin-key", "create", "--name", "ci", "--expires-in", "2s"])
        .await?;
    let short = created["key"].as_str().unwrap().to_owned();
    env[1].1 = short.clone();
    let (code, _, err) = cli(&["list-agents"], &env).await?;
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (code, _, err) = cli(&["list-agents"], &env).await?;
    assert_eq!(code, 1);
    assert!(err.contains("expired"), "{err}");
    assert!(
        !gw.proc.output().contains(&short),
        "admin keys never reach the log"
    );

    // A key pair belongs to one agent: its public key is refused for
    // another (a new one, or as another key), naming who has it.
    for args in [
        ["register", "--agent-name", "edge-2"],
        ["add-key", "--agent-name", &max],
    ] {
        let mut all = args.to_vec();
        all.extend(["--key-name", "k2", "--public-key", &public]);
        let (code, _, err) = gw.cli.run(&all).await?;
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("409")
                && err.contains(&format!(
                    "already registered, as key \"k\" of agent \"{max}\""
                ))
                && err.contains("burrow keygen"),
            "{err}"
        );
    }
    assert!(agent_row(&gw.cli.json(&["list-agents"]).await?, "edge-2").is_null());
    // The sixth agent is refused with how to raise the limit.
    let mut fresh = Vec::new();
    for i in 2..=6 {
        fresh.push(keygen(d, &format!("edge-{i}")).await?.1);
    }
    for i in 2..=5 {
        gw.cli
            .register(&format!("edge-{i}"), "k", &fresh[i - 2])
            .await?;
    }
    let (code, _, err) = gw
        .cli
        .run(&[
            "register",
            "--agent-name",
            "edge-6",
            "--key-name",
            "k",
            "--public-key",
            &fresh[4],
        ])
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("BURROW_MAX_AGENTS"), "{err}");
    let list = gw.cli.json(&["list-agents"]).await?;
    assert_eq!(list.as_array().map(Vec::len), Some(5));
    assert!(agent_row(&list, "edge-6").is_null());
    // Duplicate key name: refused, the first key stays.
    let (code, _, err) = gw
        .cli
        .run(&[
            "add-key",
            "--agent-name",
            "edge-2",
            "--key-name",
            "k",
            "--public-key",
            &fresh[4],
        ])
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    // Unknown agent.
    let (code, _, err) = gw.cli.run(&["list-keys", "--agent-name", "ghost"]).await?;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_bootstrap_key_is_printed_once_and_a_killed_gateway_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("gw");
    let echo = servers::echo().await;
    let start = |label: &'static str| {
        let data = data.clone();
        async move {
            let mut child = tokio::process::Command::new(bin())
                .args([
                    "gateway",
                    "--listen",
                    "127.0.0.1:0",
                    "--forward",
                    &format!("127.0.0.1:0=edge-1:{echo}"),
                ])
                .env_clear()
                .env("BURROW_DATA_DIR", &data)
                .env("BURROW_LOG_FORMAT", "json")
                .env("BURROW_PROXY_LISTEN", "off")
                .env("BURROW_EDGE_HTTP_LISTEN", "off")
                .env("BURROW_EDGE_HTTPS_LISTEN", "off")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            use tokio::io::AsyncBufReadExt as _;
            let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
            let mut addr = None;
            let mut thumbprint = String::new();
            let deadline = Instant::now() + burrow_e2e::WAIT;
            while addr.is_none() && Instant::now() < deadline {
                let Some(line) = tokio::time::timeout(burrow_e2e::WAIT, err.next_line()).await??
                else {
                    bail!("{label} exited");
                };
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["event"] == gw_ev::TUNNEL_LISTENING {
                    addr = Some(addr_field(&v, "addr")?);
                    thumbprint = v["thumbprint"].as_str().unwrap_or_default().to_owned();
                }
            }
            tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
            Ok::<_, anyhow::Error>((child, addr.context("no address")?, thumbprint))
        }
    };
    let (mut first, addr, thumbprint) = start("first").await?;
    let mut out = String::new();
    use tokio::io::AsyncReadExt as _;
    let mut stdout = first.stdout.take().unwrap();
    // The key line comes before the listener is up.
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stdout.read(&mut buf)).await??;
    out.push_str(&String::from_utf8_lossy(&buf[..n]));
    let key = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(key.starts_with("bk_"), "{out}");
    let env = vec![
        ("CONNECT_URL".to_owned(), format!("wss://{addr}/connect")),
        ("BURROW_ADMIN_KEY".to_owned(), key.clone()),
        ("GATEWAY_THUMBPRINT".to_owned(), thumbprint.clone()),
    ];
    let (_, public, _) = keygen(dir.path(), "edge-1").await?;
    let (code, _, err) = cli(
        &[
            "register",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-1",
            "--public-key",
            &public,
        ],
        &env,
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let (_, second_public, _) = keygen(&dir.path().join("second-key"), "edge-1").await?;
    let (code, _, err) = cli(
        &[
            "add-key",
            "--agent-name",
            "edge-1",
            "--key-name",
            "key-2",
            "--public-key",
            &second_public,
        ],
        &env,
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    // SIGKILL: no shutdown path runs.
    first.kill().await?;

    let (mut second, addr2, thumbprint2) = start("second").await?;
    assert_eq!(thumbprint2, thumbprint, "same certificate");
    let mut stdout = second.stdout.take().unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(300), stdout.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "no second bootstrap key: {}",
        String::from_utf8_lossy(&rest)
    );
    let env2 = vec![
        ("CONNECT_URL".to_owned(), format!("wss://{addr2}/connect")),
        ("BURROW_ADMIN_KEY".to_owned(), key.clone()),
        ("GATEWAY_THUMBPRINT".to_owned(), thumbprint.clone()),
    ];
    let (code, out, err) = cli(&["list-keys", "--agent-name", "edge-1", "--json"], &env2).await?;
    assert_eq!(code, 0, "the bootstrap key still works: {err}");
    let keys: Value = serde_json::from_str(&out)?;
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["key_name"].as_str())
        .collect();
    assert_eq!(names, ["key-1", "key-2"]);
    second.kill().await?;
    Ok(())
}

#[tokio::test]
async fn the_same_flow_runs_on_postgresql() -> Result<()> {
    burrow_e2e::require!("openssl", "psql", "postgres");
    let base = burrow_e2e::needs::postgres_url();
    let schema = format!("burrow_e2e_{}", &admin_key()[3..15]);
    let psql = |sql: String| {
        let base = base.clone();
        async move {
            let out = tokio::process::Command::new("psql")
                .args([base.as_str(), "-qc", &sql])
                .output()
                .await
                .context("psql (Debian package postgresql-client) must be installed")?;
            if !out.status.success() {
                bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        }
    };
    psql(format!("CREATE SCHEMA {schema}")).await?;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let result = async {
        let dir = tempfile::tempdir()?;
        let echo = servers::echo().await;
        let db = [("BURROW_DATABASE_URL", url.as_str())];
        let mut gw = gateway(&dir.path().join("gw"), &admin_key(), "edge-1", echo, &db).await?;
        // A key pair made by openssl, as Octopus Connection Agent's commands make it.
        let d = dir.path();
        for args in [
            vec!["genrsa", "-out", "ConnectionAgent-edge-1.pem", "2048"],
            vec![
                "rsa",
                "-in",
                "ConnectionAgent-edge-1.pem",
                "-pubout",
                "-out",
                "ConnectionAgent-edge-1.pem.pub",
            ],
        ] {
            let st = std::process::Command::new("openssl")
                .args(&args)
                .current_dir(d)
                .stderr(std::process::Stdio::null())
                .status()?;
            assert!(st.success(), "openssl {args:?}");
        }
        let public = std::fs::read_to_string(d.join("ConnectionAgent-edge-1.pem.pub"))?;
        let private = d.join("ConnectionAgent-edge-1.pem");
        let (code, out, err) = gw
            .cli
            .run(&[
                "register",
                "--agent-name",
                "edge-1",
                "--key-name",
                "key-1",
                "--public-key",
                &public,
                "--fqdn",
                "git.internal.example",
                "--json",
            ])
            .await?;
        assert_eq!(code, 0, "{err}");
        let reg: Value = serde_json::from_str(&out)?;
        assert_eq!(reg["fqdns"][0], "git.internal.example");
        let vars: HashMap<String, String> = reg["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let mark = gw.proc.mark();
        let path = private.display().to_string();
        let mut agent = run_agent(
            &gw,
            &vars,
            ("AUTH_SERVER_PRIVATE_KEY_PEM_PATH", &path),
            echo,
            "agent",
        )?;
        gw.wait_links(mark, "edge-1", 2).await?;
        assert_eq!(
            echo_roundtrip(fwd(&gw), b"on postgres").await?,
            b"on postgres"
        );
        let list = gw.cli.json(&["list-agents"]).await?;
        assert_eq!(agent_row(&list, "edge-1")["connected"], true);
        agent.kill().await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    psql(format!("DROP SCHEMA {schema} CASCADE")).await?;
    result
}

#[tokio::test]
async fn the_readmes_demo_runs_the_whole_stack_on_loopback() -> Result<()> {
    let echo = servers::echo().await;
    let args = s(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--forward",
        &format!("127.0.0.1:0={echo}"),
    ]);
    let mut demo = Proc::spawn("demo", &bin(), &args, &[])?;
    let fwd = addr_field(&demo.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    demo.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| {
        v["links"] == 2 && v["key"] == "demo-key"
    })
    .await?;
    demo.wait_event(gw_ev::TOKEN_ISSUED).await?;
    assert_eq!(echo_roundtrip(fwd, b"demo").await?, b"demo");
    demo.term()?;
    assert_eq!(demo.wait_exit().await?, Some(0));
    Ok(())
}

/// Response headers of a curl request to the admin API (lowercased).
async fn api_headers(gw: &Gateway, method: &str, origin: &str, auth: bool) -> Result<String> {
    let url = gw
        .connect_url()
        .replace("wss://", "https://")
        .replace("/connect", "/api/v1/agents");
    let mut args = vec![
        "-sk".to_owned(),
        "-o".into(),
        "/dev/null".into(),
        "-D".into(),
        "-".into(),
        "-X".into(),
        method.into(),
        "-H".into(),
        format!("Origin: {origin}"),
    ];
    if auth {
        args.extend([
            "-H".into(),
            format!("Authorization: Bearer {}", gw.admin_key()),
        ]);
    }
    args.push(url);
    let out = tokio::process::Command::new("curl")
        .args(&args)
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&out.stdout).to_ascii_lowercase())
}

#[tokio::test]
async fn the_admin_api_answers_browsers_from_allowed_origins_only() -> Result<()> {
    burrow_e2e::require!("curl");
    let dir = tempfile::tempdir()?;
    let echo = servers::echo().await;
    // Default: any origin.
    let gw = gateway(&dir.path().join("a"), &admin_key(), "edge-1", echo, &[]).await?;
    let h = api_headers(&gw, "OPTIONS", "https://ui.example", false).await?;
    assert!(
        h.starts_with("http/1.1 204") && h.contains("access-control-allow-origin: *"),
        "{h}"
    );
    assert!(
        h.contains("access-control-allow-headers: authorization, content-type"),
        "{h}"
    );
    // A configured list.
    let only = [(
        "BURROW_ALLOWED_ORIGINS",
        "https://ui.example,https://ops.example",
    )];
    let gw = gateway(&dir.path().join("b"), &admin_key(), "edge-1", echo, &only).await?;
    let h = api_headers(&gw, "GET", "https://ops.example", true).await?;
    assert!(
        h.starts_with("http/1.1 200")
            && h.contains("access-control-allow-origin: https://ops.example"),
        "{h}"
    );
    let h = api_headers(&gw, "GET", "https://evil.example", true).await?;
    assert!(
        h.starts_with("http/1.1 200") && !h.contains("access-control-allow-origin"),
        "{h}"
    );
    let h = api_headers(&gw, "OPTIONS", "https://evil.example", false).await?;
    assert!(!h.contains("access-control-allow-origin"), "{h}");
    Ok(())
}

/// Admin keys are listed (never shown), revoked and replaced; the last key
/// that works stays; a bootstrap key can be made to expire; a wrong key of
/// the right form is called wrong, not malformed.
#[tokio::test]
async fn admin_keys_are_listed_revoked_and_replaced_and_the_bootstrap_key_can_expire() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let bootstrap = admin_key();
    let gw = Gateway::start(
        &bin(),
        &dir.path().join("gw"),
        &bootstrap,
        &["--no-tls"],
        &[],
    )
    .await?;
    let with = |key: &str| {
        let mut env = gw.cli.env().to_vec();
        for (k, v) in &mut env {
            if k == "BURROW_ADMIN_KEY" {
                *v = key.to_owned();
            }
        }
        env
    };
    let list = |key: String| {
        let env = with(&key);
        async move {
            let (code, out, err) = cli(&["admin-key", "list", "--json"], &env).await?;
            anyhow::ensure!(code == 0, "admin-key list: {err}");
            Ok::<Value, anyhow::Error>(serde_json::from_str(&out)?)
        }
    };
    let keys = list(bootstrap.clone()).await?;
    let first = &keys[0];
    let boot_id = first["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(first["name"], "bootstrap", "{keys}");
    assert_eq!(first["current"], true, "{keys}");
    assert!(first["last_used_at"].as_i64().is_some(), "{keys}");
    assert!(
        !keys.to_string().contains(&bootstrap[16..]),
        "never the secret: {keys}"
    );
    // The table says the same in words.
    let (code, table, err) = cli(&["admin-key", "list"], &with(&bootstrap)).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.starts_with("ID")
            && table.contains(&format!("{boot_id} *"))
            && table.contains("active"),
        "{table}"
    );
    // A wrong key of the bk_ form (a typo, another gateway's) is wrong.
    let typo = format!("bk_{boot_id}_tooshort");
    let (code, _, err) = cli(&["admin-key", "list"], &with(&typo)).await?;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown or wrong admin API key") && !err.contains("not a Burrow"),
        "{err}"
    );
    // The only key that works cannot be revoked: nobody is locked out.
    let (code, _, err) = cli(&["admin-key", "revoke", &boot_id], &with(&bootstrap)).await?;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("409")
            && err.contains("last one that works")
            && err.contains("admin-key replace"),
        "{err}"
    );
    // Replaced: a new key (shown once, same name), the old one revoked.
    let (code, out, err) = cli(
        &["admin-key", "replace", &boot_id, "--expires-in", "1h"],
        &with(&bootstrap),
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let new = out.lines().next().unwrap_or_default().to_owned();
    assert!(
        new.starts_with("bk_") && err.contains("revoked"),
        "{out}{err}"
    );
    let (code, _, err) = cli(&["list-agents"], &with(&bootstrap)).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revoked"), "{err}");
    let keys = list(new.clone()).await?;
    let states: Vec<(String, bool, bool)> = keys
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| {
                    (
                        k["name"].as_str().unwrap_or_default().to_owned(),
                        k["revoked"] == true,
                        k["current"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        states,
        vec![
            ("bootstrap".to_owned(), true, false),
            ("bootstrap".to_owned(), false, true)
        ],
        "{keys}"
    );
    assert!(keys[1]["expires_at"].as_i64().is_some(), "{keys}");
    // Bad ids are refused before anything is sent.
    let (code, _, err) = cli(&["admin-key", "revoke", "../x"], &with(&new)).await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an admin API key id"), "{err}");
    let (code, _, err) = cli(&["admin-key", "revoke", "0123456789ab"], &with(&new)).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no admin key named"), "{err}");
    assert!(
        !gw.proc.output().contains(&new[16..]),
        "keys never reach the log"
    );
    drop(gw);

    // A bootstrap key given a lifetime stops working after it.
    let other = tempfile::tempdir()?;
    let short = admin_key();
    let gw = Gateway::start(
        &bin(),
        &other.path().join("gw"),
        &short,
        &["--no-tls", "--bootstrap-key-expires-in", "2s"],
        &[],
    )
    .await?;
    let (code, _, err) = cli(&["list-agents"], gw.cli.env()).await?;
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (code, _, err) = cli(&["list-agents"], gw.cli.env()).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("expired"), "{err}");
    Ok(())
}

/// `register --format export` prints lines a shell can `eval`, with the
/// same values as the default `NAME=value` lines; `--format json` is
/// `--json`.
#[tokio::test]
async fn register_prints_the_agents_variables_as_env_export_or_json() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let gw = Gateway::start(
        &bin(),
        &dir.path().join("gw"),
        &admin_key(),
        &["--no-tls"],
        &[],
    )
    .await?;
    let mut lines = Vec::new();
    for (i, format) in ["env", "export", "json"].iter().enumerate() {
        let name = format!("fmt-{i}");
        let (_, public, _) = keygen(dir.path(), &name).await?;
        let out = gw
            .cli
            .ok(&[
                "register",
                "--agent-name",
                &name,
                "--key-name",
                "k",
                "--public-key",
                &public,
                "--format",
                format,
            ])
            .await?;
        lines.push(out);
    }
    let env = burrow_e2e::cli::env_lines(&lines[0]);
    assert_eq!(env.len(), 4, "{}", lines[0]);
    assert!(
        lines[1].lines().all(|l| l.starts_with("export ")),
        "{}",
        lines[1]
    );
    // A shell reads the export lines back to the same kind of values.
    let script = format!(
        "{}\nprintf '%s\\n' \"$CONNECT_URL\" \"$API_AUDIENCE\"",
        lines[1]
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()?;
    let got = String::from_utf8_lossy(&out.stdout);
    let mut got = got.lines();
    assert_eq!(got.next(), env.get("CONNECT_URL").map(String::as_str));
    assert_eq!(got.next(), env.get("API_AUDIENCE").map(String::as_str));
    let json: Value = serde_json::from_str(&lines[2])?;
    assert!(
        json["env"]["AUTH_SERVER_CLIENT_ID"].as_str().is_some(),
        "{json}"
    );
    let (code, _, err) = gw
        .cli
        .run(&[
            "register",
            "--agent-name",
            "x",
            "--key-name",
            "k",
            "--public-key",
            "x",
            "--format",
            "yaml",
        ])
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("possible values: env, export, json"), "{err}");
    Ok(())
}
