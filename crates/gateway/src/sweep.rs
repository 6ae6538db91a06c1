//! The sweep: the fallback that keeps a replica in step with the shared
//! store when nothing told it of a change.

use std::sync::Arc;

use tracing::{debug, warn};

use crate::state::State;

/// Every few seconds: re-reads the FQDN rules (pushing changes to agents),
/// and closes live links whose key was removed, or whose agent was
/// unregistered, also when that happened through another replica or
/// straight in the database. A database error leaves links as they are.
pub(crate) async fn run(state: Arc<State>) {
    let Some(id) = &state.identity else {
        return;
    };
    let mut tick = tokio::time::interval(state.config.revocation_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // PostgreSQL tells of changes at once; the tick stays as the fallback.
    let mut changes = match id.store.listen_changes().await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "not listening for changes (PostgreSQL LISTEN); the sweep alone keeps this replica in step");
            None
        }
    };
    loop {
        let told = async {
            match changes.as_mut() {
                Some(c) => {
                    if let Err(e) = c.next().await {
                        debug!(error = %e, "change notifications interrupted");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = state.stop_accepting.cancelled() => return,
            _ = tick.tick() => {}
            () = told => {}
        }
        state.catalog.reload().await;
        for agent in state.registry.keyed_agents() {
            let Ok(keys) = id.store.keys(&agent).await else {
                continue;
            };
            let names: Vec<String> = keys.into_iter().map(|k| k.name).collect();
            let closed = state.registry.close_unless_key(&agent, &names);
            if closed > 0 {
                warn!(event = crate::event::REVOKED_LINKS_CLOSED, %agent, closed, "closed links whose key is no longer registered");
            }
        }
    }
}
