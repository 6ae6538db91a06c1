//! Attacks on the gateway, driven as a hostile agent, local user or
//! anonymous client would, each asserting the refusal and that nothing
//! else changed (routes, agents, other clients' service).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burrow_e2e::registered::{Setup, curl_via, run, setup};
use burrow_gateway::event as gw_ev;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// The tunnel port, from the CLI's CONNECT_URL.
fn tunnel_addr(st: &Setup) -> Result<SocketAddr> {
    let url = &st.env()[0].1;
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
    let auth = format!("Authorization: Bearer {}", st.env()[1].1);
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
    burrow_e2e::require!("curl");
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
        .proc
        .wait_event_after(0, gw_ev::ROUTE_REFUSED, |v| {
            v["hostname"] == "gw.tunnel.test"
                && v["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("own names"))
        })
        .await?;
    st.gateway
        .proc
        .wait_event_after(0, gw_ev::ROUTE_PUBLISHED, |v| {
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
    burrow_e2e::require!("curl");
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
        .proc
        .wait_event_after(0, gw_ev::ROUTE_IGNORED_OWN_NAME, |v| {
            v["hostname"] == "gw.example.test"
        })
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
    burrow_e2e::require!("curl");
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
    st.gateway.proc.term()?;
    st.gateway.proc.wait_exit().await?;
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
        .proc
        .wait_event_after(0, burrow_transport::event::DATA_DIR_OPEN, |_| true)
        .await?;
    st.gateway
        .proc
        .wait_event_after(0, gw_ev::TOKEN_KEY_REPLACED, |_| true)
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
        .proc
        .wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    Ok(())
}

/// One HTTP/1.1 exchange over plain TCP from `from` (a loopback address of
/// the test's choosing): the whole answer, read until the server closes or
/// 10 s pass.
async fn http_from(from: std::net::IpAddr, to: SocketAddr, req: String) -> Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let mut s = sock.connect(to).await?;
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

const ME: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const OTHER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// Sends `n` requests made by `make(i)` at once from ME; their answers.
async fn burst(to: SocketAddr, n: usize, make: impl Fn(usize) -> String) -> Result<Vec<String>> {
    let all = futures_util::future::join_all((0..n).map(|i| http_from(ME, to, make(i)))).await;
    all.into_iter().collect()
}

#[tokio::test]
async fn credential_guessing_is_throttled_per_address_and_logged_as_a_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let psk_file = dir.path().join("psk");
    std::fs::write(&psk_file, burrow_e2e::random_psk())?;
    let psk_arg = psk_file.display().to_string();
    let st = setup(
        &bin(),
        &["--no-tls", "--psk-file", &psk_arg, "--proxy-auth-file", &{
            let f = dir.path().join("proxy-auth");
            std::fs::write(&f, "user:right-password\n")?;
            f.display().to_string()
        }],
        &[],
        false,
    )
    .await?;
    let gw = tunnel_addr(&st)?;
    let proxy = st.proxy();
    let admin = &st.env()[1].1;
    let marks = st.gateway.proc.mark();
    const N: usize = 60;

    // The egress proxy: wrong Basic credentials, all at once.
    let bad = base64_basic("user:wrong");
    let out = burst(proxy, N, |_| {
        format!("GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\nProxy-Authorization: Basic {bad}\r\n\r\n")
    })
    .await?;
    let throttled = out
        .iter()
        .filter(|o| o.contains("too many wrong proxy credentials"))
        .count();
    assert!(
        throttled >= N / 4,
        "{throttled} of {N} throttled: {:?}",
        &out[..2]
    );
    assert!(
        out.iter().all(|o| o.starts_with("HTTP/1.1 407")),
        "{:?}",
        &out[..2]
    );
    // Another address's client with the right credentials is served at
    // once (the rule is missing, so the proxy answers, not 407).
    let good = base64_basic("user:right-password");
    let o = http_from(OTHER, proxy, format!("GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\nProxy-Authorization: Basic {good}\r\n\r\n")).await?;
    assert!(!o.starts_with("HTTP/1.1 407"), "{o}");

    // The admin API: wrong keys; the right key from another address works.
    let out = burst(gw, N, |i| {
        format!("GET /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer bk_000000000000_wrong{i}\r\nConnection: close\r\n\r\n")
    })
    .await?;
    let throttled = out.iter().filter(|o| o.starts_with("HTTP/1.1 429")).count();
    assert!(throttled >= N / 4, "{throttled} of {N}: {:?}", &out[..2]);
    let o = http_from(OTHER, gw, format!("GET /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n")).await?;
    assert!(o.starts_with("HTTP/1.1 200") && o.contains("edge"), "{o}");

    // The token endpoint: a new client id for every guess gains nothing.
    let out = burst(gw, N, |i| {
        let claims = base64_url(&format!("{{\"iss\":\"c{i}\",\"sub\":\"c{i}\",\"aud\":\"x\",\"iat\":1,\"exp\":2,\"jti\":\"j\"}}"));
        let body = format!("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
        format!("POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    })
    .await?;
    let throttled = out.iter().filter(|o| o.starts_with("HTTP/1.1 429")).count();
    assert!(throttled >= N / 4, "{throttled} of {N}: {:?}", &out[..2]);

    // The tunnel endpoint: a wrong key closes the connection, so one
    // keep-alive connection carries one guess; many connections are
    // throttled.
    let upgrade = |key: &str| {
        format!(
            "GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {key}\r\n\r\n"
        )
    };
    let two = format!("{}{}", upgrade("wrong-1"), upgrade("wrong-2"));
    let o = http_from(OTHER, gw, two).await?;
    assert_eq!(o.matches("HTTP/1.1 401").count(), 1, "{o}");
    let out = burst(gw, N, |i| upgrade(&format!("wrong-{i}"))).await?;
    let throttled = out.iter().filter(|o| o.starts_with("HTTP/1.1 429")).count();
    assert!(throttled >= N / 4, "{throttled} of {N}: {:?}", &out[..2]);

    // Logged as a rate: per check and address, one line now and the rest
    // counted, not a line per failure.
    let lines = st.gateway.proc.count_events(gw_ev::CREDENTIAL_REFUSED)
        + st.gateway.proc.count_events(gw_ev::CREDENTIAL_FAILURES);
    assert!(st.gateway.proc.mark() > marks);
    assert!(
        lines <= 4 * 2 + 2,
        "{lines} log lines for {} failures",
        4 * N
    );
    Ok(())
}

fn base64_basic(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn secrets_on_the_command_line_are_warned_about_and_never_echoed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let (code, _, err) = run(
        bin().to_str().context("path")?,
        &["keygen", "--agent-name", "s", "--out-dir", &d],
        dir.path(),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let pem = std::fs::read_to_string(dir.path().join("ConnectionAgent-s.pem"))?;
    // The key as a flag value (it starts with dashes): accepted, warned
    // about, and no line of it is printed even when the command fails.
    let (code, out, err) = run(
        bin().to_str().context("path")?,
        &[
            "run",
            "--private-key-pem",
            &pem,
            "--client-id",
            "c1",
            "--connect-url",
            "wss://127.0.0.1:1/connect",
            "--data-dir",
            &d,
        ],
        dir.path(),
        &[],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(err.contains("API_AUDIENCE is not set"), "{err}");
    assert!(
        err.contains("--private-key-pem was given on the command line")
            && err.contains("AUTH_SERVER_PRIVATE_KEY_PEM_PATH"),
        "{err}"
    );
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !err.contains(line) && !out.contains(line),
            "key line echoed"
        );
    }
    // Every secret of the gateway has a file form: --proxy-auth-file and
    // --admin-key-file work, and a flag gets the warning.
    let auth = dir.path().join("auth");
    std::fs::write(&auth, "bad-without-colon\n")?;
    let (code, _, err) = run(
        bin().to_str().context("path")?,
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--proxy-auth-file",
            &auth.display().to_string(),
        ],
        dir.path(),
        &[],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(err.contains("USER:PASSWORD"), "{err}");
    assert!(!err.contains("bad-without-colon"), "{err}");
    let (code, _, err) = run(
        bin().to_str().context("path")?,
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--proxy-auth",
            "also-bad-no-colon",
        ],
        dir.path(),
        &[],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--proxy-auth was given on the command line"),
        "{err}"
    );
    assert!(!err.contains("also-bad-no-colon"), "{err}");
    Ok(())
}

/// Opens a TCP connection from `from`; true if the gateway keeps it open
/// (idle) for half a second, false if it closes it at once.
async fn stays_open(
    from: std::net::IpAddr,
    to: SocketAddr,
) -> Result<(bool, tokio::net::TcpStream)> {
    use tokio::io::AsyncReadExt as _;
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let mut s = sock.connect(to).await?;
    let mut b = [0u8; 1];
    let open = tokio::time::timeout(std::time::Duration::from_millis(500), s.read(&mut b))
        .await
        .is_err();
    Ok((open, s))
}

#[tokio::test]
async fn idle_connection_floods_stop_at_the_caps() -> Result<()> {
    let mut st = setup(
        &bin(),
        &[
            "--edge-https-listen",
            "127.0.0.1:0",
            "--edge-max-connections",
            "30",
            "--max-connections-per-address",
            "10",
            "--public-domain",
            "tunnel.test",
        ],
        &[],
        true,
    )
    .await?;
    let edge = st.edge().context("edge")?;
    // Probed all at once: an idle TLS connection is closed after 10 s.
    // One address: 10 stay open, the rest are closed at once.
    let mut held = Vec::new();
    let mine = futures_util::future::join_all((0..15).map(|_| stays_open(ME, edge))).await;
    let mut open = 0;
    for r in mine {
        let (o, s) = r?;
        open += usize::from(o);
        held.push(s);
    }
    assert_eq!(open, 10, "per-address cap");
    // Other addresses fill the listener's cap of 30.
    let others = futures_util::future::join_all((0..25u8).map(|i| {
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 1 + i / 8));
        stays_open(from, edge)
    }))
    .await;
    let mut open = 0;
    for r in others {
        let (o, s) = r?;
        open += usize::from(o);
        held.push(s);
    }
    assert_eq!(open, 20, "listener cap");
    st.gateway
        .proc
        .wait_event_after(0, gw_ev::CONNECTIONS_CAPPED, |v| {
            v["listener"] == "edge https" && v["refused_total"].as_u64().is_some_and(|n| n >= 1)
        })
        .await?;
    // The tunnel endpoint has caps of its own: the admin API still works.
    let agents = st.ok(&["list-agents"]).await?;
    assert!(agents.contains("edge"), "{agents}");
    // Closing them frees the places.
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (o, _s) = stays_open(ME, edge).await?;
    assert!(o, "a place is free again");
    Ok(())
}

#[tokio::test]
async fn the_agents_own_host_is_refused_unless_allowed() -> Result<()> {
    burrow_e2e::require!("curl");
    let (_svc, port, _root) = hijacker().await?;
    let st = setup(
        &bin(),
        &[],
        &[
            "--map-host",
            "self.test=127.0.0.1",
            "--map-host",
            "zero.test=0.0.0.0",
            "--no-loopback",
        ],
        true,
    )
    .await?;
    st.add_fqdn("self.test", &[]).await?;
    st.add_fqdn("zero.test", &[]).await?;
    for host in ["self.test", "zero.test"] {
        let url = format!("http://{host}:{port}/");
        let (_, out, err) = run(
            "curl",
            &[
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-x",
                &st.proxy_url(),
                &url,
            ],
            Path::new("/"),
            &[],
        )
        .await?;
        assert!(!out.contains("hijacker"), "{host}: {out} {err}");
        let code = out.rsplit('\n').next().unwrap_or_default();
        assert!(code == "403" || code == "502", "{host}: {out}");
    }
    Ok(())
}

#[tokio::test]
async fn ed25519_keys_are_written_so_openssl_3_reads_them() -> Result<()> {
    burrow_e2e::require!("openssl");
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let b = bin();
    let b = b.to_str().context("path")?;
    let (code, _, err) = run(
        b,
        &[
            "keygen",
            "--agent-name",
            "e",
            "--key-type",
            "ed25519",
            "--out-dir",
            &d,
        ],
        dir.path(),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let (code, public, err) = run(
        "openssl",
        &["pkey", "-in", "ConnectionAgent-e.pem", "-pubout"],
        dir.path(),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "openssl cannot read the key: {err}");
    assert_eq!(
        public,
        std::fs::read_to_string(dir.path().join("ConnectionAgent-e.pem.pub"))?
    );
    Ok(())
}

#[tokio::test]
async fn an_ip_literal_as_sni_is_not_a_warning() -> Result<()> {
    burrow_e2e::require!("openssl");
    let st = setup(&bin(), &[], &[], false).await?;
    let addr = tunnel_addr(&st)?.to_string();
    let mark = st.gateway.proc.mark();
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-servername", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await??;
    // The admin API answers after it: the log is up to date.
    st.ok(&["list-agents"]).await?;
    let out = st.gateway.proc.output();
    let tail: Vec<&str> = out.lines().skip(mark).collect();
    assert!(
        !tail.iter().any(|l| l.contains("Illegal SNI")),
        "{}",
        tail.join("\n")
    );
    Ok(())
}

/// A service that answers with the Host it was sent.
const HOST_ECHO: &str = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hosts=" + "|".join(self.headers.get_all("Host") or [])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

#[tokio::test]
async fn an_absolute_uri_sets_the_host_and_one_host_only() -> Result<()> {
    let (_svc, port) = burrow_e2e::servers::python_server(HOST_ECHO, &[]).await?;
    let st = setup(&bin(), &[], &["--map-host", "svc.test=127.0.0.1"], true).await?;
    st.add_fqdn("svc.test", &[]).await?;
    let req = format!(
        "GET http://svc.test:{port}/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    );
    let out = http_from(ME, st.proxy(), req).await?;
    assert!(out.contains(&format!("hosts=svc.test:{port}")), "{out}");
    assert!(!out.contains("evil"), "{out}");
    let two = format!(
        "GET http://svc.test:{port}/ HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"
    );
    let out = http_from(ME, st.proxy(), two).await?;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    Ok(())
}

#[tokio::test]
async fn a_rule_reaches_only_the_ports_it_names() -> Result<()> {
    burrow_e2e::require!("curl");
    let (_open_svc, open_port, _r1) = hijacker().await?;
    let (_other_svc, other_port, _r2) = hijacker().await?;
    let st = setup(&bin(), &[], &["--map-host", "svc.test=127.0.0.1"], true).await?;
    let ports = format!("{open_port},22");
    st.add_fqdn("svc.test", &["--ports", &ports]).await?;
    let list = st.ok(&["list-fqdn"]).await?;
    let mut want = [open_port, 22];
    want.sort_unstable();
    let shown = format!("{},{}", want[0], want[1]);
    assert!(list.contains("PORTS") && list.contains(&shown), "{list}");
    let rules_before = st.api_get("/fqdn-rules").await?;
    assert_eq!(rules_before[0]["ports"], shown.as_str(), "{rules_before}");

    let proxy = st.proxy_url();
    let socks = st.proxy().to_string();
    let open_url = format!("http://svc.test:{open_port}/");
    let other_url = format!("http://svc.test:{other_port}/");
    // The named port: served, by forwarding and by CONNECT.
    let (_, body, status) = curl_via(&["-x", &proxy], &open_url).await?;
    assert_eq!((status.as_str(), body.trim()), ("200", "hijacker"));
    let (_, body, status) = curl_via(&["-p", "-x", &proxy], &open_url).await?;
    assert_eq!((status.as_str(), body.trim()), ("200", "hijacker"));
    // Another port of the same host: refused at the gateway, saying why,
    // by forwarding, CONNECT and SOCKS5 alike.
    let (_, body, status) = curl_via(&["-x", &proxy], &other_url).await?;
    assert_eq!(status, "403", "{body}");
    assert!(
        body.contains(&format!("allows ports {shown}, not {other_port}"))
            && !body.contains("hijacker"),
        "{body}"
    );
    let (code, body, _) = curl_via(&["-p", "-x", &proxy], &other_url).await?;
    assert!(
        code != 0 && !body.contains("hijacker"),
        "CONNECT: {code} {body}"
    );
    let (code, body, _) = curl_via(&["--socks5-hostname", &socks], &other_url).await?;
    assert!(
        code != 0 && !body.contains("hijacker"),
        "SOCKS5: {code} {body}"
    );
    // Nothing else changed: the rule is as it was, other clients still served.
    assert_eq!(st.api_get("/fqdn-rules").await?, rules_before);
    let (_, body, _) = curl_via(&["--socks5-hostname", &socks], &open_url).await?;
    assert_eq!(body.trim(), "hijacker");

    // Malformed port lists are refused by the CLI and by the API.
    let add = ["add-fqdn", "--agent-name", "edge", "--fqdn", "svc.test"];
    for (bad, why) in [
        (&["--ports", "0"][..], "port"),
        (&["--ports", "22-"], "port"),
        (&["--ports", "http"], "port"),
        (&["--ports", "100-10"], "port"),
        (&["--ports", ""], "port"),
        (
            &["--ports", "25", "--check-port", "443"],
            "--check-port 443",
        ),
    ] {
        let (code, _, err) = st.cli(&[&add[..], bad].concat()).await?;
        assert!(code != 0 && err.contains(why), "{bad:?}: {code} {err}");
    }
    let api = st.api_url("/fqdn-rules/svc.test");
    let auth = st.auth_header();
    for body in [
        r#"{"agent_name":"edge","ports":"70000"}"#,
        r#"{"agent_name":"edge","ports":"25","check_port":443}"#,
        r#"{"agent_name":"edge","ports":7}"#,
    ] {
        let via = [
            "-k",
            "-X",
            "PUT",
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "-d",
            body,
        ];
        let (_, out, status) = curl_via(&via, &api).await?;
        assert_eq!(status, "400", "{body}: {out}");
    }
    assert_eq!(st.api_get("/fqdn-rules").await?, rules_before);

    // Updated without --ports: any port again.
    st.add_fqdn("svc.test", &[]).await?;
    let (_, body, status) = curl_via(&["-x", &proxy], &other_url).await?;
    assert_eq!((status.as_str(), body.trim()), ("200", "hijacker"));
    assert!(st.ok(&["list-fqdn"]).await?.contains("any"));
    Ok(())
}

#[tokio::test]
async fn a_registration_whose_rule_is_taken_leaves_nothing_behind() -> Result<()> {
    burrow_e2e::require!("curl");
    let st = setup(&bin(), &[], &[], false).await?;
    st.add_fqdn("taken.test", &[]).await?;
    let agents_before = st.api_get("/agents").await?;
    let rules_before = st.api_get("/fqdn-rules").await?;
    let out_dir = st.dir.path().join("other");
    let out = out_dir.display().to_string();
    // keygen makes a missing --out-dir, readable by its user only.
    st.ok(&["keygen", "--agent-name", "other", "--out-dir", &out])
        .await?;
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&out_dir)?.permissions().mode() & 0o777,
        0o700
    );
    let key = out_dir.join("ConnectionAgent-other.pem.pub");
    let key = key.display().to_string();
    let register = [
        "register",
        "--agent-name",
        "other",
        "--key-name",
        "k1",
        "--public-key",
        &key,
        "--fqdn",
        "fresh.test",
    ];
    let (code, _, err) = st
        .cli(&[&register[..], &["--fqdn", "taken.test"]].concat())
        .await?;
    assert!(code != 0 && err.contains("taken.test"), "{code} {err}");
    assert_eq!(st.api_get("/agents").await?, agents_before);
    assert_eq!(st.api_get("/fqdn-rules").await?, rules_before);
    // The same registration without the taken rule goes through whole.
    st.ok(&register).await?;
    let rules = st.api_get("/fqdn-rules").await?;
    assert!(
        rules.as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["fqdn"] == "fresh.test" && r["agent_name"] == "other")),
        "{rules}"
    );
    Ok(())
}
