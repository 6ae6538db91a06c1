//! Egress by FQDN end to end: real clients (git, pip, curl, swaks) reach
//! private applications by name through the gateway's proxy and an agent,
//! everything on loopback; the agent resolves the private names with its
//! own host map (`--map-host`).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burrow_agent::event as agent_ev;
use burrow_e2e::cli::Gateway;
use burrow_e2e::registered::{must, run, setup as setup_with, static_server};
use burrow_e2e::servers;
use burrow_e2e::strings as s;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

async fn setup(
    gw_extra: &[&str],
    agent_extra: &[&str],
    run_agent: bool,
) -> Result<burrow_e2e::registered::Setup> {
    setup_with(&bin(), gw_extra, agent_extra, run_agent).await
}

/// `list-fqdn --check --json`: its text, and each rule's check result by
/// FQDN.
async fn checked(st: &burrow_e2e::registered::Setup) -> Result<(String, impl Fn(&str) -> String)> {
    let out = st.ok(&["list-fqdn", "--check", "--json"]).await?;
    let rules: Value = serde_json::from_str(&out)?;
    let check = move |fqdn: &str| {
        rules
            .as_array()
            .and_then(|a| a.iter().find(|r| r["fqdn"] == fqdn))
            .map(|r| r["check"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    Ok((out, check))
}

/// A private CA and a server certificate it signed for the private names
/// the tests use; returns (CA, certificate, key).
async fn cert(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    burrow_e2e::ca_and_server_cert(
        dir,
        &[
            "git.internal.test",
            "pypi.internal.test",
            "web.internal.test",
            "tls.internal.test",
            "selfsigned.internal.test",
        ],
    )
    .await
}

#[tokio::test]
async fn git_clones_over_https_through_the_proxy_and_checks_report_each_failure() -> Result<()> {
    burrow_e2e::require!("openssl", "git");
    let pre = tempfile::tempdir()?;
    let (ca_path, c, k) = cert(pre.path()).await?;
    let ca = ca_path.display().to_string();
    let st = setup(
        &[],
        &["--map-host", "git.internal.test=127.0.0.1,closed.internal.test=127.0.0.1,selfsigned.internal.test=127.0.0.1", "--egress-ca-file", &ca],
        true,
    )
    .await?;
    let d = st.dir.path();
    // A repository with one commit, served by "dumb HTTP" over HTTPS.
    let work = d.join("work");
    std::fs::create_dir_all(&work)?;
    must("git", &["init", "-q", "-b", "main"], &work).await?;
    std::fs::write(work.join("README"), "hello through the tunnel\n")?;
    must("git", &["add", "README"], &work).await?;
    must(
        "git",
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.test",
            "commit",
            "-qm",
            "first",
        ],
        &work,
    )
    .await?;
    let served = d.join("served");
    std::fs::create_dir_all(&served)?;
    must(
        "git",
        &["clone", "-q", "--bare", "work", "served/repo.git"],
        d,
    )
    .await?;
    must(
        "git",
        &["--git-dir", "served/repo.git", "update-server-info"],
        d,
    )
    .await?;
    let (_srv, port) = static_server(&served, Some((&c, &k))).await?;

    // Without a rule the proxy refuses the name.
    let url = format!("https://git.internal.test:{port}/repo.git");
    let proxy = st.proxy_url();
    let env = [
        ("https_proxy", proxy.as_str()),
        ("GIT_SSL_CAINFO", ca.as_str()),
        ("GIT_TERMINAL_PROMPT", "0"),
    ];
    let (code, _, err) = run("git", &["clone", "-q", &url, "refused"], d, &env).await?;
    assert_ne!(code, 0, "cloned without a rule");
    assert!(err.contains("403"), "{err}");

    st.add_fqdn(
        "git.internal.test",
        &["--check-port", &port.to_string(), "--check-tls"],
    )
    .await?;
    let (code, _, err) = run("git", &["clone", "-q", &url, "cloned"], d, &env).await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("cloned/README"))?,
        "hello through the tunnel\n"
    );

    // Reachability checks: ok, DNS failure, refused, certificate problem.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    st.add_fqdn("nowhere.invalid", &[]).await?;
    st.add_fqdn(
        "closed.internal.test",
        &["--check-port", &closed.to_string()],
    )
    .await?;
    // A second HTTPS server whose certificate the agent does not trust.
    let other = tempfile::tempdir()?;
    let (_, c2, k2) = cert(other.path()).await?;
    let (_srv2, port2) = static_server(&served, Some((&c2, &k2))).await?;
    st.add_fqdn(
        "selfsigned.internal.test",
        &["--check-port", &port2.to_string(), "--check-tls"],
    )
    .await?;
    st.add_fqdn("*.wild.internal.test", &[]).await?;
    let (out, check) = checked(&st).await?;
    assert_eq!(check("git.internal.test"), "ok", "{out}");
    assert!(check("nowhere.invalid").starts_with("dns:"), "{out}");
    assert!(
        check("closed.internal.test").starts_with("refused:"),
        "{out}"
    );
    assert!(
        check("selfsigned.internal.test").starts_with("certificate:"),
        "{out}"
    );
    assert!(
        check("*.wild.internal.test").starts_with("skipped"),
        "{out}"
    );
    // Marked --ignore-certificate-validation-errors, the same server is ok.
    st.add_fqdn(
        "selfsigned.internal.test",
        &[
            "--check-port",
            &port2.to_string(),
            "--check-tls",
            "--ignore-certificate-validation-errors",
        ],
    )
    .await?;
    let out = st.ok(&["list-fqdn", "--check"]).await?;
    let line = out
        .lines()
        .find(|l| l.starts_with("selfsigned.internal.test"))
        .unwrap_or_default();
    assert!(
        line.contains("ignore-certificate-validation-errors") && line.trim_end().ends_with("ok"),
        "{out}"
    );
    assert!(out.starts_with("FQDN"), "{out}");
    Ok(())
}

