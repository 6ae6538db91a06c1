//! Where each setting comes from. Octoporty's variable names work beside
//! Burrow's (each role reads its own, so one `.env` file can serve both);
//! two names for one setting that disagree are refused; a variable that
//! looks like a setting but is none is warned about, naming the closest
//! known one; and the start-up banner lists every effective setting with
//! its source, secrets masked.

use std::collections::BTreeMap;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// Which process reads a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Gateway,
    Agent,
    Both,
}

/// An Octoporty name and the Burrow variable it sets.
struct Alias {
    name: &'static str,
    burrow: &'static str,
    role: Role,
}

const fn alias(name: &'static str, burrow: &'static str, role: Role) -> Alias {
    Alias { name, burrow, role }
}

/// Octoporty's configuration names (its configuration reference and its
/// `.env` template) and the Burrow variables they set.
const ALIASES: &[Alias] = &[
    alias("Gateway__ApiKey", "BURROW_PSK", Role::Gateway),
    alias("GATEWAY_API_KEY", "BURROW_PSK", Role::Gateway),
    alias(
        "Gateway__CaddyAdminUrl",
        "BURROW_CADDY_ADMIN_URL",
        Role::Gateway,
    ),
    alias("Gateway__Port", "BURROW_LISTEN", Role::Gateway),
    alias(
        "Gateway__AllowedOrigins",
        "BURROW_ALLOWED_ORIGINS",
        Role::Gateway,
    ),
    alias(
        "Gateway__RemoveRoutesOnTunnelUnavailable",
        "BURROW_REMOVE_ROUTES_ON_TUNNEL_UNAVAILABLE",
        Role::Gateway,
    ),
    alias("Agent__GatewayFqdn", "GATEWAY_FQDN", Role::Agent),
    alias("AGENT_GATEWAY_FQDN", "GATEWAY_FQDN", Role::Agent),
    alias("Agent__GatewayUrl", "CONNECT_URL", Role::Agent),
    alias("Agent__ApiKey", "BURROW_PSK", Role::Agent),
    alias("AGENT_API_KEY", "BURROW_PSK", Role::Agent),
    alias(
        "Agent__HeartbeatIntervalSeconds",
        "HEARTBEAT_INTERVAL_SECONDS",
        Role::Agent,
    ),
    alias(
        "Agent__ReconnectDelaySeconds",
        "RECONNECT_DELAY_SECONDS",
        Role::Agent,
    ),
    alias(
        "Agent__MaxReconnectDelaySeconds",
        "MAX_RECONNECT_DELAY_SECONDS",
        Role::Agent,
    ),
    alias("Logging__FilePath", "BURROW_LOG_FILE", Role::Both),
    alias("Agent__JwtSecret", "BURROW_UI_JWT_SECRET", Role::Agent),
    alias("AGENT_JWT_SECRET", "BURROW_UI_JWT_SECRET", Role::Agent),
    alias(
        "Agent__Auth__PasswordHash",
        "BURROW_UI_PASSWORD_HASH",
        Role::Agent,
    ),
    alias(
        "AGENT_AUTH_PASSWORD_HASH",
        "BURROW_UI_PASSWORD_HASH",
        Role::Agent,
    ),
    alias("Agent__Port", "BURROW_UI_LISTEN", Role::Agent),
    alias(
        "ConnectionStrings__DefaultConnection",
        "BURROW_AGENT_DATABASE",
        Role::Agent,
    ),
    alias("CONNECTION_STRING", "BURROW_AGENT_DATABASE", Role::Agent),
];

/// Variables Burrow reads outside its flags.
const OTHER_KNOWN: &[&str] = &["BURROW_TOKEN_KEY", "BURROW_EDGE_HTTP1"];

/// A command line that cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// clap refused it (usage, --help, --version).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// Two names for one setting disagree.
    #[error(
        "{first} and {second} are both set, to different values, and name one setting ({setting}): keep one of them"
    )]
    Conflict {
        first: String,
        second: String,
        setting: String,
    },
}

/// The parsed command line, and what is needed to say where each value
/// came from.
pub struct Parsed {
    pub cli: Cli,
    /// Warnings to log once logging is up.
    pub warnings: Vec<String>,
    command: clap::Command,
    matches: ArgMatches,
}

/// Octoporty names are matched as .NET matches them: case-insensitively.
fn name_eq(alias: &str, var: &str) -> bool {
    if alias.contains("__") {
        alias.eq_ignore_ascii_case(var)
    } else {
        alias == var
    }
}

