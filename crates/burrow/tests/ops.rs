//! Production operations end to end: the probes (`/healthz`, `/ready`,
//! `burrow ready`) of the gateway and the agent, and their Prometheus
//! metrics, scraped by a real Prometheus and read back through its query
//! API. Everything on loopback.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_e2e::registered::{run, setup};
use burrow_e2e::servers::{free_port, web_service};
use burrow_e2e::until;
use burrow_e2e::{Proc, addr_field};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// GET `path` on a probe listener: (status, body).
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let (_, out, err) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            &format!("http://{addr}{path}"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    let (body, code) = out
        .rsplit_once('\n')
        .with_context(|| format!("curl said {out:?} {err}"))?;
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// The value of the first line of `text` that starts with `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `burrow ready` against `addr`: (exit code, stdout, stderr).
async fn burrow_ready(addr: SocketAddr) -> Result<(i32, String, String)> {
    let b = bin();
    run(
        b.to_str().context("binary path")?,
        &["ready"],
        Path::new("/"),
        &[("BURROW_HEALTH_LISTEN", &addr.to_string())],
    )
    .await
}

const PROMETHEUS_CONFIG: &str = "global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ['GATEWAY']
  - job_name: agent
    static_configs:
      - targets: ['AGENT']
";

/// A Prometheus scraping the gateway's and the agent's `/metrics`.
async fn prometheus(dir: &Path, gateway: SocketAddr, agent: SocketAddr) -> Result<(Proc, u16)> {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        PROMETHEUS_CONFIG
            .replace("GATEWAY", &gateway.to_string())
            .replace("AGENT", &agent.to_string()),
    )?;
    let port = free_port()?;
    let exe = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("prometheus"))
                .find(|f| f.is_file())
        })
        .context("prometheus is not on PATH")?;
    let p = Proc::spawn(
        "prometheus",
        &exe,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
    )?;
    Ok((p, port))
}

