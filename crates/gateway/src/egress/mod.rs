//! Egress by FQDN: the rules (cached from the store, pushed to agents),
//! the proxy on `:17203` that workloads use (HTTP `CONNECT`, absolute-URI
//! HTTP requests, SOCKS5 with remote name resolution), and reachability
//! checks.
//!
//! Never an open proxy: a host with no rule is refused (403 naming the
//! FQDN and the fix; SOCKS5 "not allowed"); an offline agent gives 502
//! ("host unreachable"); what the agent reports (refused, unreachable, not
//! allowed) reaches the client in words.
//!
//! # Parts
//! - `reach.rs`: the context the protocols take, client credentials, the
//!   rule lookup and open, refusals in words.
//! - `http.rs`: `CONNECT` and absolute-URI `http://` requests.
//! - `socks5.rs`: SOCKS5 CONNECT.
//! - `check.rs`: reachability checks for the admin API.

mod check;
mod http;
mod reach;
mod socks5;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

pub(crate) use check::check;
pub(crate) use reach::Proxy;
pub use reach::ProxyAuth;
use reach::REQUEST_TIMEOUT;

use crate::limits::{Accepting, Caps, Limiter};

/// Serves the egress proxy on `listener`: the first byte tells SOCKS5
/// (version 5) from HTTP.
pub(crate) async fn serve(proxy: Arc<Proxy>, at: Accepting, caps: Caps, listener: TcpListener) {
    let limiter = Limiter::new("egress proxy", caps);
    loop {
        let Some((tcp, client, permit)) = at.accept(&listener, &limiter).await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let proxy = proxy.clone();
        at.streams.spawn(async move {
            let _permit = permit;
            let mut tcp = tcp;
            let mut buf = BytesMut::with_capacity(4096);
            match tokio::time::timeout(REQUEST_TIMEOUT, tcp.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            if buf[0] == 5 {
                socks5::serve(&proxy, tcp, buf, client).await;
            } else {
                http::serve(&proxy, tcp, buf, client).await;
            }
        });
    }
}
