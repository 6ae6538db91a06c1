//! The checks a request's names and fields pass, with the words a refusal
//! says; the CLI runs the same ones before it calls.

use burrow_wire::egress::{Ports, valid_pattern};

/// A refusal: the HTTP status and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// HTTP status.
    pub status: u16,
    /// What was wrong and what to do.
    pub message: String,
}

impl Invalid {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Invalid {
            status: 400,
            message: message.into(),
        }
    }

    /// The 404 for a path no endpoint serves.
    pub fn not_found() -> Self {
        Invalid {
            status: 404,
            message: "no such admin API endpoint".into(),
        }
    }
}

/// An agent, key or admin-key name: 1-200 letters, digits, `-` and `.`.
pub fn name(what: &str, name: &str) -> Result<(), Invalid> {
    if burrow_wire::valid_name(name) {
        Ok(())
    } else {
        Err(Invalid::bad_request(format!(
            "invalid {what} name {name:?}: use 1-200 letters, digits, '-' and '.', not only dots"
        )))
    }
}

/// A host name, or `*.` and a domain: labels of letters, digits and `-`.
pub fn fqdn(fqdn: &str) -> Result<(), Invalid> {
    if valid_pattern(fqdn) {
        Ok(())
    } else {
        Err(Invalid::bad_request(format!(
            "invalid FQDN {fqdn:?}: use a host name such as git.internal.example.com, or *.internal.example.com"
        )))
    }
}

/// Why `hostname` is not even written as a route's name (a host name, no
/// wildcard), if it is not: the check a stored route's name passes too.
pub fn route_name_refusal(hostname: &str) -> Option<String> {
    (!valid_pattern(hostname) || hostname.starts_with("*.")).then(|| {
        format!("invalid host name {hostname:?}: use a name such as app.tunnel.example.com")
    })
}

/// A host name a route may be stored under.
pub fn route_name(hostname: &str) -> Result<(), Invalid> {
    match route_name_refusal(hostname) {
        Some(why) => Err(Invalid::bad_request(why)),
        None => Ok(()),
    }
}

/// A rule's ports (`22,443,8000-8100`), and its check port among them.
pub fn rule_ports(ports: Option<&str>, check_port: Option<u16>) -> Result<Option<Ports>, Invalid> {
    if check_port == Some(0) {
        return Err(Invalid::bad_request("check_port must be 1-65535"));
    }
    let ports = match ports {
        None => None,
        Some(p) => Some(
            p.parse::<Ports>()
                .map_err(|e| Invalid::bad_request(format!("ports: {e}")))?,
        ),
    };
    if let (Some(p), Some(c)) = (&ports, check_port)
        && !p.allows(c)
    {
        return Err(Invalid::bad_request(format!(
            "check_port {c} is not among the rule's ports {p}"
        )));
    }
    Ok(ports)
}