/// A service's self-signed certificate made as people make one, given to
/// the agent with `--egress-ca-file`, is trusted as that certificate; the
/// refusals say what is wrong in words: self-signed and not given, or a
/// certificate for other names.
#[tokio::test]
async fn a_self_signed_certificate_given_to_the_agent_is_trusted() -> Result<()> {
    burrow_e2e::require!("openssl");
    let pre = tempfile::tempdir()?;
    let d = pre.path();
    let self_signed = |name: &str| {
        let (c, k) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
        let subj = format!("/CN={name}");
        async move {
            let (code, _, err) = run(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &subj,
                    "-keyout",
                    &k.display().to_string(),
                    "-out",
                    &c.display().to_string(),
                ],
                d,
                &[],
            )
            .await?;
            anyhow::ensure!(code == 0, "openssl: {err}");
            Ok::<_, anyhow::Error>((c, k))
        }
    };
    let (git_c, git_k) = self_signed("git.corp.internal").await?;
    let (other_c, other_k) = self_signed("other.corp.internal").await?;
    // A private CA's certificate for git.internal.test, served as another name.
    let (ca, ca_c, ca_k) = cert(d).await?;
    let given = d.join("given.pem");
    std::fs::write(
        &given,
        std::fs::read_to_string(&git_c)? + &std::fs::read_to_string(&ca)?,
    )?;
    let given = given.display().to_string();
    let st = setup(
        &[],
        &[
            "--map-host",
            "git.corp.internal=127.0.0.1,other.corp.internal=127.0.0.1,wrong.internal.test=127.0.0.1",
            "--egress-ca-file",
            &given,
        ],
        true,
    )
    .await?;
    let www = st.dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    let (_a, git) = static_server(&www, Some((&git_c, &git_k))).await?;
    let (_b, other) = static_server(&www, Some((&other_c, &other_k))).await?;
    let (_c, wrong) = static_server(&www, Some((&ca_c, &ca_k))).await?;
    for (fqdn, port) in [
        ("git.corp.internal", git),
        ("other.corp.internal", other),
        ("wrong.internal.test", wrong),
    ] {
        st.add_fqdn(fqdn, &["--check-port", &port.to_string(), "--check-tls"])
            .await?;
    }
    let (out, check) = checked(&st).await?;
    assert_eq!(check("git.corp.internal"), "ok", "{out}");
    let other = check("other.corp.internal");
    assert!(
        other.starts_with("certificate:")
            && other.contains("self-signed")
            && other.contains("not the certificate in --egress-ca-file"),
        "{other}"
    );
    let wrong = check("wrong.internal.test");
    assert!(
        wrong.starts_with("certificate:") && wrong.contains("is not for wrong.internal.test"),
        "{wrong}"
    );
    assert!(
        !out.contains("CaUsedAsEndEntity") && !out.contains("OtherError"),
        "{out}"
    );
    Ok(())
}

