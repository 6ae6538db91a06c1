//! Settings as an Octoporty user brings them: its variable names (the
//! `.env` template's and the `Section__Key` ones), two names that
//! disagree, names that look like settings but are none, the rolling log
//! file, the start-up banner with secrets masked, and directories this
//! process cannot write.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burrow_agent::event as agent_ev;
use burrow_e2e::servers::{self, echo_roundtrip};
use burrow_e2e::{Proc, addr_field, random_psk, strings as s};
use burrow_gateway::event as gw_ev;
use burrow_transport::event::SETTING;
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// The banner line for `flag`.
async fn setting(p: &mut Proc, flag: &str) -> Result<Value> {
    p.wait_event_after(0, SETTING, |v| v["setting"] == flag)
        .await
}

#[tokio::test]
async fn octoporty_env_names_run_a_gateway_and_an_agent_with_a_log_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let psk = random_psk();
    let echo = servers::echo().await;
    let log = dir.path().join("logs/gateway-.log");
    let log_s = log.display().to_string();
    let forward = format!("127.0.0.1:0=edge:{echo}");
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &s(&["gateway", "--listen", "127.0.0.1:0", "--forward", &forward]),
        &[
            // The .env template's name, and the configuration reference's.
            ("GATEWAY_API_KEY", &psk),
            ("Logging__FilePath", &log_s),
            // Another role's names in the same .env are not the gateway's.
            ("AGENT_API_KEY", "something-else-entirely-0123456789"),
            ("BURROW_PKS", "typo"),
        ],
    )?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    let addr = addr_field(&up, "addr")?;
    let thumbprint = up["thumbprint"].as_str().context("thumbprint")?.to_owned();
    let fwd = addr_field(&gw.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    // One line says which listeners are reachable beyond this host.
    let l = gw.wait_event(gw_ev::LISTENERS).await?;
    let local = l["loopback_only"].as_str().unwrap_or_default();
    assert!(
        local.contains(&format!("tunnel {addr}")) && local.contains(&format!("forward:edge {fwd}")),
        "{l}"
    );
    assert!(
        !l["public"].as_str().unwrap_or_default().contains("tunnel"),
        "{l}"
    );

    // The banner says where each value came from, and never the key.
    let v = setting(&mut gw, "--psk").await?;
    assert_eq!(v["source"], "variable GATEWAY_API_KEY", "{v}");
    assert_eq!(v["value"], "(set, not shown)", "{v}");
    let v = setting(&mut gw, "--listen").await?;
    assert_eq!(v["source"], "flag", "{v}");
    let v = setting(&mut gw, "--max-agents").await?;
    assert_eq!(v["source"], "default", "{v}");
    let v = setting(&mut gw, "--log-file").await?;
    assert_eq!(v["source"], "variable Logging__FilePath", "{v}");
    assert!(
        gw.output()
            .contains("BURROW_PKS is not a Burrow or Octoporty setting and is ignored; did you mean BURROW_PSK?"),
        "{}",
        gw.output()
    );

    let fqdn = format!("127.0.0.1:{}", addr.port());
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &s(&["run", "--agent-name", "edge", "--allow", &echo.to_string()]),
        &[
            ("AGENT_GATEWAY_FQDN", &fqdn),
            ("Agent__ApiKey", &psk),
            ("GATEWAY_THUMBPRINT", &thumbprint),
            ("Agent__HeartbeatIntervalSeconds", "7"),
            ("Agent__ReconnectDelaySeconds", "0.2"),
            ("Agent__MaxReconnectDelaySeconds", "1"),
            ("BURROW_ALLOW_LOOPBACK", "true"),
        ],
    )?;
    agent.wait_event(agent_ev::LINK_UP).await?;
    gw.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    let v = setting(&mut agent, "--heartbeat-interval-seconds").await?;
    assert_eq!(v["value"], "7", "{v}");
    assert_eq!(v["source"], "variable Agent__HeartbeatIntervalSeconds");
    let v = setting(&mut agent, "--gateway-fqdn").await?;
    assert_eq!(v["source"], "variable AGENT_GATEWAY_FQDN");
    assert_eq!(echo_roundtrip(fwd, b"octoporty").await?, b"octoporty");

    // The log file: rolled daily (the date where Octoporty's dash is), JSON
    // lines with the same events, no secret.
    gw.term()?;
    gw.wait_exit().await?;
    let files: Vec<_> = std::fs::read_dir(dir.path().join("logs"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = &files[0];
    assert!(
        name.starts_with("gateway.")
            && name.ends_with(".log")
            && name.len() == "gateway.2026-12-02.log".len(),
        "{name}"
    );
    let text = std::fs::read_to_string(dir.path().join("logs").join(name))?;
    let events: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        events
            .iter()
            .any(|v| v["event"] == gw_ev::AGENT_LINK_UP && v["agent"] == "edge"),
        "{text}"
    );
    assert!(events.iter().any(|v| v["event"] == gw_ev::STOPPED));
    assert!(!text.contains(&psk), "the key is never in the log file");
    assert!(!gw.output().contains(&psk) && !agent.output().contains(&psk));
    Ok(())
}