/// The subcommand's role, read off the arguments (global flags, and the
/// values of those that take one, may come first).
fn role_of(command: &clap::Command, args: &[String]) -> Option<Role> {
    let takes_value: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_global_set() && a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a.starts_with('-') {
            if takes_value.contains(a) {
                it.next();
            }
            continue;
        }
        return match a.as_str() {
            "gateway" => Some(Role::Gateway),
            "run" | "agent" => Some(Role::Agent),
            _ => None,
        };
    }
    None
}

fn subcommand_name(role: Role) -> &'static str {
    match role {
        Role::Gateway => "gateway",
        Role::Agent | Role::Both => "run",
    }
}

/// Every variable name the command tree reads.
fn env_names(cmd: &clap::Command, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        if let Some(e) = a.get_env() {
            out.push(e.to_string_lossy().into_owned());
        }
    }
    for sc in cmd.get_subcommands() {
        env_names(sc, out);
    }
}

/// Parses `args` with the process's environment `env`.
pub fn parse(args: &[String], env: &[(String, String)]) -> Result<Parsed, SettingsError> {
    let mut command = Cli::command();
    let mut warnings = Vec::new();
    if let Some(role) = role_of(&command, args) {
        // The Burrow variable each alias sets, with the names that set it.
        let mut wanted: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for a in ALIASES
            .iter()
            .filter(|a| a.role == role || a.role == Role::Both)
        {
            for (k, v) in env.iter().filter(|(k, _)| name_eq(a.name, k)) {
                wanted.entry(a.burrow).or_default().push((k, v));
            }
        }
        for (burrow, names) in wanted {
            let own = env.iter().find(|(k, _)| k == burrow);
            let mut all: Vec<(&str, &str)> = own
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .into_iter()
                .collect();
            all.extend(names.iter().copied());
            if let Some((second, _)) = all.iter().find(|(_, v)| *v != all[0].1) {
                return Err(SettingsError::Conflict {
                    first: all[0].0.to_owned(),
                    second: (*second).to_owned(),
                    setting: burrow.to_owned(),
                });
            }
            if own.is_some() {
                continue;
            }
            // clap reads the value from the alias itself, so errors and
            // the banner name the variable the user set.
            let from: &'static str = Box::leak(names[0].0.to_owned().into_boxed_str());
            command = point_env(command, subcommand_name(role), burrow, from);
        }
    }
    let known = known_names(&command);
    for (k, _) in env {
        if let Some(w) = unknown(&known, k) {
            warnings.push(w);
        }
    }
    let matches = command.clone().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Parsed {
        cli,
        warnings,
        command,
        matches,
    })
}

/// Makes the argument that reads `burrow` (in subcommand `sub`, or a
/// global one) read `from` instead.
fn point_env(command: clap::Command, sub: &str, burrow: &str, from: &'static str) -> clap::Command {
    repoint(command, burrow, from).mut_subcommand(sub, |sc| repoint(sc, burrow, from))
}

/// `command`'s own arguments that read `burrow` read `from` instead.
fn repoint(command: clap::Command, burrow: &str, from: &'static str) -> clap::Command {
    let ids: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_env().is_some_and(|e| e == burrow))
        .map(|a| a.get_id().to_string())
        .collect();
    ids.into_iter()
        .fold(command, |c, id| c.mut_arg(id, |a| a.env(from)))
}

/// Every variable name Burrow reads, its own and Octoporty's.
fn known_names(command: &clap::Command) -> Vec<String> {
    let mut known = Vec::new();
    env_names(command, &mut known);
    known.extend(ALIASES.iter().map(|a| a.name.to_owned()));
    known.extend(OTHER_KNOWN.iter().map(|n| (*n).to_owned()));
    known
}

/// A warning for `var` if it looks like a setting and is none of `known`.
fn unknown(known: &[String], var: &str) -> Option<String> {
    if known.iter().any(|k| name_eq(k, var)) || var.starts_with("BURROW_TEST_") {
        return None;
    }
    let ours = [
        "BURROW_",
        "Gateway__",
        "Agent__",
        "Logging__",
        "ConnectionStrings__",
    ]
    .iter()
    .any(|p| var.len() > p.len() && var[..p.len()].eq_ignore_ascii_case(p));
    let upper = var.to_ascii_uppercase();
    let (distance, closest) = known
        .iter()
        .map(|k| (strsim::levenshtein(&k.to_ascii_uppercase(), &upper), k))
        .min()?;
    // Other programs' variables are left alone unless they are one or two
    // letters away from one of ours.
    let near = distance <= 2 && var.len() >= 8;
    if !(ours || near) {
        return None;
    }
    Some(format!(
        "{var} is not a Burrow or Octoporty setting and is ignored; did you mean {closest}?"
    ))
}