/// A pure-Python wheel, made here (no network, no build tools).
const MAKE_WHEEL: &str = r#"
import base64, hashlib, os, sys, zipfile
out = sys.argv[1]
name = "burrowdemo-0.1-py3-none-any.whl"
files = {
    "burrowdemo/__init__.py": b"GREETING = 'installed through the tunnel'\n",
    "burrowdemo-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: burrowdemo\nVersion: 0.1\n",
    "burrowdemo-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{path},sha256={digest},{len(data)}\n"
record += "burrowdemo-0.1.dist-info/RECORD,,\n"
os.makedirs(os.path.join(out, "simple", "burrowdemo"), exist_ok=True)
with zipfile.ZipFile(os.path.join(out, "simple", "burrowdemo", name), "w") as z:
    for path, data in files.items():
        z.writestr(path, data)
    z.writestr("burrowdemo-0.1.dist-info/RECORD", record)
with open(os.path.join(out, "simple", "burrowdemo", "index.html"), "w") as f:
    f.write(f'<html><body><a href="{name}">{name}</a></body></html>\n')
"#;

#[tokio::test]
async fn pip_installs_from_a_private_https_index_through_the_proxy() -> Result<()> {
    burrow_e2e::require!("openssl", "pip");
    let pre = tempfile::tempdir()?;
    let (ca, c, k) = cert(pre.path()).await?;
    let st = setup(&[], &["--map-host", "pypi.internal.test=127.0.0.1"], true).await?;
    let d = st.dir.path();
    let index = d.join("index");
    must(
        "python3",
        &["-c", MAKE_WHEEL, &index.display().to_string()],
        d,
    )
    .await?;
    let (_srv, port) = static_server(&index, Some((&c, &k))).await?;
    st.add_fqdn("pypi.internal.test", &[]).await?;
    let target = d.join("site");
    let (code, out, err) = run(
        "python3",
        &[
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--index-url",
            &format!("https://pypi.internal.test:{port}/simple/"),
            "--cert",
            &ca.display().to_string(),
            "--proxy",
            &st.proxy_url(),
            "--target",
            &target.display().to_string(),
            "burrowdemo",
        ],
        d,
        &[("PIP_CONFIG_FILE", "/dev/null")],
    )
    .await?;
    assert_eq!(code, 0, "{out}\n{err}");
    let installed = std::fs::read_to_string(target.join("burrowdemo/__init__.py"))?;
    assert!(installed.contains("installed through the tunnel"));
    Ok(())
}

const SMTP_SERVER: &str = r#"
import asyncio, sys
from aiosmtpd.smtp import SMTP
class Keep:
    async def handle_DATA(self, server, session, envelope):
        with open(sys.argv[1], "wb") as f:
            f.write(envelope.content)
        return "250 OK kept"
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(Keep()), "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;

#[tokio::test]
async fn swaks_sends_mail_through_socks5_with_remote_name_resolution() -> Result<()> {
    burrow_e2e::require!("swaks", "ncat", "python3:aiosmtpd");
    let st = setup(&[], &["--map-host", "smtp.internal.test=127.0.0.1"], true).await?;
    let d = st.dir.path();
    let kept = d.join("message.eml");
    let mut smtp = tokio::process::Command::new("python3")
        .args(["-c", SMTP_SERVER, &kept.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("python3 with aiosmtpd (pip install aiosmtpd)")?;
    let mut line = String::new();
    BufReader::new(smtp.stdout.take().unwrap())
        .read_line(&mut line)
        .await?;
    let port: u16 = line
        .trim()
        .parse()
        .context("aiosmtpd did not start (pip install aiosmtpd)")?;
    st.add_fqdn("smtp.internal.test", &[]).await?;
    // swaks speaks SMTP over ncat's SOCKS5 connection; the name is
    // resolved by the agent (--proxy-dns remote), not here.
    let pipe = format!(
        "ncat --proxy {} --proxy-type socks5 --proxy-dns remote smtp.internal.test {port}",
        st.proxy()
    );
    let (code, out, err) = run(
        "swaks",
        &[
            "--pipe",
            &pipe,
            "--to",
            "ops@internal.test",
            "--from",
            "ci@example.test",
            "--helo",
            "ci.example.test",
            "--header",
            "Subject: through the tunnel",
            "--body",
            "Burrow carried this message intact.",
        ],
        d,
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("250 OK kept"), "{out}");
    let msg = std::fs::read_to_string(&kept)?;
    assert!(
        msg.contains("Subject: through the tunnel")
            && msg.contains("Burrow carried this message intact."),
        "{msg}"
    );
    Ok(())
}

/// Opens a CONNECT tunnel by hand; returns the stream after `200`, or the
/// status line and body of a refusal.
async fn connect_via(
    proxy: SocketAddr,
    target: &str,
    auth: Option<&str>,
) -> Result<std::result::Result<TcpStream, (u16, String)>> {
    let mut s = TcpStream::connect(proxy).await?;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        use base64::Engine as _;
        req.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(a)
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    if status == 200 {
        return Ok(Ok(s));
    }
    let mut body = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body)).await;
    Ok(Err((status, body)))
}

async fn echo_over(s: &mut TcpStream, msg: &[u8]) -> Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got)).await??;
    Ok(got)
}

