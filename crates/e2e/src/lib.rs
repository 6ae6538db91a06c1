//! Helpers for end-to-end tests that run real `burrow` processes on
//! loopback: spawn with JSON logs, wait for a log line (the ready signal, no
//! sleeps), and small in-process target servers.
//!
//! # Layout
//! - [`Proc`]: a child process whose JSON log lines can be awaited.
//! - [`Tunnel`]: a gateway and an agent wired together with forwards.
//! - [`cli`]: the one CLI harness: a gateway as an operator starts it and
//!   the management commands run against it.
//! - [`registered`]: a gateway with a registered key-pair agent (built on
//!   [`cli`]), and a static file server.
//! - [`servers`]: echo, hashing sink/source, and never-reading targets.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // test support: a panic is a test failure

pub mod cli;
pub mod disk;
pub mod needs;
pub mod registered;
pub mod relay;
pub mod servers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use burrow_gateway::event as gw_ev;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Longest any single wait in a test may take before it counts as a hang.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running child process with its stderr parsed as JSON log lines.
pub struct Proc {
    /// Label for messages.
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
    exited: watch::Receiver<bool>,
    /// Default data directory (`BURROW_DATA_DIR`), so no test writes
    /// outside its own temporary directories.
    _data: tempfile::TempDir,
}

/// Polls `f` until it says yes, at most `limit`; how long that took, or
/// an error naming `what`. For what has no event to wait on (a probe's
/// answer, another process's metrics, a series in Prometheus).
pub async fn until<F, Fut>(limit: Duration, what: &str, mut f: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f().await? {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what}: not within {limit:?}")
}

/// A fresh pre-shared key for one test (never a fixed secret).
pub fn random_psk() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// A fresh admin API key in Burrow's format (`bk_<12 hex>_<secret>`), made
/// for one test run (never a fixed secret).
pub fn admin_key() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let hex: String = (0..12)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect();
    format!("bk_{hex}_{}{}", random_psk(), random_psk())
}

/// The `peer=PORT` values test services print, one per answer line: the
/// port their connection came from, which tells whether two requests
/// shared one service connection.
pub fn service_peers(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.split("peer=").nth(1))
        .map(|p| p.split_whitespace().next().unwrap_or(p))
        .collect()
}

