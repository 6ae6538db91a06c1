//! Burrow's own HTTP edge end to end: routes published with the CLI,
//! visitors with curl (HTTP/1.1 and HTTP/2) and a WebSocket client, real
//! services behind an agent, all on loopback.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burrow_e2e::registered::{Setup, run, setup};
use burrow_e2e::servers::{free_port, web_service as service};
use burrow_gateway::event as gw_ev;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

const EDGE: [&str; 6] = [
    "--edge-https-listen",
    "127.0.0.1:0",
    "--edge-http-listen",
    "127.0.0.1:0",
    "--public-domain",
    "tunnel.test",
];

/// SHA-256 (hex) of what the service's `/big?n=N` sends.
fn big_sha256(n: usize) -> String {
    let chunk: Vec<u8> = (0..=255u8).collect::<Vec<_>>().repeat(256);
    let mut h = Sha256::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        h.update(&chunk[..k]);
        left -= k;
    }
    hex::encode(h.finalize())
}

/// curl against the edge, resolving `host` to it.
async fn curl(
    edge: SocketAddr,
    host: &str,
    path: &str,
    extra: &[&str],
) -> Result<(i32, String, String)> {
    let url = format!("https://{host}:{}{path}", edge.port());
    let resolve = format!("{host}:{}:127.0.0.1", edge.port());
    let mut args = vec!["-sS", "-k", "--resolve", resolve.as_str()];
    args.extend_from_slice(extra);
    args.push(&url);
    run("curl", &args, Path::new("/"), &[]).await
}

