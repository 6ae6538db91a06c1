//! Dialing a link (TCP, maybe through an HTTP proxy, then TLS, then the
//! carrier the URL names) and accepting TLS on a listener.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::proxy::{ProxyEnv, ProxyUrl, connect_via};
use crate::tls::{self, Thumbprint};
use crate::{Link, Scheme, TransportError, TunnelUrl, raw, ws};

/// Longest the proxy may take to open the tunnel (the whole dial has its
/// own, usually shorter, limit).
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// Dials one tunnel URL over and over (one call per link attempt).
#[derive(Clone)]
pub struct Dialer {
    /// Where to.
    pub url: TunnelUrl,
    tls: Option<Arc<ClientConfig>>,
    proxy: Option<ProxyUrl>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("url", &self.url.url)
            .field("tls", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl Dialer {
    /// A dialer for `url`. TLS URLs need `tls` (made with
    /// [`tls::client_config`] and the URL's [`Scheme::alpn`]); the proxy is
    /// chosen from `proxies` for the URL's host.
    pub fn new(
        url: TunnelUrl,
        tls: Option<Arc<ClientConfig>>,
        proxies: &ProxyEnv,
    ) -> Result<Self, TransportError> {
        if url.scheme.is_tls() && tls.is_none() {
            return Err(TransportError::BadUrl {
                url: url.url.clone(),
                why: "a TLS URL needs TLS settings".into(),
            });
        }
        let proxy = proxies.for_host(&url.host, url.scheme.is_tls()).cloned();
        Ok(Dialer { url, tls, proxy })
    }

    /// A dialer for another URL of the same gateway (a replica's own
    /// address): the same TLS trust, client certificate and proxy, with
    /// the ALPN of `url`'s scheme.
    pub fn with_url(&self, url: TunnelUrl) -> Result<Self, TransportError> {
        let tls = match (&self.tls, url.scheme.is_tls()) {
            (Some(cfg), true) => {
                let mut c = ClientConfig::clone(cfg);
                c.alpn_protocols = vec![url.scheme.alpn().to_vec()];
                Some(Arc::new(c))
            }
            (None, true) => {
                return Err(TransportError::BadUrl {
                    url: url.url.clone(),
                    why: "a TLS URL, but the agent dials its gateway without TLS".into(),
                });
            }
            (_, false) => None,
        };
        Ok(Dialer {
            url,
            tls,
            proxy: self.proxy.clone(),
        })
    }

    /// The proxy links go through, if any.
    pub fn proxy(&self) -> Option<&ProxyUrl> {
        self.proxy.as_ref()
    }

    /// Opens one link. `bearer` goes in the WebSocket upgrade's
    /// `Authorization` header.
    pub async fn dial(
        &self,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Link, TransportError> {
        tokio::time::timeout(timeout, self.dial_inner(bearer))
            .await
            .map_err(|_| TransportError::Timeout(self.url.authority.clone()))?
    }

    async fn dial_inner(&self, bearer: Option<&str>) -> Result<Link, TransportError> {
        let url = &self.url;
        let (io, peer) = match self.connect_io().await? {
            Connected::Plain(tcp, peer) => {
                return ws::client_handshake(url, bearer, tcp, peer).await;
            }
            Connected::Tls(stream, peer) => (stream, peer),
        };
        let peer_cert = tls::peer_thumbprint(io.get_ref().1);
        let mut link = match url.scheme {
            Scheme::Tls => {
                if io.get_ref().1.alpn_protocol() != Some(tls::ALPN_BURROW) {
                    return Err(TransportError::Tls {
                        addr: url.authority.clone(),
                        why: "the server does not speak Burrow's raw-TLS carrier (ALPN burrow/1); is it a Burrow gateway or listening agent? Behind an HTTP proxy such as Caddy, use wss://".into(),
                    });
                }
                raw::link(*io, peer)
            }
            Scheme::Ws | Scheme::Wss => ws::client_handshake(url, bearer, *io, peer).await?,
        };
        link.peer_cert = peer_cert;
        Ok(link)
    }

    /// TCP (through the proxy, if any), then TLS if the URL wants it.
    pub(crate) async fn connect_io(&self) -> Result<Connected, TransportError> {
        let url = &self.url;
        let tcp = match &self.proxy {
            Some(p) => connect_via(p, &url.authority, PROXY_TIMEOUT).await?,
            None => TcpStream::connect(&url.authority).await.map_err(|source| {
                TransportError::Connect {
                    addr: url.authority.clone(),
                    source,
                }
            })?,
        };
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().ok();
        let Some(cfg) = self.tls.clone().filter(|_| url.scheme.is_tls()) else {
            return Ok(Connected::Plain(tcp, peer));
        };
        let name = ServerName::try_from(url.host.clone()).map_err(|e| TransportError::BadUrl {
            url: url.url.clone(),
            why: e.to_string(),
        })?;
        let stream = TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| match tls::pin_error(&e) {
                Some(p) => TransportError::Untrusted(p),
                None => TransportError::Tls {
                    addr: url.authority.clone(),
                    why: e.to_string(),
                },
            })?;
        Ok(Connected::Tls(Box::new(stream), peer))
    }
}

/// A connection [`Dialer::connect_io`] opened.
pub(crate) enum Connected {
    Plain(TcpStream, Option<std::net::SocketAddr>),
    Tls(
        Box<tokio_rustls::client::TlsStream<TcpStream>>,
        Option<std::net::SocketAddr>,
    ),
}

/// A TLS connection a listener accepted.
pub struct AcceptedTls {
    /// The stream.
    pub stream: tokio_rustls::server::TlsStream<TcpStream>,
    /// The client asked for the raw carrier (ALPN `burrow/1`); otherwise it
    /// speaks HTTP.
    pub raw: bool,
    /// Thumbprint of the client certificate, if one was presented.
    pub peer_cert: Option<Thumbprint>,
}

/// Runs the server side of a TLS handshake, bounded by `timeout`.
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> std::io::Result<AcceptedTls> {
    let stream = tokio::time::timeout(timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let conn = stream.get_ref().1;
    let raw = conn.alpn_protocol() == Some(tls::ALPN_BURROW);
    let peer_cert = tls::peer_thumbprint(conn);
    Ok(AcceptedTls {
        stream,
        raw,
        peer_cert,
    })
}
