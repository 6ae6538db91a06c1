//! End to end for trust: TLS on every listener, thumbprint pinning both
//! ways, rotation, listening mode, and an HTTP CONNECT proxy. Real
//! processes, real `openssl`, `curl` and `tinyproxy`; certificates made at
//! run time.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use burrow_agent::event as agent_ev;
use burrow_e2e::servers::{self, echo_roundtrip, hashing_peer, send_and_hash};
use burrow_e2e::{Proc, Tunnel, TunnelOpts, WAIT, addr_field, random_psk};
use burrow_gateway::event as gw_ev;
use tokio::net::TcpStream;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A certificate and key made with `openssl` (P-256, self-signed), and its
/// thumbprint as `burrow thumbprint` prints it, checked against openssl's.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    thumbprint: String,
}

async fn make_cert(dir: &Path, name: &str) -> Result<Cert> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let st = tokio::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    ensure!(st.success(), "openssl req failed");
    let out = tokio::process::Command::new(bin())
        .arg("thumbprint")
        .arg(&cert)
        .output()
        .await?;
    ensure!(out.status.success(), "burrow thumbprint failed");
    let thumbprint = String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .context("no thumbprint printed")?
        .to_owned();
    let ossl = tokio::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .await?;
    let ossl = String::from_utf8(ossl.stdout)?;
    let ossl = ossl
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .replace(':', "");
    assert_eq!(
        thumbprint, ossl,
        "burrow and openssl agree on the thumbprint"
    );
    Ok(Cert {
        cert,
        key,
        thumbprint,
    })
}

fn cert_args(c: &Cert) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        c.cert.display().to_string(),
        "--tls-key".into(),
        c.key.display().to_string(),
    ]
}

/// `curl -sk https://addr/`.
async fn curl_page(addr: SocketAddr) -> Result<String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", &format!("https://{addr}/")])
        .output()
        .await?;
    ensure!(out.status.success(), "curl failed: {out:?}");
    Ok(String::from_utf8(out.stdout)?)
}

/// A polling agent dialing `url` as `name`, allowed to reach `allow`.
fn agent(name: &str, url: &str, extra: &[String], env: &[(&str, &str)]) -> Result<Proc> {
    let mut args = s(&["run", "--connect-url", url, "--agent-name", name]);
    args.extend(s(&["--links", "1", "--reconnect-delay-seconds", "0.2"]));
    args.extend(s(&[
        "--max-reconnect-delay-seconds",
        "1",
        "--allow",
        "127.0.0.1:*",
    ]));
    args.extend(extra.iter().cloned());
    Proc::spawn(name, &bin(), &args, env)
}

