//! What every handler takes: the call (store, caller, host) and its body.

use burrow_store::Store;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::error::Refusal;
use super::state::Admin;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// One authenticated call: the store, who calls, the host it was sent to.
pub(crate) struct Call<'a> {
    pub(crate) admin: &'a Admin,
    pub(crate) store: &'a Store,
    pub(crate) actor: &'a str,
    /// The `Host` the call named (new agents are told to dial it).
    pub(crate) host: String,
    /// The admin key it was made with, to ask another replica for it.
    pub(crate) bearer: String,
    /// It came from another replica: never passed on again.
    pub(crate) hop: bool,
}

impl Call<'_> {
    /// A store error from a change naming `agent` (a rule or a route), for
    /// the caller: an unregistered agent is told how to register it, and
    /// one connected with the pre-shared key is said to be (the key does
    /// not register a name; any holder may claim any name).
    pub(crate) fn for_agent(&self, e: burrow_store::StoreError, agent: &str) -> Refusal {
        if !matches!(e, burrow_store::StoreError::NotFound { what: "agent", .. }) {
            return e.into();
        }
        let links = self.admin.links.links(agent);
        let connected = if links.is_empty() {
            String::new()
        } else {
            format!(
                " Agent {agent} is connected with the pre-shared key ({} link{}), which does not register it.",
                links.len(),
                if links.len() == 1 { "" } else { "s" }
            )
        };
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "no registered agent named {agent:?}: FQDN rules and routes belong to registered agents.{connected} Register it with: burrow keygen --agent-name {agent} && burrow register --agent-name {agent} --key-name KEY --public-key \"$(cat ConnectionAgent-{agent}.pem.pub)\" (it may keep connecting with the pre-shared key)"
            ),
        )
    }

    /// Records an admin action in the audit log (and the gateway log).
    pub(crate) async fn audit(&self, action: &'static str, subject: &str, detail: String) {
        if let Err(e) = self.store.audit(self.actor, action, subject, &detail).await {
            warn!(error = %e, "audit record not written");
        }
        info!(actor = self.actor, action, %subject, "admin API");
    }
}

/// Reads and parses a JSON body (at most [`MAX_BODY`]).
pub(crate) async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Refusal> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::bad_request(format!("invalid JSON body: {e}")))
}
