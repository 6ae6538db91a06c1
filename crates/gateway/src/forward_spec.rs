//! A TCP forward's specification, `LISTEN=AGENT:HOST:PORT`, as given on
//! the command line.

use std::net::SocketAddr;
use std::str::FromStr;

use burrow_wire::valid_name;

/// One forward: `LISTEN=AGENT:HOST:PORT`, e.g.
/// `127.0.0.1:15432=home:db.internal:5432`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Local address to accept on.
    pub listen: SocketAddr,
    /// Agent whose links carry the streams.
    pub agent: String,
    /// `host:port` the agent connects to.
    pub target: String,
}

impl std::fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}:{}", self.listen, self.agent, self.target)
    }
}

/// Why a forward specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid forward {spec:?}: {why} (expected LISTEN=AGENT:HOST:PORT, e.g. 127.0.0.1:15432=home:db.internal:5432)"
)]
pub struct ForwardSpecError {
    spec: String,
    why: String,
}

/// Checks a `host:port` target; returns why not.
pub(crate) fn check_target(target: &str) -> Result<(), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("target {target:?} has no port"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("target port {port:?} is not 1-65535"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(format!("target host {host:?} is empty or too long"));
    }
    if host.parse::<std::net::IpAddr>().is_err()
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!(
            "target host {host:?} is not a host name or IP address"
        ));
    }
    Ok(())
}

impl FromStr for ForwardSpec {
    type Err = ForwardSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ForwardSpecError {
            spec: s.to_owned(),
            why,
        };
        let (listen, rest) = s.split_once('=').ok_or_else(|| err("missing '='".into()))?;
        let listen: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| err(format!("{listen:?} is not an IP:PORT to listen on")))?;
        let (agent, target) = rest
            .split_once(':')
            .ok_or_else(|| err("missing agent name before the target".into()))?;
        if !valid_name(agent) {
            return Err(err(format!(
                "agent name {agent:?} must be 1-200 letters, digits, '-' or '.'"
            )));
        }
        check_target(target).map_err(err)?;
        Ok(ForwardSpec {
            listen,
            agent: agent.to_owned(),
            target: target.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs_parse() {
        let f: ForwardSpec = "127.0.0.1:15432=home:db.internal:5432"
            .parse()
            .expect("parses");
        assert_eq!(f.listen, "127.0.0.1:15432".parse().expect("addr"));
        assert_eq!(f.agent, "home");
        assert_eq!(f.target, "db.internal:5432");
        let f: ForwardSpec = "[::1]:80=a.b:[fd00::1]:8080".parse().expect("v6");
        assert_eq!(f.target, "[fd00::1]:8080");
    }

    #[test]
    fn bad_forward_specs_say_what_is_wrong() {
        for (spec, why) in [
            ("15432=home:db:5432", "IP:PORT"),
            ("127.0.0.1:1", "missing '='"),
            ("127.0.0.1:1=home", "missing agent"),
            ("127.0.0.1:1=ho me:db:5", "agent name"),
            ("127.0.0.1:1=home:db", "no port"),
            ("127.0.0.1:1=home:db:0", "1-65535"),
            ("127.0.0.1:1=home:db:99999", "1-65535"),
            ("127.0.0.1:1=home:d b:5", "not a host name"),
        ] {
            let e = spec.parse::<ForwardSpec>().expect_err(spec).to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }
}
