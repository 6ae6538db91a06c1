//! The deployment files: `deploy/kubernetes/` validates against the
//! Kubernetes schemas (`kubernetes-validate`, offline), and every variable
//! the manifests and the Dockerfile set is one the binary reads, as its
//! `--help` shows; the probes point at the ports the variables open.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burrow_e2e::registered::run;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn manifests() -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy().join("kubernetes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    Ok(v)
}

async fn help(cmd: &str) -> Result<String> {
    let b = bin();
    let (code, out, err) = run(
        b.to_str().context("path")?,
        &[cmd, "--help"],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    Ok(out)
}

/// Whether `--help` shows `name` as a variable it reads.
fn reads(help: &str, name: &str) -> bool {
    help.contains(&format!("[env: {name}="))
        || help.contains(&format!("[env: {name}]"))
        || help.contains(&format!(", {name}="))
        || help.contains(&format!(", {name}]"))
        // Named in a flag's text (BURROW_TOKEN_KEY beside its file form).
        || help.contains(&format!(" {name} "))
}

/// The `- name: VARIABLE` entries (upper case: container and port names
/// are lower case) and each one's `value:` on the next line, if given.
fn env_vars(yaml: &str) -> Vec<(String, Option<String>)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut v = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.trim().strip_prefix("- name: ") else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let value = lines
            .get(i + 1)
            .and_then(|n| n.trim().strip_prefix("value: "))
            .map(|s| s.trim_matches('"').to_owned());
        v.push((name.to_owned(), value));
    }
    v
}

#[tokio::test]
async fn the_manifests_validate_against_kubernetes_schemas_and_a_broken_one_does_not() -> Result<()>
{
    burrow_e2e::require!("kubernetes-validate");
    let files = manifests()?;
    assert!(files.len() >= 2, "{files:?}");
    for version in ["1.37.0", "1.28.0"] {
        for f in &files {
            let (code, out, err) = run(
                "kubernetes-validate",
                &["--strict", "-k", version, f.to_str().context("path")?],
                Path::new("/"),
                &[],
            )
            .await?;
            assert_eq!(code, 0, "{} against {version}: {out}{err}", f.display());
            assert!(!out.contains("WARN") && !err.contains("WARN"), "{out}{err}");
        }
    }
    // The check can fail: a misspelt field is refused.
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("broken.yaml");
    let gateway = std::fs::read_to_string(deploy().join("kubernetes/gateway.yaml"))?;
    std::fs::write(&broken, gateway.replacen("replicas: 3", "replica: 3", 1))?;
    let (code, out, err) = run(
        "kubernetes-validate",
        &["--strict", broken.to_str().context("path")?],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_ne!(code, 0, "{out}{err}");
    Ok(())
}

#[tokio::test]
async fn every_variable_the_deploy_files_set_is_read_by_the_binary_and_probes_hit_its_ports()
-> Result<()> {
    let gateway_help = help("gateway").await?;
    let agent_help = help("run").await?;
    for f in manifests()? {
        let yaml = std::fs::read_to_string(&f)?;
        let help = if yaml.contains("- gateway\n") {
            &gateway_help
        } else {
            &agent_help
        };
        let vars = env_vars(&yaml);
        assert!(!vars.is_empty(), "{}", f.display());
        for (name, _) in &vars {
            // Set only to be expanded into another's value, as $(POD_IP).
            if yaml.contains(&format!("$({name})")) && !name.starts_with("BURROW_") {
                continue;
            }
            assert!(
                reads(help, name),
                "{} sets {name}, which the binary does not read",
                f.display()
            );
        }
        // The probes' port is the one the probe listener opens.
        let probe_var = if yaml.contains("- gateway\n") {
            "BURROW_METRICS_LISTEN"
        } else {
            "BURROW_HEALTH_LISTEN"
        };
        let listen = vars
            .iter()
            .find(|(n, _)| n == probe_var)
            .and_then(|(_, v)| v.clone())
            .with_context(|| format!("{} sets no {probe_var}", f.display()))?;
        let port = listen.rsplit(':').next().context("port")?;
        assert!(
            yaml.contains(&format!("containerPort: {port}\n")),
            "{}: the probes' port {port} is not a container port",
            f.display()
        );
        for path in ["path: /ready", "path: /healthz"] {
            assert!(yaml.contains(path), "{}: no {path} probe", f.display());
        }
        assert!(
            yaml.contains("kind: PodDisruptionBudget"),
            "{}",
            f.display()
        );
        assert!(
            yaml.contains("requests:"),
            "{}: resource requests",
            f.display()
        );
    }
    // The Dockerfile's variables too.
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile"))?;
    let mut seen = 0;
    for line in dockerfile.lines().filter_map(|l| l.strip_prefix("ENV ")) {
        for (name, _) in line.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            seen += 1;
            assert!(
                reads(&gateway_help, name) && reads(&agent_help, name),
                "the Dockerfile sets {name}"
            );
        }
    }
    assert!(seen > 0);
    // A variable the binary does not read is caught.
    assert!(!reads(&agent_help, "BURROW_NO_SUCH_SETTING"));
    Ok(())
}
