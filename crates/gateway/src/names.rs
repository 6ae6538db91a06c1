//! The gateway's names and what may be published: its own host names
//! (never routes), and the checks a route's host name passes.

/// A `Host` value as routes name it: without a port or a trailing dot,
/// lowercase.
pub(crate) fn normalize_host(h: &str) -> String {
    let h = h
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(h, |(host, _)| host);
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Why `hostname` cannot be published here, if it cannot: it must be a
/// host name (not an IP address), not one of the gateway's own names, and
/// under the public domain if the gateway has one.
pub(crate) fn hostname_refusal(
    public_domain: Option<&str>,
    own: &OwnNames,
    hostname: &str,
) -> Option<String> {
    let ip_like = hostname
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if let Some(why) = burrow_api::validate::route_name_refusal(hostname) {
        return Some(why);
    }
    if ip_like {
        return Some(format!(
            "invalid host name {hostname:?}: use a name such as app.tunnel.example.com"
        ));
    }
    if own.contains(hostname) {
        return Some(format!(
            "{hostname} is one of this gateway's own names (its certificate, CONNECT_URL or BURROW_GATEWAY_NAMES): agents and admins reach the gateway by it, so it cannot be a route"
        ));
    }
    let domain = public_domain?;
    let under = hostname
        .strip_suffix(domain)
        .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'));
    (!under).then(|| {
        format!(
            "{hostname} is not under this gateway's public domain {domain} (BURROW_PUBLIC_DOMAIN): use NAME.{domain}"
        )
    })
}

/// The names agents and admins reach the gateway by: its certificate's DNS
/// names, the host of its CONNECT_URL and BURROW_GATEWAY_NAMES. Never
/// routes: the tunnel port routes by host before its own endpoints, so a
/// route on one of these would receive admin keys and agents' tokens.
#[derive(Debug, Clone, Default)]
pub struct OwnNames(Vec<String>);

impl OwnNames {
    /// The names, normalised as routes name hosts (lowercase, no port, no
    /// trailing dot); empty ones are dropped.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Self {
        let mut v: Vec<String> = names
            .into_iter()
            .map(|n| normalize_host(n.as_ref().trim()))
            .filter(|n| !n.is_empty())
            .collect();
        v.sort_unstable();
        v.dedup();
        OwnNames(v)
    }

    /// Is `host` (normalised) one of them?
    pub fn contains(&self, host: &str) -> bool {
        self.0.iter().any(|n| n == host)
    }

    /// The names, sorted.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}
