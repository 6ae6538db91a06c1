//! How the gateway opens a stream through an agent to a target and waits
//! for it: one policy for the egress proxy and the HTTP edge. The agent's
//! links are tried in turn (at most three): one that closed under us, or
//! that answers neither the open nor a ping after it
//! ([`burrow_mux::Session::answered`]), is left for the next at once,
//! instead of the client waiting until heartbeats notice it is dead.

use std::time::Duration;

use burrow_mux::{MuxError, MuxStream, ResetCode};
use burrow_wire::egress::Target;

use crate::registry::Registry;

/// Longest wait for the agent to connect the target.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Links tried per open.
const TRIES: usize = 3;

/// Why an open failed.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// The agent has no live (answering) link.
    Offline,
    /// The agent refused or could not connect the target.
    Reset(Refusal),
    /// The agent did not connect the target within [`OPEN_TIMEOUT`].
    Timeout,
    /// Anything else on the link (stream limits, ids).
    Failed(String),
}

/// Why the agent refused a stream: its code and, from an agent that gives
/// them, its words (what it could not resolve, which certificate, ...).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ResetCode,
    /// Empty from an agent too old to say.
    pub(crate) reason: String,
}

impl Refusal {
    /// The agent's words, else `fallback`.
    pub(crate) fn or<'a>(&'a self, fallback: &'a str) -> &'a str {
        if self.reason.is_empty() {
            fallback
        } else {
            &self.reason
        }
    }
}

/// Opens `target` through `agent` and waits until the agent has connected.
pub(crate) async fn open(
    registry: &Registry,
    agent: &str,
    target: &Target,
) -> Result<MuxStream, OpenFailure> {
    for _ in 0..TRIES {
        let Some(session) = registry.pick(agent) else {
            return Err(OpenFailure::Offline);
        };
        let stream = match session.open_with_ack(&target.encode()).await {
            Ok(s) => s,
            Err(MuxError::Closed(_)) => continue,
            Err(e) => return Err(OpenFailure::Failed(e.to_string())),
        };
        return match tokio::time::timeout(OPEN_TIMEOUT, session.answered(&stream)).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(MuxError::Closed(_))) => continue,
            Ok(Err(MuxError::Reset(code))) => Err(OpenFailure::Reset(Refusal {
                code,
                reason: stream.refusal().map(|(_, r)| r).unwrap_or_default(),
            })),
            Ok(Err(e)) => Err(OpenFailure::Failed(e.to_string())),
            Err(_) => {
                stream.reset(ResetCode::Cancelled);
                Err(OpenFailure::Timeout)
            }
        };
    }
    Err(OpenFailure::Offline)
}
