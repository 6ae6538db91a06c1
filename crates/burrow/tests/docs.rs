//! The user-facing documents say what the binary does: every flag and
//! environment variable `--help` shows is in `docs/configuration.md`, every
//! flag written there exists, and no document or help text says "seed"
//! for the product documents Burrow follows (users know the products by
//! name: Octopus Connection Agent, Octopus Tentacle, Octoporty). Code may
//! say seed where it means one (a random pattern's, an Ed25519 key's).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_burrow"))
        .args(args)
        .arg("--help")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(out.status.success(), "burrow {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Subcommands listed under `Commands:` in a help text.
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path: `["gateway"]`, `["admin-key", "create"]`, …
fn commands() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for c in subcommands(&help(&[])) {
        let sub = subcommands(&help(&[&c]));
        if sub.is_empty() {
            out.push(vec![c]);
        } else {
            for s in sub {
                out.push(vec![c.clone(), s]);
            }
        }
    }
    out
}

/// The long flags and the environment variables a help text names.
fn flags_and_env(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut flags = BTreeSet::new();
    let mut env = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim_start();
        for tag in ["[aliases: ", "[alias: "] {
            if let Some(i) = t.find(tag) {
                for a in t[i + tag.len()..].trim_end_matches(']').split(", ") {
                    flags.insert(a.trim().to_owned());
                }
            }
        }
        if t.starts_with('-') {
            for word in t.split([' ', ',', '=', '<', '[']) {
                if let Some(f) = word.strip_prefix("--")
                    && !f.is_empty()
                    && f != "help"
                    && f != "version"
                {
                    flags.insert(format!("--{f}"));
                }
            }
        }
        let mut rest = line;
        while let Some(i) = rest.find("[env: ") {
            rest = &rest[i + 6..];
            let end = rest.find(['=', ']']).unwrap_or(rest.len());
            env.insert(rest[..end].to_owned());
        }
    }
    (flags, env)
}

#[test]
fn every_flag_and_variable_in_help_is_in_the_configuration_document() {
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let mut all_flags = BTreeSet::new();
    let mut missing = Vec::new();
    let cmds = commands();
    assert!(
        cmds.iter().any(|c| c == &["gateway"]) && cmds.len() > 10,
        "{cmds:?}"
    );
    for cmd in &cmds {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let (flags, env) = flags_and_env(&help(&args));
        for f in &flags {
            if !doc.contains(&format!("`{f}`")) && !doc.contains(&format!("{f} ")) {
                missing.push(format!("{} {f}", cmd.join(" ")));
            }
        }
        for e in &env {
            if !doc.contains(e.as_str()) {
                missing.push(format!("{} [env: {e}]", cmd.join(" ")));
            }
        }
        all_flags.extend(flags);
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md:\n{}",
        missing.join("\n")
    );
    // And the other way: a flag the document names exists.
    let mut unknown = BTreeSet::new();
    for word in doc.split(['`', ' ', '/', '(', ')', ',', '|']) {
        if let Some(f) = word.strip_prefix("--")
            && f.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        {
            let f = format!("--{}", f.trim_end_matches(['.', ':', ';']));
            if !all_flags.contains(&f) && f != "--help" && f != "--version" {
                unknown.insert(f);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/configuration.md names flags no command has: {unknown:?}"
    );
}

#[test]
fn no_document_or_help_text_says_seed() {
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut stack = vec![
        root().join("docs"),
        root().join("crates"),
        root().join("bench"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target"
                    && name != "results"
                    && name != "node_modules"
                    && !name.starts_with('.')
                {
                    stack.push(p);
                }
            } else if name.ends_with(".md") {
                texts.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            } else if name.ends_with(".rs") || name.ends_with(".toml") {
                // In code, only the phrases that name the product documents.
                let t = std::fs::read_to_string(&p).unwrap().to_lowercase();
                let product = [
                    "seed document",
                    "octoporty seed",
                    "shared/seeds",
                    "the seeds",
                    "per the seed",
                    "as the seed",
                ];
                if product.iter().any(|w| t.contains(w)) {
                    texts.push((p.display().to_string(), "seed".into()));
                }
            }
        }
    }
    texts.push((
        "README.md".into(),
        std::fs::read_to_string(root().join("README.md")).unwrap(),
    ));
    for cmd in commands() {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        texts.push((format!("burrow {} --help", cmd.join(" ")), help(&args)));
    }
    // This file names the word to look for it.
    let me = file!().rsplit('/').next().unwrap();
    let said: Vec<&str> = texts
        .iter()
        .filter(|(path, _)| !path.ends_with(me))
        .filter(|(_, t)| {
            t.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == "seed" || w == "seeds")
        })
        .map(|(p, _)| p.as_str())
        .collect();
    assert!(said.is_empty(), "these say \"seed\": {said:?}");
}

#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 260,
        "README.md has {lines} lines: move reference to docs/"
    );
    assert!(readme.contains("bash .ci/run"));
}
