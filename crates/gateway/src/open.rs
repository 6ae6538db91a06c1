//! How the gateway opens a stream through an agent to a target and waits
//! for it: one policy for the egress proxy and the HTTP edge. The agent's
//! links are tried in turn (at most three): one that closed under us, or
//! that answers neither the open nor a ping after it
//! ([`burrow_mux::Session::answered`]), is left for the next at once,
//! instead of the client waiting until heartbeats notice it is dead.

use burrow_mux::{MuxError, MuxStream, ResetCode};
use burrow_wire::egress::Target;

use crate::registry::Registry;

pub(crate) use crate::refusal::{OpenFailure, Refusal};

pub(crate) use crate::refusal::OPEN_TIMEOUT;

/// Links tried per open.
const TRIES: usize = 3;

/// Opens `target` through `agent` and waits until the agent has connected;
/// through another replica when this one holds none of its links.
pub(crate) async fn open(
    registry: &Registry,
    agent: &str,
    target: &Target,
) -> Result<MuxStream, OpenFailure> {
    open_str(registry, agent, &target.encode()).await
}

/// [`open`], for a target string (a forward's `HOST:PORT`).
pub(crate) async fn open_str(
    registry: &Registry,
    agent: &str,
    target: &str,
) -> Result<MuxStream, OpenFailure> {
    match open_local(registry, agent, target).await {
        Err(OpenFailure::Offline) => match registry.remote() {
            Some(cluster) => cluster.open(agent, target).await,
            None => Err(OpenFailure::Offline),
        },
        done => done,
    }
}

/// [`open`] on this replica's own links of the agent only.
pub(crate) async fn open_local(
    registry: &Registry,
    agent: &str,
    target: &str,
) -> Result<MuxStream, OpenFailure> {
    for _ in 0..TRIES {
        let Some(session) = registry.pick(agent) else {
            return Err(OpenFailure::Offline);
        };
        let stream = match session.open_with_ack(target).await {
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