impl Parsed {
    /// Every setting of the running subcommand that has a value: (flag,
    /// value with secrets masked, where it came from).
    pub fn effective(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut add = |cmd: &clap::Command, m: &ArgMatches| {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let Some(source) = m.value_source(id) else {
                    continue;
                };
                let Some(raw) = m.get_raw(id) else {
                    continue;
                };
                let value: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
                let value = if a.is_hide_env_values_set() {
                    "(set, not shown)".to_owned()
                } else {
                    value
                        .iter()
                        .map(|v| mask_url(v))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let from = match source {
                    ValueSource::DefaultValue => "default".to_owned(),
                    ValueSource::EnvVariable => format!(
                        "variable {}",
                        a.get_env().map(|e| e.to_string_lossy()).unwrap_or_default()
                    ),
                    _ => "flag".to_owned(),
                };
                let flag = a
                    .get_long()
                    .map_or_else(|| id.to_owned(), |l| format!("--{l}"));
                out.push((flag, value, from));
            }
        };
        add(&self.command, &self.matches);
        if let Some((name, m)) = self.matches.subcommand()
            && let Some(sc) = self.command.find_subcommand(name)
        {
            add(sc, m);
        }
        out
    }
}

/// A URL's password replaced by `****`.
fn mask_url(v: &str) -> String {
    let Some((scheme, rest)) = v.split_once("://") else {
        return v.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return v.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
        None => v.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn two_names_that_disagree_are_refused_naming_both() {
        let e = env(&[
            ("BURROW_PSK", "value-one"),
            ("Gateway__ApiKey", "value-two"),
        ]);
        let err = parse(&args(&["burrow", "gateway"]), &e).err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("BURROW_PSK") && text.contains("Gateway__ApiKey"),
            "{text}"
        );
        assert!(!text.contains("value-"), "no values: {text}");
        let e = env(&[("Agent__ApiKey", "x"), ("AGENT_API_KEY", "y")]);
        assert!(parse(&args(&["burrow", "run"]), &e).is_err());
    }

    #[test]
    fn each_role_reads_only_its_own_names() {
        // One .env file for both: the gateway's key and the agent's key
        // may differ in name but not disagree for the same role.
        let e = env(&[("GATEWAY_API_KEY", "g"), ("AGENT_API_KEY", "a")]);
        assert!(
            parse(&args(&["burrow", "gateway", "--help"]), &e)
                .is_err_and(|e| matches!(e, SettingsError::Clap(_)))
        );
        let cmd = Cli::command();
        let run = args(&["burrow", "--log-format", "json", "--log-file", "x", "run"]);
        assert!(role_of(&cmd, &run) == Some(Role::Agent));
        assert!(
            role_of(&cmd, &args(&["burrow", "--log-level", "gateway", "run"])) == Some(Role::Agent)
        );
        assert!(role_of(&cmd, &args(&["burrow", "list-agents"])).is_none());
    }

    #[test]
    fn lookalike_names_are_warned_about_with_the_closest() {
        let cmd = known_names(&Cli::command());
        let w = unknown(&cmd, "BURROW_PKS").unwrap();
        assert!(w.contains("BURROW_PSK"), "{w}");
        let w = unknown(&cmd, "Agent__GatewayFdqn").unwrap();
        assert!(w.contains("Agent__GatewayFqdn"), "{w}");
        let w = unknown(&cmd, "CONECT_URL").unwrap();
        assert!(w.contains("CONNECT_URL"), "{w}");
        assert!(
            unknown(&cmd, "AGENT__APIKEY").is_none(),
            ".NET names ignore case"
        );
        assert!(unknown(&cmd, "HOME").is_none());
        assert!(unknown(&cmd, "PATH").is_none());
        assert!(unknown(&cmd, "RUST_BACKTRACE").is_none());
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url("postgres://u:secret@h/db"),
            "postgres://u:****@h/db"
        );
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_url("0.0.0.0:1"), "0.0.0.0:1");
    }
}
