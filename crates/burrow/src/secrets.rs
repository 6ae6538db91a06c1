//! Secrets on the command line: every one has a variable and a `…-file`
//! form; given as a flag (where `ps` shows it to every local user) it gets
//! a warning; and no error message ever carries one's value.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// A secret's flag, its variable, and the variable of its file form.
pub struct SecretArg {
    /// The flag (and its aliases).
    pub flags: &'static [&'static str],
    /// The variable holding the value.
    pub env: &'static str,
    /// The variable naming a file that holds it.
    pub file_env: &'static str,
}

/// Every secret Burrow takes.
pub const SECRETS: &[SecretArg] = &[
    SecretArg {
        flags: &["--psk"],
        env: "BURROW_PSK",
        file_env: "BURROW_PSK_FILE",
    },
    SecretArg {
        flags: &["--proxy-auth"],
        env: "BURROW_PROXY_AUTH",
        file_env: "BURROW_PROXY_AUTH_FILE",
    },
    SecretArg {
        flags: &["--admin-key", "--api-key"],
        env: "BURROW_ADMIN_KEY",
        file_env: "BURROW_ADMIN_KEY_FILE",
    },
    SecretArg {
        flags: &["--private-key-pem"],
        env: "AUTH_SERVER_PRIVATE_KEY_PEM",
        file_env: "AUTH_SERVER_PRIVATE_KEY_PEM_PATH",
    },
    SecretArg {
        flags: &["--database-url"],
        env: "BURROW_DATABASE_URL",
        file_env: "BURROW_DATABASE_URL_FILE",
    },
    SecretArg {
        flags: &[],
        env: "BURROW_TOKEN_KEY",
        file_env: "BURROW_TOKEN_KEY_FILE",
    },
];

/// The secret `arg` matches, and its value if attached (`--psk=VALUE`).
fn secret_flag(arg: &str) -> Option<(&'static SecretArg, Option<&str>)> {
    let (name, attached) = match arg.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (arg, None),
    };
    SECRETS
        .iter()
        .find(|s| s.flags.contains(&name))
        .map(|s| (s, attached))
}

/// Warnings for secrets given as flags.
pub fn flag_warnings(args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| secret_flag(a))
        .map(|(s, _)| {
            format!(
                "{} was given on the command line, where `ps` and shell history show it to other local users: use {} (a file, mode 0600) or {} instead",
                s.flags[0], s.file_env, s.env
            )
        })
        .collect()
}

/// Secret values in `args` (after a secret flag, or attached to it) and
/// in the environment.
fn values(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut next_is_secret = false;
    for a in args {
        if next_is_secret {
            out.push(a.clone());
            next_is_secret = false;
            continue;
        }
        if let Some((_, attached)) = secret_flag(a) {
            match attached {
                Some(v) => out.push(v.to_owned()),
                None => next_is_secret = true,
            }
        }
    }
    for s in SECRETS {
        if let Ok(v) = std::env::var(s.env) {
            out.push(v);
        }
    }
    out.retain(|v| v.trim().len() >= 4);
    // Longest first, so a value containing another is replaced whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

/// `text` with every secret value from `args` and the environment
/// replaced, line by line too (a PEM key may be quoted in part).
pub fn redact(text: &str, args: &[String]) -> String {
    let mut t = text.to_owned();
    for v in values(args) {
        t = t.replace(&v, "<redacted>");
        for line in v.lines().map(str::trim).filter(|l| l.len() >= 8) {
            t = t.replace(line, "<redacted>");
        }
    }
    t
}

/// A secret from its flag or variable, or else from its file (first
/// line, or the whole file with `whole`). Errors name the file, never
/// what it holds.
pub fn value_or_file(
    value: Option<String>,
    file: Option<&Path>,
    what: &str,
    whole: bool,
) -> Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(f)) => bail!(
            "{what} is given both directly and in a file ({}): keep one",
            f.display()
        ),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => {
            burrow_transport::files::warn_if_readable(f);
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the {what} file {}", f.display()))?;
            let v = if whole {
                text
            } else {
                text.lines().next().unwrap_or_default().trim().to_owned()
            };
            if v.trim().is_empty() {
                bail!("the {what} file {} is empty", f.display());
            }
            Ok(Some(v))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn flags_are_warned_about_and_values_redacted() {
        let args = s(&[
            "burrow",
            "gateway",
            "--psk",
            "super-secret-psk-value-0123456789",
            "--proxy-auth=user:hunter2hunter2",
            "--listen",
            "127.0.0.1:1",
        ]);
        let w = flag_warnings(&args);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("BURROW_PSK_FILE"), "{w:?}");
        let msg = "error: invalid value 'user:hunter2hunter2' for '--proxy-auth'; psk super-secret-psk-value-0123456789";
        let r = redact(msg, &args);
        assert!(!r.contains("hunter2") && !r.contains("super-secret"), "{r}");
        assert!(r.contains("127.0.0.1:1") || !msg.contains("127.0.0.1:1"));
    }

    #[test]
    fn a_pem_key_is_redacted_line_by_line() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        let args = s(&["burrow", "run", "--private-key-pem", pem]);
        let msg = "error: unexpected argument 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC' found";
        assert!(!redact(msg, &args).contains("MIIEvQ"));
    }
}
