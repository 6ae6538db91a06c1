//! `agent-info`, `agent-check`, `agent-logs`: questions for a connected
//! agent, asked through the gateway's admin API, which asks the agent over
//! its link (as Octopus Tentacle's server calls services on its agents).

use std::time::Duration;

use anyhow::Result;
use burrow_api::types::{AgentInfo, AgentLogs, CheckReport, LogLine};
use burrow_api::{Endpoint, LogsQuery};
use clap::Subcommand;

use crate::manage::{Api, ApiArgs, NONE, UsageError, check_name, opt, rtt, table, time, uptime};

/// Log levels `agent-logs` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Details (the agent logs them only at --log-level debug).
    Debug,
    /// Everything (the agent logs it only at --log-level trace).
    Trace,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// Questions for a connected agent (the commands' names are the
/// interface: `agent-info`, `agent-check`, `agent-logs`).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
pub enum Ask {
    /// Ask a connected agent what it is and holds: version, OS, uptime,
    /// its settings (secrets masked), links with their gateway replica and
    /// round trip, open streams, the FQDN rules and routes it holds.
    AgentInfo {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
    },
    /// Have a connected agent resolve, connect to and (with --tls)
    /// handshake with a target, and say which step failed: a target its
    /// allow-list, FQDN rules or routes give it. Exit 0 when every step
    /// passed, 1 otherwise.
    AgentCheck {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
        /// HOST:PORT, e.g. git.internal:443.
        #[arg(long)]
        target: String,
        /// Also complete a TLS handshake and validate the certificate.
        #[arg(long)]
        tls: bool,
    },
    /// A connected agent's recent log lines; with --follow, new ones as
    /// they are logged, until interrupted (like `cloudflared tail`). The
    /// agent keeps its last 2000 lines at its own --log-level.
    AgentLogs {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
        /// Keep printing new lines.
        #[arg(long, short = 'f')]
        follow: bool,
        /// The least severe level shown.
        #[arg(long, value_enum, default_value_t = Level::Info)]
        level: Level,
        /// Recent lines shown first (1-500).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=500))]
        lines: i64,
    },
}

/// Runs one question.
pub async fn run(cmd: Ask) -> Result<()> {
    match cmd {
        Ask::AgentInfo { api, agent_name } => {
            check_name("agent", &agent_name)?;
            let a = Api::new(&api)?;
            let v: AgentInfo = a
                .call(&Endpoint::AgentInfo { agent: agent_name }, NONE)
                .await?;
            a.print(&v, info_text);
        }
        Ask::AgentCheck {
            api,
            agent_name,
            target,
            tls,
        } => {
            check_name("agent", &agent_name)?;
            burrow_api::check_target(&target).map_err(|e| UsageError(e.message))?;
            let a = Api::new(&api)?;
            let e = Endpoint::AgentCheck {
                agent: agent_name.clone(),
                target,
                tls,
            };
            let v: CheckReport = a.call(&e, NONE).await?;
            a.print(&v, check_text);
            if !v.ok {
                let failed = v
                    .steps
                    .iter()
                    .find(|s| !s.ok)
                    .map_or("", |s| s.step.as_str());
                anyhow::bail!(
                    "agent {agent_name} cannot reach {}: the {failed} step failed",
                    v.target
                );
            }
        }
        Ask::AgentLogs {
            api,
            agent_name,
            follow,
            level,
            lines,
        } => {
            check_name("agent", &agent_name)?;
            let a = Api::new(&api)?;
            logs(&a, &agent_name, follow, level, lines).await?;
        }
    }
    Ok(())
}

/// How long one follow request waits for a line.
const FOLLOW_WAIT: i64 = 20;

