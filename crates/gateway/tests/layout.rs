//! The gateway's parts stand alone: no source file imports another that
//! imports it back (directly or around a longer circle). A file's imports
//! are the `crate::…` and `super::…` paths it names, resolved to files.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src`, by module path (`edge::h1`), tests left out.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            // Test modules (`foo/tests.rs`) import their parent by design.
            if parts.last().is_some_and(|l| l == "tests") {
                continue;
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The module a path names, as the longest known prefix.
fn resolve(path: &[String], known: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// The modules `module`'s file names through `crate::` and `super::`.
fn imports(module: &str, text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let own: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    let is_mod_rs = known.get(module).is_some_and(|p| {
        p.file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
    });
    let mut out = BTreeSet::new();
    // Code only: comments may name paths freely, and a file's test module
    // (last, by convention) imports the file itself as `super`.
    let text = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or(text);
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    for (root, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` is the parent module (a file's own module path less
            // its last part, for `edge/h1.rs` and `edge/mod.rs` alike).
            let mut b = own.clone();
            b.pop();
            b
        }),
    ] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(root) {
            rest = &rest[i + root.len()..];
            // `crate::{a, b::c}` or `crate::a::b`.
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                vec![rest[..end].to_owned()]
            };
            for n in names {
                let mut path = base.clone();
                path.extend(
                    n.split("::")
                        .filter(|s| {
                            !s.is_empty() && s.chars().next().is_some_and(char::is_lowercase)
                        })
                        .map(str::to_owned),
                );
                // `crate::State`: an item of the crate root (lib.rs).
                let root_item = path.len() == base.len()
                    && n.chars().next().is_some_and(char::is_uppercase)
                    && root == "crate::";
                let target = if root_item && known.contains_key("") {
                    Some(String::new())
                } else {
                    resolve(&path, known)
                };
                if let Some(m) = target
                    && m != module
                {
                    out.insert(m);
                }
            }
        }
    }
    // A mod.rs (or lib.rs) also names its own children by relative paths
    // (`h1::serve`, `use h1::Outcome`); declaring them (`mod h1;`) is not
    // an import.
    if is_mod_rs {
        for child in known.keys().filter_map(|k| {
            let rest = if module.is_empty() {
                Some(k.as_str())
            } else {
                k.strip_prefix(module).and_then(|r| r.strip_prefix("::"))
            }?;
            (!rest.contains("::")).then_some((k, rest))
        }) {
            let (full, name) = child;
            let needle = format!("{name}::");
            let named = code.match_indices(&needle).any(|(i, _)| {
                let before = code[..i].chars().next_back();
                before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
            });
            if named {
                out.insert(full.clone());
            }
        }
    }
    out
}

#[test]
fn no_gateway_file_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    assert!(
        known.contains_key("edge::h1") && known.contains_key("egress"),
        "{known:?}"
    );
    let graph: BTreeMap<String, BTreeSet<String>> = known
        .iter()
        .map(|(m, p)| {
            let text = std::fs::read_to_string(p).unwrap();
            (m.clone(), imports(m, &text, &known))
        })
        .collect();
    // Depth-first search for a circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_owned());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

/// The checker itself finds a circle where there is one.
#[test]
fn a_circle_is_found() {
    let known: BTreeMap<String, PathBuf> = [
        ("edge", "src/edge/mod.rs"),
        ("edge::h1", "edge/h1.rs"),
        ("catalog", "catalog.rs"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), PathBuf::from(p)))
    .collect();
    let h1 = imports(
        "edge::h1",
        "use super::Front; use crate::catalog::route_target;",
        &known,
    );
    assert_eq!(
        h1,
        ["catalog", "edge"].into_iter().map(str::to_owned).collect()
    );
    let edge = imports("edge", "mod h1; pub(crate) use h1::serve;", &known);
    assert_eq!(edge, ["edge::h1"].into_iter().map(str::to_owned).collect());
    let edge = imports("edge", "mod h1; // h1::serve in a comment", &known);
    assert!(edge.is_empty(), "{edge:?}");
    let cat = imports(
        "catalog",
        "use crate::{edge::h1::Outcome, names::X};",
        &known,
    );
    assert_eq!(cat, ["edge::h1"].into_iter().map(str::to_owned).collect());
}
