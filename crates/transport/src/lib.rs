//! Carriers for tunnel links, and the hello handshake that starts each link.
//!
//! A carrier turns a connection into a [`Link`]: a stream of incoming
//! [`Frame`]s and a sink of outgoing ones. The mux runs on a `Link` and does
//! not know which carrier made it.
//!
//! # Layout
//! - [`ws`]: WebSocket (binary messages, one frame per message), client dial
//!   and server side after an HTTP upgrade.
//! - [`raw`]: Burrow frames straight over a TLS stream (`tls://`).
//! - [`tls`]: the TLS policy, certificates, thumbprint pinning.
//! - [`Dialer`]: TCP (directly or through an HTTP proxy, [`proxy`]), then
//!   TLS, then the carrier the URL names; [`accept_tls`] for servers.
//! - [`client`]: a small HTTPS client for the gateway's token endpoint and
//!   admin API, dialed like links (same proxy, same pinning).
//! - [`handshake`]: the versioned hello exchange, with a timeout on every read.
//! - [`TunnelUrl`]: the `wss://`, `tls://` or `ws://` URL an agent dials.
//! - [`page`]: the small HTML page each listening port shows browsers.
//! - [`probe`]: one HTTP/1.1 request for the request inspector.
//! - [`Backoff`]: redial delays.
//! - [`Secret`]: credentials that never print.

#![forbid(unsafe_code)]

mod backoff;
pub mod client;
mod dial;
pub mod event;
pub mod files;
pub mod handshake;
pub mod logtap;
pub mod page;
pub mod probe;
pub mod proxy;
pub mod raw;
mod secret;
pub mod tls;
pub mod ws;

pub use backoff::Backoff;
pub use dial::{AcceptedTls, Dialer, accept_tls};
pub use secret::{MIN_PSK_LEN, Secret, SecretError};

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use burrow_wire::Frame;
use futures_util::{Sink, Stream};

/// Incoming frames of a link. Cancel-safe in `next()`.
pub type FrameReader = Pin<Box<dyn Stream<Item = io::Result<Frame>> + Send>>;
/// Outgoing frames of a link.
pub type FrameWriter = Pin<Box<dyn Sink<Frame, Error = io::Error> + Send>>;

/// One carrier connection, ready for the handshake and then the mux.
pub struct Link {
    /// Frames from the peer.
    pub reader: FrameReader,
    /// Frames to the peer.
    pub writer: FrameWriter,
    /// The peer's address, where known.
    pub peer: Option<SocketAddr>,
    /// Thumbprint of the certificate the peer presented over TLS, if any.
    pub peer_cert: Option<tls::Thumbprint>,
}

/// Errors opening a link.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL cannot be dialed.
    #[error("invalid tunnel URL {url:?}: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The gateway refused the credentials (HTTP 401/403).
    #[error("gateway refused the credentials (HTTP {status}): check the pre-shared key")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
    },
    /// The gateway answered the upgrade with another HTTP status.
    #[error(
        "gateway answered HTTP {status} instead of upgrading to WebSocket; is {url} a Burrow tunnel endpoint?"
    )]
    HttpStatus {
        /// The status.
        status: u16,
        /// The URL dialed.
        url: String,
    },
    /// The gateway is at its handshake cap (HTTP 503): retry after this
    /// long (its `Retry-After`), with jitter.
    #[error("the gateway is busy (HTTP 503): retrying in {} s or more, as it asked", retry_after.as_secs())]
    Busy {
        /// How long it asked to wait.
        retry_after: std::time::Duration,
    },
    /// The WebSocket handshake failed otherwise.
    #[error("websocket handshake failed: {0}")]
    WebSocket(String),
    /// The connect did not finish in time.
    #[error("timed out connecting to {0}")]
    Timeout(String),
    /// The peer's certificate is not trusted.
    #[error("{0}")]
    Untrusted(tls::PinError),
    /// The TLS handshake failed otherwise.
    #[error("TLS handshake with {addr} failed: {why}")]
    Tls {
        /// Where.
        addr: String,
        /// Why.
        why: String,
    },
    /// The HTTP proxy refused or failed.
    #[error("HTTP proxy {proxy}: {why}")]
    Proxy {
        /// The proxy's address.
        proxy: String,
        /// What went wrong.
        why: String,
    },
    /// An HTTP request to the gateway failed.
    #[error("request to {url} failed: {why}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The link cannot be dialed as configured.
    #[error("{0}")]
    Setup(String),
    /// TLS material could not be loaded.
    #[error(transparent)]
    TlsConfig(#[from] tls::TlsError),
}

