//! What `burrow doctor` asks of the agent's own code: a token from the
//! gateway's endpoint, one link's hello (and the rules the gateway sends
//! on it), and checks of targets, each as the running agent would do
//! them. The link is announced as draining at once: the gateway opens no
//! stream on it.

use std::time::{Duration, Instant};

use burrow_mux::{Event, Session};
use burrow_wire::control;

use crate::{Agent, AgentMode};

/// How long the doctor's link waits for the gateway's rules.
const RULES_WAIT: Duration = Duration::from_secs(3);

/// What one link's hello found.
#[derive(Debug, Clone)]
pub struct HelloFacts {
    /// The gateway's software version.
    pub gateway_version: String,
    /// The replica it reached, when the gateway says.
    pub replica: Option<String>,
    /// From sending the hello to its acknowledgement.
    pub round_trip: Duration,
    /// The FQDN rules and route targets the gateway gave (`pattern`,
    /// TLS, ports), if they came within a few seconds.
    pub rules: Vec<burrow_wire::egress::AgentRule>,
}

impl Agent {
    /// Trades a client assertion for an access token, as a link would
    /// (`None`: this agent does not use key-pair authentication).
    pub async fn try_token(&self) -> Option<Result<(), crate::TokenError>> {
        let tokens = self.state.tokens.as_ref()?;
        Some(tokens.get().await.map(|_| ()))
    }

    /// Dials the gateway once (token, connect, upgrade, hello), waits for
    /// the rules it sends, then closes the link. `Err`: why, in words.
    pub async fn try_hello(&self) -> Result<HelloFacts, String> {
        let state = &self.state;
        if !matches!(state.config.mode, AgentMode::Poll(_)) {
            return Err("listening mode: the gateway dials this agent".into());
        }
        let started = Instant::now();
        let (link, ack) = crate::link::dial(state, 0)
            .await
            .map_err(|e| e.to_string())?;
        let round_trip = started.elapsed();
        let config = burrow_mux::Config {
            dialer: true,
            heartbeat: Some(state.config.heartbeat),
            ..burrow_mux::Config::default()
        };
        let (session, mut incoming) = Session::new(link.reader, link.writer, config);
        // No stream for this link: it is the doctor's.
        let _ = session
            .send_control(control::DRAINING, bytes::Bytes::new())
            .await;
        let mut rules = Vec::new();
        let deadline = tokio::time::sleep(RULES_WAIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                ev = incoming.next() => match ev {
                    Some(Event::Control(control::RULES, body)) => {
                        rules = burrow_wire::egress::decode_rules(&body);
                        *state.rules.write().unwrap_or_else(|p| p.into_inner()) = rules.clone();
                        break;
                    }
                    Some(Event::Stream(s)) => s.reset(burrow_mux::ResetCode::Busy),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        session.close();
        Ok(HelloFacts {
            gateway_version: ack.software_version.clone(),
            replica: burrow_wire::capabilities::replica_of(&ack.capabilities).map(str::to_owned),
            round_trip,
            rules,
        })
    }

    /// Checks `target` (`HOST:PORT`) as `agent-check` does: allowed,
    /// DNS, TCP and, with `tls`, the handshake and certificate.
    pub async fn check(&self, target: &str, tls: bool) -> burrow_api::types::CheckReport {
        crate::check::check(&self.state, target, tls).await
    }

    /// The routes this agent publishes: (public host name, internal URL).
    pub fn routes(&self) -> Vec<(String, String)> {
        self.state.live().routes.clone()
    }
}
