//! The agent's allow-list: which `host:port` targets it will connect to.

use std::str::FromStr;

/// One allow rule: `HOST:PORT`, where HOST may be `*` or `*.domain` and
/// PORT may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

/// Why an allow rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid allow rule {rule:?}: {why} (expected HOST:PORT, HOST may be * or *.domain, PORT may be *)"
)]
pub struct AllowRuleError {
    rule: String,
    why: &'static str,
}

/// `host:port` (or `[v6]:port`) split, brackets dropped; the port unparsed.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port))
}

impl FromStr for AllowRule {
    type Err = AllowRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| AllowRuleError {
            rule: s.to_owned(),
            why,
        };
        let (host, port) = split_host_port(s.trim()).ok_or_else(|| err("missing :PORT"))?;
        let port = if port == "*" {
            None
        } else {
            Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("port must be 1-65535 or *"))?,
            )
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(err("a wildcard must be *.domain"));
            }
            HostPattern::Suffix(format!(".{domain}"))
        } else if host.is_empty() || host.contains('*') {
            return Err(err("host must be a name, an IP, * or *.domain"));
        } else {
            HostPattern::Exact(host)
        };
        Ok(AllowRule { host, port })
    }
}

impl std::fmt::Display for AllowRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Suffix(s) => write!(f, "*{s}")?,
            HostPattern::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostPattern::Exact(h) => f.write_str(h)?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

impl AllowRule {
    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()),
            HostPattern::Exact(h) => host == h,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// The rules, checked in any order; empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<AllowRule>);

impl AllowList {
    /// A list of rules.
    pub fn new(rules: Vec<AllowRule>) -> Self {
        AllowList(rules)
    }

    /// Does any rule allow `target` (`host:port`)?
    pub fn allows(&self, target: &str) -> bool {
        let Some((host, port)) = split_host_port(target) else {
            return false;
        };
        let Ok(port) = port.parse::<u16>() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|r| r.matches(&host, port))
    }

    /// The rules, as they are written.
    pub fn rules(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Is the list empty (everything refused)?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str]) -> AllowList {
        AllowList::new(rules.iter().map(|r| r.parse().expect(r)).collect())
    }

    #[test]
    fn rules_match_as_documented() {
        let l = list(&[
            "db.internal:5432",
            "*.git.example.com:443",
            "10.0.0.5:*",
            "[::1]:22",
        ]);
        assert!(l.allows("db.internal:5432"));
        assert!(l.allows("DB.Internal:5432"));
        assert!(!l.allows("db.internal:5433"));
        assert!(l.allows("a.git.example.com:443"));
        assert!(
            !l.allows("git.example.com:443"),
            "*.domain needs a subdomain"
        );
        assert!(!l.allows("evilgit.example.com:443"));
        assert!(l.allows("10.0.0.5:1"));
        assert!(l.allows("[::1]:22"));
        assert!(!l.allows("10.0.0.6:1"));
        assert!(!l.allows("garbage"));
        assert!(!AllowList::default().allows("db.internal:5432"));
        assert!(list(&["*:*"]).allows("anything:1"));
    }

    #[test]
    fn bad_rules_say_why() {
        for r in ["db.internal", "db:0", "db:x", "*.:80", "a*b:80", ":80"] {
            assert!(r.parse::<AllowRule>().is_err(), "{r}");
        }
    }
}
