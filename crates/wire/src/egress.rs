//! Egress by FQDN: how the gateway names an egress target in `Open`, how
//! FQDN rules match host names, and the rule list the gateway sends each
//! agent (control message [`crate::control::RULES`]).
//!
//! A fixed forward opens `host:port` (checked against the agent's
//! `--allow` list). An egress stream opens `egress:host:port` plus flags
//! (`;tls` to originate TLS to the application, `;insecure` to skip its
//! certificate check, `;check` for a reachability probe); the agent serves
//! it only if the rules the gateway gave it match the host.

/// Prefix of egress targets in `Open`.
pub const PREFIX: &str = "egress:";

/// An egress target, as carried in `Open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name (or IP literal, without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The agent speaks TLS to the application (TLS origination).
    pub tls: bool,
    /// Skip certificate validation towards the application.
    pub insecure: bool,
    /// A reachability probe: the agent reports instead of relaying.
    pub check: bool,
    /// Send a PROXY protocol v2 header first: (client, address it
    /// connected to).
    pub proxy: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
}

impl Target {
    /// The `Open` target string.
    pub fn encode(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut s = format!("{PREFIX}{host}:{}", self.port);
        for (on, flag) in [
            (self.tls, ";tls"),
            (self.insecure, ";insecure"),
            (self.check, ";check"),
        ] {
            if on {
                s.push_str(flag);
            }
        }
        if let Some((src, dst)) = self.proxy {
            s.push_str(&format!(";pp={src},{dst}"));
        }
        s
    }