/// An instant query through Prometheus's HTTP API: the result vector.
async fn query(port: u16, q: &str) -> Result<Vec<serde_json::Value>> {
    let (code, out, err) = run(
        "curl",
        &[
            "-sSf",
            "-G",
            &format!("http://127.0.0.1:{port}/api/v1/query"),
            "--data-urlencode",
            &format!("query={q}"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    if code != 0 {
        // Not up yet: no answer, or 503 while its storage starts.
        return Ok(Vec::new());
    }
    let v: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("{out} {err}"))?;
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn sample(v: &serde_json::Value) -> f64 {
    v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn a_real_prometheus_reads_the_gateways_and_agents_metrics_and_the_probes_follow_the_links()
-> Result<()> {
    burrow_e2e::require!("curl", "prometheus");
    let mut st = setup(
        &bin(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--edge-https-listen",
            "127.0.0.1:0",
            "--public-domain",
            "tunnel.test",
        ],
        &[
            "--health-listen",
            "127.0.0.1:0",
            "--map-host",
            "svc.internal.test=127.0.0.1",
        ],
        true,
    )
    .await?;
    let gw_metrics = addr_field(
        &st.gateway
            .proc
            .wait_event(burrow_gateway::event::METRICS_LISTENING)
            .await?,
        "addr",
    )?;
    let agent = st.agent.as_mut().context("agent")?;
    let agent_probe = addr_field(
        &agent
            .wait_event(burrow_agent::event::HEALTH_LISTENING)
            .await?,
        "addr",
    )?;

    // Traffic of two kinds: visitor requests on a route, and egress.
    let (_svc, port) = web_service("alpha").await?;
    st.add_route("alpha.tunnel.test", port).await?;
    st.add_fqdn("svc.internal.test", &[]).await?;
    let edge = st.edge().context("edge")?;
    for _ in 0..3 {
        let (code, out, err) = run(
            "curl",
            &[
                "-sS",
                "-k",
                "--resolve",
                &format!("alpha.tunnel.test:{}:127.0.0.1", edge.port()),
                &format!("https://alpha.tunnel.test:{}/", edge.port()),
            ],
            Path::new("/"),
            &[],
        )
        .await?;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("service=alpha"), "{out}");
    }
    let (code, out, err) = run(
        "curl",
        &[
            "-sS",
            "-x",
            &st.proxy_url(),
            &format!("http://svc.internal.test:{port}/egress"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("service=alpha path=/egress"), "{out}");
    // A refused client assertion at the token endpoint.
    let (_, out, _) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-d",
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=not.a.jwt",
            &format!("https://{}/oauth2/token", st.gateway.addr),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert!(out.contains("error"), "{out}");

    // The gateway's own text.
    let (code, text) = get(gw_metrics, "/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        text.contains(&format!(
            "burrow_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert_eq!(value(&text, "burrow_links "), Some(2.0), "{text}");
    assert_eq!(value(&text, "burrow_agents "), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "burrow_streams_opened_total{kind=\"http\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "burrow_streams_opened_total{kind=\"egress\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "burrow_streams_active{kind=\"egress\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "burrow_http_request_duration_seconds_count{status=\"2xx\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "burrow_agent_bytes_total{agent=\"edge\",direction=\"out\"}"
        )
        .is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "burrow_auth_failures_total{check=\"token\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("127.0.0.1") && !text.contains("alpha.tunnel.test"),
        "no per-visitor or per-host labels: {text}"
    );
    // Not on the public tunnel port.
    let (_, out, _) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://{}/metrics", st.gateway.addr),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_eq!(out, "404");

    // The agent's.
    let (code, text) = get(agent_probe, "/metrics").await?;
    assert_eq!(code, 200);
    assert_eq!(
        value(&text, "burrow_agent_links{state=\"connected\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "burrow_agent_streams_opened_total{kind=\"egress\"}"),
        Some(4.0), // one per visitor connection (curl runs three) and the proxy's
        "{text}"
    );

    // Both through a real Prometheus.
    let (mut prom, prom_port) = prometheus(st.dir.path(), gw_metrics, agent_probe).await?;
    until(
        Duration::from_secs(60),
        "Prometheus scraped both",
        || async {
            let up = query(prom_port, "up").await?;
            Ok(up.len() == 2 && up.iter().all(|v| sample(v) == 1.0))
        },
    )
    .await
    .with_context(|| prom.output())?;
    until(Duration::from_secs(20), "series read back", || async {
        let links = query(prom_port, "burrow_links").await?;
        let agent_links = query(prom_port, "burrow_agent_links{state=\"connected\"}").await?;
        let http = query(prom_port, "burrow_streams_opened_total{kind=\"http\"}").await?;
        let info = query(prom_port, "burrow_build_info").await?;
        Ok(links.first().map(sample) == Some(2.0)
            && agent_links.first().map(sample) == Some(2.0)
            && http.first().map(sample) == Some(3.0)
            && info.len() == 2
            && info
                .iter()
                .all(|v| v["metric"]["version"] == env!("CARGO_PKG_VERSION")))
    })
    .await?;
    let hist = query(
        prom_port,
        "sum by (le) (burrow_http_request_duration_seconds_bucket{le=\"+Inf\"})",
    )
    .await?;
    assert_eq!(hist.first().map(sample), Some(3.0), "{hist:?}");

    // Readiness follows the links: ready now...
    let (code, out, err) = burrow_ready(agent_probe).await?;
    assert_eq!((code, out.trim()), (0, "ready"), "{err}");
    assert_eq!(get(gw_metrics, "/ready").await?, (200, "ready\n".into()));
    // ...and not once the gateway is gone, which Prometheus sees too.
    st.gateway.proc.kill().await;
    until(
        Duration::from_secs(20),
        "agent not ready without a gateway",
        || async { Ok(burrow_ready(agent_probe).await?.0 == 1) },
    )
    .await?;
    let (_, _, err) = burrow_ready(agent_probe).await?;
    assert!(
        err.contains("503") && err.contains("no link to the gateway is up"),
        "{err}"
    );
    // Alive all the same.
    assert_eq!(get(agent_probe, "/healthz").await?.0, 200);
    until(
        Duration::from_secs(20),
        "Prometheus sees the gateway down",
        || async {
            let up = query(prom_port, "up{job=\"gateway\"}").await?;
            let links = query(prom_port, "burrow_agent_links{state=\"connected\"}").await?;
            Ok(up.first().map(sample) == Some(0.0) && links.first().map(sample) == Some(0.0))
        },
    )
    .await?;
    prom.kill().await;
    Ok(())
}

#[tokio::test]
async fn a_draining_gateway_is_alive_but_not_ready_and_burrow_ready_says_what_is_wrong()
-> Result<()> {
    burrow_e2e::require!("curl");
    let echo = burrow_e2e::servers::echo().await;
    let forward = format!("127.0.0.1:0=edge:{echo}");
    let mut st = setup(
        &bin(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--forward",
            &forward,
            "--drain-timeout-seconds",
            "30",
        ],
        &["--allow", &echo.to_string()],
        true,
    )
    .await?;
    let probe = addr_field(
        &st.gateway
            .proc
            .wait_event(burrow_gateway::event::METRICS_LISTENING)
            .await?,
        "addr",
    )?;
    // The tunnel port answers the probes too (Kubernetes may probe it).
    for path in ["/healthz", "/ready"] {
        let (_, out, _) = run(
            "curl",
            &["-sS", "-k", &format!("https://{}{path}", st.gateway.addr)],
            Path::new("/"),
            &[],
        )
        .await?;
        assert!(out == "ok\n" || out == "ready\n", "{path}: {out:?}");
    }
    assert_eq!(get(probe, "/ready").await?.0, 200);
    // A connection held open through the forward keeps the drain going.
    let mut held = tokio::net::TcpStream::connect(st.gateway.forward.context("forward")?).await?;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        held.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        held.read_exact(&mut b).await?;
        assert_eq!(&b, b"ping");
    }
    st.gateway.proc.term()?;
    until(
        Duration::from_secs(10),
        "not ready while draining",
        || async { Ok(get(probe, "/ready").await?.0 == 503) },
    )
    .await?;
    assert_eq!(
        get(probe, "/ready").await?,
        (503, "not ready: shutting down\n".into())
    );
    assert_eq!(get(probe, "/healthz").await?, (200, "ok\n".into()));
    let (code, _, err) = burrow_ready(probe).await?;
    assert_eq!(code, 1);
    assert!(err.contains("shutting down"), "{err}");
    // Nothing listening: said so, exit 1.
    drop(held);
    st.gateway.proc.wait_exit().await?;
    let (code, _, err) = burrow_ready(probe).await?;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach the probe listener") && err.contains(&probe.to_string()),
        "{err}"
    );
    // Without an address it says where to set one.
    let b = bin();
    let (code, _, err) = run(b.to_str().context("bin")?, &["ready"], Path::new("/"), &[]).await?;
    assert_ne!(code, 0);
    assert!(err.contains("BURROW_HEALTH_LISTEN"), "{err}");
    Ok(())
}

/// Holds one handshake slot: a raw TLS link (ALPN burrow/1) that says no
/// hello. Returns once the TLS handshake is done.
async fn silent_link(gateway: SocketAddr) -> Result<tokio::process::Child> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &gateway.to_string(),
            "-alpn",
            "burrow/1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(out).lines();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(l) = lines.next_line().await? {
            if l.contains("ALPN protocol: burrow/1") {
                return Ok(());
            }
        }
        bail!("openssl ended before the handshake")
    })
    .await
    .context("TLS handshake with the gateway")??;
    Ok(child)
}

#[tokio::test]
async fn at_the_handshake_cap_links_and_tokens_get_503_with_retry_after_and_agents_come_back()
-> Result<()> {
    burrow_e2e::require!("curl", "openssl");
    let mut st = setup(
        &bin(),
        &["--max-handshakes", "1", "--metrics-listen", "127.0.0.1:0"],
        &[],
        false,
    )
    .await?;
    let metrics = addr_field(
        &st.gateway
            .proc
            .wait_event(burrow_gateway::event::METRICS_LISTENING)
            .await?,
        "addr",
    )?;
    let gw = st.gateway.addr;
    let holder = silent_link(gw).await?;
    // A WebSocket upgrade and a token request are told to come back.
    let (_, head, err) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-i",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            &format!("https://{gw}/tunnel"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head} {err}");
    assert!(head.contains("retry-after: 2"), "{head}");
    let (_, head, _) = run(
        "curl",
        &[
            "-sS",
            "-k",
            "-i",
            "-d",
            "grant_type=client_credentials",
            &format!("https://{gw}/oauth2/token"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 503") && head.contains("retry-after: 2"),
        "{head}"
    );
    // The admin API is not a handshake: still served.
    st.ok(&["list-agents"]).await?;
    // An agent starting now is told to wait, and says so.
    let keys = st.gateway.cli.keygen(st.dir.path(), "late").await?;
    let printed = st
        .gateway
        .cli
        .register("late", "k1", &keys.public.display().to_string())
        .await?;
    let mut agent_env: Vec<(String, String)> = printed.into_iter().collect();
    agent_env.push((
        "GATEWAY_THUMBPRINT".into(),
        st.gateway.thumbprint.clone().context("TLS")?,
    ));
    agent_env.push((
        "AUTH_SERVER_PRIVATE_KEY_PEM_PATH".into(),
        keys.private.display().to_string(),
    ));
    agent_env.push(("RECONNECT_DELAY_SECONDS".into(), "0.2".into()));
    let env_ref: Vec<(&str, &str)> = agent_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &["run".into(), "--links".into(), "1".into()],
        &env_ref,
    )?;
    let refused = agent
        .wait_event(burrow_agent::event::GATEWAY_UNREACHABLE)
        .await?;
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(why.contains("503"), "{refused}");
    // Released: the agent's next try (after the wait it was given, not its
    // own 0.2 s) gets a link.
    drop(holder);
    let mark = st.gateway.proc.mark();
    st.gateway.wait_links(mark, "late", 1).await?;
    agent.wait_event(burrow_agent::event::LINK_UP).await?;
    let (_, text) = get(metrics, "/metrics").await?;
    assert!(
        value(&text, "burrow_link_refusals_total{reason=\"busy\"}").is_some_and(|n| n >= 3.0),
        "{text}"
    );
    Ok(())
}
