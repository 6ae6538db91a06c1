//! Why an open through an agent failed, in terms every opener shares (the
//! local links, other replicas, the edge and the egress proxy).

use std::time::Duration;

use burrow_mux::ResetCode;

/// Longest wait for the agent to connect the target.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

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