#[tokio::test]
async fn routes_publish_services_by_host_name_over_http1_and_http2() -> Result<()> {
    burrow_e2e::require!("curl");
    let mut st = setup(&bin(), &EDGE, &[], true).await?;
    let edge = st.edge().context("edge address")?;
    let (_a, a_port) = service("alpha").await?;
    let (_b, b_port) = service("beta").await?;
    st.add_route("alpha.tunnel.test", a_port).await?;
    st.add_route("beta.tunnel.test", b_port).await?;

    // Host routing, with the forwarded headers the services see.
    let (code, out, err) = curl(edge, "alpha.tunnel.test", "/x?y=1", &[]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("service=alpha path=/x?y=1 host=alpha.tunnel.test xff=127.0.0.1 proto=https fhost=alpha.tunnel.test"), "{out}");
    let (_, out, _) = curl(edge, "beta.tunnel.test", "/", &[]).await?;
    assert!(out.starts_with("service=beta"), "{out}");
    // HTTP/2 to the visitor.
    let (code, out, err) = curl(
        edge,
        "alpha.tunnel.test",
        "/",
        &["--http2", "-w", "\nversion=%{http_version}"],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("service=alpha") && out.trim_end().ends_with("version=2"),
        "{out}"
    );
    // Keep-alive end to end: two requests on one visitor connection use
    // one connection to the service.
    let url2 = format!("https://alpha.tunnel.test:{}/second", edge.port());
    let (code, out, err) = curl(edge, "alpha.tunnel.test", "/first", &[&url2]).await?;
    assert_eq!(code, 0, "{err}");
    let peers = burrow_e2e::service_peers(&out);
    assert_eq!(peers.len(), 2, "{out}");
    assert_eq!(peers[0], peers[1], "one backend connection: {out}");
    // A streamed download, checked end to end.
    let n = 20 * 1024 * 1024;
    let (code, _, err) = curl(
        edge,
        "alpha.tunnel.test",
        &format!("/big?n={n}"),
        &["-o", &st.dir.path().join("big").display().to_string()],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read(st.dir.path().join("big"))?;
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        big_sha256(n),
        "{} bytes",
        got.len()
    );

    // Audit records: path without the query, status, bytes each way.
    let r = st
        .traffic_until("kind=http&host=alpha.tunnel.test", |r| r["path"] == "/x")
        .await?;
    assert_eq!(
        (r["method"].as_str(), r["status"].as_i64()),
        (Some("GET"), Some(200)),
        "{r}"
    );
    assert_eq!(r["agent_name"], "edge");
    assert!(
        r["client"]
            .as_str()
            .unwrap_or_default()
            .starts_with("127.0.0.1:"),
        "{r}"
    );
    assert!(
        r["bytes_in"].as_i64() > Some(0) && r["bytes_out"].as_i64() > Some(50),
        "{r}"
    );
    let big = st
        .traffic_until("kind=http&host=alpha.tunnel.test", |r| r["path"] == "/big")
        .await?;
    assert!(big["bytes_out"].as_i64() > Some(n as i64), "{big}");
    // An unknown host: the landing page.
    let (_, out, _) = curl(
        edge,
        "nobody.tunnel.test",
        "/",
        &["-w", "\nstatus=%{http_code}"],
    )
    .await?;
    assert!(
        out.contains("Nothing here") && out.trim_end().ends_with("status=404"),
        "{out}"
    );
    // The HTTP port redirects to HTTPS.
    let http = addr_field_of(&mut st, gw_ev::EDGE_HTTP_LISTENING).await?;
    let (code, out, err) = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            "Host: alpha.tunnel.test",
            &format!("http://{http}/p?q=1"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("301 https://alpha.tunnel.test:{}/p?q=1", edge.port())
    );
    // Only names under the public domain; bad URLs refused (exit 2).
    let (code, _, err) = st
        .cli(&[
            "add-route",
            "--hostname",
            "app.example.com",
            "--agent-name",
            "edge",
            "--target",
            "http://127.0.0.1:1",
        ])
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("BURROW_PUBLIC_DOMAIN"), "{err}");
    let (code, _, err) = st
        .cli(&[
            "add-route",
            "--hostname",
            "x.tunnel.test",
            "--agent-name",
            "edge",
            "--target",
            "ftp://x",
        ])
        .await?;
    assert_eq!(code, 2, "{err}");
    let list = st.ok(&["list-routes"]).await?;
    assert!(
        list.lines().any(|l| l.starts_with("alpha.tunnel.test")
            && l.contains(&format!("http://127.0.0.1:{a_port}"))),
        "{list}"
    );

    // A route removed: the landing page at once.
    st.ok(&["remove-route", "--hostname", "beta.tunnel.test"])
        .await?;
    let (_, out, _) = curl(
        edge,
        "beta.tunnel.test",
        "/",
        &["-w", "\nstatus=%{http_code}"],
    )
    .await?;
    assert!(out.trim_end().ends_with("status=404"), "{out}");
    // The agent offline: a page saying the tunnel is down.
    st.kill_agent().await?;
    let (_, out, _) = curl(
        edge,
        "alpha.tunnel.test",
        "/",
        &["-w", "\nstatus=%{http_code}"],
    )
    .await?;
    assert!(
        out.contains("Tunnel down") && out.trim_end().ends_with("status=502"),
        "{out}"
    );
    // Both refusals are in the audit trail, with why.
    let r = st
        .traffic_until("kind=http&status=404", |r| r["host"] == "beta.tunnel.test")
        .await?;
    assert_eq!(r["error"], "no route for beta.tunnel.test", "{r}");
    let r = st
        .traffic_until("kind=http&status=502", |r| r["host"] == "alpha.tunnel.test")
        .await?;
    assert_eq!(r["agent_name"], "edge", "{r}");
    assert_eq!(r["error"], "its tunnel agent is offline", "{r}");
    Ok(())
}

async fn addr_field_of(st: &mut Setup, event: &str) -> Result<SocketAddr> {
    burrow_e2e::addr_field(&st.gateway.proc.wait_event(event).await?, "addr")
}