fn error_of(v: &serde_json::Value) -> String {
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_gateway_serves_tls_by_default_with_its_thumbprint_on_a_page() -> Result<()> {
    burrow_e2e::require!("curl");
    let echo = servers::echo().await;
    let mut t = Tunnel::start(bin(), &[echo], TunnelOpts::default()).await?;
    assert_eq!(t.gateway_thumbprint.len(), 64);
    let page = curl_page(t.tunnel_addr).await?;
    assert!(page.contains("Burrow gateway"), "{page}");
    assert!(page.contains(&t.gateway_thumbprint), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    assert!(!page.contains(&t.psk) && !page.contains(&t.agent_name));
    // The generated key is private and reused: `burrow thumbprint` on the
    // data directory prints the same thumbprint.
    let gw_dir = t.dir.path().join("gateway");
    let key = gw_dir.join("gateway-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    }
    let out = tokio::process::Command::new(bin())
        .args(["thumbprint", "--data-dir"])
        .arg(&gw_dir)
        .output()
        .await?;
    assert!(String::from_utf8(out.stdout)?.contains(&t.gateway_thumbprint));
    // The agent made its own certificate and presented it.
    let out = tokio::process::Command::new(bin())
        .arg("thumbprint")
        .arg(t.dir.path().join("agent/agent-cert.pem"))
        .output()
        .await?;
    let agent_tp = String::from_utf8(out.stdout)?;
    let agent_tp = agent_tp
        .split_whitespace()
        .next()
        .context("agent thumbprint")?;
    let up = t.gateway.wait_event(gw_ev::AGENT_LINK_UP).await?;
    assert_eq!(up["certificate"].as_str(), Some(agent_tp));
    assert_eq!(
        echo_roundtrip(t.forwards[0], b"over wss").await?,
        b"over wss"
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_gateway_keeps_its_certificate_and_the_pinned_agent_returns() -> Result<()> {
    let echo = servers::echo().await;
    let mut t = Tunnel::start(bin(), &[echo], TunnelOpts::default()).await?;
    t.gateway.kill().await;
    let mark = 0;
    t.restart_gateway().await?;
    let v = t.gateway.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    assert_eq!(
        v["thumbprint"].as_str(),
        Some(t.gateway_thumbprint.as_str())
    );
    t.wait_links(mark, 2).await?;
    assert_eq!(echo_roundtrip(t.forwards[0], b"back").await?, b"back");
    Ok(())
}

#[tokio::test]
async fn a_wrong_gateway_thumbprint_is_refused_by_the_agent_which_says_why() -> Result<()> {
    burrow_e2e::require!("openssl");
    let dir = tempfile::tempdir()?;
    let other = make_cert(dir.path(), "impostor").await?;
    let psk = random_psk();
    let mut gw = Proc::spawn(
        "gateway",
        &bin(),
        &s(&["gateway", "--listen", "127.0.0.1:0"]),
        &[("BURROW_PSK", &psk)],
    )?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    let addr = addr_field(&up, "addr")?;
    let real = up["thumbprint"].as_str().unwrap_or_default().to_owned();
    for url in [format!("wss://{addr}/tunnel"), format!("tls://{addr}")] {
        let mut a = agent(
            "pinned",
            &url,
            &s(&["--gateway-thumbprint", &other.thumbprint]),
            &[("BURROW_PSK", &psk)],
        )?;
        let v = a.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?;
        let e = error_of(&v);
        assert!(e.contains(&real), "names the presented thumbprint: {e}");
        assert!(e.contains(&other.thumbprint), "names the expected one: {e}");
        assert!(e.contains("GATEWAY_THUMBPRINT"), "says what to do: {e}");
        a.kill().await;
    }
    gw.wait_event(gw_ev::CERTIFICATE_REFUSED_BY_PEER).await?;
    assert_eq!(gw.count_events(gw_ev::AGENT_LINK_UP), 0);
    // Without a pin or CA file the system roots apply, and a self-signed
    // gateway is refused with the way out in the message.
    let mut a = agent(
        "unpinned",
        &format!("wss://{addr}/tunnel"),
        &[],
        &[("BURROW_PSK", &psk)],
    )?;
    let e = error_of(&a.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(
        e.contains("not trusted by the CA roots") && e.contains(&real),
        "{e}"
    );
    // Said once, in words: how to pin, no phrase twice.
    assert_eq!(e.matches("printed at start").count(), 1, "{e}");
    assert!(e.contains("set GATEWAY_THUMBPRINT"), "{e}");
    // Plain ws:// to this TLS port: told to use wss://, not a parse error.
    let mut w = agent(
        "plain",
        &format!("ws://{addr}/tunnel"),
        &[],
        &[("BURROW_PSK", &psk)],
    )?;
    let e = error_of(&w.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(
        e.contains(&format!(
            "{addr} speaks TLS, so connect with wss://{addr}/tunnel"
        )) && !e.contains("invalid HTTP version"),
        "{e}"
    );
    Ok(())
}

/// Writes the trust file with a fresh modification time.
fn write_trust(path: &Path, lines: &[(&str, &str)], mtime_secs: u64) -> Result<()> {
    let text: String = lines.iter().map(|(a, t)| format!("{a} {t}\n")).collect();
    std::fs::write(path, format!("# agent thumbprint\n{text}"))?;
    let f = std::fs::File::options().write(true).open(path)?;
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime_secs))?;
    Ok(())
}

#[tokio::test]
async fn agent_certificates_are_pinned_with_two_trusted_during_rotation() -> Result<()> {
    burrow_e2e::require!("openssl");
    let dir = tempfile::tempdir()?;
    let (old, new, stranger) = (
        make_cert(dir.path(), "old").await?,
        make_cert(dir.path(), "new").await?,
        make_cert(dir.path(), "stranger").await?,
    );
    let echo = servers::echo().await;
    let trust = dir.path().join("trusted-agents");
    write_trust(
        &trust,
        &[("edge", &old.thumbprint), ("edge", &new.thumbprint)],
        1_000_000,
    )?;
    let psk = random_psk();
    let mut args = s(&["gateway", "--listen", "127.0.0.1:0", "--trust-file"]);
    args.push(trust.display().to_string());
    args.extend(s(&["--forward", &format!("127.0.0.1:0=edge:{echo}")]));
    let mut gw = Proc::spawn("gateway", &bin(), &args, &[("BURROW_PSK", &psk)])?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    let addr = addr_field(&up, "addr")?;
    let gw_tp = up["thumbprint"].as_str().unwrap_or_default().to_owned();
    let fwd = addr_field(&gw.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    let pin = s(&["--gateway-thumbprint", &gw_tp]);
    let with = |c: &Cert| [pin.clone(), cert_args(c)].concat();

    // Old and new are both trusted: both link up.
    let mut a_old = agent(
        "edge",
        &format!("tls://{addr}"),
        &with(&old),
        &[("BURROW_PSK", &psk)],
    )?;
    gw.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| {
        v["certificate"] == old.thumbprint.as_str()
    })
    .await?;
    let mut a_new = agent(
        "edge",
        &format!("wss://{addr}/tunnel"),
        &with(&new),
        &[("BURROW_PSK", &psk)],
    )?;
    gw.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| {
        v["certificate"] == new.thumbprint.as_str()
    })
    .await?;
    a_old.wait_event(agent_ev::LINK_UP).await?;
    a_new.wait_event(agent_ev::LINK_UP).await?;

    // An untrusted certificate is refused at hello, and both sides say why.
    let mut a_bad = agent(
        "edge",
        &format!("tls://{addr}"),
        &with(&stranger),
        &[("BURROW_PSK", &psk)],
    )?;
    let e = error_of(&a_bad.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(e.contains(&stranger.thumbprint), "{e}");
    assert!(
        e.contains(&old.thumbprint) && e.contains(&new.thumbprint),
        "{e}"
    );
    assert!(e.contains("--trust-agent edge="), "{e}");
    let g = gw.wait_event(gw_ev::CREDENTIAL_REFUSED).await?;
    assert!(
        g["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&stranger.thumbprint)
    );
    a_bad.kill().await;

    // Remove the old thumbprint: links already up stay up, a new link with
    // the old certificate is refused.
    write_trust(&trust, &[("edge", &new.thumbprint)], 2_000_000)?;
    let mut a_old_again = agent(
        "edge",
        &format!("tls://{addr}"),
        &with(&old),
        &[("BURROW_PSK", &psk)],
    )?;
    let e = error_of(
        &a_old_again
            .wait_event(agent_ev::GATEWAY_UNREACHABLE)
            .await?,
    );
    assert!(
        e.contains(&old.thumbprint) && e.contains("trusts only"),
        "{e}"
    );
    gw.wait_event(gw_ev::TRUST_RELOADED).await?;
    assert_eq!(
        gw.count_events(gw_ev::AGENT_LINK_DOWN),
        0,
        "no link dropped:\n{}",
        gw.output()
    );
    for i in 0..8u8 {
        assert_eq!(echo_roundtrip(fwd, &[i; 100]).await?, vec![i; 100]);
    }
    // Nothing secret in any log.
    for p in [&gw, &a_old, &a_new] {
        assert!(!p.output().contains(&psk), "{} leaked the key", p.name);
        assert!(
            !p.output().contains("PRIVATE KEY"),
            "{} leaked a key",
            p.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_gateway_certificate_rotates_on_sighup_while_links_stay_up() -> Result<()> {
    burrow_e2e::require!("openssl", "curl");
    let dir = tempfile::tempdir()?;
    let (old, new) = (
        make_cert(dir.path(), "gw-old").await?,
        make_cert(dir.path(), "gw-new").await?,
    );
    // The gateway reads its certificate from these two paths.
    let (cert, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    std::fs::copy(&old.cert, &cert)?;
    std::fs::copy(&old.key, &key)?;
    let echo = servers::echo().await;
    let psk = random_psk();
    let mut args = s(&["gateway", "--listen", "127.0.0.1:0", "--tls-cert"]);
    args.extend([
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]);
    args.extend(s(&["--forward", &format!("127.0.0.1:0=edge:{echo}")]));
    let mut gw = Proc::spawn("gateway", &bin(), &args, &[("BURROW_PSK", &psk)])?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    assert_eq!(up["thumbprint"].as_str(), Some(old.thumbprint.as_str()));
    let addr = addr_field(&up, "addr")?;
    let fwd = addr_field(&gw.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    let both = format!("{},{}", old.thumbprint, new.thumbprint);
    let url = format!("wss://{addr}/tunnel");
    let env = [
        ("BURROW_PSK", psk.as_str()),
        ("GATEWAY_THUMBPRINT", both.as_str()),
    ];
    let mut a = agent("edge", &url, &[], &env)?;
    a.wait_event(agent_ev::LINK_UP).await?;

    std::fs::copy(&new.cert, &cert)?;
    std::fs::copy(&new.key, &key)?;
    let pid = gw.pid().context("gateway pid")?;
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    let v = gw.wait_event(gw_ev::CERTIFICATE_RELOADED).await?;
    assert_eq!(v["thumbprint"].as_str(), Some(new.thumbprint.as_str()));
    assert!(curl_page(addr).await?.contains(&new.thumbprint));
    // The old link is still up and carries traffic.
    assert_eq!(echo_roundtrip(fwd, b"still here").await?, b"still here");
    assert_eq!(gw.count_events(gw_ev::AGENT_LINK_DOWN), 0);
    // A new agent that trusts both links up against the new certificate;
    // one that trusts only the old is refused.
    let mut b = agent("edge2", &url, &[], &env)?;
    b.wait_event(agent_ev::LINK_UP).await?;
    let only_old = [
        ("BURROW_PSK", psk.as_str()),
        ("GATEWAY_THUMBPRINT", old.thumbprint.as_str()),
    ];
    let mut c = agent("edge3", &url, &[], &only_old)?;
    let e = error_of(&c.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(
        e.contains(&new.thumbprint) && e.contains(&old.thumbprint),
        "{e}"
    );
    // A broken file on SIGHUP keeps the certificate in use.
    std::fs::write(&cert, "not a certificate")?;
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    gw.wait_event(gw_ev::CERTIFICATE_NOT_RELOADED).await?;
    assert!(curl_page(addr).await?.contains(&new.thumbprint));
    Ok(())
}

/// Runs `openssl s_client` with `args` against `addr`; true when the
/// handshake completed.
async fn s_client(addr: SocketAddr, args: &[&str]) -> Result<bool> {
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stdin.take());
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await??;
    let text = String::from_utf8_lossy(&out.stdout);
    // A finished handshake prints the negotiated cipher.
    Ok(out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)"))
}

/// The TLS policy on one listener: 1.0 and 1.1 refused, 1.2 and 1.3
/// accepted, and every TLS 1.2 suite it accepts is AEAD.
async fn check_tls_policy(addr: SocketAddr) -> Result<()> {
    // SECLEVEL=0 lets this client offer the old versions, so a refusal is
    // the server's.
    let old = "DEFAULT:@SECLEVEL=0";
    for v in ["-tls1", "-tls1_1"] {
        ensure!(
            !s_client(addr, &[v, "-cipher", old]).await?,
            "{addr} accepted {v}"
        );
    }
    for v in ["-tls1_2", "-tls1_3"] {
        ensure!(s_client(addr, &[v]).await?, "{addr} refused {v}");
    }
    let list = tokio::process::Command::new("openssl")
        .args(["ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
        .output()
        .await?;
    let list = String::from_utf8(list.stdout)?;
    let mut accepted = Vec::new();
    for c in list.trim().split(':').filter(|c| !c.starts_with("TLS_")) {
        if s_client(addr, &["-tls1_2", "-cipher", &format!("{c}:@SECLEVEL=0")]).await? {
            accepted.push(c.to_owned());
        }
    }
    ensure!(!accepted.is_empty(), "{addr}: no TLS 1.2 suite accepted");
    for c in &accepted {
        ensure!(
            c.contains("GCM") || c.contains("CHACHA20"),
            "{addr} accepted a non-AEAD suite {c} (all accepted: {accepted:?})"
        );
    }
    Ok(())
}

async fn listening_agent(
    dir: &Path,
    agent_cert: &Cert,
    gateway: &str,
    psk: &str,
    allow: &str,
) -> Result<(Proc, SocketAddr)> {
    let mut args = s(&["run", "--listen", "127.0.0.1:0", "--agent-name", "inside"]);
    args.extend(cert_args(agent_cert));
    args.extend(s(&[
        "--gateway-thumbprint",
        gateway,
        "--allow",
        allow,
        "--data-dir",
    ]));
    args.push(dir.display().to_string());
    let mut a = Proc::spawn("listening-agent", &bin(), &args, &[("BURROW_PSK", psk)])?;
    let v = a.wait_event(agent_ev::LISTENING).await?;
    let addr = addr_field(&v, "addr")?;
    Ok((a, addr))
}

fn dialing_gateway(
    gw_cert: &Cert,
    agent_tp: &str,
    agent_addr: SocketAddr,
    target: SocketAddr,
    psk: &str,
) -> Result<Proc> {
    let mut args = s(&["gateway", "--listen", "127.0.0.1:0"]);
    args.extend(cert_args(gw_cert));
    args.extend(s(&[
        "--agent-endpoint",
        &format!("inside=tls://{agent_addr}"),
        "--trust-agent",
        &format!("inside={agent_tp}"),
        "--forward",
        &format!("127.0.0.1:0=inside:{target}"),
        "--reconnect-delay-seconds",
        "0.2",
        "--max-reconnect-delay-seconds",
        "1",
    ]));
    Proc::spawn("gateway", &bin(), &args, &[("BURROW_PSK", psk)])
}

#[tokio::test]
async fn listening_mode_end_to_end_with_both_sides_verified() -> Result<()> {
    burrow_e2e::require!("openssl", "curl");
    let dir = tempfile::tempdir()?;
    let (gw_cert, agent_cert, rogue) = (
        make_cert(dir.path(), "gateway").await?,
        make_cert(dir.path(), "agent").await?,
        make_cert(dir.path(), "rogue").await?,
    );
    const N: u64 = 20 * 1000 * 1000;
    let (target, mut reports) = hashing_peer(N, 7).await;
    let psk = random_psk();
    let (mut a, agent_addr) = listening_agent(
        dir.path(),
        &agent_cert,
        &gw_cert.thumbprint,
        &psk,
        &target.to_string(),
    )
    .await?;

    // The agent's port shows browsers its page.
    let page = curl_page(agent_addr).await?;
    assert!(
        page.contains("Burrow agent") && page.contains(&agent_cert.thumbprint),
        "{page}"
    );
    assert!(!page.contains(&psk));

    let mut gw = dialing_gateway(&gw_cert, &agent_cert.thumbprint, agent_addr, target, &psk)?;
    gw.wait_event_after(0, gw_ev::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    a.wait_event(agent_ev::LINK_UP).await?;
    let fwd = addr_field(&gw.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    let client = TcpStream::connect(fwd).await?;
    let mine =
        tokio::time::timeout(Duration::from_secs(120), send_and_hash(client, N, 8)).await??;
    let theirs = tokio::time::timeout(WAIT, reports.recv()).await?.unwrap();
    assert_eq!((mine.received_len, theirs.received_len), (N, N));
    assert_eq!(mine.received, theirs.sent);
    assert_eq!(theirs.received, mine.sent);

    // The agent's listener keeps the same TLS policy as the gateway's.
    check_tls_policy(agent_addr).await?;

    // A gateway with a certificate the agent does not trust is refused by
    // the agent, and the gateway's log says why.
    let mut rogue_gw = dialing_gateway(&rogue, &agent_cert.thumbprint, agent_addr, target, &psk)?;
    let v = rogue_gw.wait_event(gw_ev::HELLO_REFUSED).await?;
    let e = error_of(&v);
    assert!(
        e.contains(&rogue.thumbprint) && e.contains(&gw_cert.thumbprint),
        "{e}"
    );
    a.wait_event(agent_ev::GATEWAY_LINK_REFUSED).await?;
    rogue_gw.kill().await;

    // A gateway that pins another agent certificate refuses the agent.
    let mut wary = dialing_gateway(&gw_cert, &rogue.thumbprint, agent_addr, target, &psk)?;
    let e = error_of(&wary.wait_event(gw_ev::LISTENING_AGENT_UNREACHABLE).await?);
    assert!(
        e.contains(&agent_cert.thumbprint) && e.contains(&rogue.thumbprint),
        "{e}"
    );
    assert!(e.contains("--trust-agent inside="), "{e}");
    assert_eq!(wary.count_events(gw_ev::AGENT_LINK_UP), 0);
    Ok(())
}

#[tokio::test]
async fn listening_mode_refuses_to_start_without_a_gateway_thumbprint() -> Result<()> {
    let mut p = Proc::spawn(
        "agent",
        &bin(),
        &s(&[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--agent-name",
            "x",
            "--allow",
            "h:1",
        ]),
        &[("BURROW_PSK", &random_psk())],
    )?;
    assert_ne!(p.wait_exit().await?, Some(0));
    assert!(p.output().contains("GATEWAY_THUMBPRINT"), "{}", p.output());
    Ok(())
}

#[tokio::test]
async fn every_tls_listener_refuses_old_versions_and_offers_only_aead() -> Result<()> {
    burrow_e2e::require!("openssl");
    let echo = servers::echo().await;
    let t = Tunnel::start(bin(), &[echo], TunnelOpts::default()).await?;
    check_tls_policy(t.tunnel_addr).await
}

/// A tinyproxy on a free loopback port, with `extra` configuration lines.
struct Tinyproxy {
    addr: SocketAddr,
    log: PathBuf,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn tinyproxy(extra: &str) -> Result<Tinyproxy> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = dir.path().join("tinyproxy.log");
    let conf = dir.path().join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 20\nAllow 127.0.0.1\n{extra}\n",
            log.display()
        ),
    )?;
    let child = tokio::process::Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("tinyproxy (Debian package tinyproxy) must be installed")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!("tinyproxy did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Tinyproxy {
        addr,
        log,
        child,
        _dir: dir,
    })
}

impl Tinyproxy {
    fn connects(&self, to: SocketAddr) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(&format!("CONNECT {to}"))
            .count()
    }
}

#[tokio::test]
async fn the_agent_reaches_the_gateway_through_an_http_connect_proxy() -> Result<()> {
    burrow_e2e::require!("tinyproxy");
    let echo = servers::echo().await;
    let proxy = tinyproxy("").await?;
    let proxy_url = format!("http://{}", proxy.addr);
    let opts = TunnelOpts {
        links: 1,
        ..TunnelOpts::default()
    };
    let mut t = Tunnel::start(bin(), &[echo], opts).await?;
    t.agent.kill().await;
    // The same agent, now only through the proxy.
    let pin = t.gateway_thumbprint.clone();
    let mark = t.gateway.mark();
    let mut a = agent(
        "e2e-agent",
        &t.url,
        &s(&["--gateway-thumbprint", &pin]),
        &[("BURROW_PSK", &t.psk), ("HTTPS_PROXY", &proxy_url)],
    )?;
    a.wait_event(agent_ev::LINKS_VIA_PROXY).await?;
    t.wait_links(mark, 1).await?;
    assert_eq!(
        echo_roundtrip(t.forwards[0], b"via proxy").await?,
        b"via proxy"
    );
    assert!(
        proxy.connects(t.tunnel_addr) >= 1,
        "the proxy carried the link"
    );
    a.kill().await;

    // NO_PROXY bypasses it.
    let before = proxy.connects(t.tunnel_addr);
    let mark = t.gateway.mark();
    let mut b = agent(
        "e2e-agent",
        &t.url,
        &s(&["--gateway-thumbprint", &pin]),
        &[
            ("BURROW_PSK", &t.psk),
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    )?;
    t.wait_links(mark, 1).await?;
    assert_eq!(
        proxy.connects(t.tunnel_addr),
        before,
        "NO_PROXY host went direct"
    );
    b.kill().await;

    // A proxy that refuses the CONNECT: the agent says so.
    let strict = tinyproxy("ConnectPort 443").await?;
    let mut c = agent(
        "e2e-agent",
        &t.url,
        &s(&["--gateway-thumbprint", &pin]),
        &[
            ("BURROW_PSK", &t.psk),
            ("HTTPS_PROXY", &format!("http://{}", strict.addr)),
        ],
    )?;
    let e = error_of(&c.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(
        e.contains("HTTP proxy") && e.contains("refused CONNECT"),
        "{e}"
    );
    drop(proxy.child);
    Ok(())
}

#[tokio::test]
async fn a_gateway_with_a_ca_issued_certificate_is_validated_against_the_ca_file() -> Result<()> {
    burrow_e2e::require!("openssl");
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // A private CA, and a gateway certificate for "localhost" signed by it.
    let (ca_pem, gw_pem, gw_key) = burrow_e2e::ca_and_server_cert(d, &["localhost"]).await?;
    let other_ca = make_cert(d, "other-ca").await?;

    let echo = servers::echo().await;
    let psk = random_psk();
    let mut args = s(&["gateway", "--listen", "127.0.0.1:0", "--tls-cert"]);
    args.extend([gw_pem.display().to_string(), "--tls-key".into()]);
    args.push(gw_key.display().to_string());
    args.extend(s(&["--forward", &format!("127.0.0.1:0=edge:{echo}")]));
    let mut gw = Proc::spawn("gateway", &bin(), &args, &[("BURROW_PSK", &psk)])?;
    let addr = addr_field(&gw.wait_event(gw_ev::TUNNEL_LISTENING).await?, "addr")?;
    let fwd = addr_field(&gw.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    let url = format!("wss://localhost:{}/tunnel", addr.port());

    let ca = ca_pem.display().to_string();
    let mut a = agent(
        "edge",
        &url,
        &s(&["--ca-file", &ca]),
        &[("BURROW_PSK", &psk)],
    )?;
    a.wait_event(agent_ev::LINK_UP).await?;
    // The gateway registers the link just after the agent sees it up.
    gw.wait_event(gw_ev::AGENT_LINK_UP).await?;
    assert_eq!(echo_roundtrip(fwd, b"ca-checked").await?, b"ca-checked");
    a.kill().await;

    // Another CA does not vouch for this gateway.
    let other = other_ca.cert.display().to_string();
    let mut b = agent(
        "edge",
        &url,
        &s(&["--ca-file", &other]),
        &[("BURROW_PSK", &psk)],
    )?;
    let e = error_of(&b.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(e.contains("not trusted by the CA roots"), "{e}");
    Ok(())
}

#[tokio::test]
async fn certificates_alone_authenticate_agents_when_the_gateway_has_no_key() -> Result<()> {
    burrow_e2e::require!("openssl");
    let dir = tempfile::tempdir()?;
    let edge = make_cert(dir.path(), "edge").await?;
    let echo = servers::echo().await;
    let mut args = s(&["gateway", "--listen", "127.0.0.1:0", "--trust-agent"]);
    args.push(format!("edge={}", edge.thumbprint));
    args.extend(s(&["--forward", &format!("127.0.0.1:0=edge:{echo}")]));
    let mut gw = Proc::spawn("gateway", &bin(), &args, &[])?;
    let up = gw.wait_event(gw_ev::TUNNEL_LISTENING).await?;
    let addr = addr_field(&up, "addr")?;
    let pin = up["thumbprint"].as_str().unwrap_or_default().to_owned();
    let fwd = addr_field(&gw.wait_event(gw_ev::FORWARD_LISTENING).await?, "listen")?;
    let url = format!("tls://{addr}");
    let extra = [s(&["--gateway-thumbprint", &pin]), cert_args(&edge)].concat();
    let mut a = agent("edge", &url, &extra, &[])?;
    a.wait_event(agent_ev::LINK_UP).await?;
    assert_eq!(echo_roundtrip(fwd, b"no key").await?, b"no key");
    // Another name with the same certificate is not trusted.
    let mut b = agent("other", &url, &extra, &[])?;
    let e = error_of(&b.wait_event(agent_ev::GATEWAY_UNREACHABLE).await?);
    assert!(e.contains("trusts no certificate for agent other"), "{e}");
    // A plain ws:// agent without a key is refused at start: it has no credential.
    let mut c = agent("edge", &format!("ws://{addr}/tunnel"), &[], &[])?;
    assert_ne!(c.wait_exit().await?, Some(0));
    assert!(c.output().contains("no pre-shared key"), "{}", c.output());
    Ok(())
}
