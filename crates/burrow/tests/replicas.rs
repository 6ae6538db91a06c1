//! Gateway replicas on one real PostgreSQL: three gateway processes, an
//! agent whose four links spread over all of them, and one with a single
//! link that the others reach by a hop; forward, egress and edge traffic
//! entering each replica; a replica killed with SIGKILL under load.
//! Everything on loopback.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burrow_e2e::cli::Cli;
use burrow_e2e::registered::run;
use burrow_e2e::servers::{echo_roundtrip, free_port, web_service};
use burrow_e2e::until;
use burrow_e2e::{Proc, addr_field, admin_key};
use burrow_gateway::event as gw_ev;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// A fresh PostgreSQL schema, dropped when the test ends.
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    async fn new() -> Result<Schema> {
        let base = burrow_e2e::needs::postgres_url();
        let name = format!("burrow_rep_{}", &admin_key()[3..15]);
        let s = Schema { base, name };
        s.psql(&format!("CREATE SCHEMA {}", s.name)).await?;
        Ok(s)
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }

    async fn psql(&self, sql: &str) -> Result<()> {
        let (code, _, err) = run("psql", &[&self.base, "-qc", sql], Path::new("/"), &[]).await?;
        if code != 0 {
            bail!("psql {sql}: {err}");
        }
        Ok(())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                self.base.as_str(),
                "-qc",
                &format!("DROP SCHEMA {} CASCADE", self.name),
            ])
            .output();
    }
}

struct Replica {
    proc: Proc,
    port: u16,
    /// `--forward` listeners: to the hashing peer (edge), the echo (edge),
    /// the echo (solo).
    forwards: Vec<SocketAddr>,
    proxy: SocketAddr,
    edge: SocketAddr,
}

struct Cluster {
    dir: tempfile::TempDir,
    schema: Schema,
    admin: String,
    cert: PathBuf,
    key: PathBuf,
    thumbprint: String,
    hash_peer: SocketAddr,
    echo: SocketAddr,
    replicas: Vec<Replica>,
    /// Added to every replica's environment.
    env: Vec<(String, String)>,
}

impl Cluster {
    async fn start(n: usize) -> Result<Cluster> {
        Cluster::start_with(n, &[]).await
    }

