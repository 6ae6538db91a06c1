//! Attacks on the gateway, driven as a hostile agent, local user or
//! anonymous client would, each asserting the refusal and that nothing
//! else changed (routes, agents, other clients' service).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burrow_e2e::registered::{Setup, run, setup};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// The tunnel port, from the CLI's CONNECT_URL.
fn tunnel_addr(st: &Setup) -> Result<SocketAddr> {
    let url = &st.env[0].1;
    let hostport = url
        .trim_start_matches("wss://")
        .trim_start_matches("ws://")
        .trim_end_matches("/connect");
    hostport.parse().context("tunnel address")
}

/// curl to the tunnel port as `host`, with the admin key: (status, body).
async fn admin_as(
    st: &Setup,
    host: &str,
    method: &str,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String)> {
    let addr = tunnel_addr(st)?;
    let url = format!("https://{host}:{}{path}", addr.port());
    let resolve = format!("{host}:{}:127.0.0.1", addr.port());
    let auth = format!("Authorization: Bearer {}", st.env[1].1);
    let mut args = vec![
        "-sk",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--resolve",
        &resolve,
        "-H",
        &auth,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let (_, out, err) = run("curl", &args, Path::new("/"), &[]).await?;
    let (body, code) = out
        .rsplit_once('\n')
        .with_context(|| format!("curl: {err}"))?;
    Ok((code.trim().parse().context("status")?, body.to_owned()))
}

/// A service that names itself, so a hijack would show.
async fn hijacker() -> Result<(tokio::process::Child, u16, tempfile::TempDir)> {
    let root = tempfile::tempdir()?;
    std::fs::write(root.path().join("index.html"), "hijacker\n")?;
    std::fs::create_dir_all(root.path().join("api/v1"))?;
    std::fs::write(root.path().join("api/v1/agents"), "hijacker\n")?;
    let (child, port) = burrow_e2e::registered::static_server(root.path(), None).await?;
    Ok((child, port, root))
}

#[tokio::test]
async fn an_agent_cannot_publish_the_gateways_own_names() -> Result<()> {
    let (_svc, port, _root) = hijacker().await?;
    let own = format!("gw.tunnel.test=http://127.0.0.1:{port}");
    let fine = format!("app.tunnel.test=http://127.0.0.1:{port}");
    let gw = [
        "--public-domain",
        "tunnel.test",
        "--gateway-name",
        "gw.tunnel.test",
    ];
    let mut st = setup(&bin(), &gw, &["--route", &own, "--route", &fine], true).await?;
    st.gateway
        .wait_log_after(0, "agent-declared route refused", |v| {
            v["hostname"] == "gw.tunnel.test"
                && v["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("own names"))
        })
        .await?;
    st.gateway
        .wait_log_after(0, "agent-declared route published", |v| {
            v["hostname"] == "app.tunnel.test"
        })
        .await?;
    // The gateway's name still reaches the gateway: the admin API lists
    // the agent, and the token endpoint and status page are its own.
    let (code, body) = admin_as(&st, "gw.tunnel.test", "GET", "/api/v1/agents", &[]).await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"agent_name\":\"edge\""), "{body}");
    assert!(!body.contains("hijacker"), "{body}");
    let (_, page) = admin_as(&st, "gw.tunnel.test", "GET", "/", &[]).await?;
    assert!(!page.contains("hijacker"), "{page}");
    // An admin cannot add it either, nor localhost, nor an IP literal.
    let target = format!("http://127.0.0.1:{port}");
    for host in ["gw.tunnel.test", "localhost", "127.0.0.1"] {
        let (code, out, err) = st
            .cli(&[
                "add-route",
                "--hostname",
                host,
                "--agent-name",
                "edge",
                "--target",
                &target,
            ])
            .await?;
        assert_ne!(code, 0, "{host}: {out}");
        assert!(
            err.contains("own names") || err.contains("invalid host name"),
            "{host}: {err}"
        );
    }
    let list = st.ok(&["list-routes"]).await?;
    assert!(list.contains("app.tunnel.test"), "{list}");
    assert!(!list.contains("gw.tunnel.test"), "{list}");
    Ok(())
}

#[tokio::test]
async fn a_stored_route_on_an_own_name_is_never_served() -> Result<()> {
    // A route stored before the name was the gateway's: restart the
    // gateway with the name and the route is ignored, with a warning.
    let (_svc, port, _root) = hijacker().await?;
    let mut st = setup(&bin(), &[], &[], true).await?;
    st.add_route("gw.example.test", port).await?;
    let (code, body) = admin_as(&st, "gw.example.test", "GET", "/api/v1/agents", &[]).await?;
    assert!(
        code == 200 && body.contains("hijacker"),
        "before: the route serves this name: {code} {body}"
    );
    st.restart_gateway_with(&["--gateway-name", "gw.example.test"])
        .await?;
    st.gateway
        .wait_log_after(
            0,
            "route ignored: it is one of this gateway's own names",
            |v| v["hostname"] == "gw.example.test",
        )
        .await?;
    let (code, body) = admin_as(&st, "gw.example.test", "GET", "/api/v1/agents", &[]).await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"agent_name\":\"edge\""), "{body}");
    // It can still be removed.
    st.ok(&["remove-route", "--hostname", "gw.example.test"])
        .await?;
    Ok(())
}

