//! The one CLI harness: a gateway started as an operator starts it, and the
//! management commands (`keygen`, `register`, `add-route`, …) run against
//! it with exactly the variables a user would set. [`crate::registered`]
//! and the identity tests both build on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_gateway::event as gw_ev;
use serde_json::Value;

use crate::{Proc, addr_field, strings as s};

/// How long one management command may take.
const COMMAND: Duration = Duration::from_secs(60);

/// `burrow` management commands with a fixed environment (and nothing
/// else from the machine's).
#[derive(Clone)]
pub struct Cli {
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Cli {
    /// Commands run with only `env`.
    pub fn new(bin: &Path, env: Vec<(String, String)>) -> Cli {
        Cli {
            bin: bin.to_path_buf(),
            env,
        }
    }

    /// The variables each command gets.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The value of variable `name`, if set.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Runs `burrow ARGS`: (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let out = tokio::time::timeout(
            COMMAND,
            tokio::process::Command::new(&self.bin)
                .args(args)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .with_context(|| format!("burrow {args:?} hung"))??;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs a command that must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let (code, out, err) = self.run(args).await?;
        if code != 0 {
            bail!("burrow {args:?} exited {code}: {err}");
        }
        Ok(out)
    }

    /// Runs a command with `--json` that must succeed; its answer.
    pub async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a).await?;
        serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
    }

    /// `burrow keygen --agent-name NAME --out-dir DIR`.
    pub async fn keygen(&self, dir: &Path, name: &str) -> Result<Keys> {
        let out = dir.display().to_string();
        let v = self
            .json(&["keygen", "--agent-name", name, "--out-dir", &out])
            .await?;
        let private = dir.join(format!("ConnectionAgent-{name}.pem"));
        let public = dir.join(format!("ConnectionAgent-{name}.pem.pub"));
        Ok(Keys {
            public_pem: std::fs::read_to_string(&public)?,
            private,
            public,
            fingerprint: v["fingerprint"]
                .as_str()
                .context("keygen printed no fingerprint")?
                .to_owned(),
        })
    }

    /// `burrow register` (as Octopus Connection Agent's): the variables it
    /// printed for the agent. `public` is a file path or the PEM itself.
    pub async fn register(
        &self,
        agent: &str,
        key: &str,
        public: &str,
    ) -> Result<HashMap<String, String>> {
        let out = self
            .ok(&[
                "register",
                "--agent-name",
                agent,
                "--key-name",
                key,
                "--public-key",
                public,
            ])
            .await?;
        Ok(env_lines(&out))
    }
}

/// A key pair made by `burrow keygen`.
pub struct Keys {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file.
    pub public: PathBuf,
    /// The public key, PEM.
    pub public_pem: String,
    /// Its fingerprint, as `keygen` printed it.
    pub fingerprint: String,
}