    /// [`Cluster::start`], each replica with `env` added.
    async fn start_with(n: usize, env: &[(&str, &str)]) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        // One certificate for every replica: agents pin it, replicas trust
        // each other by it.
        burrow_e2e::openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "gw-key.pem",
                "-out",
                "gw-cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=burrow-replicas",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
        )
        .await?;
        let (hash_peer, _) = burrow_e2e::servers::hashing_peer(64 << 20, 11).await;
        let mut c = Cluster {
            cert: dir.path().join("gw-cert.pem"),
            key: dir.path().join("gw-key.pem"),
            dir,
            schema: Schema::new().await?,
            admin: admin_key(),
            thumbprint: String::new(),
            hash_peer,
            echo: burrow_e2e::servers::echo().await,
            replicas: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for i in 0..n {
            let r = c.replica(i, free_port()?, free_port()?).await?;
            c.replicas.push(r);
        }
        Ok(c)
    }

    /// Starts replica `i` with its tunnel port and egress proxy port (kept
    /// across its restarts, as a load balancer's targets are).
    async fn replica(&mut self, i: usize, port: u16, proxy_port: u16) -> Result<Replica> {
        let url = self.schema.url();
        let forwards = format!(
            "127.0.0.1:0=edge:{},127.0.0.1:0=edge:{},127.0.0.1:0=solo:{}",
            self.hash_peer, self.echo, self.echo
        );
        let args: Vec<String> = [
            "gateway",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--replica-id",
            &format!("gw-{i}"),
            "--advertise-url",
            &format!("wss://127.0.0.1:{port}/connect"),
            "--edge-https-listen",
            "127.0.0.1:0",
            "--public-domain",
            "tunnel.test",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (cert, key) = (
            self.cert.display().to_string(),
            self.key.display().to_string(),
        );
        let proxy_listen = format!("127.0.0.1:{proxy_port}");
        let mut env: Vec<(&str, &str)> = vec![
            ("BURROW_PROXY_LISTEN", &proxy_listen),
            ("BURROW_DATABASE_URL", &url),
            ("BURROW_ADMIN_KEY", &self.admin),
            ("BURROW_TLS_CERT", &cert),
            ("BURROW_TLS_KEY", &key),
            ("BURROW_FORWARD", &forwards),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut proc = Proc::spawn(&format!("gw-{i}"), &bin(), &args, &env)?;
        let t = proc.wait_event(gw_ev::TUNNEL_LISTENING).await?;
        self.thumbprint = t["thumbprint"].as_str().unwrap_or_default().to_owned();
        let mut fw = Vec::new();
        for (agent, dest) in [
            ("edge", self.hash_peer),
            ("edge", self.echo),
            ("solo", self.echo),
        ] {
            let dest = dest.to_string();
            let v = proc
                .wait_event_after(0, gw_ev::FORWARD_LISTENING, |v| {
                    v["agent"] == agent && v["dest"] == dest.as_str()
                })
                .await?;
            fw.push(addr_field(&v, "listen")?);
        }
        let proxy = addr_field(&proc.wait_event(gw_ev::PROXY_LISTENING).await?, "addr")?;
        let edge = addr_field(&proc.wait_event(gw_ev::EDGE_HTTPS_LISTENING).await?, "addr")?;
        Ok(Replica {
            proc,
            port,
            forwards: fw,
            proxy,
            edge,
        })
    }

    /// Management commands against replica `i`.
    fn cli(&self, i: usize) -> Cli {
        Cli::new(
            &bin(),
            vec![
                (
                    "CONNECT_URL".into(),
                    format!("wss://127.0.0.1:{}/connect", self.replicas[i].port),
                ),
                ("BURROW_ADMIN_KEY".into(), self.admin.clone()),
                ("GATEWAY_THUMBPRINT".into(), self.thumbprint.clone()),
            ],
        )
    }

    /// Registers `name` and runs it with `links` links, dialing replica 0.
    async fn agent(&self, name: &str, links: u16) -> Result<Proc> {
        let cli = self.cli(0);
        let keys = cli.keygen(self.dir.path(), name).await?;
        let printed = cli
            .register(name, "k1", &keys.public.display().to_string())
            .await?;
        let mut env: Vec<(String, String)> = printed.into_iter().collect();
        env.extend(
            [
                ("GATEWAY_THUMBPRINT", self.thumbprint.as_str()),
                (
                    "AUTH_SERVER_PRIVATE_KEY_PEM_PATH",
                    keys.private.to_str().context("path")?,
                ),
                ("BURROW_ALLOW_LOOPBACK", "true"),
                ("BURROW_MAP_HOST", "svc.internal.test=127.0.0.1"),
                ("RECONNECT_DELAY_SECONDS", "0.2"),
                ("MAX_RECONNECT_DELAY_SECONDS", "1"),
                ("BURROW_HEALTH_LISTEN", "127.0.0.1:0"),
                ("BURROW_UI_LISTEN", "off"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.push((
            "BURROW_ALLOW".into(),
            format!("{},{}", self.echo, self.hash_peer),
        ));
        env.push(("BURROW_LINKS".into(), links.to_string()));
        let env_ref: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Proc::spawn(name, &bin(), &["run".to_owned()], &env_ref)
    }
}

/// Where the agent's probes and metrics listen.
async fn probe_of(agent: &mut Proc) -> Result<SocketAddr> {
    addr_field(
        &agent
            .wait_event(burrow_agent::event::HEALTH_LISTENING)
            .await?,
        "addr",
    )
}

/// The agent's connected links by replica, from its metrics.
async fn spread(probe: SocketAddr) -> Result<BTreeMap<String, u64>> {
    let text = burrow_ops::check(probe, "/metrics", Duration::from_secs(5))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("burrow_agent_replica_links{replica=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(r, n)| (r.to_owned(), n.trim().parse().unwrap_or(0)))
        .collect())
}

async fn curl(args: &[&str]) -> Result<(i32, String, String)> {
    run("curl", args, Path::new("/"), &[]).await
}

/// One request through replica `r`'s egress proxy.
async fn egress(r: &Replica, port: u16, path: &str) -> Result<String> {
    let (code, out, err) = curl(&[
        "-sS",
        "-x",
        &format!("http://{}", r.proxy),
        &format!("http://svc.internal.test:{port}{path}"),
    ])
    .await?;
    if code != 0 {
        bail!("curl exited {code}: {err}");
    }
    Ok(out)
}

/// One request through replica `r`'s edge.
async fn edge(r: &Replica, host: &str, path: &str) -> Result<String> {
    let (code, out, err) = curl(&[
        "-sS",
        "-k",
        "--resolve",
        &format!("{host}:{}:127.0.0.1", r.edge.port()),
        &format!("https://{host}:{}{path}", r.edge.port()),
    ])
    .await?;
    if code != 0 {
        bail!("curl exited {code}: {err}");
    }
    Ok(out)
}

#[tokio::test]
async fn three_replicas_share_agents_links_spread_and_traffic_entering_any_replica_arrives()
-> Result<()> {
    burrow_e2e::require!("postgres", "psql", "openssl", "curl");
    let c = Cluster::start(3).await?;
    let mut edge_agent = c.agent("edge", 4).await?;
    let edge_probe = probe_of(&mut edge_agent).await?;
    // Four links on three replicas: each holds at least one.
    until(
        Duration::from_secs(30),
        "links spread over the replicas",
        || async {
            let s = spread(edge_probe).await?;
            Ok(s.len() == 3 && s.values().sum::<u64>() == 4)
        },
    )
    .await
    .with_context(|| edge_agent.output())?;
    // One link only: two replicas must hop to reach it.
    let mut solo = c.agent("solo", 1).await?;
    let solo_probe = probe_of(&mut solo).await?;
    until(Duration::from_secs(20), "solo connected", || async {
        Ok(spread(solo_probe).await?.values().sum::<u64>() == 1)
    })
    .await?;
    // list-agents through any replica shows the links on every replica.
    let listed = c.cli(0).json(&["list-agents"]).await?;
    let edge_row = listed
        .as_array()
        .and_then(|a| a.iter().find(|g| g["agent_name"] == "edge"))
        .context("edge listed")?;
    assert_eq!(edge_row["links"], 4, "{edge_row}");
    let per: BTreeMap<String, u64> = edge_row["replicas"]
        .as_array()
        .context("replicas")?
        .iter()
        .map(|r| {
            (
                r["replica"].as_str().unwrap_or_default().to_owned(),
                r["links"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(per.len(), 3, "{edge_row}");
    assert_eq!(per.values().sum::<u64>(), 4, "{edge_row}");
    assert!(edge_row["uptime_seconds"].is_u64(), "{edge_row}");
    let detail = c
        .cli(2)
        .ok(&["list-agents", "--agent-name", "edge"])
        .await?;
    for r in ["gw-0", "gw-1", "gw-2"] {
        assert!(detail.contains(&format!("\n{r} ")), "{r} in {detail}");
    }
    assert!(detail.contains("state             connected"), "{detail}");
    let (code, _, err) = c
        .cli(0)
        .run(&["list-agents", "--agent-name", "nobody"])
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no agent named \"nobody\""), "{err}");
    let (_svc, port) = web_service("inside").await?;
    c.cli(1)
        .ok(&[
            "add-fqdn",
            "--agent-name",
            "edge",
            "--fqdn",
            "svc.internal.test",
        ])
        .await?;
    c.cli(2)
        .ok(&[
            "add-route",
            "--hostname",
            "app.tunnel.test",
            "--agent-name",
            "solo",
            "--target",
            &format!("http://127.0.0.1:{port}"),
        ])
        .await?;
    let mut rule_seen = HashMap::new();
    for (i, r) in c.replicas.iter().enumerate() {
        // Forwards to both agents.
        assert_eq!(
            echo_roundtrip(r.forwards[1], format!("edge via {i}").as_bytes()).await?,
            format!("edge via {i}").as_bytes()
        );
        assert_eq!(
            echo_roundtrip(r.forwards[2], format!("solo via {i}").as_bytes()).await?,
            format!("solo via {i}").as_bytes(),
            "a forward to the one-link agent through replica {i}"
        );
        // Egress: the rule made on replica 1 is enforced here too.
        let took = until(
            Duration::from_secs(10),
            "the rule reaches the replica",
            || async {
                Ok(egress(r, port, "/probe")
                    .await
                    .is_ok_and(|o| o.starts_with("service=inside")))
            },
        )
        .await?;
        rule_seen.insert(i, took);
        let out = egress(r, port, &format!("/egress-{i}")).await?;
        assert!(
            out.starts_with(&format!("service=inside path=/egress-{i}")),
            "{out}"
        );
        // Edge: the route of the one-link agent, published on replica 2.
        let out = until(
            Duration::from_secs(10),
            "the route reaches the replica",
            || async {
                Ok(edge(r, "app.tunnel.test", "/")
                    .await
                    .is_ok_and(|o| o.starts_with("service=inside")))
            },
        )
        .await;
        out?;
        let out = edge(r, "app.tunnel.test", &format!("/edge-{i}")).await?;
        assert!(
            out.starts_with(&format!("service=inside path=/edge-{i}")),
            "{out}"
        );
    }
    eprintln!("rule made on replica 1, enforced after (s): {rule_seen:?}");
    drop(solo);
    drop(edge_agent);
    Ok(())
}

#[tokio::test]
async fn a_replica_killed_mid_transfer_costs_no_byte_elsewhere_and_the_agent_relinks() -> Result<()>
{
    burrow_e2e::require!("postgres", "psql", "openssl", "curl");
    let mut c = Cluster::start(3).await?;
    let mut agent = c.agent("edge", 4).await?;
    let probe = probe_of(&mut agent).await?;
    until(Duration::from_secs(30), "links spread", || async {
        let s = spread(probe).await?;
        Ok(s.len() == 3 && s.values().sum::<u64>() == 4)
    })
    .await
    .with_context(|| agent.output())?;
    // A checksummed transfer through replica 1 (64 MiB each way).
    let n = 64u64 << 20;
    let conn = tokio::net::TcpStream::connect(c.replicas[1].forwards[0]).await?;
    let transfer = tokio::spawn(burrow_e2e::servers::send_and_hash(conn, n, 11));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Replica 2 dies without a word.
    c.replicas[2].proc.kill().await;
    let killed = Instant::now();
    // New connections through the survivors work at once.
    let first_ok = until(
        Duration::from_secs(5),
        "a new connection after the kill",
        || async {
            Ok(echo_roundtrip(c.replicas[0].forwards[1], b"after")
                .await
                .is_ok()
                && echo_roundtrip(c.replicas[1].forwards[1], b"after")
                    .await
                    .is_ok())
        },
    )
    .await?;
    eprintln!("new connections through the survivors: first success {first_ok:?} after the kill");
    let h = transfer.await??;
    assert_eq!(h.received_len, n, "the whole transfer arrived");
    assert_eq!(
        h.received,
        burrow_e2e::servers::pattern_hash(n, 11),
        "zero corrupt bytes"
    );
    // The agent replaces the lost links on the replicas left.
    let relinked = until(
        Duration::from_secs(30),
        "the lost links replaced",
        || async {
            let s = spread(probe).await?;
            Ok(!s.contains_key("gw-2") && s.values().sum::<u64>() == 4)
        },
    )
    .await?;
    eprintln!(
        "links replaced {:?} after the kill ({relinked:?} after the transfer)",
        killed.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_rule_change_on_one_replica_is_enforced_on_the_others_at_once() -> Result<()> {
    burrow_e2e::require!("postgres", "psql", "openssl", "curl");
    // A sweep once a minute: only the notification can be this quick.
    let c = Cluster::start_with(3, &[("BURROW_SWEEP_INTERVAL_SECONDS", "60")]).await?;
    let mut agent = c.agent("edge", 4).await?;
    let probe = probe_of(&mut agent).await?;
    until(Duration::from_secs(30), "links spread", || async {
        Ok(spread(probe).await?.len() == 3)
    })
    .await?;
    let (_svc, port) = web_service("inside").await?;
    // Every replica has read the (empty) rules before the change.
    for r in &c.replicas {
        let out = egress(r, port, "/before").await?;
        assert!(!out.starts_with("service="), "{out}");
    }
    let made = Instant::now();
    c.cli(1)
        .ok(&[
            "add-fqdn",
            "--agent-name",
            "edge",
            "--fqdn",
            "svc.internal.test",
        ])
        .await?;
    let answered = made.elapsed();
    let mut seen = Vec::new();
    for i in [0, 2] {
        let r = &c.replicas[i];
        until(
            Duration::from_secs(10),
            "the new rule on another replica",
            || async {
                Ok(egress(r, port, "/after")
                    .await?
                    .starts_with("service=inside"))
            },
        )
        .await?;
        seen.push((i, made.elapsed()));
    }
    // And a removal.
    let removed = Instant::now();
    c.cli(2)
        .ok(&["remove-fqdn", "--fqdn", "svc.internal.test"])
        .await?;
    until(
        Duration::from_secs(10),
        "the removal on another replica",
        || async {
            Ok(!egress(&c.replicas[0], port, "/gone")
                .await?
                .starts_with("service="))
        },
    )
    .await?;
    let gone = removed.elapsed();
    eprintln!(
        "rule change (sweep every 60 s): add-fqdn answered in {answered:?}; enforced on replicas {seen:?}; a removal enforced elsewhere in {gone:?}"
    );
    Ok(())
}

/// A plain HTTP request through an egress proxy: `Ok(None)` when the
/// proxy refused the connection (a load balancer would not send it
/// there), `Ok(Some(body))` when answered, `Err` otherwise.
async fn proxied(proxy: SocketAddr, port: u16, path: &str) -> Result<Option<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = match tokio::net::TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let req = format!(
        "GET http://svc.internal.test:{port}{path} HTTP/1.1\r\nHost: svc.internal.test:{port}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .context("no answer in 30 s")??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if !text.starts_with("HTTP/1.1 200") {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        bail!("{}: {body}", text.lines().next().unwrap_or("empty answer"));
    }
    Ok(Some(text))
}

#[tokio::test]
async fn a_rolling_restart_of_every_replica_under_load_fails_no_request() -> Result<()> {
    burrow_e2e::require!("postgres", "psql", "openssl");
    let mut c = Cluster::start(3).await?;
    let mut agent = c.agent("edge", 4).await?;
    let probe = probe_of(&mut agent).await?;
    let spread_over_all = || async {
        let s = spread(probe).await?;
        Ok(s.len() == 3 && s.values().sum::<u64>() == 4)
    };
    until(Duration::from_secs(30), "links spread", spread_over_all)
        .await
        .with_context(|| agent.output())?;
    let (_svc, port) = web_service("inside").await?;
    c.cli(0)
        .ok(&[
            "add-fqdn",
            "--agent-name",
            "edge",
            "--fqdn",
            "svc.internal.test",
        ])
        .await?;
    for r in &c.replicas {
        until(Duration::from_secs(10), "rule everywhere", || async {
            Ok(proxied(r.proxy, port, "/warm")
                .await
                .is_ok_and(|b| b.is_some()))
        })
        .await?;
    }
    // A bounded load: requests in turn through each replica; one whose
    // replica refuses the connection (stopped) goes to the next, as a
    // load balancer sends it; any other failure counts.
    let proxies: Vec<SocketAddr> = c.replicas.iter().map(|r| r.proxy).collect();
    // Which replicas the load balancer sends to: one is taken out before
    // it is stopped (its readiness fails, the manifests' preStop waits),
    // and put back once it is ready again.
    let rotation = std::sync::Arc::new(std::sync::Mutex::new(vec![true; proxies.len()]));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (stop, proxies, rotation) = (stop.clone(), proxies.clone(), rotation.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed, mut redirected) = (0u64, Vec::new(), 0u64);
            let started = Instant::now();
            let mut i = 0usize;
            while !stop.is_cancelled()
                && ok < 50_000
                && started.elapsed() < Duration::from_secs(240)
            {
                let live: Vec<SocketAddr> = {
                    let r = rotation.lock().unwrap();
                    proxies
                        .iter()
                        .zip(r.iter())
                        .filter(|(_, on)| **on)
                        .map(|(p, _)| *p)
                        .collect()
                };
                let mut done = false;
                for k in 0..live.len() {
                    let proxy = live[(i + k) % live.len()];
                    match proxied(proxy, port, &format!("/load-{i}")).await {
                        Ok(Some(body)) if body.contains(&format!("path=/load-{i}")) => {
                            ok += 1;
                            done = true;
                            break;
                        }
                        Ok(Some(body)) => {
                            failed.push(format!("{proxy}: wrong answer {body:.80}"));
                            done = true;
                            break;
                        }
                        Ok(None) => redirected += 1,
                        Err(e) => {
                            failed.push(format!("{proxy}: {e} at {:?}", started.elapsed()));
                            done = true;
                            break;
                        }
                    }
                }
                if !done {
                    failed.push("every replica refused the connection".into());
                }
                i += 1;
            }
            (ok, failed, redirected)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    for i in 0..3 {
        eprintln!(
            "stopping replica {i} ({}) at {:?}",
            c.replicas[i].proxy,
            t0.elapsed()
        );
        let (port_i, proxy_i) = (c.replicas[i].port, c.replicas[i].proxy.port());
        rotation.lock().unwrap()[i] = false;
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.replicas[i].proc.term()?;
        c.replicas[i].proc.wait_exit().await?;
        let r = c.replica(i, port_i, proxy_i).await?;
        c.replicas[i] = r;
        until(
            Duration::from_secs(60),
            "links spread again",
            spread_over_all,
        )
        .await?;
        rotation.lock().unwrap()[i] = true;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let (ok, failed, redirected) = load.await?;
    eprintln!(
        "rolling restart of 3 replicas under load: {ok} requests answered, {} failed, {redirected} refused connections sent on to the next replica",
        failed.len()
    );
    if !failed.is_empty() {
        for r in &c.replicas {
            for l in r
                .proc
                .output()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("\"level\":\"WARN"))
            {
                eprintln!("{l}");
            }
        }
        eprintln!(
            "agent: {}",
            agent
                .output()
                .lines()
                .filter(|l| l.contains("WARN"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        failed.is_empty(),
        "{} failed requests, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 100, "the load ran: {ok}");
    Ok(())
}

#[tokio::test]
async fn questions_for_an_agent_on_another_replica_are_passed_on_to_it() -> Result<()> {
    burrow_e2e::require!("postgres", "psql", "openssl", "curl");
    let c = Cluster::start(2).await?;
    let _solo = c.agent("solo", 1).await?;
    // Its one link is on replica 0; replica 1 knows that from presence.
    let other = c.cli(1);
    until(
        Duration::from_secs(30),
        "replica 1 sees solo's link on gw-0",
        || async {
            let v = other.json(&["list-agents", "--agent-name", "solo"]).await?;
            Ok(v["replicas"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["replica"] == "gw-0")))
        },
    )
    .await?;
    let info = other.json(&["agent-info", "--agent-name", "solo"]).await?;
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(info["links"][0]["replica"], "gw-0", "{info}");
    let echo = c.echo.to_string();
    let check = other
        .json(&["agent-check", "--agent-name", "solo", "--target", &echo])
        .await?;
    assert_eq!(check["ok"], true, "{check}");
    let logs = other
        .ok(&["agent-logs", "--agent-name", "solo", "--lines", "500"])
        .await?;
    assert!(logs.contains("burrow agent starting"), "{logs}");
    // A wrong admin key passed on is refused there too.
    let wrong = Cli::new(
        &bin(),
        vec![
            (
                "CONNECT_URL".into(),
                format!("wss://127.0.0.1:{}/connect", c.replicas[1].port),
            ),
            ("BURROW_ADMIN_KEY".into(), admin_key()),
            ("GATEWAY_THUMBPRINT".into(), c.thumbprint.clone()),
        ],
    );
    let (code, _, err) = wrong.run(&["agent-info", "--agent-name", "solo"]).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    Ok(())
}