    /// The target behind a route's internal URL (`http://HOST[:PORT]` or
    /// `https://HOST[:PORT]`, ports 80 and 443 by default): TLS for
    /// `https://`, skipping the certificate check only there and only when
    /// `ignore_certificate_errors`. `None` for anything else.
    pub fn for_internal_url(url: &str, ignore_certificate_errors: bool) -> Option<Target> {
        let uri: http::Uri = url.parse().ok()?;
        let tls = match uri.scheme_str()? {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Some(Target {
            host: host.to_ascii_lowercase(),
            port,
            tls,
            insecure: tls && ignore_certificate_errors,
            check: false,
            proxy: None,
        })
    }

    /// The `Host` a client of the internal URL sends: the host, and the
    /// port unless it is the scheme's default.
    pub fn http_host(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Parses an `Open` target; `None` if it is not an egress target or is
    /// malformed.
    pub fn parse(s: &str) -> Option<Target> {
        let rest = s.strip_prefix(PREFIX)?;
        let mut parts = rest.split(';');
        let hostport = parts.next()?;
        let (host, port) = hostport.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
        if host.is_empty() {
            return None;
        }
        let mut t = Target {
            host: host.to_ascii_lowercase(),
            port,
            tls: false,
            insecure: false,
            check: false,
            proxy: None,
        };
        for flag in parts {
            match flag {
                "tls" => t.tls = true,
                "insecure" => t.insecure = true,
                "check" => t.check = true,
                pp if pp.starts_with("pp=") => {
                    let (src, dst) = pp[3..].split_once(',')?;
                    t.proxy = Some((src.parse().ok()?, dst.parse().ok()?));
                }
                _ => return None,
            }
        }
        Some(t)
    }
}

/// A PROXY protocol v2 header (PROXY command, TCP) telling the service the
/// visitor's address `src` and the address it connected to `dst`. Mixed
/// families are sent as IPv6 (IPv4-mapped).
pub fn proxy_v2_header(src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Vec<u8> {
    use std::net::{IpAddr, SocketAddr};
    const SIGNATURE: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let mut h = SIGNATURE.to_vec();
    h.push(0x21); // version 2, PROXY
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s4), IpAddr::V4(d4)) => {
            h.push(0x11); // TCP over IPv4
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s4.octets());
            h.extend_from_slice(&d4.octets());
        }
        _ => {
            h.push(0x21); // TCP over IPv6
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(src).octets());
            h.extend_from_slice(&v6(dst).octets());
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// Is `pattern` a valid rule: a host name, or `*.` and a domain, in labels
/// of letters, digits and `-`?
pub fn valid_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && pattern.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Does `pattern` (`host` or `*.domain`) match `host`? Case-insensitive;
/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com`.
pub fn matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// How specific a pattern is: an exact name beats any wildcard; a longer
/// wildcard domain beats a shorter one.
fn specificity(pattern: &str) -> (bool, usize) {
    match pattern.strip_prefix("*.") {
        Some(domain) => (false, domain.len()),
        None => (true, pattern.len()),
    }
}

/// The most specific of `patterns` that matches `host`.
pub fn best_match<'a, T>(
    rules: impl IntoIterator<Item = (&'a str, T)>,
    host: &str,
) -> Option<(&'a str, T)> {
    rules
        .into_iter()
        .filter(|(p, _)| matches(p, host))
        .max_by_key(|(p, _)| specificity(p))
}

/// The ports a rule allows: single ports and inclusive ranges, written
/// `22,443,8000-8100`. A rule without a set allows any port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ports(Vec<(u16, u16)>);

/// Why a port list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    /// Nothing was listed.
    #[error("no ports listed: give ports such as 22,443,8000-8100")]
    Empty,
    /// One item is not a port (1-65535) or a range of them.
    #[error("{0:?} is not a port (1-65535) or a range such as 8000-8100")]
    Bad(String),
    /// A range runs backwards.
    #[error("the range {0:?} runs backwards: write the lower port first")]
    Backwards(String),
    /// Too many items.
    #[error("more than {MAX_PORT_ITEMS} ports or ranges: use ranges")]
    TooMany,
}

/// The most items one port list may have.
pub const MAX_PORT_ITEMS: usize = 64;

impl Ports {
    /// Does the set allow `port`?
    pub fn allows(&self, port: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port))
    }

    /// The lowest allowed port.
    pub fn first(&self) -> u16 {
        self.0.first().map_or(1, |(lo, _)| *lo)
    }

    /// The union of two sets.
    pub fn union(&self, other: &Ports) -> Ports {
        let mut all = self.0.clone();
        all.extend_from_slice(&other.0);
        Ports::normal(all)
    }

    /// One port.
    pub fn single(port: u16) -> Ports {
        Ports(vec![(port, port)])
    }

    /// Sorted, with overlapping and adjacent ranges joined.
    fn normal(mut r: Vec<(u16, u16)>) -> Ports {
        r.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(r.len());
        for (lo, hi) in r {
            match out.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Ports(out)
    }
}

impl std::str::FromStr for Ports {
    type Err = PortsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() {
            return Err(PortsError::Empty);
        }
        if items.len() > MAX_PORT_ITEMS {
            return Err(PortsError::TooMany);
        }
        let port = |p: &str, item: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| PortsError::Bad(item.to_owned()))
        };
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (port(a, item)?, port(b, item)?),
                None => {
                    let p = port(item, item)?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(PortsError::Backwards(item.to_owned()));
            }
            ranges.push((lo, hi));
        }
        Ok(Ports::normal(ranges))
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// One rule as an agent receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRule {
    /// `host` or `*.domain`.
    pub pattern: String,
    /// TLS origination allowed.
    pub tls: bool,
    /// Certificate validation skipped.
    pub insecure: bool,
    /// The ports it allows; `None`: any.
    pub ports: Option<Ports>,
}

/// Encodes an agent's rules for [`crate::control::RULES`]: one line each,
/// `pattern` and flags separated by a tab (`tls`, `insecure`,
/// `ports=22,443`). An agent that does not know a flag ignores it.
pub fn encode_rules(rules: &[AgentRule]) -> String {
    let mut s = String::new();
    for r in rules {
        s.push_str(&r.pattern);
        s.push('\t');
        let mut flags: Vec<String> = [(r.tls, "tls"), (r.insecure, "insecure")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, f)| (*f).to_owned())
            .collect();
        if let Some(p) = &r.ports {
            flags.push(format!("ports={p}"));
        }
        s.push_str(&flags.join(","));
        s.push('\n');
    }
    s
}

/// Decodes [`encode_rules`]; malformed lines are dropped (an agent then
/// refuses what they would have allowed), and so is a line whose port list
/// does not parse (it must not widen to any port).
pub fn decode_rules(body: &[u8]) -> Vec<AgentRule> {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .filter_map(|l| {
            let (pattern, flags) = l.split_once('\t').unwrap_or((l, ""));
            if !valid_pattern(pattern) {
                return None;
            }
            // `ports=` is the last flag: its value holds commas itself.
            let (flags, ports) = match flags.split_once("ports=") {
                Some((f, p)) => (f, Some(p.parse::<Ports>().ok()?)),
                None => (flags, None),
            };
            Some(AgentRule {
                pattern: pattern.to_ascii_lowercase(),
                tls: flags.split(',').any(|f| f == "tls"),
                insecure: flags.split(',').any(|f| f == "insecure"),
                ports,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip() {
        for t in [
            Target {
                host: "git.internal".into(),
                port: 443,
                tls: false,
                insecure: false,
                check: false,
                proxy: None,
            },
            Target {
                host: "nas.lan".into(),
                port: 5001,
                tls: true,
                insecure: true,
                check: true,
                proxy: None,
            },
            Target {
                host: "fd00::1".into(),
                port: 22,
                tls: false,
                insecure: false,
                check: false,
                proxy: None,
            },
        ] {
            assert_eq!(
                Target::parse(&t.encode()),
                Some(t.clone()),
                "{}",
                t.encode()
            );
        }
        let pp = Target {
            host: "app".into(),
            port: 80,
            tls: false,
            insecure: false,
            check: false,
            proxy: Some((
                "203.0.113.7:50000"
                    .parse()
                    .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                "[2001:db8::1]:443"
                    .parse()
                    .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            )),
        };
        assert_eq!(
            Target::parse(&pp.encode()),
            Some(pp.clone()),
            "{}",
            pp.encode()
        );
        for bad in [
            "egress:app:80;pp=1.2.3.4:5",
            "git:443",
            "egress:git",
            "egress::443",
            "egress:git:0",
            "egress:git:443;bogus",
            "egress:git:99999",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn internal_urls_give_their_target_and_host_header() {
        let t = Target::for_internal_url("https://NAS.lan", true).expect("https");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls, t.insecure),
            ("nas.lan", 443, true, true)
        );
        assert_eq!(t.http_host(), "nas.lan");
        let t = Target::for_internal_url("http://[fd00::5]:8080", true).expect("v6");
        assert_eq!(
            (t.host.as_str(), t.port, t.insecure),
            ("fd00::5", 8080, false)
        );
        assert_eq!(t.http_host(), "[fd00::5]:8080");
        assert!(Target::for_internal_url("ftp://x", false).is_none());
        assert!(Target::for_internal_url("not a url", false).is_none());
    }

    #[test]
    fn proxy_v2_headers_carry_both_addresses() {
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let src = "203.0.113.7:50000".parse().unwrap_or(any);
        let dst = "10.0.0.1:17243".parse().unwrap_or(any);
        let h = proxy_v2_header(src, dst);
        assert_eq!(h.len(), 16 + 12);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[203, 0, 113, 7]);
        assert_eq!(&h[24..26], &50000u16.to_be_bytes());
        assert_eq!(&h[26..28], &17243u16.to_be_bytes());
        let v6 = "[2001:db8::1]:443".parse().unwrap_or(any);
        let h = proxy_v2_header(src, v6);
        assert_eq!((h.len(), h[13]), (16 + 36, 0x21));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let rules = [
            ("*.example.com", 1),
            ("*.git.example.com", 2),
            ("git.example.com", 3),
        ];
        let pick = |h: &str| best_match(rules.iter().map(|(p, v)| (*p, *v)), h).map(|(_, v)| v);
        assert_eq!(pick("git.example.com"), Some(3));
        assert_eq!(pick("GIT.example.com."), Some(3));
        assert_eq!(pick("a.git.example.com"), Some(2));
        assert_eq!(pick("smtp.example.com"), Some(1));
        assert_eq!(pick("example.com"), None);
        assert_eq!(pick("badexample.com"), None);
        assert_eq!(pick("example.com.evil.net"), None);
    }

    #[test]
    fn patterns_are_validated_and_rules_round_trip() {
        for ok in ["git.internal", "*.internal.example.com", "a-b.c1"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.b",
            "a b",
            "a.*.b",
            "a:443",
            &"a".repeat(64),
        ] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        let rules = vec![
            AgentRule {
                pattern: "git.internal".into(),
                tls: false,
                insecure: false,
                ports: None,
            },
            AgentRule {
                pattern: "*.lan".into(),
                tls: true,
                insecure: true,
                ports: Some("22,8000-8100,443".parse().expect("ports")),
            },
            AgentRule {
                pattern: "smtp.lan".into(),
                tls: false,
                insecure: false,
                ports: Some(Ports::single(25)),
            },
        ];
        assert_eq!(decode_rules(encode_rules(&rules).as_bytes()), rules);
        // A port list that does not parse drops the line: never any port.
        assert!(decode_rules(b"a.lan\tports=0\n").is_empty());
        assert!(decode_rules(b"a.lan\ttls,ports=x\n").is_empty());
        assert_eq!(decode_rules(b"bad pattern\t\n*.ok\ttls\n").len(), 1);
    }

    #[test]
    fn port_lists_parse_join_and_refuse() {
        let p: Ports = " 443, 22 ,8000-8100,8050-8200,23".parse().expect("ports");
        assert_eq!(p.to_string(), "22-23,443,8000-8200");
        assert!(p.allows(22) && p.allows(23) && p.allows(8200) && p.allows(443));
        assert!(!p.allows(24) && !p.allows(80) && !p.allows(8201));
        assert_eq!(p.first(), 22);
        assert_eq!(
            "65535".parse::<Ports>().expect("ports").to_string(),
            "65535"
        );
        assert_eq!(
            Ports::single(25).union(&Ports::single(26)).to_string(),
            "25-26"
        );
        for (bad, want) in [
            ("", PortsError::Empty),
            (" , ", PortsError::Empty),
            ("0", PortsError::Bad("0".into())),
            ("65536", PortsError::Bad("65536".into())),
            ("-5", PortsError::Bad("-5".into())),
            ("22-", PortsError::Bad("22-".into())),
            ("http", PortsError::Bad("http".into())),
            ("1-2-3", PortsError::Bad("1-2-3".into())),
            ("100-10", PortsError::Backwards("100-10".into())),
        ] {
            assert_eq!(bad.parse::<Ports>(), Err(want), "{bad:?}");
        }
        let many = (1..=65)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(many.parse::<Ports>(), Err(PortsError::TooMany));
    }
}