#[tokio::test]
async fn dot_names_and_dot_segments_are_refused() -> Result<()> {
    let st = setup(&bin(), &[], &[], false).await?;
    let pubkey = st.dir.path().join("ConnectionAgent-edge.pem.pub");
    let pem = std::fs::read_to_string(&pubkey)?;
    // Names that are only dots, through the API and the CLI.
    for name in [".", ".."] {
        let body = serde_json::json!({"key_name": name, "public_key": pem}).to_string();
        let (code, out) = admin_as(
            &st,
            "localhost",
            "POST",
            "/api/v1/agents/edge/keys",
            &["-H", "content-type: application/json", "--data", &body],
        )
        .await?;
        assert_eq!(code, 400, "{name}: {out}");
        let body =
            serde_json::json!({"agent_name": name, "key_name": "k", "public_key": pem}).to_string();
        let (code, out) = admin_as(
            &st,
            "localhost",
            "POST",
            "/api/v1/agents",
            &["-H", "content-type: application/json", "--data", &body],
        )
        .await?;
        assert_eq!(code, 400, "{name}: {out}");
        let (code, _, err) = st
            .cli(&[
                "add-key",
                "--agent-name",
                "edge",
                "--key-name",
                name,
                "--public-key",
                &pubkey.display().to_string(),
            ])
            .await?;
        assert_ne!(code, 0);
        assert!(err.contains("not only dots"), "{err}");
    }
    // Raw dot segments (curl's --path-as-is keeps them), encoded too.
    for path in [
        "/api/v1/agents/edge/keys/..",
        "/api/v1/agents/edge/keys/%2e%2E",
        "/api/v1/agents/../agents/edge",
        "/api/v1/agents/edge/keys/.",
    ] {
        let (code, out) = admin_as(&st, "localhost", "DELETE", path, &["--path-as-is"]).await?;
        assert_eq!(code, 400, "{path}: {out}");
        assert!(out.contains("segments are refused"), "{out}");
    }
    // Nothing was deleted: the agent and its key are there.
    let keys = st.ok(&["list-keys", "--agent-name", "edge"]).await?;
    assert!(keys.contains("k1"), "{keys}");
    let agents = st.ok(&["list-agents"]).await?;
    assert!(agents.contains("edge"), "{agents}");
    // A delete deletes only what it names: a missing key is 404, the
    // agent stays.
    let (code, _) = admin_as(
        &st,
        "localhost",
        "DELETE",
        "/api/v1/agents/edge/keys/nope",
        &[],
    )
    .await?;
    assert_eq!(code, 404);
    let keys = st.ok(&["list-keys", "--agent-name", "edge"]).await?;
    assert!(keys.contains("k1"), "{keys}");
    Ok(())
}

/// Mode bits of a file.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a statement on a SQLite file with Python's sqlite3; its rows.
async fn sqlite(db: &Path, sql: &str) -> Result<String> {
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nfor r in c.execute(sys.argv[2]): print(*r)\nc.commit()";
    let db = db.display().to_string();
    let (code, out, err) = run("python3", &["-c", script, &db, sql], Path::new("/"), &[]).await?;
    anyhow::ensure!(code == 0, "sqlite: {err}");
    Ok(out)
}

#[tokio::test]
async fn the_token_key_is_readable_by_the_gateways_user_only() -> Result<()> {
    let mut st = setup(&bin(), &[], &[], true).await?;
    let data = st.dir.path().join("gw");
    let db = data.join("burrow.db");
    let key_file = data.join("token-key");
    // Every file the gateway made is private, the key outside the database.
    for f in ["burrow.db", "burrow.db-wal", "burrow.db-shm", "token-key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let key = std::fs::read_to_string(&key_file)?.trim().to_owned();
    assert_eq!(key.len(), 64);
    let settings = sqlite(&db, "SELECT name FROM settings").await?;
    assert!(!settings.contains("access_token_key"), "{settings}");
    for f in ["burrow.db", "burrow.db-wal"] {
        let bytes = std::fs::read(data.join(f))?;
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "{f} holds the token key"
        );
    }

    // A database from an older gateway: the key in its settings, the
    // files world-readable, the data directory too.
    st.gateway.term()?;
    st.gateway.wait_exit().await?;
    let old = "ab".repeat(32);
    sqlite(
        &db,
        &format!(
            "INSERT INTO settings (name, value, created_at) VALUES ('access_token_key', '{old}', 0)"
        ),
    )
    .await?;
    std::fs::remove_file(&key_file)?;
    use std::os::unix::fs::PermissionsExt as _;
    for f in ["burrow.db", "burrow.db-wal", "burrow.db-shm"] {
        let p = data.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    st.restart_gateway_with(&[]).await?;
    st.gateway
        .wait_log_after(0, "the data directory is readable by other users", |_| true)
        .await?;
    st.gateway
        .wait_log_after(0, "access-token key was removed from the database", |_| {
            true
        })
        .await?;
    let settings = sqlite(&db, "SELECT name FROM settings").await?;
    assert!(!settings.contains("access_token_key"), "{settings}");
    let fresh = std::fs::read_to_string(&key_file)?.trim().to_owned();
    assert_ne!(fresh, old, "the stored key was retired, not moved");
    for f in ["burrow.db", "token-key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // The agent gets a new token with the new key and its links return.
    let agents = st.ok(&["list-agents"]).await?;
    assert!(agents.contains("edge"), "{agents}");
    st.gateway
        .wait_log_after(0, "agent link up", |v| v["links"] == 2)
        .await?;
    Ok(())
}
