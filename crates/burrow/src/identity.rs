//! Certificates on the command line: the data directory, generated or
//! imported identities, `burrow thumbprint`, and reload on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burrow_transport::tls::{
    IdentitySource, LiveIdentity, generated_paths, thumbprint_of_pem_file,
};
use clap::Args;
use tracing::{info, warn};

/// Where state lives, and this side's certificate.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Data directory: generated certificate and key (mode 0600), later the
    /// database. Default: $XDG_DATA_HOME/burrow, else ~/.local/share/burrow,
    /// else /var/lib/burrow.
    #[arg(long, env = "BURROW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this certificate (PEM, chain leaf first) instead of generating
    /// one. Needs --tls-key. Reloaded on SIGHUP.
    #[arg(long, env = "BURROW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key for --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BURROW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = var("XDG_DATA_HOME") {
        PathBuf::from(x).join("burrow")
    } else if let Some(h) = var("HOME") {
        PathBuf::from(h).join(".local/share/burrow")
    } else {
        PathBuf::from("/var/lib/burrow")
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// DNS names for a generated certificate: localhost and this host's name.
fn cert_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(hostname().filter(|h| h != "localhost"));
    names
}

impl IdentityArgs {
    /// The data directory in use.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// Loads (or on first start creates) the certificate for `role`
    /// (`gateway` or `agent`) and logs its thumbprint.
    pub fn load(&self, role: &str) -> Result<Arc<LiveIdentity>> {
        let source = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => IdentitySource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => IdentitySource::Generated {
                dir: self.data_dir(),
                role: role.to_owned(),
                names: cert_names(),
            },
        };
        let id = LiveIdentity::load(source.clone())
            .with_context(|| format!("cannot load the {role} certificate"))?;
        let current = id.current();
        let path = source
            .cert_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if current.created {
            info!(thumbprint = %current.thumbprint, %path, "{role} certificate created (self-signed, P-256); give this thumbprint to the other side");
        } else {
            info!(thumbprint = %current.thumbprint, %path, "{role} certificate loaded");
        }
        Ok(id)
    }
}

/// Reloads `id` from its files on every SIGHUP, for certificate rotation
/// while links stay up.
pub fn reload_on_sighup(id: Arc<LiveIdentity>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match id.reload() {
                Ok(t) => {
                    info!(event = burrow_gateway::event::CERTIFICATE_RELOADED, thumbprint = %t, "certificate reloaded (SIGHUP); new links use it")
                }
                Err(e) => {
                    warn!(event = burrow_gateway::event::CERTIFICATE_NOT_RELOADED, error = %e, "certificate not reloaded; keeping the one in use")
                }
            }
        }
    });
}

/// `burrow thumbprint` flags.
#[derive(Debug, Args)]
pub struct ThumbprintArgs {
    /// PEM certificate files. Without any, prints the thumbprints of the
    /// certificates in the data directory.
    pub files: Vec<PathBuf>,
    /// Data directory to look in when no file is given.
    #[arg(long, env = "BURROW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Prints `THUMBPRINT  FILE` lines.
pub fn thumbprint(args: ThumbprintArgs) -> Result<()> {
    let files = if args.files.is_empty() {
        let dir = args.data_dir.unwrap_or_else(default_data_dir);
        let found: Vec<PathBuf> = ["gateway", "agent"]
            .iter()
            .map(|r| generated_paths(&dir, r).0)
            .filter(|p| p.exists())
            .collect();
        if found.is_empty() {
            bail!(
                "no certificate in {}: give a PEM file, or start the gateway or agent once to create one",
                dir.display()
            );
        }
        found
    } else {
        args.files
    };
    for f in files {
        let t = thumbprint_of_pem_file(&f)?;
        println!("{t}  {}", f.display());
    }
    Ok(())
}
