//! Listening mode: the gateway dials an agent that listens
//! (`--agent-endpoint NAME=tls://host:port`), pins the agent's certificate
//! to the thumbprints trusted for NAME, presents its own as the client
//! certificate, and then treats the link like any other.

use std::sync::Arc;
use std::time::Duration;

use burrow_transport::tls::{ServerTrust, client_config};
use burrow_transport::{Backoff, Dialer, Link, TransportError, proxy::ProxyEnv};
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};

use crate::config::AgentEndpoint;
use crate::endpoint;
use crate::state::State;

const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// A link up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

fn dial_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Setup(e.to_string())
}

async fn dial(state: &State, ep: &AgentEndpoint) -> Result<Link, TransportError> {
    let trusted = state.config.trust.for_agent(&ep.name);
    if trusted.is_empty() {
        return Err(dial_error(format_args!(
            "no certificate is trusted for agent {}: add --trust-agent {}=THUMBPRINT (the listening agent prints it at start)",
            ep.name, ep.name
        )));
    }
    let identity = state.config.tls.clone().ok_or_else(|| {
        dial_error("listening agents need the gateway's TLS certificate; remove --no-tls")
    })?;
    let hint = format!("--trust-agent {}=THUMBPRINT on the gateway", ep.name);
    let cfg = client_config(
        Some(identity),
        &ServerTrust::Pinned(trusted),
        &format!("agent {}", ep.name),
        &hint,
        ep.url.scheme.alpn(),
    )?;
    let dialer = Dialer::new(ep.url.clone(), Some(cfg), &ProxyEnv::default())?;
    dialer.dial(None, DIAL_TIMEOUT).await
}

pub(crate) async fn run(state: Arc<State>, ep: AgentEndpoint, idx: usize) {
    let span = info_span!("outbound", agent = %ep.name, link = idx);
    async move {
        let mut backoff = Backoff::new(state.config.reconnect_delay, state.config.max_reconnect_delay);
        let mut last_failure: Option<String> = None;
        loop {
            if state.stop_accepting.is_cancelled() {
                return;
            }
            match dial(&state, &ep).await {
                Ok(link) => {
                    last_failure = None;
                    let up_at = Instant::now();
                    endpoint::admit(state.clone(), link, Some(&ep.name), endpoint::Slot::Uncounted).await;
                    if up_at.elapsed() >= STABLE_AFTER {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if last_failure.as_deref() != Some(msg.as_str()) {
                        warn!(event = crate::event::LISTENING_AGENT_UNREACHABLE, url = %ep.url.url, error = %msg, "cannot reach listening agent; retrying with backoff");
                        last_failure = Some(msg);
                    } else {
                        debug!(event = crate::event::LISTENING_AGENT_STILL_UNREACHABLE, error = %msg, "still cannot reach listening agent");
                    }
                }
            }
            let delay = backoff.next_delay(&mut rand::rng());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = state.stop_accepting.cancelled() => return,
            }
        }
    }
    .instrument(span)
    .await
}
