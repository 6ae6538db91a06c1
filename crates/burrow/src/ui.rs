//! `burrow run`'s web UI settings (Octoporty's `Agent__Port`,
//! `Agent__Auth__PasswordHash`, `Agent__JwtSecret`,
//! `ConnectionStrings__DefaultConnection`) and its start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_transport::Secret;
use burrow_transport::tls::LiveIdentity;
use clap::Args;

use crate::identity::IdentityArgs;

/// Where the UI listens, or that it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiListen {
    /// Here.
    At(SocketAddr),
    /// Not at all.
    Off,
}

fn parse_ui_listen(s: &str) -> Result<UiListen, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(UiListen::Off);
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(UiListen::At(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    s.parse()
        .map(UiListen::At)
        .map_err(|_| format!("{s:?}: use ADDRESS:PORT (127.0.0.1:17201), a port (17201), or off"))
}

/// The agent's web UI.
#[derive(Debug, Clone, Args)]
pub struct UiArgs {
    /// Where the web UI listens: ADDRESS:PORT, a port (on 127.0.0.1), or
    /// `off`. It is served only when --ui-password-hash is set. Never
    /// expose it to the internet.
    #[arg(
        long,
        env = "BURROW_UI_LISTEN",
        default_value = "127.0.0.1:17201",
        value_parser = parse_ui_listen
    )]
    pub ui_listen: UiListen,
    /// SHA-512 crypt hash of the web UI password, from
    /// `openssl passwd -6 'PASSWORD'` (any rounds). Turns the UI on.
    #[arg(long, env = "BURROW_UI_PASSWORD_HASH", hide_env_values = true)]
    pub ui_password_hash: Option<String>,
    /// Secret that signs web UI sessions, at least 32 characters
    /// (`openssl rand -base64 32`). Prefer the variable: flags show in `ps`.
    #[arg(long, env = "BURROW_UI_JWT_SECRET", hide_env_values = true)]
    pub ui_jwt_secret: Option<String>,
    /// Serve the web UI over plain HTTP instead of HTTPS with the agent's
    /// own certificate (for a TLS proxy in front, or loopback only).
    #[arg(long, env = "BURROW_UI_PLAIN_HTTP")]
    pub ui_plain_http: bool,
    /// How long a web UI login lasts, in seconds.
    #[arg(long, env = "BURROW_UI_SESSION_SECONDS", default_value_t = 8 * 3600, value_parser = clap::value_parser!(u64).range(1..=30 * 86400))]
    pub ui_session_seconds: u64,
    /// The agent's database of web UI mappings: a path, or Octoporty's
    /// `Data Source=PATH`. Default: agent.db in the data directory.
    #[arg(long, env = "BURROW_AGENT_DATABASE")]
    pub agent_database: Option<String>,
}

/// Checks the UI settings (before the agent starts) and opens its
/// database; `None` when the UI is off or has no password hash. Its Logs
/// page reads `log_files` when the agent writes them.
pub async fn prepare(
    ui: &UiArgs,
    ids: &IdentityArgs,
    agent_identity: Option<Arc<LiveIdentity>>,
    log_files: Option<burrow_ui::LogFiles>,
) -> Result<Option<burrow_ui::UiConfig>> {
    let UiListen::At(listen) = ui.ui_listen else {
        return Ok(None);
    };
    let Some(hash) = &ui.ui_password_hash else {
        if ui.ui_jwt_secret.is_some() {
            tracing::warn!(
                "a web UI JWT secret is set but no password hash (BURROW_UI_PASSWORD_HASH, Agent__Auth__PasswordHash): the web UI is off"
            );
        }
        return Ok(None);
    };
    let password = burrow_ui::PasswordHash::new(Secret::new(hash.trim()))?;
    let Some(secret) = &ui.ui_jwt_secret else {
        bail!(
            "the web UI needs a JWT secret of at least 32 characters: set BURROW_UI_JWT_SECRET (Agent__JwtSecret), e.g. from openssl rand -base64 32, or turn the UI off with --ui-listen off"
        );
    };
    let sessions = burrow_ui::Sessions::new(
        Secret::new(secret.trim()),
        Duration::from_secs(ui.ui_session_seconds),
    )?;
    let data_dir = ids.data_dir();
    let db_path: PathBuf = match &ui.agent_database {
        Some(s) if s.contains('=') => burrow_ui::data_source(s)?,
        Some(s) => PathBuf::from(s),
        None => data_dir.join("agent.db"),
    };
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        burrow_transport::files::ensure_writable_dir(dir, "agent database directory")?;
    }
    let db = burrow_ui::Db::open(&db_path).await?;
    let tls = if ui.ui_plain_http {
        None
    } else {
        let id = match agent_identity {
            Some(id) => id,
            None => ids.load("agent")?,
        };
        let edge = burrow_transport::tls::edge_server_config(id).context("web UI certificate")?;
        // HTTP/1.1 only: the page holds at most a few streams open.
        let mut c = (*edge).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Arc::new(c))
    };
    let scratch_dir = db_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    Ok(Some(burrow_ui::UiConfig {
        listen,
        tls,
        password,
        sessions,
        db,
        scratch_dir,
        log_files,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_ui_listen("off"), Ok(UiListen::Off));
        assert_eq!(
            parse_ui_listen("17201"),
            Ok(UiListen::At("127.0.0.1:17201".parse().expect("addr")))
        );
        assert_eq!(
            parse_ui_listen("0.0.0.0:8080"),
            Ok(UiListen::At("0.0.0.0:8080".parse().expect("addr")))
        );
        assert!(parse_ui_listen("nowhere").is_err());
    }
}
