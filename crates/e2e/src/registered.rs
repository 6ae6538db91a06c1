//! A gateway with one registered agent, as an operator sets it up
//! (`keygen`, `register`, the agent run with the printed variables), and
//! the small real servers the feature tests put behind it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_gateway::event as gw_ev;

use crate::cli::Gateway;
use crate::{Proc, admin_key, strings as s};

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
    /// The gateway, and the CLI pointed at it.
    pub gateway: Gateway,
    /// The agent `edge`, when running.
    pub agent: Option<Proc>,
    /// Holds the data directories and keys.
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// Runs a management command: (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> Result<(i32, String, String)> {
        self.gateway.cli.run(args).await
    }

    /// Runs a management command that must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        self.gateway.cli.ok(args).await
    }

    /// The CLI's variables: CONNECT_URL, BURROW_ADMIN_KEY and (with TLS)
    /// GATEWAY_THUMBPRINT.
    pub fn env(&self) -> &[(String, String)] {
        self.gateway.cli.env()
    }

    /// The egress proxy.
    pub fn proxy(&self) -> SocketAddr {
        self.gateway
            .proxy
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The HTTPS edge, when the gateway serves one.
    pub fn edge(&self) -> Option<SocketAddr> {
        self.gateway.edge
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
        self.gateway.api_url(path)
    }

    /// The admin key as an `Authorization` header for curl.
    pub fn auth_header(&self) -> String {
        format!("Authorization: Bearer {}", self.gateway.admin_key())
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
        let mark = self.gateway.proc.mark();
        agent.kill().await;
        self.gateway
            .proc
            .wait_event_after(mark, gw_ev::AGENT_LINK_DOWN, |v| v["links"] == 0)
            .await?;
        Ok(())
    }

    /// Stops the gateway (SIGTERM), unless it has stopped, and starts it
    /// again on the same port and data directory, with `extra` flags added.
    pub async fn restart_gateway_with(&mut self, extra: &[&str]) -> Result<()> {
        self.gateway.restart_with(extra).await
    }

    /// `add-fqdn` for agent `edge`.
    pub async fn add_fqdn(&self, fqdn: &str, extra: &[&str]) -> Result<()> {
        let mut a = vec!["add-fqdn", "--agent-name", "edge", "--fqdn", fqdn];
        a.extend_from_slice(extra);
        self.ok(&a).await.map(|_| ())
    }

    /// The proxy as an `http://` URL.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy())
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
    setup_with_env(bin, gw_extra, agent_extra, run_agent, &[]).await
}

/// [`setup`], with more variables for the agent.
pub async fn setup_with_env(
    bin: &Path,
    gw_extra: &[&str],
    agent_extra: &[&str],
    run_agent: bool,
    agent_env: &[(&str, &str)],
) -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let gateway = Gateway::start(bin, &dir.path().join("gw"), &admin_key(), gw_extra, &[]).await?;
    let mut st = Setup {
        gateway,
        agent: None,
        dir,
    };
    let keys = st.gateway.cli.keygen(st.dir.path(), "edge").await?;
    let printed = st
        .gateway
        .cli
        .register("edge", "k1", &keys.public.display().to_string())
        .await?;
    if run_agent {
        let mut env: Vec<(String, String)> = printed.into_iter().collect();
        match &st.gateway.thumbprint {
            Some(t) => env.push(("GATEWAY_THUMBPRINT".into(), t.clone())),
            None => {
                // The token endpoint is plain HTTP too.
                env.retain(|(k, _)| k != "AUTH_SERVER_DOMAIN");
                let domain = format!("http://{}", st.gateway.addr);
                env.push(("AUTH_SERVER_DOMAIN".into(), domain));
            }
        }
        let private = keys.private.display().to_string();
        env.push(("AUTH_SERVER_PRIVATE_KEY_PEM_PATH".into(), private));
        // The feature tests' services listen on this host's loopback.
        if !agent_extra.contains(&"--no-loopback") {
            env.push(("BURROW_ALLOW_LOOPBACK".into(), "true".into()));
        }
        env.extend(
            agent_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        // Kept for tests that start the agent again.
        let lines: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(st.dir.path().join("agent.env"), lines)?;
        let env_ref: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mark = st.gateway.proc.mark();
        let agent = Proc::spawn(
            "agent",
            &bin.to_path_buf(),
            &s(&["run"])
                .into_iter()
                .chain(s(agent_extra).into_iter().filter(|a| a != "--no-loopback"))
                .collect::<Vec<_>>(),
            &env_ref,
        )?;
        st.gateway.wait_links(mark, "edge", 2).await?;
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
    crate::servers::python_server(STATIC_SERVER, &[&root.display().to_string(), &c, &k]).await
}