/// How a link is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// WebSocket over plain TCP (behind a TLS-terminating proxy only).
    Ws,
    /// WebSocket over TLS: passes HTTP proxies and Caddy.
    Wss,
    /// Burrow frames straight over TLS (no HTTP).
    Tls,
}

impl Scheme {
    /// Does the link run over TLS?
    pub fn is_tls(self) -> bool {
        !matches!(self, Scheme::Ws)
    }

    /// The ALPN protocol a TLS dialer offers.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Scheme::Tls => tls::ALPN_BURROW,
            Scheme::Ws | Scheme::Wss => tls::ALPN_HTTP1,
        }
    }
}

/// A parsed tunnel URL: `wss://host[:port]/tunnel`, `tls://host:port` or
/// (behind a TLS proxy) `ws://host[:port]/tunnel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelUrl {
    /// The URL as given.
    pub url: String,
    /// The carrier.
    pub scheme: Scheme,
    /// `host:port` to dial.
    pub authority: String,
    /// Host alone, for the `Host` header and SNI.
    pub host: String,
}

impl TunnelUrl {
    /// Parses and checks a tunnel URL.
    pub fn parse(url: &str) -> Result<Self, TransportError> {
        let bad = |why: &str| TransportError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let (scheme, default_port) = match uri.scheme_str() {
            Some("ws") => (Scheme::Ws, 80),
            Some("wss") => (Scheme::Wss, 443),
            Some("tls") => (Scheme::Tls, 17200),
            Some(other) => {
                return Err(bad(&format!(
                    "unsupported scheme {other}://, use wss://, tls:// or ws://"
                )));
            }
            None => return Err(bad("missing scheme, use wss://host:port/tunnel")),
        };
        let host = uri.host().ok_or_else(|| bad("missing host"))?;
        if scheme == Scheme::Tls && !matches!(uri.path(), "" | "/") {
            return Err(bad("tls:// URLs have no path: tls://host:port"));
        }
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(TunnelUrl {
            url: url.to_owned(),
            scheme,
            authority,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports() {
        let u = TunnelUrl::parse("ws://gw.example.com/tunnel").expect("parses");
        assert_eq!(u.authority, "gw.example.com:80");
        let u = TunnelUrl::parse("ws://127.0.0.1:17200/connect").expect("parses");
        assert_eq!(u.authority, "127.0.0.1:17200");
        let u = TunnelUrl::parse("ws://[::1]:17200/tunnel").expect("parses");
        assert_eq!(u.authority, "[::1]:17200");
        let u = TunnelUrl::parse("wss://gw.example.com/tunnel").expect("parses");
        assert_eq!(
            (u.authority.as_str(), u.scheme),
            ("gw.example.com:443", Scheme::Wss)
        );
        let u = TunnelUrl::parse("tls://gw.example.com").expect("parses");
        assert_eq!(
            (u.authority.as_str(), u.scheme),
            ("gw.example.com:17200", Scheme::Tls)
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("http://x/tunnel", "unsupported scheme"),
            ("gw:17200", "scheme"),
            ("tls://gw:1/tunnel", "no path"),
        ] {
            let e = TunnelUrl::parse(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
