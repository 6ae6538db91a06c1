//! The agent's web UI, served by `burrow run` (`--ui-listen`, default
//! `127.0.0.1:17201`, as Octoporty's `Agent__Port`) when a password hash
//! is configured: log in, watch the links, manage this agent's mappings,
//! read its traffic and logs, set its landing page, take a backup.
//!
//! # Layout
//! - `auth.rs`: password, session JWT, CSRF token, lockout.
//! - `db.rs`: the agent's SQLite database of mappings.
//! - `api.rs`: the JSON API the page calls, and its checks.
//! - `logfile.rs`: the agent's log files, read newest first.
//! - `assets/`: the page (HTML, CSS, JS), embedded in the binary.
//!
//! Every answer carries a strict Content-Security-Policy; every change
//! needs the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS)
//! and the session's CSRF token in `X-CSRF-Token`.

#![forbid(unsafe_code)]

mod api;
pub mod auth;
pub mod db;
mod logfile;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use auth::{AuthError, PasswordHash, Sessions};
pub use db::{Db, DbError, data_source};
pub use logfile::LogFiles;

/// Octoporty's web UI port.
pub const DEFAULT_PORT: u16 = 17201;

/// What the UI needs.
pub struct UiConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// HTTPS with this configuration; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The login password's hash.
    pub password: PasswordHash,
    /// Session signing.
    pub sessions: Sessions,
    /// The mappings.
    pub db: Db,
    /// Where backups are put together before they are sent.
    pub scratch_dir: PathBuf,
    /// The agent's log files, when it writes them: the Logs page reads
    /// them (else the lines kept in memory since the start).
    pub log_files: Option<LogFiles>,
}

/// Why the UI cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The port is taken or not ours.
    #[error(
        "web UI: cannot listen on {addr}: {source} (set Agent__Port or --ui-listen, or --ui-listen off)"
    )]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be read.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A bound UI, not yet serving.
pub struct Ui {
    listener: TcpListener,
    state: Arc<api::UiState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Ui {
    /// Binds the listener and loads the mappings into `agent` (so they are
    /// published on its first link).
    pub async fn bind(cfg: UiConfig, agent: burrow_agent::Agent) -> Result<Ui, UiError> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| UiError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let mappings = cfg.db.mappings().await?;
        // No link is up yet: this only sets them.
        let _ = agent.set_mappings(mappings).await;
        let tls = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let state = Arc::new(api::UiState::new(cfg, agent));
        Ok(Ui {
            listener,
            state,
            tls,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if let Some(addr) = self.local_addr() {
            info!(event = burrow_agent::event::UI_LISTENING, url = %format!("{scheme}://{addr}/"), "web UI listening (keep it off the public internet)");
        }
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "web UI accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = self.state.clone();
            let tls = self.tls.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(api::handle(state, peer, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let served = match tls {
                    Some(acceptor) => {
                        let Ok(Ok(io)) = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            acceptor.accept(tcp),
                        )
                        .await
                        else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(io), svc);
                        tokio::select! {
                            r = conn => r,
                            _ = stop.cancelled() => return,
                        }
                    }
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                        tokio::select! {
                            r = conn => r,
                            _ = stop.cancelled() => return,
                        }
                    }
                };
                if let Err(e) = served {
                    debug!(error = %e, "web UI connection ended");
                }
            });
        }
    }
}