/// Owned strings from string slices (command-line arguments).
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// Runs openssl in `dir`, failing with its message.
pub async fn openssl(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .context("openssl must be installed")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A private CA (`ca.pem`) and a server certificate it signed (`cert.pem`,
/// key `key.pem`) for `names`, made in `dir` by openssl at run time.
/// Returns (CA, certificate, key).
pub async fn ca_and_server_cert(
    dir: &std::path::Path,
    names: &[&str],
) -> Result<(PathBuf, PathBuf, PathBuf)> {
    ca_and_server_cert_days(dir, names, 30).await
}

/// [`ca_and_server_cert`] with the server certificate valid for `days`
/// (-1: it expired the moment it was made).
pub async fn ca_and_server_cert_days(
    dir: &std::path::Path,
    names: &[&str],
    days: i32,
) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let days = days.to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "30",
        "-subj",
        "/CN=Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca).await?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    let cn = format!("/CN={}", names.first().copied().unwrap_or("localhost"));
    csr.extend(["-subj", &cn, "-keyout", "key.pem", "-out", "srv.csr"]);
    openssl(dir, &csr).await?;
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            sans.join(",")
        ),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            &days,
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    )
    .await?;
    Ok((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

impl Proc {
    /// Starts `bin args…` with a clean environment plus `env`, logging JSON
    /// (an empty value in `env` unsets that variable, e.g. `BURROW_LOG` for
    /// a level set by a file).
    pub fn spawn(name: &str, bin: &PathBuf, args: &[String], env: &[(&str, &str)]) -> Result<Proc> {
        let data = tempfile::tempdir()?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_clear()
            .env("BURROW_DATA_DIR", data.path())
            .env("BURROW_LOG_FORMAT", "json")
            .env("BURROW_LOG", "info")
            // Parallel gateways: each egress proxy on a port of its own.
            .env("BURROW_PROXY_LISTEN", "127.0.0.1:0")
            .env("BURROW_EDGE_HTTP_LISTEN", "off")
            .env("BURROW_EDGE_HTTPS_LISTEN", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        // Debugging aid: E2E_LOG overrides every process's log filter.
        if let Ok(filter) = std::env::var("E2E_LOG") {
            cmd.env("BURROW_LOG", filter);
        }
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = watch::channel(0usize);
        let (exit_tx, exited) = watch::channel(false);
        let (l2, r2, label) = (lines.clone(), raw.clone(), name.to_owned());
        tokio::spawn(async move {
            let mut rd = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                if std::env::var_os("E2E_ECHO").is_some() {
                    eprintln!("[{label}] {line}");
                }
                r2.lock().unwrap().push(line.clone());
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let mut g = l2.lock().unwrap();
                    g.push(v);
                    let n = g.len();
                    drop(g);
                    let _ = tx.send(n);
                }
            }
            let _ = exit_tx.send(true);
        });
        Ok(Proc {
            name: name.to_owned(),
            child,
            lines,
            raw,
            seen,
            exited,
            _data: data,
        })
    }

    /// Waits for a log line whose `event` field is `event` and that `pred`
    /// accepts, counting only lines after the first `skip`. Tests wait on
    /// the event names the crates declare (`burrow_gateway::event`,
    /// `burrow_agent::event`), never on message wording.
    pub async fn wait_event_after(
        &mut self,
        skip: usize,
        event: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let find = |lines: &[Value]| {
            lines
                .iter()
                .skip(skip)
                .find(|v| v["event"] == event && pred(v))
                .cloned()
        };
        loop {
            if let Some(v) = find(&self.lines.lock().unwrap()) {
                return Ok(v);
            }
            if *self.exited.borrow() && self.lines.lock().unwrap().len() <= skip {
                bail!(
                    "{} exited before logging event {event:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            match tokio::time::timeout_at(deadline, self.seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    // Reader gone: one last look, then fail.
                    if let Some(v) = find(&self.lines.lock().unwrap()) {
                        return Ok(v);
                    }
                    bail!(
                        "{} exited before logging event {event:?}:\n{}",
                        self.name,
                        self.output()
                    );
                }
                Err(_) => bail!(
                    "{} did not log event {event:?} within {WAIT:?}:\n{}",
                    self.name,
                    self.output()
                ),
            }
        }
    }

    /// Waits for a log line whose `event` field is `event`.
    pub async fn wait_event(&mut self, event: &str) -> Result<Value> {
        self.wait_event_after(0, event, |_| true).await
    }

    /// Number of JSON log lines so far (a mark for [`Proc::wait_event_after`]).
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Log lines whose `event` field is `event`.
    pub fn count_events(&self, event: &str) -> usize {
        self.events_after(0, event)
    }

    /// How many log lines after `mark` have `event` as their `event` field.
    pub fn events_after(&self, mark: usize, event: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .skip(mark)
            .filter(|v| v["event"] == event)
            .count()
    }

    /// Everything the process wrote to stderr, for failure messages.
    pub fn output(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    /// Sends SIGKILL and reaps.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn term(&self) -> Result<()> {
        let pid = self.child.id().context("already exited")?;
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill -TERM {pid} failed");
        }
        Ok(())
    }

    /// Waits for exit, bounded; returns the exit code.
    pub async fn wait_exit(&mut self) -> Result<Option<i32>> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .map_err(|_| anyhow!("{} did not exit within {WAIT:?}", self.name))??;
        // Let the reader drain the last lines.
        let mut exited = self.exited.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(|e| *e)).await;
        Ok(status.code())
    }
}

/// Reads an address field from a log line.
pub fn addr_field(v: &Value, field: &str) -> Result<SocketAddr> {
    v[field]
        .as_str()
        .with_context(|| format!("no {field} in {v}"))?
        .parse()
        .with_context(|| format!("bad {field} in {v}"))
}

