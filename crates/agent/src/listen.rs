//! Listening mode: the agent is the TLS server and the gateway dials it.
//! Only a gateway presenting a trusted certificate gets a link; a browser
//! gets a page that says what this port is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_transport::tls::{Thumbprint, list_thumbprints, server_config};
use burrow_transport::{accept_tls, handshake, page, raw};
use burrow_wire::{Reject, RejectCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{AgentError, AgentState, link};

/// Most gateway links served at once.
const MAX_LINKS: usize = 16;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Listener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    gateway: Vec<Thumbprint>,
}

pub(crate) async fn bind(
    state: &AgentState,
    addr: SocketAddr,
    gateway: Vec<Thumbprint>,
) -> Result<Listener, AgentError> {
    let identity = state
        .config
        .identity
        .clone()
        .ok_or_else(|| AgentError::Tls("a listening agent needs its certificate".into()))?;
    if gateway.is_empty() {
        return Err(AgentError::Tls(
            "set GATEWAY_THUMBPRINT to the thumbprint the gateway prints at start: a listening agent serves only that gateway".into(),
        ));
    }
    let thumbprint = identity.thumbprint();
    let cfg = server_config(identity).map_err(|e| AgentError::Tls(e.to_string()))?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Bind { addr, source })?;
    let local = tcp.local_addr().unwrap_or(addr);
    info!(event = crate::event::LISTENING, addr = %local, %thumbprint, gateway = %list_thumbprints(&gateway), "listening for the gateway (TLS 1.2+)");
    Ok(Listener {
        tcp,
        acceptor: TlsAcceptor::from(cfg),
        gateway,
    })
}

impl Listener {
    pub(crate) async fn run(self, state: Arc<AgentState>) {
        let slots = Arc::new(Semaphore::new(MAX_LINKS));
        let links = TaskTracker::new();
        let gateway = Arc::new(self.gateway);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = state.stopping.cancelled() => break,
                r = self.tcp.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (state, acceptor, gateway, slots) = (
                state.clone(),
                self.acceptor.clone(),
                gateway.clone(),
                slots.clone(),
            );
            links.spawn(
                async move {
                    let tls = match accept_tls(&acceptor, tcp, TLS_HANDSHAKE_TIMEOUT).await {
                        Ok(t) => t,
                        Err(e) => return debug!(error = %e, "TLS handshake failed"),
                    };
                    if !tls.raw {
                        let thumbprint = state.config.identity.as_ref().map(|i| i.thumbprint());
                        let html = page::html(
                            "Burrow agent (listening)",
                            thumbprint,
                            &format!("Agent {}. The gateway connects to this port with tls://.", state.config.name),
                        );
                        return page::serve_page(tls.stream, html).await;
                    }
                    let mut link = raw::link(tls.stream, Some(peer));
                    let refusal = match tls.peer_cert {
                        Some(t) if gateway.contains(&t) => None,
                        Some(t) => Some(format!(
                            "this agent trusts gateway certificate {} only, and the gateway presented {t}: if the gateway's certificate was replaced, set GATEWAY_THUMBPRINT on the agent to the new thumbprint",
                            list_thumbprints(&gateway)
                        )),
                        None => Some("the gateway presented no client certificate; this listening agent serves only a gateway it trusts".into()),
                    };
                    if let Some(message) = refusal {
                        warn!(event = crate::event::GATEWAY_LINK_REFUSED, reason = %message, "refused a gateway link");
                        let r = Reject { code: RejectCode::Unauthorized, message };
                        return handshake::reject(&mut link, r).await;
                    }
                    let Ok(_slot) = slots.try_acquire_owned() else {
                        let message = format!("this agent already serves {MAX_LINKS} gateway links");
                        warn!(event = crate::event::GATEWAY_LINK_REFUSED, reason = %message, "refused a gateway link");
                        let r = Reject { code: RejectCode::TooManyLinks, message };
                        return handshake::reject(&mut link, r).await;
                    };
                    let credential = match link::credential(&state).await {
                        Ok(c) => c,
                        Err(e) => return warn!(error = %e, "no credential for the gateway link"),
                    };
                    let ack = match handshake::dial(&mut link, link::hello(&state, credential.as_ref())).await {
                        Ok(ack) => ack,
                        Err(e) => return warn!(error = %e, "gateway link failed at hello"),
                    };
                    info!(event = crate::event::LINK_UP, "link up");
                    let (reason, _, _, _) = link::serve(&state, link, &ack, None).await;
                    info!(event = crate::event::LINK_DOWN, %reason, "link down");
                }
                .instrument(info_span!("gateway_link", %peer)),
            );
        }
        // Links close through `close_links` after the drain.
        links.close();
        links.wait().await;
    }
}
