//! Which listeners are reachable beyond this host, said once at start.

use std::net::SocketAddr;

use tracing::info;

/// Says once which listeners are reachable beyond this host and which only
/// on loopback (the tunnel port and the edge listen on all addresses by
/// design; the proxy on loopback).
pub(crate) fn say(bound: &[(String, Option<SocketAddr>)]) {
    let (public, local) = reach_words(bound);
    info!(
        event = crate::event::LISTENERS,
        public = %public,
        loopback_only = %local,
        "listeners bound: `public` are reachable beyond this host, `loopback_only` only from it"
    );
}

/// The listeners reachable beyond this host, and those on loopback only,
/// as `name address, …` (or `none`).
fn reach_words(bound: &[(String, Option<SocketAddr>)]) -> (String, String) {
    let (local, public): (Vec<_>, Vec<_>) = bound
        .iter()
        .filter_map(|(name, a)| a.map(|a| (name, a)))
        .partition(|(_, a)| a.ip().is_loopback());
    let words = |l: &[(&String, SocketAddr)]| {
        if l.is_empty() {
            "none".to_owned()
        } else {
            l.iter()
                .map(|(n, a)| format!("{n} {a}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    (words(&public), words(&local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_said_public_or_loopback_only() {
        let a = |s: &str| s.parse::<SocketAddr>().ok();
        let bound = [
            ("tunnel".to_owned(), a("0.0.0.0:8443")),
            ("proxy".to_owned(), a("127.0.0.1:17203")),
            ("edge-https".to_owned(), a("[::]:443")),
            ("edge-http".to_owned(), None),
            ("forward:home".to_owned(), a("[::1]:5432")),
        ];
        assert_eq!(
            reach_words(&bound),
            (
                "tunnel 0.0.0.0:8443, edge-https [::]:443".to_owned(),
                "proxy 127.0.0.1:17203, forward:home [::1]:5432".to_owned()
            )
        );
        assert_eq!(reach_words(&bound[1..2]).0, "none");
    }
}
