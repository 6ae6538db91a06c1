//! Diagnostics: the gateway asks a real agent over its link
//! (`agent-info`, `agent-check`, `agent-logs`, and the same through the
//! admin API), and an agent too old to answer is said to be.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use burrow_e2e::cli::Gateway;
use burrow_e2e::registered::{setup, static_server};
use burrow_e2e::{ca_and_server_cert, ca_and_server_cert_days, servers};
use tokio::io::AsyncBufReadExt;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_burrow"))
}

/// The steps of an `agent-check --json` answer: (step, ok, detail).
fn steps(v: &serde_json::Value) -> Vec<(String, bool, String)> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["ok"].as_bool().unwrap(),
                s["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Two HTTPS servers on loopback: one with a valid certificate for
/// `good`, one whose certificate for `expired` expired; `cas` holds both
/// CAs.
struct TlsSites {
    cas: std::path::PathBuf,
    good_port: u16,
    bad_port: u16,
    _servers: (tokio::process::Child, tokio::process::Child),
}

impl TlsSites {
    async fn start(dir: &Path, good: &str, expired: &str) -> Result<TlsSites> {
        let (g, b, site) = (dir.join("good"), dir.join("bad"), dir.join("site"));
        for d in [&g, &b, &site] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(site.join("index.html"), "hello")?;
        let (ca, cert, key) = ca_and_server_cert(&g, &[good]).await?;
        let (old_ca, old_cert, old_key) = ca_and_server_cert_days(&b, &[expired], -1).await?;
        let cas = dir.join("cas.pem");
        std::fs::write(
            &cas,
            std::fs::read_to_string(&ca)? + &std::fs::read_to_string(&old_ca)?,
        )?;
        let (good_srv, good_port) = static_server(&site, Some((&cert, &key))).await?;
        let (bad_srv, bad_port) = static_server(&site, Some((&old_cert, &old_key))).await?;
        Ok(TlsSites {
            cas,
            good_port,
            bad_port,
            _servers: (good_srv, bad_srv),
        })
    }
}

#[tokio::test]
async fn the_gateway_asks_a_real_agent_for_its_info_a_check_and_its_logs() -> Result<()> {
    burrow_e2e::require!("curl", "openssl", "python3");
    let dir = tempfile::tempdir()?;
    let sites = TlsSites::start(dir.path(), "localhost", "localhost").await?;
    let (cas, good_port, bad_port) = (sites.cas.clone(), sites.good_port, sites.bad_port);
    let echo = servers::echo().await;
    let closed = servers::free_port()?;
    let allow = format!(
        "127.0.0.1:{},localhost:{good_port},localhost:{bad_port},127.0.0.1:{closed}",
        echo.port()
    );
    let cas_arg = cas.display().to_string();
    let st = setup(
        bin(),
        &["--forward", "127.0.0.1:0=edge:127.0.0.1:1"],
        &["--allow", &allow, "--egress-ca-file", &cas_arg],
        true,
    )
    .await?;
    let cli = &st.gateway.cli;

    // agent-info: what it is and holds, secrets masked.
    let info = cli.json(&["agent-info", "--agent-name", "edge"]).await?;
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert!(info["os"].as_str().unwrap().starts_with("linux"), "{info}");
    let links = info["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{info}");
    assert!(links.iter().all(|l| l["state"] == "connected"), "{info}");
    let allowed: Vec<&str> = info["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(allowed.contains(&format!("{echo}").as_str()), "{info}");
    let settings = info["settings"].as_array().unwrap();
    let allow_setting = settings.iter().find(|s| s["name"] == "--allow").unwrap();
    assert_eq!(allow_setting["source"], "flag", "{info}");
    let text = info.to_string();
    assert!(!text.contains(st.gateway.admin_key()), "no admin key");
    let pem = std::fs::read_to_string(st.dir.path().join("ConnectionAgent-edge.pem"))?;
    let body: String = pem.lines().nth(1).unwrap_or("none").to_owned();
    assert!(!text.contains(&body), "no private key in agent-info");
    let table = cli.ok(&["agent-info", "--agent-name", "edge"]).await?;
    assert!(
        table.contains("LINKS") && table.contains("ALLOW-LIST") && table.contains("SETTINGS"),
        "{table}"
    );

    // agent-check: each step from the agent.
    let echo_s = echo.to_string();
    let v = cli
        .json(&["agent-check", "--agent-name", "edge", "--target", &echo_s])
        .await?;
    assert_eq!(v["ok"], true, "{v}");
    let names: Vec<String> = steps(&v).into_iter().map(|s| s.0).collect();
    assert_eq!(names, ["allowed", "dns", "tcp"], "{v}");

    let check = |target: String, tls: bool| {
        let mut a: Vec<String> = ["agent-check", "--agent-name", "edge", "--json", "--target"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        a.push(target);
        if tls {
            a.push("--tls".into());
        }
        a
    };
    let (v, err) = fails(cli, check(format!("127.0.0.1:{closed}"), false)).await?;
    let s = steps(&v);
    assert_eq!(s.last().unwrap().0, "tcp", "{v}");
    assert!(s.last().unwrap().2.contains("refused"), "{v}");
    assert!(err.contains("the tcp step failed"), "{err}");
    let (v, _) = fails(cli, check("127.0.0.1:2".into(), false)).await?;
    assert_eq!(steps(&v)[0].0, "allowed", "{v}");
    assert!(steps(&v)[0].2.contains("not-allowed"), "{v}");
    let good_target = format!("localhost:{good_port}");
    let v = cli
        .json(&[
            "agent-check",
            "--agent-name",
            "edge",
            "--target",
            &good_target,
            "--tls",
        ])
        .await?;
    assert_eq!(v["ok"], true, "{v}");
    let tls = steps(&v).pop().unwrap();
    assert_eq!(tls.0, "tls", "{v}");
    assert!(tls.2.contains("certificate valid"), "{v}");
    let (v, _) = fails(cli, check(format!("localhost:{bad_port}"), true)).await?;
    let tls = steps(&v).pop().unwrap();
    assert_eq!((tls.0.as_str(), tls.1), ("tls", false), "{v}");
    assert!(tls.2.contains("expired"), "{v}");
    let (code, _, err) = cli
        .run(&["agent-check", "--agent-name", "edge", "--target", "nope"])
        .await?;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli
        .run(&["agent-check", "--agent-name", "ghost", "--target", "a:1"])
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not connected"), "{err}");

    // The same through the admin API.
    let v = st.api_get("/agents/edge/info").await?;
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    let v = st
        .api_get(&format!("/agents/edge/check?target={echo}"))
        .await?;
    assert_eq!(v["ok"], true, "{v}");

    // agent-logs: recent lines, then a live tail.
    let recent = cli
        .ok(&["agent-logs", "--agent-name", "edge", "--lines", "500"])
        .await?;
    assert!(recent.contains("burrow agent starting"), "{recent}");
    let mut follow = tokio::process::Command::new(bin())
        .args([
            "agent-logs",
            "--agent-name",
            "edge",
            "--follow",
            "--json",
            "--level",
            "warn",
            "--lines",
            "1",
        ])
        .env_clear()
        .envs(cli.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    // Let the first (backlog) answer pass, then make the agent log a
    // warning: a forward to a target outside its allow-list.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let forward = st.gateway.forward.unwrap();
    let _ = tokio::net::TcpStream::connect(forward).await?;
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some(l) = lines.next_line().await? {
            let v: serde_json::Value = serde_json::from_str(&l)?;
            seen.push(v.clone());
            if v["message"].as_str().unwrap_or("").contains("allow-list") {
                return Ok::<_, anyhow::Error>(seen);
            }
        }
        anyhow::bail!("agent-logs --follow ended: {seen:?}")
    })
    .await
    .context("no refused-stream line followed within 30 s")??;
    assert!(
        seen.iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "--level warn shows warnings and errors only: {seen:?}"
    );
    let _ = follow.kill().await;
    Ok(())
}

/// Runs a command that must exit 1 with a JSON answer: (answer, stderr).
async fn fails(
    cli: &burrow_e2e::cli::Cli,
    args: Vec<String>,
) -> Result<(serde_json::Value, String)> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = cli.run(&a).await?;
    anyhow::ensure!(code == 1, "{a:?} exited {code}: {out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).context(out.clone())?;
    Ok((v, err))
}

#[tokio::test]
async fn an_agent_too_old_to_answer_is_said_to_be_with_its_version() -> Result<()> {
    burrow_e2e::require!("curl");
    let dir = tempfile::tempdir()?;
    let psk = burrow_e2e::random_psk();
    let gw = Gateway::start(
        bin(),
        &dir.path().join("gw"),
        &burrow_e2e::admin_key(),
        &["--no-tls"],
        &[("BURROW_PSK", &psk)],
    )
    .await?;
    // An agent of a version before requests: streams only.
    let caps = [burrow_wire::capabilities::STREAMS];
    let _ws = burrow_e2e::raw_agent_link(gw.addr, &psk, "old", "0.9.0", &caps).await?;
    for args in [
        vec!["agent-info", "--agent-name", "old"],
        vec!["agent-check", "--agent-name", "old", "--target", "db:5432"],
        vec!["agent-logs", "--agent-name", "old"],
    ] {
        let (code, out, err) = gw.cli.run(&args).await?;
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(
            err.contains("not supported by agent version 0.9.0") && err.contains("HTTP 501"),
            "{args:?}: {err}"
        );
    }
    Ok(())
}

/// `burrow doctor --json` with the agent's variables (`agent.env`) and
/// `extra` ones: (exit code, the report, stderr).
async fn doctor(
    st: &burrow_e2e::registered::Setup,
    extra: &[(&str, &str)],
) -> Result<(i32, serde_json::Value, String)> {
    let text = std::fs::read_to_string(st.dir.path().join("agent.env"))?;
    let mut env: Vec<(String, String)> = burrow_e2e::cli::env_lines(&text).into_iter().collect();
    let data = st.dir.path().join("doctor-data").display().to_string();
    env.push(("BURROW_DATA_DIR".into(), data));
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push(((*k).into(), (*v).into()));
    }
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(bin())
            .args(["doctor", "--json"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&stdout).with_context(|| stdout.clone())?;
    Ok((
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The check named `name`: (status, detail, fix).
fn check_of(v: &serde_json::Value, name: &str) -> (String, String, String) {
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {v}"));
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (s("status"), s("detail"), s("fix"))
}

#[tokio::test]
async fn doctor_walks_the_path_and_each_failure_is_named_with_its_fix() -> Result<()> {
    burrow_e2e::require!("curl", "openssl", "python3");
    let dir = tempfile::tempdir()?;
    let sites = TlsSites::start(dir.path(), "good.test", "expired.test").await?;
    let (cas, good_port, bad_port) = (sites.cas.clone(), sites.good_port, sites.bad_port);
    let cas_s = cas.display().to_string();
    let st = burrow_e2e::registered::setup_with_env(
        bin(),
        &[],
        &[],
        true,
        &[
            (
                "BURROW_MAP_HOST",
                "good.test=127.0.0.1,expired.test=127.0.0.1",
            ),
            ("BURROW_EGRESS_CA_FILE", &cas_s),
        ],
    )
    .await?;
    let gp = good_port.to_string();
    st.add_fqdn("good.test", &["--ports", &gp, "--tls"]).await?;

    // All green: every check passes, exit 0.
    let (code, v, err) = doctor(&st, &[]).await?;
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["ok"], true, "{v}");
    for name in [
        "configuration",
        "gateway DNS",
        "TCP connect",
        "TLS",
        "clock",
        "token endpoint",
        "link hello",
        "round trip",
        "rule good.test",
    ] {
        assert_eq!(check_of(&v, name).0, "ok", "{name}: {v}");
    }
    assert!(check_of(&v, "TLS").1.contains("pinned"), "{v}");
    // From an operator's machine, through the gateway.
    let (code, out, err) = st
        .gateway
        .cli
        .run(&["doctor", "--agent-name", "edge"])
        .await?;
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("rule good.test") && out.contains("every check passed"),
        "{out}"
    );

    // A wrong thumbprint.
    let wrong = "00".repeat(32);
    let (code, v, _) = doctor(&st, &[("GATEWAY_THUMBPRINT", &wrong)]).await?;
    assert_eq!(code, 1, "{v}");
    let (status, detail, fix) = check_of(&v, "TLS");
    assert_eq!(status, "failed", "{v}");
    assert!(detail.contains("not the pinned"), "{detail}");
    assert!(fix.contains("GATEWAY_THUMBPRINT="), "{fix}");

    // The proxy is down.
    let closed = format!("http://127.0.0.1:{}", servers::free_port()?);
    let (code, v, _) = doctor(&st, &[("HTTPS_PROXY", &closed)]).await?;
    assert_eq!(code, 1, "{v}");
    let (status, detail, fix) = check_of(&v, "TCP connect");
    assert_eq!(status, "failed", "{v}");
    assert!(detail.contains("through proxy"), "{detail}");
    assert!(fix.contains("HTTPS_PROXY"), "{fix}");

    // This host's clock two minutes ahead (the agent's own fake clock).
    let (code, v, _) = doctor(&st, &[("BURROW_TEST_CLOCK_OFFSET_SECONDS", "120")]).await?;
    assert_eq!(code, 1, "{v}");
    let (status, detail, fix) = check_of(&v, "clock");
    assert_eq!(status, "failed", "{v}");
    assert!(detail.contains("s ahead of the gateway's"), "{detail}");
    assert!(fix.contains("sync"), "{fix}");
    assert_eq!(check_of(&v, "token endpoint").0, "failed", "{v}");

    // A rule whose target does not resolve, one whose certificate expired.
    st.add_fqdn("nowhere.invalid", &[]).await?;
    let bp = bad_port.to_string();
    st.add_fqdn("expired.test", &["--ports", &bp, "--tls"])
        .await?;
    let (code, v, _) = doctor(&st, &[]).await?;
    assert_eq!(code, 1, "{v}");
    let (status, detail, fix) = check_of(&v, "rule nowhere.invalid");
    assert_eq!(status, "failed", "{v}");
    assert!(detail.contains("dns"), "{detail}");
    assert!(fix.contains("--map-host"), "{fix}");
    let (status, detail, fix) = check_of(&v, "rule expired.test");
    assert_eq!(status, "failed", "{v}");
    assert!(detail.contains("expired"), "{detail}");
    assert!(fix.contains("renew"), "{fix}");
    assert_eq!(check_of(&v, "rule good.test").0, "ok", "{v}");

    // The agent's key removed at the gateway.
    st.ok(&[
        "remove-key",
        "--agent-name",
        "edge",
        "--key-name",
        "k1",
        "--force",
    ])
    .await?;
    let (code, v, _) = doctor(&st, &[]).await?;
    assert_eq!(code, 1, "{v}");
    let (status, _, fix) = check_of(&v, "token endpoint");
    assert_eq!(status, "failed", "{v}");
    assert!(fix.contains("add-key"), "{fix}");
    Ok(())
}