#[tokio::test]
async fn curl_reaches_services_by_socks5_connect_plain_http_and_tls_origination() -> Result<()> {
    burrow_e2e::require!("openssl", "curl");
    let pre = tempfile::tempdir()?;
    let (ca_path, c, k) = cert(pre.path()).await?;
    let ca = ca_path.display().to_string();
    let st = setup(
        &[],
        &[
            "--map-host",
            "web.internal.test=127.0.0.1,tls.internal.test=127.0.0.1",
            "--egress-ca-file",
            &ca,
        ],
        true,
    )
    .await?;
    let d = st.dir.path();
    let site = d.join("site");
    std::fs::create_dir_all(&site)?;
    std::fs::write(site.join("hello.txt"), "private web\n")?;
    let (_plain, plain_port) = static_server(&site, None).await?;
    let (_secure, tls_port) = static_server(&site, Some((&c, &k))).await?;
    st.add_fqdn("web.internal.test", &[]).await?;
    st.add_fqdn("tls.internal.test", &["--tls"]).await?;
    let proxy = st.proxy().to_string();
    let curl = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run("curl", &a, Path::new("/"), &[]).await
    };
    let plain = format!("http://web.internal.test:{plain_port}/hello.txt");
    // SOCKS5 with the name resolved by the agent.
    let (code, out, err) = curl(s(&["-sS", "--socks5-hostname", &proxy, &plain])).await?;
    assert_eq!((code, out.as_str()), (0, "private web\n"), "{err}");
    // HTTP CONNECT (curl -p).
    let (code, out, err) =
        curl(s(&["-sS", "-p", "-x", &format!("http://{proxy}"), &plain])).await?;
    assert_eq!((code, out.as_str()), (0, "private web\n"), "{err}");
    // An absolute http:// request (no CONNECT), its bytes counted both
    // ways in the audit trail.
    let (code, out, err) = curl(s(&["-sS", "-x", &format!("http://{proxy}"), &plain])).await?;
    assert_eq!((code, out.as_str()), (0, "private web\n"), "{err}");
    let target = format!("web.internal.test:{plain_port}");
    let r = st
        .traffic_until("kind=egress", |r| {
            r["target"] == target.as_str() && r["bytes_in"].as_i64() > Some(40)
        })
        .await?;
    assert!(r["bytes_out"].as_i64() > Some(100), "{r}");
    assert_eq!(r["error"], "", "{r}");
    // The agent runs on register's variables alone (no name): its start
    // line says where the name comes from, and the name is logged once
    // the gateway gives it.
    let mut st = st;
    let agent = st.agent.as_mut().context("agent")?;
    let named = agent.wait_event(agent_ev::AGENT_NAMED).await?;
    assert_eq!(named["agent"], "edge", "{named}");
    assert_eq!(agent.count_events(agent_ev::AGENT_NAMED), 1);
    assert!(
        agent
            .output()
            .contains("(the name registered for client_id, from the gateway)"),
        "{}",
        agent.output()
    );
    // TLS origination: plain http:// from the client, HTTPS from the agent
    // to the application (validated with the agent's --egress-ca-file).
    let originated = format!("http://tls.internal.test:{tls_port}/hello.txt");
    let (code, out, err) = curl(s(&["-sS", "-x", &format!("http://{proxy}"), &originated])).await?;
    assert_eq!((code, out.as_str()), (0, "private web\n"), "{err}");
    // The same name over CONNECT is end-to-end TLS from curl.
    let secure = format!("https://tls.internal.test:{tls_port}/hello.txt");
    let (code, out, err) = curl(s(&[
        "-sS",
        "--cacert",
        &ca,
        "-x",
        &format!("http://{proxy}"),
        &secure,
    ]))
    .await?;
    assert_eq!((code, out.as_str()), (0, "private web\n"), "{err}");
    Ok(())
}

