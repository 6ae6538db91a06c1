//! A gateway with one registered agent, as an operator sets it up
//! (`keygen`, `register`, the agent run with the printed variables), and
//! the small real servers the feature tests put behind it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{Proc, addr_field, admin_key, strings as s};

/// Runs `cmd` in `dir` with only PATH, HOME and `env`: (exit code,
/// stdout, stderr).
pub async fn run(
    cmd: &str,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(i32, String, String)> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(cmd)
            .args(args)
            .current_dir(dir)
            // Only what the test gives: no CA bundle, proxy or pip
            // settings from the machine.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .with_context(|| format!("{cmd} {args:?} hung"))?
    .with_context(|| format!("{cmd} must be installed"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `cmd`, which must succeed; its stdout.
pub async fn must(cmd: &str, args: &[&str], dir: &Path) -> Result<String> {
    let (code, out, err) = run(cmd, args, dir, &[]).await?;
    if code != 0 {
        bail!("{cmd} {args:?} exited {code}: {err}");
    }
    Ok(out)
}

/// curl (20 s at most) with `via` flags (`-x PROXY`, `--socks5-hostname
/// ADDR`, `-p`, headers): (curl's exit code, body, HTTP status).
pub async fn curl_via(via: &[&str], url: &str) -> Result<(i32, String, String)> {
    let mut args = vec!["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"];
    args.extend_from_slice(via);
    args.push(url);
    let (code, out, _) = run("curl", &args, Path::new("/"), &[]).await?;
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    Ok((code, body.to_owned(), status.trim().to_owned()))
}

/// A gateway, one registered agent running with key-pair auth, and the
/// egress proxy's address.
pub struct Setup {
    bin: PathBuf,
    /// The gateway.
    pub gateway: Proc,
    /// The agent `edge`, when running.
    pub agent: Option<Proc>,
    /// The egress proxy.
    pub proxy: SocketAddr,
    /// The HTTPS edge, when the gateway serves one.
    pub edge: Option<SocketAddr>,
    /// CONNECT_URL, BURROW_ADMIN_KEY and (with TLS) GATEWAY_THUMBPRINT for
    /// the CLI.
    pub env: Vec<(String, String)>,
    /// Holds the data directories and keys.
    pub dir: tempfile::TempDir,
    /// The gateway's command line and environment, for restarts.
    gw_args: Vec<String>,
    gw_env: Vec<(String, String)>,
}

impl Setup {
    /// Runs a management command: (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).env_clear().envs(env);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await??;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs a management command that must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let (code, out, err) = self.cli(args).await?;
        if code != 0 {
            bail!("burrow {args:?} exited {code}: {err}");
        }
        Ok(out)
    }

    /// Publishes `http://127.0.0.1:PORT` as `host` through the agent `edge`.
    pub async fn add_route(&self, host: &str, port: u16) -> Result<()> {
        let target = format!("http://127.0.0.1:{port}");
        let args = [
            "add-route",
            "--hostname",
            host,
            "--agent-name",
            "edge",
            "--target",
            &target,
        ];
        self.ok(&args).await.map(|_| ())
    }

    /// The admin API's URL for `path` (`/api/v1` + `path`).
    pub fn api_url(&self, path: &str) -> String {
        let base = self.env[0]
            .1
            .replace("wss://", "https://")
            .replace("ws://", "http://")
            .replace("/connect", "");
        format!("{base}/api/v1{path}")
    }

    /// The admin key as an `Authorization` header for curl.
    pub fn auth_header(&self) -> String {
        format!("Authorization: Bearer {}", self.env[1].1)
    }

    /// GET on the admin API (`/api/v1` + `path`) with curl; the JSON.
    pub async fn api_get(&self, path: &str) -> Result<serde_json::Value> {
        let auth = self.auth_header();
        let url = self.api_url(path);
        let (code, out, err) =
            run("curl", &["-sSk", "-H", &auth, &url], Path::new("/"), &[]).await?;
        if code != 0 {
            bail!("curl {url}: {err}");
        }
        serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
    }

    /// Waits (bounded) until the traffic audit has a record matching
    /// `query` (e.g. `kind=http&host=h`) that `pred` accepts.
    pub async fn traffic_until(
        &self,
        query: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let started = std::time::Instant::now();
        loop {
            let v = self.api_get(&format!("/traffic?{query}")).await?;
            if let Some(r) = v["records"]
                .as_array()
                .and_then(|a| a.iter().find(|r| pred(r)))
            {
                return Ok(r.clone());
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!("no traffic record for {query} matched within 15 s: {v}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the agent (SIGKILL) and waits until the gateway has dropped
    /// all its links.
    pub async fn kill_agent(&mut self) -> Result<()> {
        let mut agent = self.agent.take().context("no agent running")?;
        let mark = self.gateway.mark();
        agent.kill().await;
        self.gateway
            .wait_log_after(mark, "agent link down", |v| v["links"] == 0)
            .await?;
        Ok(())
    }

    /// Stops the gateway (SIGTERM), unless it has stopped, and starts it
    /// again on the same port and data directory, with `extra` flags added.
    pub async fn restart_gateway_with(&mut self, extra: &[&str]) -> Result<()> {
        if self.gateway.pid().is_some() {
            self.gateway.term()?;
            self.gateway.wait_exit().await?;
        }
        let port = self.env[0]
            .1
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches("/connect").parse::<u16>().ok())
            .context("tunnel port")?;
        let mut args = self.gw_args.clone();
        if let Some(i) = args.iter().position(|a| a == "127.0.0.1:0") {
            args[i] = format!("127.0.0.1:{port}");
        }
        args.extend(s(extra));
        let env: Vec<(&str, &str)> = self
            .gw_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.gateway = Proc::spawn("gateway", &self.bin, &args, &env)?;
        self.gateway.wait_log("tunnel endpoint listening").await?;
        Ok(())
    }

    /// `add-fqdn` for agent `edge`.
    pub async fn add_fqdn(&self, fqdn: &str, extra: &[&str]) -> Result<()> {
        let mut a = vec!["add-fqdn", "--agent-name", "edge", "--fqdn", fqdn];
        a.extend_from_slice(extra);
        self.ok(&a).await.map(|_| ())
    }

    /// The proxy as an `http://` URL.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }
}

/// Starts the gateway (with `gw_extra` flags), registers agent `edge` and,
/// if `run_agent`, runs it with `agent_extra` flags.
pub async fn setup(
    bin: &Path,
    gw_extra: &[&str],
    agent_extra: &[&str],
    run_agent: bool,
) -> Result<Setup> {
    let bin = bin.to_path_buf();
    let dir = tempfile::tempdir()?;
    let admin = admin_key();
    let mut args = s(&["gateway", "--listen", "127.0.0.1:0"]);
    args.extend(s(gw_extra));
    let data = dir.path().join("gw").display().to_string();
    let gw_env = vec![
        ("BURROW_DATA_DIR".to_owned(), data.clone()),
        ("BURROW_ADMIN_KEY".to_owned(), admin.clone()),
    ];
    let mut gateway = Proc::spawn(
        "gateway",
        &bin,
        &args,
        &[("BURROW_DATA_DIR", &data), ("BURROW_ADMIN_KEY", &admin)],
    )?;
    let listening = gateway.wait_log("tunnel endpoint listening").await?;
    let addr = addr_field(&listening, "addr")?;
    // A gateway behind a TLS proxy (--no-tls) has no certificate to pin.
    let plain = gw_extra.contains(&"--no-tls");
    let thumbprint = listening["thumbprint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let proxy = addr_field(&gateway.wait_log("egress proxy listening").await?, "addr")?;
    let edge = if gw_extra.contains(&"--edge-https-listen") {
        Some(addr_field(
            &gateway.wait_log("edge listening (HTTPS").await?,
            "addr",
        )?)
    } else {
        None
    };
    let env = vec![
        (
            "CONNECT_URL".to_owned(),
            format!(
                "{}://127.0.0.1:{}/connect",
                if plain { "ws" } else { "wss" },
                addr.port()
            ),
        ),
        ("BURROW_ADMIN_KEY".to_owned(), admin),
    ];
    let mut env = env;
    if !plain {
        env.push(("GATEWAY_THUMBPRINT".to_owned(), thumbprint.clone()));
    }
    let mut st = Setup {
        bin: bin.clone(),
        edge,
        gateway,
        agent: None,
        proxy,
        env,
        dir,
        gw_args: args,
        gw_env,
    };
    let out_dir = st.dir.path().display().to_string();
    st.ok(&["keygen", "--agent-name", "edge", "--out-dir", &out_dir])
        .await?;
    let key = st.dir.path().join("ConnectionAgent-edge.pem.pub");
    let printed = st
        .ok(&[
            "register",
            "--agent-name",
            "edge",
            "--key-name",
            "k1",
            "--public-key",
            &key.display().to_string(),
        ])
        .await?;
    if run_agent {
        let mut env: Vec<(String, String)> = printed
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if plain {
            // The token endpoint is plain HTTP too.
            env.retain(|(k, _)| k != "AUTH_SERVER_DOMAIN");
            env.push(("AUTH_SERVER_DOMAIN".into(), format!("http://{addr}")));
        } else {
            env.push(("GATEWAY_THUMBPRINT".into(), thumbprint));
        }
        let private = st
            .dir
            .path()
            .join("ConnectionAgent-edge.pem")
            .display()
            .to_string();
        env.push(("AUTH_SERVER_PRIVATE_KEY_PEM_PATH".into(), private));
        // The feature tests' services listen on this host's loopback.
        if !agent_extra.contains(&"--no-loopback") {
            env.push(("BURROW_ALLOW_LOOPBACK".into(), "true".into()));
        }
        // Kept for tests that start the agent again.
        let lines: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(st.dir.path().join("agent.env"), lines)?;
        let env_ref: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mark = st.gateway.mark();
        let agent = Proc::spawn(
            "agent",
            &bin,
            &s(&["run"])
                .into_iter()
                .chain(s(agent_extra).into_iter().filter(|a| a != "--no-loopback"))
                .collect::<Vec<_>>(),
            &env_ref,
        )?;
        st.gateway
            .wait_log_after(mark, "agent link up", |v| v["links"] == 2)
            .await?;
        st.agent = Some(agent);
    }
    Ok(st)
}

const STATIC_SERVER: &str = r#"
import functools, http.server, ssl, sys
root, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
if cert != "-":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// A static file server (Python's http.server) on 127.0.0.1, HTTPS with
/// `tls`, serving `root`. Returns the child and its port.
pub async fn static_server(
    root: &Path,
    tls: Option<(&Path, &Path)>,
) -> Result<(tokio::process::Child, u16)> {
    let (c, k) = tls.map_or(("-".to_owned(), "-".to_owned()), |(c, k)| {
        (c.display().to_string(), k.display().to_string())
    });
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", STATIC_SERVER, &root.display().to_string(), &c, &k])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    tokio::time::timeout(Duration::from_secs(20), out.read_line(&mut line)).await??;
    Ok((child, line.trim().parse().context("server port")?))
}