#[tokio::test]
async fn websocket_upgrades_pass_through_the_edge() -> Result<()> {
    let st = setup(&bin(), &EDGE, &[], true).await?;
    let edge = st.edge().context("edge address")?;
    // A WebSocket echo service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    st.add_route("ws.tunnel.test", port).await?;
    // TLS to the edge (its self-signed certificate), then the upgrade.
    let tls = burrow_transport::tls::AppTls::new(
        std::sync::Arc::new(rustls::RootCertStore::empty()),
        Vec::new(),
    )?;
    let tcp = tokio::net::TcpStream::connect(edge).await?;
    let name = rustls::pki_types::ServerName::try_from("ws.tunnel.test")?;
    let stream = tokio_rustls::TlsConnector::from(tls.insecure)
        .connect(name, tcp)
        .await?;
    let url = format!("wss://ws.tunnel.test:{}/chat", edge.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, stream).await?;
    assert_eq!(resp.status(), 101);
    // Messages for 30 s over the one upgraded connection: no idle timer
    // or buffering in the edge, the tunnel or the agent cuts it.
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(30) {
        let msg = format!("message {n}");
        ws.send(Message::text(msg.clone())).await?;
        let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .context("closed")??;
        assert_eq!(back.into_text()?.as_str(), msg);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(n > 100, "{n} messages");
    ws.close(None).await?;
    Ok(())
}

/// A real Caddy with its Admin API, one server on loopback (no automatic
/// HTTPS), an operator route Burrow must not touch, and a 404 fallback.
struct Caddy {
    child: Option<tokio::process::Child>,
    config: PathBuf,
    home: PathBuf,
    admin: u16,
    http: u16,
}

impl Caddy {
    async fn start(dir: &Path) -> Result<Caddy> {
        let (admin, http) = (free_port()?, free_port()?);
        let config = dir.join("caddy.json");
        let cfg = serde_json::json!({
            "admin": { "listen": format!("127.0.0.1:{admin}") },
            "apps": { "http": { "servers": { "srv0": {
                "listen": [format!("127.0.0.1:{http}")],
                "automatic_https": { "disable": true },
                "routes": [
                    { "@id": "operator-route", "match": [{ "host": ["operator.test"] }],
                      "handle": [{ "handler": "static_response", "status_code": 200, "body": "operator route" }],
                      "terminal": true },
                    { "handle": [{ "handler": "static_response", "status_code": 404, "body": "caddy: no route" }] }
                ]
            }}}}
        });
        std::fs::write(&config, cfg.to_string())?;
        let mut c = Caddy {
            child: None,
            config,
            home: dir.to_path_buf(),
            admin,
            http,
        };
        c.restart().await?;
        Ok(c)
    }

    /// (Re)starts Caddy with its original configuration (what a restart of
    /// the Caddy service does): routes added through the API are gone.
    async fn restart(&mut self) -> Result<()> {
        if let Some(mut old) = self.child.take() {
            old.kill().await?;
        }
        let child = tokio::process::Command::new("caddy")
            .args(["run", "--config", &self.config.display().to_string()])
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("XDG_DATA_HOME", &self.home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("caddy (Debian package caddy) must be installed")?;
        self.child = Some(child);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.http))
            .await
            .is_err()
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "caddy did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// A request through Caddy for `host`: (status, body).
    async fn get(&self, host: &str) -> Result<(u16, String)> {
        let (_, out, _) = run(
            "curl",
            &[
                "-sS",
                "-H",
                &format!("Host: {host}"),
                "-w",
                "\n%{http_code}",
                &format!("http://127.0.0.1:{}/", self.http),
            ],
            Path::new("/"),
            &[],
        )
        .await?;
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// Waits (bounded) until `host` answers `status` through Caddy.
    async fn until(&self, host: &str, status: u16) -> Result<(Duration, String)> {
        let started = Instant::now();
        loop {
            let (got, body) = self.get(host).await?;
            if got == status {
                return Ok((started.elapsed(), body));
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "{host} still answers {got} through Caddy, not {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A real Caddy in `dir`, and a gateway behind it (`--no-tls`) that
/// manages its routes through Caddy's Admin API, with its agent.
async fn caddy_and_gateway(dir: &Path, extra: &[&str]) -> Result<(Caddy, Setup)> {
    let caddy = Caddy::start(dir).await?;
    let admin_url = format!("http://127.0.0.1:{}", caddy.admin);
    let mut flags = vec!["--no-tls", "--caddy-admin-url", &admin_url];
    flags.extend_from_slice(extra);
    let st = setup(&bin(), &flags, &[], true).await?;
    Ok((caddy, st))
}

#[tokio::test]
async fn caddy_mode_keeps_caddy_routes_in_step() -> Result<()> {
    burrow_e2e::require!("caddy");
    let dir = tempfile::tempdir()?;
    let (mut caddy, mut st) =
        caddy_and_gateway(dir.path(), &["--public-domain", "tunnel.test"]).await?;
    let (_svc, port) = service("alpha").await?;
    assert_eq!(caddy.get("alpha.tunnel.test").await?.0, 404);
    st.add_route("alpha.tunnel.test", port).await?;
    let (took, body) = caddy.until("alpha.tunnel.test", 200).await?;
    eprintln!("route live in Caddy after {took:?}");
    assert!(
        body.starts_with("service=alpha") && body.contains("host=alpha.tunnel.test"),
        "{body}"
    );
    // The operator's own route is untouched.
    assert_eq!(
        caddy.get("operator.test").await?,
        (200, "operator route".into())
    );

    // Caddy restarted with its original configuration: the route returns.
    caddy.restart().await?;
    let (took, _) = caddy.until("alpha.tunnel.test", 200).await?;
    eprintln!("route re-applied after a Caddy restart in {took:?}");

    // The agent offline, default: the route stays; the gateway answers 502.
    st.kill_agent().await?;
    let (code, body) = caddy.get("alpha.tunnel.test").await?;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("Tunnel down"), "{body}");

    // Removed: Caddy answers its own 404, the operator's route still works.
    st.ok(&["remove-route", "--hostname", "alpha.tunnel.test"])
        .await?;
    let (_, body) = caddy.until("alpha.tunnel.test", 404).await?;
    assert_eq!(body, "caddy: no route");
    assert_eq!(
        caddy.get("operator.test").await?,
        (200, "operator route".into())
    );
    Ok(())
}

#[tokio::test]
async fn caddy_routes_follow_their_agent_when_asked_to() -> Result<()> {
    burrow_e2e::require!("caddy");
    let dir = tempfile::tempdir()?;
    let (caddy, mut st) =
        caddy_and_gateway(dir.path(), &["--remove-routes-on-tunnel-unavailable"]).await?;
    let (_svc, port) = service("alpha").await?;
    st.add_route("alpha.example.test", port).await?;
    caddy.until("alpha.example.test", 200).await?;
    // Agent gone: the route is withdrawn from Caddy.
    st.kill_agent().await?;
    let (took, _) = caddy.until("alpha.example.test", 404).await?;
    eprintln!("route withdrawn {took:?} after the agent left");
    // Agent back: the route is restored.
    let env: Vec<(String, String)> = std::fs::read_to_string(st.dir.path().join("agent.env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    anyhow::ensure!(!env.is_empty(), "the setup keeps the agent's environment");
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _again = burrow_e2e::Proc::spawn("agent-2", &bin(), &["run".to_owned()], &env_ref)?;
    let (took, body) = caddy.until("alpha.example.test", 200).await?;
    eprintln!("route restored {took:?} after the agent returned");
    assert!(body.starts_with("service=alpha"), "{body}");
    Ok(())
}

#[tokio::test]
async fn the_traffic_audit_is_bounded_by_count() -> Result<()> {
    burrow_e2e::require!("curl");
    let mut flags = EDGE.to_vec();
    flags.extend(["--audit-max-records", "3"]);
    let st = setup(&bin(), &flags, &[], true).await?;
    let edge = st.edge().context("edge address")?;
    let (_a, a_port) = service("alpha").await?;
    st.add_route("alpha.tunnel.test", a_port).await?;
    for i in 0..8 {
        let (code, _, err) = curl(edge, "alpha.tunnel.test", &format!("/n{i}"), &[]).await?;
        assert_eq!(code, 0, "{err}");
    }
    // The newest is there; no more than 3 are kept.
    st.traffic_until("kind=http", |r| r["path"] == "/n7")
        .await?;
    let all = st.api_get("/traffic?limit=100").await?;
    let n = all["records"].as_array().map_or(0, Vec::len);
    assert!((1..=3).contains(&n), "{all}");
    assert_eq!(all["dropped"], 0);
    // Deep pages are refused with the way round them.
    let deep = st.api_get("/traffic?offset=100001").await?;
    let why = deep["error"].as_str().unwrap_or_default();
    assert!(why.contains("page further back with until"), "{deep}");
    // An unknown kind is refused, not answered with an empty page.
    let bad = st.api_get("/traffic?kind=bogus").await?;
    let why = bad["error"].as_str().unwrap_or_default();
    assert!(why.contains("unknown traffic kind"), "{bad}");
    Ok(())
}

/// A service that expects PROXY protocol v2 and answers with the source
/// address it was given.
async fn proxy_protocol_service() -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 16];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let reply = if head[..12]
                    == [
                        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                    ]
                    && head[12] == 0x21
                {
                    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
                    let mut addrs = vec![0u8; len];
                    if s.read_exact(&mut addrs).await.is_err() {
                        return;
                    }
                    if head[13] == 0x11 && len >= 12 {
                        let ip = std::net::Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
                        format!("src={ip}:{}", u16::from_be_bytes([addrs[8], addrs[9]]))
                    } else {
                        format!("family={:#x}", head[13])
                    }
                } else {
                    "no PROXY header".to_owned()
                };
                // Then the HTTP request, answered once.
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn proxy_protocol_v2_tells_the_service_the_visitors_address() -> Result<()> {
    burrow_e2e::require!("curl");
    let st = setup(&bin(), &EDGE, &[], true).await?;
    let edge = st.edge().context("edge address")?;
    let port = proxy_protocol_service().await?;
    st.ok(&[
        "add-route",
        "--hostname",
        "pp.tunnel.test",
        "--agent-name",
        "edge",
        "--target",
        &format!("http://127.0.0.1:{port}"),
        "--proxy-protocol",
    ])
    .await?;
    let (code, out, err) = curl(
        edge,
        "pp.tunnel.test",
        "/",
        &["--local-port", "47000-47999", "-w", " local=%{local_port}"],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let local = out
        .rsplit("local=")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(out.starts_with(&format!("src=127.0.0.1:{local} ")), "{out}");
    let list = st.ok(&["list-routes"]).await?;
    assert!(list.contains("proxy-protocol"), "{list}");
    Ok(())
}

#[tokio::test]
async fn an_agent_publishes_its_own_routes_under_the_public_domain() -> Result<()> {
    burrow_e2e::require!("curl");
    let (_svc, port) = service("own").await?;
    let own = format!("own.tunnel.test=http://127.0.0.1:{port}");
    let outside = format!("evil.example.com=http://127.0.0.1:{port}");
    let mut st = setup(&bin(), &EDGE, &["--route", &own, "--route", &outside], true).await?;
    let edge = st.edge().context("edge address")?;
    st.gateway
        .proc
        .wait_event_after(0, gw_ev::ROUTE_REFUSED, |v| {
            v["hostname"] == "evil.example.com"
        })
        .await?;
    st.gateway
        .proc
        .wait_event_after(0, gw_ev::ROUTE_PUBLISHED, |v| {
            v["hostname"] == "own.tunnel.test"
        })
        .await?;
    let (code, out, err) = curl(edge, "own.tunnel.test", "/", &[]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("service=own"), "{out}");
    let list = st.ok(&["list-routes"]).await?;
    assert!(
        list.contains("own.tunnel.test") && !list.contains("evil.example.com"),
        "{list}"
    );
    Ok(())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_200_mb_download_streams_with_flat_memory() -> Result<()> {
    burrow_e2e::require!("curl");
    let st = setup(&bin(), &EDGE, &[], true).await?;
    let edge = st.edge().context("edge address")?;
    let (_svc, port) = service("big").await?;
    st.add_route("big.tunnel.test", port).await?;
    let (gw, agent) = (
        st.gateway.proc.pid().context("gateway pid")?,
        st.agent
            .as_ref()
            .and_then(|a| a.pid())
            .context("agent pid")?,
    );
    let before = (rss_kib(gw), rss_kib(agent));
    let n: u64 = 200 * 1024 * 1024;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut peak = (0, 0);
        // Bounded: at most 60 s of samples.
        for _ in 0..6000 {
            peak = (peak.0.max(rss_kib(gw)), peak.1.max(rss_kib(agent)));
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    });
    let (code, out, err) = curl(
        edge,
        "big.tunnel.test",
        &format!("/big?n={n}"),
        &["-o", "/dev/null", "-w", "%{size_download}"],
    )
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().parse::<u64>().unwrap_or(0), n);
    eprintln!(
        "RSS KiB gateway {} -> peak {}, agent {} -> peak {}",
        before.0, peak.0, before.1, peak.1
    );
    // Flat: the body is never held whole (200 MB); a few windows at most.
    assert!(
        peak.0 < before.0 + 48 * 1024,
        "gateway grew from {} to {} KiB",
        before.0,
        peak.0
    );
    assert!(
        peak.1 < before.1 + 48 * 1024,
        "agent grew from {} to {} KiB",
        before.1,
        peak.1
    );
    let r = st
        .traffic_until("kind=http&host=big.tunnel.test", |r| r["path"] == "/big")
        .await?;
    assert!(r["bytes_out"].as_u64() > Some(n), "{r}");
    Ok(())
}

#[tokio::test]
async fn https_services_are_validated_unless_the_route_says_not_to() -> Result<()> {
    burrow_e2e::require!("openssl", "curl");
    let pre = tempfile::tempdir()?;
    let (_ca, cert, key) = burrow_e2e::ca_and_server_cert(pre.path(), &["nas.lan"]).await?;
    let st = setup(&bin(), &EDGE, &["--map-host", "nas.lan=127.0.0.1"], true).await?;
    let edge = st.edge().context("edge address")?;
    let site = st.dir.path().join("site");
    std::fs::create_dir_all(&site)?;
    std::fs::write(site.join("index.html"), "secure nas\n")?;
    let (_srv, port) = burrow_e2e::registered::static_server(&site, Some((&cert, &key))).await?;
    let target = format!("https://nas.lan:{port}");
    st.ok(&[
        "add-route",
        "--hostname",
        "nas.tunnel.test",
        "--agent-name",
        "edge",
        "--target",
        &target,
    ])
    .await?;
    // The agent does not know the private CA: refused, the page says so
    // (the service's fault, not the tunnel's: the agent is connected).
    let (_, out, _) = curl(
        edge,
        "nas.tunnel.test",
        "/",
        &["-w", "\nstatus=%{http_code}"],
    )
    .await?;
    assert!(
        out.contains("Service unavailable")
            && !out.contains("Tunnel down")
            && out.contains("the agent refused the internal service's TLS certificate")
            && out.trim_end().ends_with("status=502"),
        "{out}"
    );
    // The kind of failure only: the agent's words name internal hosts.
    assert!(!out.contains("nas.lan"), "{out}");
    // The operator's audit trail has them.
    let r = st
        .traffic_until("kind=http&status=502", |r| r["host"] == "nas.tunnel.test")
        .await?;
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the agent refused the internal service's TLS certificate: nas.lan"),
        "{r}"
    );
    // Marked to ignore validation errors: served.
    st.ok(&[
        "add-route",
        "--hostname",
        "nas.tunnel.test",
        "--agent-name",
        "edge",
        "--target",
        &target,
        "--ignore-certificate-validation-errors",
    ])
    .await?;
    let (code, out, err) = curl(edge, "nas.tunnel.test", "/", &[]).await?;
    assert_eq!((code, out.as_str()), (0, "secure nas\n"), "{err}");
    Ok(())
}

/// The agent's link through Caddy's reverse proxy, as when Caddy fronts
/// the gateway's endpoint: the WebSocket upgrade passes Caddy, and a route
/// carried over that link serves a large download intact.
#[tokio::test]
async fn an_agent_link_through_caddy_carries_a_route() -> Result<()> {
    burrow_e2e::require!("curl", "caddy");
    let dir = tempfile::tempdir()?;
    let caddy = Caddy::start(dir.path()).await?;
    let mut st = setup(&bin(), &["--no-tls"], &[], true).await?;
    let gw = st.env()[0]
        .1
        .trim_start_matches("ws://")
        .trim_end_matches("/connect")
        .to_owned();
    // Caddy proxies /connect to the gateway, ahead of its other routes.
    let route = serde_json::json!({
        "match": [{ "path": ["/connect"] }],
        "handle": [{ "handler": "reverse_proxy", "upstreams": [{ "dial": gw }] }]
    });
    let url = format!(
        "http://127.0.0.1:{}/config/apps/http/servers/srv0/routes/0",
        caddy.admin
    );
    let (code, _, err) = run(
        "curl",
        &[
            "-sSf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            &route.to_string(),
            &url,
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    anyhow::ensure!(code == 0, "adding the Caddy route: {err}");

    // The agent again, now dialling through Caddy.
    let env = std::fs::read_to_string(st.dir.path().join("agent.env"))?;
    st.kill_agent().await?;
    let via_caddy = format!("ws://127.0.0.1:{}/connect", caddy.http);
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = if k == "CONNECT_URL" {
                via_caddy.clone()
            } else {
                v.to_owned()
            };
            (k.to_owned(), v)
        })
        .collect();
    anyhow::ensure!(env.iter().any(|(k, _)| k == "CONNECT_URL"));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mark = st.gateway.proc.mark();
    let _agent = burrow_e2e::Proc::spawn("agent-via-caddy", &bin(), &["run".to_owned()], &env_ref)?;
    let up = st
        .gateway
        .proc
        .wait_event_after(mark, gw_ev::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    eprintln!("link through Caddy: {up}");

    let (_svc, port) = service("alpha").await?;
    st.add_route("alpha.example.test", port).await?;
    let n = 20_000_000usize;
    let (code, out, err) = run(
        "sh",
        &[
            "-c",
            &format!("curl -sSf -H 'Host: alpha.example.test' 'http://{gw}/big?n={n}' | sha256sum"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    anyhow::ensure!(code == 0, "download through the Caddy-carried link: {err}");
    assert_eq!(
        out.split_whitespace().next().unwrap_or_default(),
        big_sha256(n)
    );
    Ok(())
}