#[tokio::test]
async fn refusals_name_the_fqdn_the_agent_and_the_reason() -> Result<()> {
    burrow_e2e::require!("curl");
    let st = setup(
        &[],
        &[
            "--map-host",
            "closed.internal.test=127.0.0.1,meta.internal.test=169.254.169.254",
        ],
        true,
    )
    .await?;
    let proxy = st.proxy();
    // No rule: 403 naming the FQDN and the fix.
    let (status, body) = connect_via(proxy, "secret.internal.test:443", None)
        .await?
        .unwrap_err();
    assert_eq!(status, 403);
    assert!(
        body.contains("secret.internal.test") && body.contains("burrow add-fqdn"),
        "{body}"
    );
    // SOCKS5: "not allowed by ruleset".
    let (code, _, err) = run(
        "curl",
        &[
            "-sS",
            "--socks5-hostname",
            &proxy.to_string(),
            "http://secret.internal.test/",
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    // curl prints the SOCKS5 reply code: 2, "connection not allowed by
    // ruleset".
    assert_eq!(code, 97, "{err}");
    assert!(err.contains("SOCKS5") && err.contains("(2)"), "{err}");
    // The application refuses the connection.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    st.add_fqdn("closed.internal.test", &[]).await?;
    let (status, body) = connect_via(proxy, &format!("closed.internal.test:{closed}"), None)
        .await?
        .unwrap_err();
    assert_eq!(status, 502);
    assert!(
        body.contains("agent edge could not connect closed.internal.test")
            && body.contains(&format!("127.0.0.1:{closed}) refused the connection")),
        "{body}"
    );
    let (code, _, err) = run(
        "curl",
        &[
            "-sS",
            "--socks5-hostname",
            &proxy.to_string(),
            &format!("http://closed.internal.test:{closed}/"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_ne!(code, 0);
    // SOCKS5 reply 5: connection refused.
    assert!(err.contains("(5)"), "{err}");
    // A rule that resolves to the metadata address: the agent refuses.
    st.add_fqdn("meta.internal.test", &[]).await?;
    let (status, body) = connect_via(proxy, "meta.internal.test:80", None)
        .await?
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    // The agent's own words: which address, and the flag that overrides.
    assert!(
        body.contains("agent edge refused to connect meta.internal.test")
            && body.contains("169.254.169.254")
            && body.contains("--allow-link-local"),
        "{body}"
    );
    // A name the agent cannot resolve: 502 saying so, SOCKS5 reply 4
    // (host unreachable).
    st.add_fqdn("gone.invalid", &[]).await?;
    let (status, body) = connect_via(proxy, "gone.invalid:80", None)
        .await?
        .unwrap_err();
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("agent edge could not connect gone.invalid: cannot resolve gone.invalid")
            && body.contains("--map-host gone.invalid=IP"),
        "{body}"
    );
    let (code, _, err) = run(
        "curl",
        &[
            "-sS",
            "--socks5-hostname",
            &proxy.to_string(),
            "http://gone.invalid/",
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(err.contains("(4)"), "{err}");
    // An IP literal: no rule can name it, so the hint is a name, not an
    // `add-fqdn` for the address.
    let (status, body) = connect_via(proxy, "10.20.30.40:80", None)
        .await?
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("10.20.30.40 is an IP address")
            && body.contains("--map-host NAME=10.20.30.40")
            && !body.contains("--fqdn 10.20.30.40"),
        "{body}"
    );
    // Every refusal is in the audit trail with what the client was told.
    let recorded = |status: i64, target: &'static str, says: &'static str| {
        let st = &st;
        async move {
            st.traffic_until("kind=egress", |r| {
                r["status"] == status
                    && r["target"] == target
                    && r["error"].as_str().is_some_and(|e| e.contains(says))
            })
            .await
        }
    };
    recorded(
        403,
        "secret.internal.test:443",
        "no FQDN rule for secret.internal.test",
    )
    .await?;
    let r = recorded(403, "meta.internal.test:80", "169.254.169.254").await?;
    assert_eq!(r["agent_name"], "edge", "{r}");
    recorded(502, "gone.invalid:80", "cannot resolve gone.invalid").await?;
    // SOCKS5 has no HTTP status: 0, and the reply code in the words.
    recorded(0, "gone.invalid:80", "SOCKS5 reply 4").await?;
    // The agent says why (its log line may reach us a moment later).
    let mut st = st;
    st.agent
        .as_mut()
        .unwrap()
        .wait_event_after(0, agent_ev::EGRESS_REFUSED, |v| {
            v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("169.254.169.254"))
        })
        .await?;
    // The agent goes offline: 502 naming it.
    st.kill_agent().await?;
    let (status, body) = connect_via(proxy, &format!("closed.internal.test:{closed}"), None)
        .await?
        .unwrap_err();
    assert_eq!(status, 502);
    assert!(
        body.contains("agent edge") && body.contains("offline"),
        "{body}"
    );
    // Not a proxy request at all.
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    let mut r = String::new();
    s.read_to_string(&mut r).await?;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    Ok(())
}

#[tokio::test]
async fn rule_changes_apply_to_new_connections_and_spare_open_ones() -> Result<()> {
    burrow_e2e::require!("curl");
    let st = setup(&[], &["--map-host", "echo.internal.test=127.0.0.1"], true).await?;
    let echo = servers::echo().await;
    let target = format!("echo.internal.test:{}", echo.port());
    st.add_fqdn("echo.internal.test", &[]).await?;
    let mut open = connect_via(st.proxy(), &target, None)
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(echo_over(&mut open, b"before").await?, b"before");
    let mut short = connect_via(st.proxy(), &target, None)
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(echo_over(&mut short, b"audited").await?, b"audited");
    drop(short);
    let r = st
        .traffic_until("kind=egress", |r| r["target"] == target.as_str())
        .await?;
    assert_eq!(
        (r["bytes_in"].as_i64(), r["bytes_out"].as_i64()),
        (Some(7), Some(7)),
        "{r}"
    );
    assert_eq!(r["agent_name"], "edge");
    let started = Instant::now();
    st.ok(&[
        "remove-fqdn",
        "--fqdn",
        "echo.internal.test",
        "--agent-name",
        "edge",
    ])
    .await?;
    let (status, _) = connect_via(st.proxy(), &target, None).await?.unwrap_err();
    assert_eq!(status, 403, "a new connection follows the removal");
    eprintln!("rule removal effective after {:?}", started.elapsed());
    assert_eq!(echo_over(&mut open, b"still open").await?, b"still open");
    // A wildcard rule now covers it; the most specific rule wins.
    st.add_fqdn("*.internal.test", &[]).await?;
    let mut again = connect_via(st.proxy(), &target, None)
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(echo_over(&mut again, b"wildcard").await?, b"wildcard");
    assert_eq!(
        echo_over(&mut open, b"and the old one").await?,
        b"and the old one"
    );
    let list = st.ok(&["list-fqdn"]).await?;
    assert!(
        list.lines()
            .any(|l| l.starts_with("*.internal.test") && l.contains("edge")),
        "{list}"
    );
    // remove-fqdn refuses a mismatched agent and changes nothing.
    let (code, _, err) = st
        .cli(&[
            "remove-fqdn",
            "--fqdn",
            "*.internal.test",
            "--agent-name",
            "other",
        ])
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("belongs to agent edge"), "{err}");
    // Bad input: exit 2.
    let (code, _, err) = st
        .cli(&["add-fqdn", "--agent-name", "edge", "--fqdn", "bad name"])
        .await?;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = st
        .cli(&[
            "add-fqdn",
            "--agent-name",
            "ghost",
            "--fqdn",
            "x.internal.test",
        ])
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404"), "{err}");
    Ok(())
}

#[tokio::test]
async fn proxy_credentials_are_required_when_set() -> Result<()> {
    burrow_e2e::require!("curl");
    let st = setup(
        &["--proxy-auth", "ci:s3cret-pass"],
        &["--map-host", "echo.internal.test=127.0.0.1"],
        true,
    )
    .await?;
    let echo = servers::echo().await;
    let target = format!("echo.internal.test:{}", echo.port());
    st.add_fqdn("echo.internal.test", &[]).await?;
    let (status, _) = connect_via(st.proxy(), &target, None).await?.unwrap_err();
    assert_eq!(status, 407);
    let (status, _) = connect_via(st.proxy(), &target, Some("ci:wrong"))
        .await?
        .unwrap_err();
    assert_eq!(status, 407);
    let mut ok = connect_via(st.proxy(), &target, Some("ci:s3cret-pass"))
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(echo_over(&mut ok, b"authorized").await?, b"authorized");
    // SOCKS5 with user and password (RFC 1929), and without.
    let url = format!("http://{target}/");
    let (code, _, err) = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "--socks5-hostname",
            &st.proxy().to_string(),
            &url,
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_ne!(code, 0, "{err}");
    let (code, _, err) = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "--socks5-hostname",
            &st.proxy().to_string(),
            "--proxy-user",
            "ci:s3cret-pass",
            &url,
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    // The echo server answers an HTTP request with the request itself: the
    // tunnel was opened (curl then complains about the reply, exit 1 or 8).
    assert!(
        code != 97 && !err.contains("authentication"),
        "{code} {err}"
    );
    assert!(
        !st.gateway.proc.output().contains("s3cret-pass"),
        "never logged"
    );
    // The wrong credentials are in the audit trail as a count per address
    // (the first at once, the rest summed up within the log interval).
    let r = st
        .traffic_until("kind=auth", |r| r["target"] == "proxy credentials")
        .await?;
    assert_eq!(r["client"], "127.0.0.1", "{r}");
    assert!(r["failures"].as_i64() >= Some(1), "{r}");
    assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    let all = st.api_get("/traffic?kind=auth").await?;
    assert!(!all.to_string().contains("s3cret"), "{all}");
    Ok(())
}

#[tokio::test]
async fn a_rule_changed_through_another_gateway_on_the_same_database_applies_within_seconds()
-> Result<()> {
    let st = setup(&[], &["--map-host", "echo.internal.test=127.0.0.1"], true).await?;
    let echo = servers::echo().await;
    let target = format!("echo.internal.test:{}", echo.port());
    // A second gateway on the same SQLite file, as replicas share one database.
    let data = st.dir.path().join("gw");
    let mut b = Gateway::start(&bin(), &data, st.gateway.admin_key(), &[], &[]).await?;
    let until = |want_ok: bool| {
        let target = target.clone();
        let proxy = st.proxy();
        async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if connect_via(proxy, &target, None).await?.is_ok() == want_ok {
                    return Ok::<_, anyhow::Error>(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bail!("the first gateway did not follow the change within 15 s")
        }
    };
    b.cli
        .ok(&[
            "add-fqdn",
            "--agent-name",
            "edge",
            "--fqdn",
            "echo.internal.test",
        ])
        .await?;
    let took = until(true).await?;
    eprintln!("rule added on the other gateway: effective after {took:?}");
    b.cli
        .ok(&["remove-fqdn", "--fqdn", "echo.internal.test"])
        .await?;
    let took = until(false).await?;
    eprintln!("rule removed on the other gateway: effective after {took:?}");
    b.proc.kill().await;
    Ok(())
}

/// An agent connected with the pre-shared key is not registered: a rule
/// for it is refused saying so and how to register it; once registered
/// (it keeps connecting with the key), the rule serves it.
#[tokio::test]
async fn rules_for_an_agent_on_the_pre_shared_key_say_to_register_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let psk = burrow_e2e::random_psk();
    let mut gw = Gateway::start(
        &bin(),
        &dir.path().join("gw"),
        &burrow_e2e::admin_key(),
        &["--no-tls"],
        &[("BURROW_PSK", &psk)],
    )
    .await?;
    let echo = servers::echo().await;
    let mark = gw.proc.mark();
    let mut agent = burrow_e2e::Proc::spawn(
        "agent",
        &bin(),
        &s(&[
            "run",
            "--connect-url",
            gw.connect_url(),
            "--agent-name",
            "home",
            "--map-host",
            "echo.internal.test=127.0.0.1",
            "--allow-loopback",
        ]),
        &[("BURROW_PSK", &psk)],
    )?;
    gw.wait_links(mark, "home", 1).await?;
    let add = [
        "add-fqdn",
        "--agent-name",
        "home",
        "--fqdn",
        "echo.internal.test",
    ];
    let (code, _, err) = gw.cli.run(&add).await?;
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("no registered agent named \"home\"")
            && err.contains("connected with the pre-shared key")
            && err.contains("burrow register --agent-name home"),
        "{err}"
    );
    // A route for a name nothing connects as: the same advice, no claim
    // that it is connected.
    let (code, _, err) = gw
        .cli
        .run(&[
            "add-route",
            "--hostname",
            "ghost.tunnel.test",
            "--agent-name",
            "ghost",
            "--target",
            "http://127.0.0.1:8080",
        ])
        .await?;
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("no registered agent named \"ghost\"")
            && !err.contains("pre-shared key (")
            && err.contains("burrow register --agent-name ghost"),
        "{err}"
    );
    // Registered as the message says: the rule is taken and serves the
    // agent still on the pre-shared key.
    let keys = gw.cli.keygen(dir.path(), "home").await?;
    gw.cli
        .register("home", "k1", &keys.public.display().to_string())
        .await?;
    gw.cli.ok(&add).await?;
    let proxy = gw.proxy.context("proxy address")?;
    let target = format!("echo.internal.test:{}", echo.port());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match connect_via(proxy, &target, None).await? {
            Ok(s) => break s,
            // The rule reaches the agent within a moment.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((status, body)) => bail!("{status}: {body}"),
        }
    };
    s.write_all(b"hello home").await?;
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"hello home");
    agent.kill().await;
    Ok(())
}
