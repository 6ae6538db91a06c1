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
    /// The configuration file cannot be taken (nothing of it is used).
    #[error("{path}: {why}")]
    File { path: String, why: String },
}

/// The parsed command line, and what is needed to say where each value
/// came from.
pub struct Parsed {
    pub cli: Cli,
    /// Warnings to log once logging is up.
    pub warnings: Vec<String>,
    command: clap::Command,
    matches: ArgMatches,
    /// The configuration file read, and the ids of the arguments it set.
    file: Option<(std::path::PathBuf, std::collections::BTreeSet<String>)>,
}

/// Octoporty names are matched as .NET matches them: case-insensitively.
fn name_eq(alias: &str, var: &str) -> bool {
    if alias.contains("__") {
        alias.eq_ignore_ascii_case(var)
    } else {
        alias == var
    }
}

/// The subcommand whose arguments a role's settings are: `doctor` takes
/// the agent's as `run` does (`agent` is `run`'s alias).
fn sub_name(token: &str, role: Role) -> &'static str {
    if token == "doctor" {
        "doctor"
    } else {
        subcommand_name(role)
    }
}

/// Where the subcommand is in `args`, and its role, read off the
/// arguments (global flags, and the values of those that take one, may
/// come first).
fn sub_at(command: &clap::Command, args: &[String]) -> Option<(usize, Role)> {
    let takes_value: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_global_set() && a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut it = args.iter().enumerate().skip(1);
    while let Some((i, a)) = it.next() {
        if a.starts_with('-') {
            if takes_value.contains(a) {
                it.next();
            }
            continue;
        }
        return match a.as_str() {
            "gateway" => Some((i, Role::Gateway)),
            "run" | "agent" | "doctor" => Some((i, Role::Agent)),
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
    if let Some((at, role)) = sub_at(&command, args) {
        let sub = sub_name(&args[at], role);
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
            command = point_env(command, sub, burrow, from);
        }
    }
    let known = known_names(&command);
    for (k, _) in env {
        if let Some(w) = unknown(&known, k) {
            warnings.push(w);
        }
    }
    let mut args = args.to_vec();
    let mut file = None;
    if let Some((at, role)) = sub_at(&command, &args) {
        let first = command.clone().try_get_matches_from(&args)?;
        let path = first
            .subcommand()
            .and_then(|(_, m)| m.get_one::<std::path::PathBuf>("config_file"))
            .cloned();
        if let Some(path) = path {
            let f = file_args(&command, role, &first, &path)?;
            warnings.extend(f.warnings);
            args.splice(at + 1..at + 1, f.args);
            file = Some((path, f.ids));
        }
    }
    let matches = command.clone().try_get_matches_from(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Parsed {
        cli,
        warnings,
        command,
        matches,
        file,
    })
}

/// The arguments of `role`'s subcommand and the global ones, by long name.
fn role_args(command: &clap::Command, role: Role) -> Vec<clap::Arg> {
    let mut out: Vec<clap::Arg> = command
        .find_subcommand(subcommand_name(role))
        .map(|sc| sc.get_arguments().cloned().collect())
        .unwrap_or_default();
    out.extend(
        command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .cloned(),
    );
    out.retain(|a| {
        a.get_long()
            .is_some_and(|l| !matches!(l, "help" | "version" | "config"))
    });
    out
}

/// Whether a file's `key` names `arg`: its flag without `--` (`_` for
/// `-` too), or its variable (`CONNECT_URL`).
fn names_arg(arg: &clap::Arg, key: &str) -> bool {
    arg.get_long() == Some(key.replace('_', "-").as_str())
        || arg.get_env().is_some_and(|e| e == key)
}

/// Reads a configuration file: its top-level keys and values.
fn read_file(path: &std::path::Path) -> Result<toml::Table, SettingsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
        path: shown.clone(),
        why: format!("cannot read it: {e}"),
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| SettingsError::File {
            path: shown,
            why: format!("not valid TOML: {}", e.to_string().trim()),
        })
}

