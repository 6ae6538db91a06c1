//! Live reload of `--config FILE`: on SIGHUP, and when the file changes,
//! the command line is taken again with the file re-read, exactly as at
//! start. A file that does not check out is refused whole (the running
//! configuration stays); otherwise the role applies what can change while
//! running, and one line says what changed and what waits for a restart.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::settings::{self, Parsed};

/// Event names of the reload's log lines.
pub mod event {
    /// A reload took effect (fields: trigger, changed, restart_needed).
    pub const CONFIG_RELOADED: &str = "config_reloaded";
    /// A reload was refused; the running configuration stays (fields:
    /// trigger, error).
    pub const CONFIG_REFUSED: &str = "config_refused";
}

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// What the process started with: parsed again at each reload.
pub struct Startup {
    /// The command line.
    pub args: Vec<String>,
    /// The environment.
    pub env: Vec<(String, String)>,
    /// The settings in effect, as the banner listed them.
    pub effective: Vec<(String, String, String)>,
}

/// The file's size, modification time and contents, to notice a change.
fn seen(path: &Path) -> Option<(std::time::SystemTime, Vec<u8>)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, std::fs::read(path).ok()?))
}

/// Runs for ever: each SIGHUP or change of `path` parses the command line
/// again and hands the result to `apply`, which changes what it can and
/// returns the settings it changed, or why it refused. `live` names the
/// settings `apply` can change (the others changing are said to need a
/// restart).
pub async fn watch<F, Fut>(startup: Startup, path: PathBuf, live: &[&str], mut apply: F)
where
    F: FnMut(Parsed) -> Fut,
    Fut: Future<Output = Result<Vec<String>, String>>,
{
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "no SIGHUP reload: the signal cannot be watched");
            None
        }
    };
    let mut last = seen(&path);
    let mut before = startup.effective.clone();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            #[cfg(unix)]
            if let Some(h) = hup.as_mut() {
                h.recv().await;
                return;
            }
            std::future::pending::<()>().await
        };
        let trigger = tokio::select! {
            () = hangup => "SIGHUP",
            _ = tick.tick() => {
                let now = seen(&path);
                if now == last {
                    continue;
                }
                last = now;
                "file changed"
            }
        };
        let parsed = match settings::parse(&startup.args, &startup.env) {
            Ok(p) => p,
            Err(e) => {
                warn!(event = event::CONFIG_REFUSED, trigger, error = %e, "configuration not reloaded: it does not check out; the running configuration stays");
                continue;
            }
        };
        let after = parsed.effective();
        match apply(parsed).await {
            Ok(mut changed) => {
                let differ = differ(&before, &after);
                if differ.iter().any(|n| n == "--log-level") {
                    changed.push("log-level".to_owned());
                }
                let restart: Vec<String> = differ
                    .into_iter()
                    .filter(|n| !live.contains(&n.as_str()))
                    .collect();
                let changed = if changed.is_empty() {
                    "nothing".to_owned()
                } else {
                    changed.join(", ")
                };
                let restart_needed = if restart.is_empty() {
                    "none".to_owned()
                } else {
                    restart.join(", ")
                };
                info!(event = event::CONFIG_RELOADED, trigger, %changed, %restart_needed, "configuration reloaded");
                before = after;
            }
            Err(e) => {
                warn!(event = event::CONFIG_REFUSED, trigger, error = %e, "configuration not reloaded; the running configuration stays");
            }
        }
    }
}

/// The settings whose value differs between two banners.
fn differ(a: &[(String, String, String)], b: &[(String, String, String)]) -> Vec<String> {
    let value = |l: &[(String, String, String)], n: &str| {
        l.iter().find(|(k, _, _)| k == n).map(|(_, v, _)| v.clone())
    };
    let mut names: Vec<&String> = a.iter().chain(b).map(|(k, _, _)| k).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| value(a, n) != value(b, n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_differ_are_named_once() {
        let row = |k: &str, v: &str| (k.to_owned(), v.to_owned(), "file".to_owned());
        let a = vec![row("--allow", "a:1"), row("--links", "2")];
        let b = vec![
            row("--allow", "a:1,b:2"),
            row("--links", "2"),
            row("--route", "x=y"),
        ];
        assert_eq!(differ(&a, &b), ["--allow", "--route"]);
        assert!(differ(&a, &a).is_empty());
    }
}