/// A gateway and one agent, connected, with forwards.
pub struct Tunnel {
    /// Path of the `burrow` binary.
    pub bin: PathBuf,
    /// The gateway process.
    pub gateway: Proc,
    /// The agent process.
    pub agent: Proc,
    /// Where the tunnel endpoint listens.
    pub tunnel_addr: SocketAddr,
    /// Where each forward listens, in the order given.
    pub forwards: Vec<SocketAddr>,
    /// The key both sides use.
    pub psk: String,
    /// The agent's name.
    pub agent_name: String,
    /// The agent's arguments, for restarts.
    pub agent_args: Vec<String>,
    /// The gateway's arguments, for restarts (ports pinned to the first run's).
    pub gateway_args: Vec<String>,
    /// The URL the agent dials.
    pub url: String,
    /// The gateway's certificate thumbprint (empty with `ws`).
    pub gateway_thumbprint: String,
    /// Holds the data directories (`gateway/`, `agent/`).
    pub dir: tempfile::TempDir,
    /// The fault relay the agent dials, with [`TunnelOpts::relay`].
    pub relay: Option<relay::FaultRelay>,
}

/// Options for [`Tunnel::start`].
#[derive(Clone)]
pub struct TunnelOpts {
    /// Links the agent keeps.
    pub links: usize,
    /// Extra agent flags.
    pub agent_extra: Vec<String>,
    /// Extra gateway flags.
    pub gateway_extra: Vec<String>,
    /// Agent log filter.
    pub agent_log: String,
    /// Carrier: `wss` (default), `tls`, or `ws` (gateway with `--no-tls`).
    pub scheme: &'static str,
    /// The agent dials a [`relay::FaultRelay`] in front of the gateway.
    pub relay: bool,
}

impl Default for TunnelOpts {
    fn default() -> Self {
        TunnelOpts {
            links: 2,
            agent_extra: Vec::new(),
            gateway_extra: Vec::new(),
            agent_log: "info".into(),
            scheme: "wss",
            relay: false,
        }
    }
}