/// A TOML value as the strings a flag takes, one per value.
fn flag_values(key: &str, v: &toml::Value) -> Result<Vec<String>, String> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!(
            "key `{key}`: a value is a string, a number or true/false (or a list of them)"
        )),
    };
    match v {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// What a configuration file gives the command line.
struct FileArgs {
    /// Flags for the settings neither the command line nor a variable set.
    args: Vec<String>,
    /// The ids of the arguments it sets.
    ids: std::collections::BTreeSet<String>,
    /// Said once logging is up.
    warnings: Vec<String>,
}

/// The flags `path` gives `role`, for the settings neither the command
/// line nor a variable set (`first` says which those are), each checked
/// as its flag is.
fn file_args(
    command: &clap::Command,
    role: Role,
    first: &ArgMatches,
    path: &std::path::Path,
) -> Result<FileArgs, SettingsError> {
    let shown = path.display().to_string();
    let fail = |why: String| SettingsError::File {
        path: shown.clone(),
        why,
    };
    let table = read_file(path)?;
    // Names as Burrow documents them (variables too, whatever this
    // command line reads).
    let known = role_args(&Cli::command(), role);
    let sub = first.subcommand().map(|(_, m)| m);
    let mut out = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for (key, value) in &table {
        let Some(arg) = known.iter().find(|a| names_arg(a, key)) else {
            let closest = known
                .iter()
                .filter_map(|a| a.get_long())
                .min_by_key(|l| strsim::levenshtein(l, &key.replace('_', "-")))
                .unwrap_or_default();
            return Err(fail(format!(
                "unknown key `{key}` for burrow {}; did you mean `{closest}`?",
                subcommand_name(role)
            )));
        };
        let id = arg.get_id().as_str();
        let long = arg.get_long().unwrap_or_default();
        let source_in = |m: &ArgMatches| {
            m.try_contains_id(id)
                .ok()
                .filter(|known| *known)
                .and_then(|_| m.value_source(id))
        };
        let source = sub.and_then(source_in).or_else(|| source_in(first));
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = flag_values(key, value).map_err(&fail)?;
        let many = matches!(arg.get_action(), clap::ArgAction::Append);
        if !many && values.len() > 1 {
            return Err(fail(format!("key `{key}` takes one value, not a list")));
        }
        if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            match value {
                toml::Value::Boolean(true) => out.push(format!("--{long}")),
                toml::Value::Boolean(false) => {}
                _ => return Err(fail(format!("key `{key}` is true or false"))),
            }
            ids.insert(id.to_owned());
            continue;
        }
        for v in &values {
            let parts: Vec<&str> = match arg.get_value_delimiter() {
                Some(d) => v.split(d).collect(),
                None => vec![v.as_str()],
            };
            for part in parts {
                // Checked alone, as the flag would be: a bad value is
                // named with its key; conflicts wait for the whole parse.
                let alone = [
                    "burrow".to_owned(),
                    subcommand_name(role).to_owned(),
                    format!("--{long}={part}"),
                ];
                if let Err(e) = command.clone().try_get_matches_from(alone) {
                    use clap::error::ErrorKind as K;
                    if matches!(
                        e.kind(),
                        K::InvalidValue | K::ValueValidation | K::UnknownArgument | K::NoEquals
                    ) {
                        return Err(fail(format!("key `{key}`: {}", clap_line(&e))));
                    }
                }
            }
            out.push(format!("--{long}={v}"));
        }
        ids.insert(id.to_owned());
        if arg.is_hide_env_values_set() && shared(path) {
            warnings.push(format!(
                "{shown} holds a secret ({key}) and other users may read it: chmod 600 {shown}"
            ));
        }
    }
    Ok(FileArgs {
        args: out,
        ids,
        warnings,
    })
}

/// clap's refusal in one line, without its `error: ` prefix.
fn clap_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// Whether other users may read `path`.
fn shared(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// `burrow config check`: whether `path` is a valid configuration for
/// `role` (`None`: the role its keys fit), saying which; variables of
/// this shell are not read.
pub fn check_file(path: &std::path::Path, role: Option<&str>) -> Result<String, SettingsError> {
    let command = strip_env(Cli::command());
    let table = read_file(path)?;
    let fits = |r: Role| {
        let known = role_args(&Cli::command(), r);
        table
            .keys()
            .filter(|k| !known.iter().any(|a| names_arg(a, k)))
            .count()
    };
    let role = match role {
        Some("gateway") => Role::Gateway,
        Some("agent" | "run") => Role::Agent,
        Some(other) => {
            return Err(SettingsError::File {
                path: path.display().to_string(),
                why: format!("unknown role {other:?}: use gateway or agent"),
            });
        }
        None if fits(Role::Agent) <= fits(Role::Gateway) => Role::Agent,
        None => Role::Gateway,
    };
    let shown = path.display().to_string();
    let args: Vec<String> = ["burrow", subcommand_name(role), "--config", &shown]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let first = command.clone().try_get_matches_from(&args)?;
    let FileArgs {
        args: extra,
        ids,
        warnings: said,
    } = file_args(&command, role, &first, path)?;
    let mut all = args.clone();
    all.splice(2..2, extra);
    command
        .try_get_matches_from(&all)
        .map_err(|e| SettingsError::File {
            path: shown.clone(),
            why: clap_line(&e),
        })?;
    let mut report = format!(
        "{shown}: valid for burrow {} ({} settings)\n",
        subcommand_name(role),
        ids.len()
    );
    for w in said {
        report.push_str(&format!("warning: {w}\n"));
    }
    Ok(report)
}

/// `command` with no argument reading a variable.
fn strip_env(mut command: clap::Command) -> clap::Command {
    let ids: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_env().is_some())
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        command = command.mut_arg(id, |a| a.env(None::<&str>));
    }
    let subs: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subs {
        command = command.mut_subcommand(name, strip_env);
    }
    command
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
                let from = match (source, &self.file) {
                    (_, Some((path, ids))) if ids.contains(id) => {
                        format!("file {}", path.display())
                    }
                    (ValueSource::DefaultValue, _) => "default".to_owned(),
                    (ValueSource::EnvVariable, _) => format!(
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
        let role_of = |a: &[String]| sub_at(&cmd, a).map(|(_, r)| r);
        assert!(role_of(&run) == Some(Role::Agent));
        assert!(role_of(&args(&["burrow", "--log-level", "gateway", "run"])) == Some(Role::Agent));
        assert!(role_of(&args(&["burrow", "list-agents"])).is_none());
        // The subcommand is the token where it stands, not a value that
        // looks like one.
        let a = args(&["burrow", "run", "--agent-name", "doctor"]);
        let (at, role) = sub_at(&cmd, &a).unwrap();
        assert_eq!(sub_name(&a[at], role), "run");
        let a = args(&["burrow", "doctor", "--agent-name", "run"]);
        let (at, role) = sub_at(&cmd, &a).unwrap();
        assert_eq!(sub_name(&a[at], role), "doctor");
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
