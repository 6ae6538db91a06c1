//! Outbound links through a corporate HTTP proxy (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `NO_PROXY`), with HTTP CONNECT.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Secret, TransportError};

/// Longest proxy response head read before giving up.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// An HTTP proxy: where it is and, optionally, its basic credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `host:port` of the proxy.
    pub authority: String,
    auth: Option<Secret>,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        write!(f, "http://{}", self.authority)
    }
}

impl ProxyUrl {
    /// Parses `http://[user:pass@]host[:port]` (port 80 by default; a bare
    /// `host:port` is taken as http).
    pub fn parse(s: &str) -> Result<Self, TransportError> {
        let bad = |why: &str| TransportError::BadUrl {
            url: redact(s),
            why: why.to_owned(),
        };
        let rest = if let Some(r) = s.strip_prefix("http://") {
            r
        } else if s.contains("://") {
            return Err(bad(
                "only http:// proxies are supported (the link itself is TLS)",
            ));
        } else {
            s
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => (Some(Secret::new(userinfo)), hp),
            None => (None, rest),
        };
        if hostport.is_empty() || hostport.contains('/') {
            return Err(bad("expected http://host:port"));
        }
        let has_port = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty()
            }
            _ => false,
        };
        let authority = if has_port {
            hostport.to_owned()
        } else {
            format!("{hostport}:80")
        };
        Ok(ProxyUrl { authority, auth })
    }
}

fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(i), Some(j)) if j > i => format!("{}***{}", &s[..i + 3], &s[j..]),
        (None, Some(j)) => format!("***{}", &s[j..]),
        _ => s.to_owned(),
    }
}

/// The proxy settings from the environment, read once at start.
#[derive(Debug, Clone, Default)]
pub struct ProxyEnv {
    /// For TLS links (`wss://`, `tls://`): `HTTPS_PROXY`.
    pub https: Option<ProxyUrl>,
    /// For plain links (`ws://`): `HTTP_PROXY`.
    pub http: Option<ProxyUrl>,
    /// Hosts reached directly: `NO_PROXY`.
    pub no_proxy: Vec<String>,
}

fn var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .filter(|v| !v.trim().is_empty())
}

impl ProxyEnv {
    /// Reads `https_proxy`/`HTTPS_PROXY`, `http_proxy`/`HTTP_PROXY` and
    /// `no_proxy`/`NO_PROXY` (lower case first, as curl does).
    pub fn from_env() -> Result<Self, TransportError> {
        let https = var(&["https_proxy", "HTTPS_PROXY"])
            .map(|v| ProxyUrl::parse(v.trim()))
            .transpose()?;
        let http = var(&["http_proxy", "HTTP_PROXY"])
            .map(|v| ProxyUrl::parse(v.trim()))
            .transpose()?;
        let no_proxy = var(&["no_proxy", "NO_PROXY"])
            .map(|v| parse_no_proxy(&v))
            .unwrap_or_default();
        Ok(ProxyEnv {
            https,
            http,
            no_proxy,
        })
    }

    /// The proxy to use for `host`, if any.
    pub fn for_host(&self, host: &str, tls: bool) -> Option<&ProxyUrl> {
        let proxy = if tls { &self.https } else { &self.http }.as_ref()?;
        if bypass(&self.no_proxy, host) {
            None
        } else {
            Some(proxy)
        }
    }
}

fn parse_no_proxy(v: &str) -> Vec<String> {
    v.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

/// `NO_PROXY` matching: `*` matches all; `example.com` and `.example.com`
/// match the host and its subdomains; an entry with `:port` ignores the
/// port (links always go to the configured port).
fn bypass(entries: &[String], host: &str) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    entries.iter().any(|e| {
        if e == "*" {
            return true;
        }
        let e = e.trim_matches(['[', ']']);
        let e = match e.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
            _ => e,
        };
        let e = e.trim_start_matches("*.").trim_start_matches('.');
        host == e || host.ends_with(&format!(".{e}"))
    })
}

/// Connects `target` (`host:port`) through `proxy` with HTTP CONNECT.
pub async fn connect_via(
    proxy: &ProxyUrl,
    target: &str,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let run = async {
        let mut tcp = TcpStream::connect(&proxy.authority)
            .await
            .map_err(|source| TransportError::Connect {
                addr: format!("proxy {}", proxy.authority),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(a) = &proxy.auth {
            let user_pass = percent_decode(a.expose());
            let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
            req.push_str(&format!("Proxy-Authorization: Basic {b64}\r\n"));
        }
        req.push_str("\r\n");
        let proxy_err = |why: String| TransportError::Proxy {
            proxy: proxy.authority.clone(),
            why,
        };
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| proxy_err(e.to_string()))?;
        // Read byte by byte up to the blank line: nothing after it may be
        // consumed, it belongs to the tunnelled connection.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_RESPONSE_HEAD {
                return Err(proxy_err("response head too long".into()));
            }
            let mut b = [0u8; 1];
            let n = tcp
                .read(&mut b)
                .await
                .map_err(|e| proxy_err(e.to_string()))?;
            if n == 0 {
                return Err(proxy_err("closed the connection during CONNECT".into()));
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head);
        let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
        let code = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(200..=299) => Ok(tcp),
            Some(407) => Err(proxy_err(format!(
                "{status_line}: the proxy wants credentials; put them in the proxy URL (http://user:password@host:port)"
            ))),
            _ => Err(proxy_err(format!(
                "refused CONNECT {target}: {status_line}"
            ))),
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| TransportError::Timeout(format!("proxy {}", proxy.authority)))?
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let v = (h * 16 + l) as u8;
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_print_credentials() {
        let p = ProxyUrl::parse("http://user:p%40ss@proxy.corp:3128").expect("parses");
        assert_eq!(p.authority, "proxy.corp:3128");
        assert!(!format!("{p:?}").contains("p%40ss"));
        assert_eq!(
            ProxyUrl::parse("proxy.corp").expect("bare").authority,
            "proxy.corp:80"
        );
        let e = ProxyUrl::parse("socks5://user:secret@p:1080").expect_err("socks");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(percent_decode("user:p%40ss"), b"user:p@ss");
    }

    #[test]
    fn no_proxy_matches_hosts_and_subdomains() {
        let np = parse_no_proxy("localhost, .corp.example, example.org:443, [::1]");
        assert!(bypass(&np, "localhost"));
        assert!(bypass(&np, "gw.corp.example"));
        assert!(bypass(&np, "corp.example"));
        assert!(bypass(&np, "example.org"));
        assert!(bypass(&np, "a.example.org"));
        assert!(bypass(&np, "::1"));
        assert!(!bypass(&np, "notexample.org"));
        assert!(!bypass(&np, "gateway.example.com"));
        assert!(bypass(&parse_no_proxy("*"), "anything"));
    }
}