/// Parses `NAME=value` lines (what `register` prints).
pub fn env_lines(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A running gateway and what a CLI user needs to reach it.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// Management commands with CONNECT_URL, BURROW_ADMIN_KEY and (with
    /// TLS) GATEWAY_THUMBPRINT set.
    pub cli: Cli,
    /// The tunnel port.
    pub addr: SocketAddr,
    /// The certificate's thumbprint (None with `--no-tls`).
    pub thumbprint: Option<String>,
    /// The egress proxy, when it listens.
    pub proxy: Option<SocketAddr>,
    /// The HTTPS edge, when it listens.
    pub edge: Option<SocketAddr>,
    /// The first forward's local address, when there is one.
    pub forward: Option<SocketAddr>,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Gateway {
    /// Starts `burrow gateway --listen 127.0.0.1:0 ARGS` on `data_dir` with
    /// `admin` as its admin key and `env` added, and waits until every
    /// listener it was asked for is up.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        admin: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Gateway> {
        let mut all_args = s(&["gateway", "--listen", "127.0.0.1:0"]);
        all_args.extend(s(args));
        let mut all_env = vec![
            ("BURROW_DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("BURROW_ADMIN_KEY".to_owned(), admin.to_owned()),
        ];
        all_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut gw = Gateway {
            proc: spawn(bin, &all_args, &all_env)?,
            cli: Cli::new(bin, Vec::new()),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            thumbprint: None,
            proxy: None,
            edge: None,
            forward: None,
            bin: bin.to_path_buf(),
            args: all_args,
            env: all_env,
        };
        gw.ready(admin).await?;
        Ok(gw)
    }

    /// Reads the listeners' addresses from the start-up log.
    async fn ready(&mut self, admin: &str) -> Result<()> {
        let listening = self.proc.wait_event(gw_ev::TUNNEL_LISTENING).await?;
        self.addr = addr_field(&listening, "addr")?;
        self.thumbprint = listening["thumbprint"].as_str().map(str::to_owned);
        let has = |flag: &str| self.args.iter().any(|a| a == flag);
        let forward = has("--forward");
        let edge = has("--edge-https-listen");
        let no_proxy = self.env_var("BURROW_PROXY_LISTEN") == Some("off");
        if forward {
            let v = self.proc.wait_event(gw_ev::FORWARD_LISTENING).await?;
            self.forward = Some(addr_field(&v, "listen")?);
        }
        if !no_proxy {
            let v = self.proc.wait_event(gw_ev::PROXY_LISTENING).await?;
            self.proxy = Some(addr_field(&v, "addr")?);
        }
        if edge {
            let v = self.proc.wait_event(gw_ev::EDGE_HTTPS_LISTENING).await?;
            self.edge = Some(addr_field(&v, "addr")?);
        }
        let scheme = if self.thumbprint.is_some() {
            "wss"
        } else {
            "ws"
        };
        let mut env = vec![
            (
                "CONNECT_URL".to_owned(),
                format!("{scheme}://127.0.0.1:{}/connect", self.addr.port()),
            ),
            ("BURROW_ADMIN_KEY".to_owned(), admin.to_owned()),
        ];
        if let Some(t) = &self.thumbprint {
            env.push(("GATEWAY_THUMBPRINT".to_owned(), t.clone()));
        }
        self.cli = Cli::new(&self.bin, env);
        Ok(())
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// CONNECT_URL as `register` prints it.
    pub fn connect_url(&self) -> &str {
        self.cli.var("CONNECT_URL").unwrap_or_default()
    }

    /// The admin key.
    pub fn admin_key(&self) -> &str {
        self.cli.var("BURROW_ADMIN_KEY").unwrap_or_default()
    }

    /// The admin API's URL for `path` (`/api/v1` + `path`).
    pub fn api_url(&self, path: &str) -> String {
        let scheme = if self.thumbprint.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/api/v1{path}", self.addr)
    }

    /// Stops the gateway (SIGTERM), unless it has stopped, and starts it
    /// again on the same tunnel port and data directory, with `extra`
    /// arguments added.
    pub async fn restart_with(&mut self, extra: &[&str]) -> Result<()> {
        if self.proc.pid().is_some() {
            self.proc.term()?;
            self.proc.wait_exit().await?;
        }
        if let Some(i) = self.args.iter().position(|a| a == "127.0.0.1:0") {
            self.args[i] = self.addr.to_string();
        }
        self.args.extend(s(extra));
        self.proc = spawn(&self.bin, &self.args, &self.env)?;
        let admin = self.admin_key().to_owned();
        self.ready(&admin).await
    }

    /// Waits until the gateway has `n` live links of `agent` (counted from
    /// its link-up events after `mark`).
    pub async fn wait_links(&mut self, mark: usize, agent: &str, n: u64) -> Result<()> {
        self.proc
            .wait_event_after(mark, gw_ev::AGENT_LINK_UP, |v| {
                v["agent"] == agent && v["links"].as_u64() == Some(n)
            })
            .await
            .map(|_| ())
    }
}

fn spawn(bin: &Path, args: &[String], env: &[(String, String)]) -> Result<Proc> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Proc::spawn("gateway", &bin.to_path_buf(), args, &env)
}
