//! The edge's one forwarding policy, for both of its paths: which request
//! and response fields pass to the other side, and the `X-Forwarded-*`
//! fields it adds. The HTTP/1.1 path applies it to heads as bytes, the
//! hyper path (HTTP/2) to header maps; neither decides anything itself.
//!
//! - Hop-by-hop fields (RFC 9110 §7.6.1) and the ones `Connection` names
//!   never pass, except `Upgrade` on an upgrade request.
//! - `Host` and `X-Forwarded-Host` become the routed host.
//! - `X-Forwarded-For` gets the visitor's address appended to what came.
//! - `X-Forwarded-Proto` is `https` on Burrow's own edge; behind a proxy
//!   (Caddy) the proxy's value is kept, `http` added when it sent none.
//! - `Transfer-Encoding` passes where bodies pass as they are framed, and
//!   goes where the body is re-framed (hyper).

use std::net::{IpAddr, SocketAddr};

/// Who the visitor's request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// Burrow's own HTTPS edge: the visitor spoke HTTPS to us.
    Edge,
    /// A TLS-terminating proxy in front (Caddy): keep the scheme it says.
    Proxy,
}

impl Front {
    /// The `X-Forwarded-Proto` to add, given whether the request had one.
    pub(crate) fn proto(self, had_proto: bool) -> Option<&'static str> {
        match self {
            Front::Edge => Some("https"),
            Front::Proxy if had_proto => None,
            Front::Proxy => Some("http"),
        }
    }
}

/// How bodies cross the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bodies {
    /// Copied as framed: `Transfer-Encoding` and `Content-Length` stay.
    AsFramed,
    /// Re-framed by the HTTP library: the transfer coding does not pass.
    Reframed,
}

/// Hop-by-hop fields (RFC 9110 §7.6.1), never passed on; besides these,
/// the ones a `Connection` field names.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

/// What happens to one request field on its way to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// Passed on as it is.
    Keep,
    /// Not passed on (replaced, or hop-by-hop).
    Drop,
    /// An `X-Forwarded-For` value: collected, then written once with the
    /// visitor appended ([`forwarded_for`]).
    ForwardedFor,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The policy for one message.
pub(crate) struct Policy<'a> {
    /// Who the request came through.
    pub(crate) front: Front,
    /// An upgrade request (WebSocket): `Upgrade` passes, and `Connection:
    /// upgrade` is added.
    pub(crate) upgrade: bool,
    /// The tokens of the message's `Connection` fields.
    pub(crate) connection: &'a [&'a str],
    /// How bodies cross.
    pub(crate) bodies: Bodies,
}

impl Policy<'_> {
    /// Whether a field is hop-by-hop for this message.
    fn hop(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| eq(name, h))
            || (eq(name, "upgrade") && !self.upgrade)
            || (self.bodies == Bodies::Reframed && eq(name, "transfer-encoding"))
            || self
                .connection
                .iter()
                .any(|c| eq(name, c) && !(self.upgrade && eq(c, "upgrade")))
    }

    /// What happens to a request field.
    pub(crate) fn request_field(&self, name: &str) -> Field {
        if eq(name, "x-forwarded-for") {
            return Field::ForwardedFor;
        }
        if eq(name, "x-forwarded-proto") {
            return if self.front == Front::Edge {
                Field::Drop
            } else {
                Field::Keep
            };
        }
        if eq(name, "host") || eq(name, "x-forwarded-host") || self.hop(name) {
            return Field::Drop;
        }
        Field::Keep
    }

    /// Whether a response field passes to the visitor.
    pub(crate) fn response_field(&self, name: &str) -> bool {
        !self.hop(name)
    }
}

/// Appends the `X-Forwarded-For` value to `out`: the values that came,
/// then the visitor.
pub(crate) fn forwarded_for(out: &mut Vec<u8>, prior: &[&str], client_ip: &str) {
    for p in prior {
        out.extend_from_slice(p.trim().as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip.as_bytes());
}

/// The last address the `X-Forwarded-For` values that came name (the one
/// the proxy in front appended).
pub(crate) fn last_forwarded(prior: &[&str]) -> Option<IpAddr> {
    prior
        .last()
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
}

/// The visitor as the service should see it (PROXY protocol): the
/// connection's peer on Burrow's edge; behind a proxy, the address it
/// appended to `X-Forwarded-For`.
pub(crate) fn visitor(front: Front, forwarded: Option<IpAddr>, client: SocketAddr) -> SocketAddr {
    match (front, forwarded) {
        (Front::Proxy, Some(ip)) => SocketAddr::new(ip, 0),
        _ => client,
    }
}

/// Comma-separated tokens of `values`, trimmed, empty ones left out.
pub(crate) fn tokens<'a, I>(values: I) -> impl Iterator<Item = &'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn policy<'a>(front: Front, upgrade: bool, connection: &'a [&'a str]) -> Policy<'a> {
        Policy {
            front,
            upgrade,
            connection,
            bodies: Bodies::AsFramed,
        }
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_go() {
        let p = policy(Front::Edge, false, &["keep-alive", "x-private"]);
        for f in [
            "Connection",
            "keep-alive",
            "x-private",
            "Upgrade",
            "TE",
            "Proxy-Authorization",
            "host",
            "X-Forwarded-Host",
            "x-forwarded-proto",
        ] {
            assert_eq!(p.request_field(f), Field::Drop, "{f}");
        }
        assert_eq!(p.request_field("x-kept"), Field::Keep);
        assert_eq!(p.request_field("transfer-encoding"), Field::Keep);
        assert_eq!(p.request_field("X-Forwarded-For"), Field::ForwardedFor);
        assert!(!p.response_field("x-private") && p.response_field("content-length"));
    }

    #[test]
    fn upgrades_keep_upgrade_and_reframed_bodies_lose_their_coding() {
        let p = policy(Front::Proxy, true, &["upgrade"]);
        assert_eq!(p.request_field("upgrade"), Field::Keep);
        assert_eq!(p.request_field("x-forwarded-proto"), Field::Keep);
        let r = Policy {
            bodies: Bodies::Reframed,
            ..policy(Front::Edge, false, &[])
        };
        assert_eq!(r.request_field("Transfer-Encoding"), Field::Drop);
    }

    #[test]
    fn forwarded_fields_append_the_visitor_and_proto_follows_the_front() {
        let xff = |prior: &[&str]| {
            let mut v = Vec::new();
            forwarded_for(&mut v, prior, "9.9.9.9");
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            xff(&["1.1.1.1, 2.2.2.2", " 3.3.3.3"]),
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9"
        );
        assert_eq!(xff(&[]), "9.9.9.9");
        assert_eq!(
            last_forwarded(&["1.1.1.1, 2.2.2.2"]),
            "2.2.2.2".parse().ok()
        );
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let fwd = last_forwarded(&["203.0.113.7"]);
        assert_eq!(
            visitor(Front::Proxy, fwd, client).ip().to_string(),
            "203.0.113.7"
        );
        assert_eq!(visitor(Front::Edge, fwd, client), client);
        assert_eq!(Front::Edge.proto(true), Some("https"));
        assert_eq!(Front::Proxy.proto(true), None);
        assert_eq!(Front::Proxy.proto(false), Some("http"));
    }
}