impl Tunnel {
    /// Starts a gateway forwarding one port per target, and an agent
    /// allowed to reach exactly those targets; waits until every link is up.
    pub async fn start(bin: PathBuf, targets: &[SocketAddr], opts: TunnelOpts) -> Result<Tunnel> {
        let psk = random_psk();
        let agent_name = "e2e-agent".to_string();
        let dir = tempfile::tempdir()?;
        let gw_data = dir.path().join("gateway").display().to_string();
        let agent_data = dir.path().join("agent").display().to_string();
        let mut common = vec!["--data-dir".to_string(), gw_data];
        if opts.scheme == "ws" {
            common.push("--no-tls".into());
        }
        let mut gw_args = vec!["gateway".into(), "--listen".into(), "127.0.0.1:0".into()];
        gw_args.extend(common.iter().cloned());
        for t in targets {
            gw_args.push("--forward".into());
            gw_args.push(format!("127.0.0.1:0={agent_name}:{t}"));
        }
        gw_args.extend(opts.gateway_extra.iter().cloned());
        let mut gateway = Proc::spawn("gateway", &bin, &gw_args, &[("BURROW_PSK", &psk)])?;
        let listening = gateway.wait_event(gw_ev::TUNNEL_LISTENING).await?;
        let tunnel_addr = addr_field(&listening, "addr")?;
        let gateway_thumbprint = listening["thumbprint"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut forwards = Vec::new();
        for t in targets {
            let t = t.to_string();
            let v = gateway
                .wait_event_after(0, gw_ev::FORWARD_LISTENING, |v| v["dest"] == t.as_str())
                .await?;
            forwards.push(addr_field(&v, "listen")?);
        }
        // Pin the ports so a restarted gateway comes back on the same ones.
        let mut pinned = vec!["gateway".into(), "--listen".into(), tunnel_addr.to_string()];
        pinned.extend(common.iter().cloned());
        for (t, f) in targets.iter().zip(&forwards) {
            pinned.push("--forward".into());
            pinned.push(format!("{f}={agent_name}:{t}"));
        }
        pinned.extend(opts.gateway_extra.iter().cloned());
        let relay = if opts.relay {
            Some(relay::FaultRelay::start(tunnel_addr).await?)
        } else {
            None
        };
        let dial = relay.as_ref().map_or(tunnel_addr, |r| r.addr);
        let url = match opts.scheme {
            "tls" => format!("tls://{dial}"),
            s => format!("{s}://{dial}/tunnel"),
        };
        let mut agent_args = vec![
            "run".into(),
            "--connect-url".into(),
            url.clone(),
            "--data-dir".into(),
            agent_data,
            "--agent-name".into(),
            agent_name.clone(),
            "--links".into(),
            opts.links.to_string(),
        ];
        for t in targets {
            agent_args.push("--allow".into());
            agent_args.push(t.to_string());
        }
        if !gateway_thumbprint.is_empty() {
            agent_args.push("--gateway-thumbprint".into());
            agent_args.push(gateway_thumbprint.clone());
        }
        agent_args.extend(opts.agent_extra.iter().cloned());
        let agent = Proc::spawn(
            "agent",
            &bin,
            &agent_args,
            &[("BURROW_PSK", &psk), ("BURROW_LOG", &opts.agent_log)],
        )?;
        let mut t = Tunnel {
            bin,
            gateway,
            agent,
            tunnel_addr,
            forwards,
            psk,
            agent_name,
            agent_args,
            gateway_args: pinned,
            url,
            gateway_thumbprint,
            dir,
            relay,
        };
        t.wait_links(0, opts.links).await?;
        Ok(t)
    }

    /// Waits until the gateway has logged `n` link-ups after `mark`.
    pub async fn wait_links(&mut self, mark: usize, n: usize) -> Result<()> {
        let want = n as u64;
        self.gateway
            .wait_event_after(mark, gw_ev::AGENT_LINK_UP, |v| {
                v["links"].as_u64() == Some(want)
            })
            .await?;
        Ok(())
    }

    /// Starts the agent again after it was killed.
    pub fn restart_agent(&mut self, log: &str) -> Result<()> {
        self.agent = Proc::spawn(
            "agent",
            &self.bin,
            &self.agent_args,
            &[("BURROW_PSK", &self.psk), ("BURROW_LOG", log)],
        )?;
        Ok(())
    }

    /// Starts the gateway again on the same ports.
    pub async fn restart_gateway(&mut self) -> Result<()> {
        self.gateway = Proc::spawn(
            "gateway",
            &self.bin,
            &self.gateway_args,
            &[("BURROW_PSK", &self.psk)],
        )?;
        self.gateway.wait_event(gw_ev::TUNNEL_LISTENING).await?;
        Ok(())
    }
}

/// A hand-driven agent link: a real WebSocket (`ws://ADDR/tunnel`) with
/// the pre-shared key, a hello saying `version` and `capabilities`, its
/// acknowledgement read; then whatever the test sends.
pub async fn raw_agent_link(
    addr: SocketAddr,
    psk: &str,
    name: &str,
    version: &str,
    capabilities: &[&str],
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("ws://{addr}/tunnel").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {psk}").parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
    let hello = burrow_wire::Frame::Hello(burrow_wire::Hello {
        version: burrow_wire::PROTOCOL_VERSION,
        agent_name: name.into(),
        software_version: version.into(),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        credential: psk.into(),
    });
    ws.send(Message::Binary(hello.to_bytes())).await?;
    let ack = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await?
        .context("the link closed before the hello-ack")??;
    let Message::Binary(b) = ack else {
        bail!("expected a binary hello-ack, got {ack:?}");
    };
    anyhow::ensure!(matches!(
        burrow_wire::Frame::decode_message(b)?,
        burrow_wire::Frame::HelloAck(_)
    ));
    Ok(ws)
}