#[tokio::test]
async fn two_names_for_one_setting_that_disagree_are_refused_naming_both() -> Result<()> {
    let psk = random_psk();
    let other = random_psk();
    let mut agent = Proc::spawn(
        "agent",
        &bin(),
        &s(&["run", "--agent-name", "edge"]),
        &[
            ("CONNECT_URL", "wss://127.0.0.1:1/tunnel"),
            ("BURROW_PSK", &psk),
            ("AGENT_API_KEY", &other),
        ],
    )?;
    assert_eq!(agent.wait_exit().await?, Some(2));
    let out = agent.output();
    assert!(
        out.contains("BURROW_PSK and AGENT_API_KEY are both set, to different values"),
        "{out}"
    );
    assert!(
        !out.contains(&psk) && !out.contains(&other),
        "no values: {out}"
    );
    // The same value under both names is one setting, not a conflict.
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &s(&["gateway", "--listen", "127.0.0.1:0"]),
        &[("Gateway__ApiKey", &psk), ("GATEWAY_API_KEY", &psk)],
    )?;
    gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    Ok(())
}

/// A fatal error is said once, its cause once: a taken port.
#[tokio::test]
async fn a_taken_port_is_said_once() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data").display().to_string();
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &s(&["gateway", "--listen", &addr]),
        &[("BURROW_PSK", &random_psk()), ("BURROW_DATA_DIR", &data)],
    )?;
    assert_eq!(gw.wait_exit().await?, Some(1));
    let out = gw.output();
    assert!(out.contains(&format!("cannot listen on {addr}")), "{out}");
    assert_eq!(out.matches("Address already in use").count(), 1, "{out}");
    Ok(())
}

#[tokio::test]
async fn octoporty_web_ui_settings_are_checked_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().display().to_string();
    // `openssl passwd -6 -salt saltsalt hunter2`
    let hash = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";
    let run = |env: Vec<(&'static str, String)>| {
        let data = data.clone();
        async move {
            let mut full = vec![
                ("CONNECT_URL", "wss://127.0.0.1:1/tunnel".to_owned()),
                ("BURROW_PSK", random_psk()),
                ("BURROW_DATA_DIR", data),
                ("BURROW_AGENT_NAME", "ui-test".to_owned()),
                ("Agent__Port", "0".to_owned()),
            ];
            full.extend(env);
            let env: Vec<(&str, &str)> = full.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut p = Proc::spawn("agent", &bin(), &s(&["run"]), &env)?;
            let code = p.wait_exit().await?;
            anyhow::Ok((code, p.output()))
        }
    };
    let short = "too-short-secret";
    let (code, out) = run(vec![
        ("Agent__Auth__PasswordHash", hash.to_owned()),
        ("Agent__JwtSecret", short.to_owned()),
    ])
    .await?;
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("at least 32"), "{out}");
    assert!(!out.contains(short), "the secret is not shown: {out}");
    let (code, out) = run(vec![
        ("AGENT_AUTH_PASSWORD_HASH", "$1$x$y".to_owned()),
        ("AGENT_JWT_SECRET", "j".repeat(40)),
    ])
    .await?;
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("not a SHA-512 crypt hash"), "{out}");
    assert!(!out.contains(&"j".repeat(40)), "{out}");
    let (code, out) = run(vec![
        ("Agent__Auth__PasswordHash", hash.to_owned()),
        ("Agent__JwtSecret", "j".repeat(40)),
        ("CONNECTION_STRING", "Host=db;Database=x".to_owned()),
    ])
    .await?;
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("Data Source="), "{out}");
    Ok(())
}

/// Runs `burrow ARGS` as nobody (65534) with `env`: (exit code, stderr).
async fn as_nobody(args: &[&str], env: &[(&str, &str)]) -> Result<(Option<i32>, String)> {
    let mut full = s(&["--reuid=65534", "--regid=65534", "--clear-groups"]);
    full.push(bin().display().to_string());
    full.extend(s(args));
    let mut p = Proc::spawn("nobody", &PathBuf::from("/usr/bin/setpriv"), &full, env)?;
    let code = p.wait_exit().await?;
    Ok((code, p.output()))
}

#[tokio::test]
async fn a_directory_this_process_cannot_write_is_one_clear_error_with_the_fix() -> Result<()> {
    burrow_e2e::require!("root", "setpriv");
    // Root's private temporary directory: nobody cannot write there.
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data").display().to_string();
    let (code, err) = as_nobody(
        &["gateway", "--listen", "127.0.0.1:0"],
        &[("BURROW_DATA_DIR", &data), ("BURROW_PSK", &random_psk())],
    )
    .await?;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot write the data directory {data}")),
        "{err}"
    );
    assert!(err.contains("uid:gid 65534:65534"), "{err}");
    assert!(err.contains("chown -R 65534:65534"), "{err}");

    // The log file's directory, for either role, before anything else.
    let open = tempfile::tempdir()?;
    std::fs::set_permissions(
        open.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    let logs = dir.path().join("logs/agent-.log").display().to_string();
    let (code, err) = as_nobody(
        &["run", "--agent-name", "edge"],
        &[
            ("Logging__FilePath", &logs),
            ("BURROW_DATA_DIR", &open.path().display().to_string()),
            ("CONNECT_URL", "wss://127.0.0.1:1/tunnel"),
            ("BURROW_PSK", &random_psk()),
        ],
    )
    .await?;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot write the log file directory"), "{err}");
    assert!(err.contains("chown -R 65534:65534"), "{err}");
    Ok(())
}