async fn logs(a: &Api, agent: &str, follow: bool, level: Level, lines: i64) -> Result<()> {
    let mut query = LogsQuery {
        level: Some(level.as_str().to_owned()),
        after: None,
        wait: None,
        max: Some(lines),
    };
    let mut failures = 0u32;
    loop {
        let e = Endpoint::AgentLogs {
            agent: agent.to_owned(),
            query: query.clone(),
        };
        match a.call::<AgentLogs>(&e, NONE).await {
            Ok(v) => {
                failures = 0;
                for l in &v.lines {
                    if a.json {
                        println!("{}", serde_json::to_string(l).unwrap_or_default());
                    } else {
                        println!("{}", line_text(l));
                    }
                }
                if !follow {
                    return Ok(());
                }
                query.after = Some(v.last.or(query.after).unwrap_or(0));
                query.wait = Some(FOLLOW_WAIT);
                query.max = Some(500);
            }
            // While following, an agent that reconnects (or a gateway
            // that restarts) is waited for: say so, and ask again.
            Err(err) if follow && retryable(&err) && failures < 150 => {
                failures += 1;
                if failures == 1 {
                    eprintln!("burrow: {err}; asking again every 2 s");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Whether a failed follow request is worth asking again: not bad input,
/// a wrong key or an agent that cannot answer.
fn retryable(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<UsageError>().is_some() {
        return false;
    }
    let text = e.to_string();
    !["HTTP 401", "HTTP 403", "HTTP 501"]
        .iter()
        .any(|s| text.contains(s))
}

fn line_text(l: &LogLine) -> String {
    let ms = l.at.rem_euclid(1_000_000) / 1000;
    let mut s = format!("{}.{ms:03} {:>5} {}", time(Some(l.at)), l.level, l.message);
    for (k, v) in &l.fields {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

fn info_text(v: &AgentInfo) -> String {
    let mut out = String::new();
    for (k, val) in [
        ("version", v.version.clone()),
        ("os", v.os.clone()),
        ("started (UTC)", time(Some(v.started_at))),
        ("uptime", uptime(Some(v.uptime_seconds))),
        ("open streams", v.open_streams.to_string()),
    ] {
        out.push_str(&format!("{k:<14} {val}\n"));
    }
    out.push_str("\nLINKS\n");
    out.push_str(&table(
        &[
            "LINK",
            "STATE",
            "REPLICA",
            "ROUND TRIP",
            "STREAMS",
            "LAST FAILURE",
        ],
        v.links
            .iter()
            .map(|l| {
                vec![
                    l.index.to_string(),
                    l.state.clone(),
                    opt(l.replica.as_deref()),
                    rtt(l.rtt_ms),
                    l.open_streams.to_string(),
                    opt(l.last_failure.as_deref()),
                ]
            })
            .collect(),
    ));
    let list = |title: &str, items: &[String]| {
        if items.is_empty() {
            format!("\n{title}: none\n")
        } else {
            format!("\n{title}\n  {}\n", items.join("\n  "))
        }
    };
    out.push_str(&list("FQDN RULES", &v.rules));
    out.push_str(&list("ALLOW-LIST", &v.allow));
    let routes: Vec<String> = v
        .routes
        .iter()
        .map(|r| {
            let off = if r.enabled { "" } else { " (disabled)" };
            format!("{} -> {}{off}", r.hostname, r.target)
        })
        .collect();
    out.push_str(&list("ROUTES", &routes));
    out.push_str("\nSETTINGS\n");
    out.push_str(&table(
        &["SETTING", "VALUE", "FROM"],
        v.settings
            .iter()
            .map(|s| vec![s.name.clone(), s.value.clone(), s.source.clone()])
            .collect(),
    ));
    out
}

fn check_text(v: &CheckReport) -> String {
    let rows = v
        .steps
        .iter()
        .map(|s| {
            vec![
                s.step.clone(),
                if s.ok { "ok" } else { "FAILED" }.to_owned(),
                format!("{:.1} ms", s.ms),
                s.detail.clone(),
            ]
        })
        .collect();
    let mut out = table(&["STEP", "RESULT", "TOOK", "DETAIL"], rows);
    out.push_str(if v.ok {
        "every step passed\n"
    } else {
        "the check failed\n"
    });
    out
}
