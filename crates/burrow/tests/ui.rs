//! The agent's web UI at the HTTP level, with curl: login, cookie flags,
//! CSRF and origin checks, mappings applied at the gateway and served by
//! the edge, traffic through the link, limits, lockout, logout.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use burrow_e2e::registered::{run, setup_with_env};
use burrow_e2e::servers::{free_port, web_service as service};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

const EDGE: [&str; 6] = [
    "--edge-https-listen",
    "127.0.0.1:0",
    "--edge-http-listen",
    "127.0.0.1:0",
    "--public-domain",
    "tunnel.test",
];

/// `openssl passwd -6 -salt saltsalt hunter2`
const HASH: &str = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";

/// A curl session against the UI: one cookie jar.
struct Browser {
    base: String,
    jar: PathBuf,
}

/// What an answer was: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Browser {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[&str],
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let jar = self.jar.display().to_string();
        let mut args = vec![
            "-sk",
            "-i",
            "-X",
            method,
            "-b",
            &jar,
            "-c",
            &jar,
            "--max-time",
            "20",
        ];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        args.extend_from_slice(extra);
        args.push(&url);
        let (code, out, err) = run("curl", &args, Path::new("/"), &[]).await?;
        anyhow::ensure!(code == 0, "curl {path}: exit {code}: {err} {out}");
        // A "100 Continue" before the answer (curl asks for one for big bodies).
        let mut out = out.as_str();
        while out.starts_with("HTTP/1.1 100") {
            out = out.split_once("\r\n\r\n").map_or("", |(_, rest)| rest);
        }
        let (head, body) = out
            .split_once("\r\n\r\n")
            .map(|(h, b)| (h.to_owned(), b.to_owned()))
            .unwrap_or((out.to_owned(), String::new()));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Answer {
            status,
            head: head.to_ascii_lowercase(),
            body,
        })
    }
}

impl Browser {
    /// `POST /api/inspect` of one request, with the CSRF header `token`.
    async fn inspect(&self, token: &str, method: &str, host: &str, path: &str) -> Result<Answer> {
        let probe = serde_json::json!({ "method": method, "hostname": host, "path": path });
        self.call(
            "POST",
            "/api/inspect",
            Some(&probe.to_string()),
            &["-H", token],
        )
        .await
    }
}

async fn edge_get(edge: std::net::SocketAddr, host: &str) -> Result<(i32, String)> {
    let url = format!("https://{host}:{}/", edge.port());
    let resolve = format!("{host}:{}:127.0.0.1", edge.port());
    let (code, out, _) = run(
        "curl",
        &["-sk", "--max-time", "10", "--resolve", &resolve, &url],
        Path::new("/"),
        &[],
    )
    .await?;
    Ok((code, out))
}

/// A gateway with its edge and a registered agent serving its UI on a
/// free port, logged in with [`HASH`] and `secret`, and `env` besides;
/// the agent's process and its UI's base URL.
async fn with_ui(
    secret: &str,
    env: &[(&str, &str)],
) -> Result<(burrow_e2e::registered::Setup, burrow_e2e::Proc, String)> {
    let mut all = vec![
        ("Agent__Auth__PasswordHash", HASH),
        ("Agent__JwtSecret", secret),
    ];
    all.extend_from_slice(env);
    let mut st = setup_with_env(&bin(), &EDGE, &["--ui-listen", "127.0.0.1:0"], true, &all).await?;
    let mut agent = st.agent.take().context("agent")?;
    let listening = agent.wait_event(burrow_agent::event::UI_LISTENING).await?;
    let base = listening["url"]
        .as_str()
        .context("url")?
        .trim_end_matches('/')
        .to_owned();
    Ok((st, agent, base))
}

#[tokio::test]
async fn the_web_ui_logs_in_publishes_mappings_and_refuses_what_it_must() -> Result<()> {
    burrow_e2e::require!("curl", "python3");
    let secret = "s".repeat(24) + "-ui-secret-0123456789";
    // Tells the gateway its FQDN: the landing domain is tunnel.test.
    let (st, agent, base) =
        with_ui(&secret, &[("Agent__GatewayFqdn", "gateway.tunnel.test")]).await?;
    let edge = st.edge().context("edge")?;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let b = Browser {
        base,
        jar: st.dir.path().join("cookies"),
    };

    // The page loads without a session; the API does not.
    let page = b.call("GET", "/", None, &[]).await?;
    assert_eq!(page.status, 200);
    assert!(
        page.head
            .contains("content-security-policy: default-src 'self'"),
        "{}",
        page.head
    );
    assert!(page.head.contains("x-frame-options: deny"));
    assert_eq!(b.call("GET", "/api/status", None, &[]).await?.status, 401);

    // A wrong password is refused and sets no cookie.
    let wrong = b
        .call("POST", "/api/login", Some(r#"{"password":"nope"}"#), &[])
        .await?;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong password"), "{}", wrong.body);
    assert!(!wrong.head.contains("set-cookie"));
    // A login from another origin is refused.
    let cross = b
        .call(
            "POST",
            "/api/login",
            Some(r#"{"password":"hunter2"}"#),
            &["-H", "Origin: https://evil.example"],
        )
        .await?;
    assert_eq!(cross.status, 403);

    // The right one: an HttpOnly, SameSite=Strict, Secure session cookie.
    let ok = b
        .call("POST", "/api/login", Some(r#"{"password":"hunter2"}"#), &[])
        .await?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let cookie = ok
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .context("cookie")?
        .to_owned();
    for flag in [
        "httponly",
        "samesite=strict",
        "secure",
        "path=/",
        "max-age=",
    ] {
        assert!(cookie.contains(flag), "{flag}: {cookie}");
    }
    let csrf = ok.json()["csrf"].as_str().context("csrf")?.to_owned();
    let token = format!("X-CSRF-Token: {csrf}");

    // The dashboard sees both links up.
    let status = b.call("GET", "/api/status", None, &[]).await?.json();
    let links = status["links"].as_array().context("links")?;
    assert_eq!(links.len(), 2);
    assert!(links.iter().all(|l| l["state"] == "connected"), "{status}");
    assert_eq!(
        status["gateway"]["public_domain"], "tunnel.test",
        "{status}"
    );
    assert!(links[0]["gateway_thumbprint"].is_string());

    // Changes without the CSRF token, or from another origin, are refused.
    let (_svc, port) = service("ui").await?;
    let mapping = format!(r#"{{"hostname":"ui.tunnel.test","target":"http://127.0.0.1:{port}"}}"#);
    assert_eq!(
        b.call("POST", "/api/mappings", Some(&mapping), &[])
            .await?
            .status,
        403
    );
    let bad_token = b
        .call(
            "POST",
            "/api/mappings",
            Some(&mapping),
            &["-H", "X-CSRF-Token: 00"],
        )
        .await?;
    assert_eq!(bad_token.status, 403);
    let other_origin = b
        .call(
            "POST",
            "/api/mappings",
            Some(&mapping),
            &["-H", &token, "-H", "Origin: https://evil.example"],
        )
        .await?;
    assert_eq!(other_origin.status, 403);

    // Bad fields name the field; oversized bodies are refused.
    let bad = b
        .call(
            "POST",
            "/api/mappings",
            Some(r#"{"hostname":"x.tunnel.test","target":"ftp://h"}"#),
            &["-H", &token],
        )
        .await?;
    assert_eq!(
        (bad.status, bad.json()["field"].as_str()),
        (400, Some("target")),
        "{}",
        bad.body
    );
    let dots = b
        .call(
            "POST",
            "/api/mappings",
            Some(r#"{"hostname":"..","target":"http://h:1"}"#),
            &["-H", &token],
        )
        .await?;
    assert_eq!(dots.json()["field"], "hostname", "{}", dots.body);
    let huge = format!(
        r#"{{"mappings":[],"pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let big_file = st.dir.path().join("big.json");
    std::fs::write(&big_file, huge)?;
    let big_arg = format!("@{}", big_file.display());
    let big = b
        .call(
            "POST",
            "/api/mappings-import",
            Some(&big_arg),
            &["-H", &token],
        )
        .await?;
    assert_eq!(big.status, 413, "{}", big.body);

    // A mapping made here is published at the gateway and served.
    let made = b
        .call("POST", "/api/mappings", Some(&mapping), &["-H", &token])
        .await?;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(
        made.json()["gateway"]["mappings"][0]["published"],
        true,
        "{}",
        made.body
    );
    let (code, out) = edge_get(edge, "ui.tunnel.test").await?;
    assert!(code == 0 && out.starts_with("service=ui "), "{out}");
    // Outside the public domain: stored, refused by the gateway, said so.
    let outside = b
        .call(
            "POST",
            "/api/mappings",
            Some(r#"{"hostname":"evil.example.com","target":"http://127.0.0.1:1"}"#),
            &["-H", &token],
        )
        .await?;
    let problem = outside.json()["gateway"]["mappings"][1]["problem"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(problem.contains("public domain"), "{}", outside.body);
    assert_eq!(
        b.call(
            "DELETE",
            "/api/mappings/evil.example.com",
            None,
            &["-H", &token]
        )
        .await?
        .status,
        200
    );

    // Traffic of this agent, as the gateway recorded it.
    let mut seen = false;
    for _ in 0..50 {
        let t = b
            .call("GET", "/api/traffic?host=ui.tunnel.test", None, &[])
            .await?
            .json();
        if t["records"].as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(t["records"][0]["host"], "ui.tunnel.test", "{t}");
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen, "the request shows in Traffic");
    let bad_limit = b.call("GET", "/api/traffic?limit=5000", None, &[]).await?;
    assert_eq!(bad_limit.status, 400, "{}", bad_limit.body);

    // Disabled: no longer served; deleted: gone from the list.
    let off = format!(
        r#"{{"hostname":"ui.tunnel.test","target":"http://127.0.0.1:{port}","enabled":false}}"#
    );
    assert_eq!(
        b.call(
            "PUT",
            "/api/mappings/ui.tunnel.test",
            Some(&off),
            &["-H", &token]
        )
        .await?
        .status,
        200
    );
    let (_, out) = edge_get(edge, "ui.tunnel.test").await?;
    assert!(out.contains("Nothing here"), "{out}");
    assert_eq!(
        b.call(
            "DELETE",
            "/api/mappings/ui.tunnel.test",
            None,
            &["-H", &token]
        )
        .await?
        .status,
        200
    );
    let list = b.call("GET", "/api/mappings", None, &[]).await?.json();
    assert_eq!(list["mappings"].as_array().map(Vec::len), Some(0), "{list}");

    // The landing page for unknown hosts under the agent's domain.
    let page = r#"{"html":"<!doctype html><h1>alpha's own landing page</h1>"}"#;
    let set = b
        .call("PUT", "/api/landing", Some(page), &["-H", &token])
        .await?;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["domain"], "tunnel.test", "{}", set.body);
    let (_, shown) = edge_get(edge, "nothing-here.tunnel.test").await?;
    assert!(shown.contains("alpha's own landing page"), "{shown}");
    let too_big = st.dir.path().join("landing.json");
    std::fs::write(
        &too_big,
        format!(r#"{{"html":"{}"}}"#, "x".repeat(300 * 1024)),
    )?;
    let too_big = format!("@{}", too_big.display());
    let refused = b
        .call("PUT", "/api/landing", Some(&too_big), &["-H", &token])
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        b.call("DELETE", "/api/landing", None, &["-H", &token])
            .await?
            .status,
        200
    );
    let (_, shown) = edge_get(edge, "nothing-here.tunnel.test").await?;
    assert!(shown.contains("Nothing here"), "{shown}");
    // A backup is a SQLite database.
    let backup = b.call("GET", "/api/backup", None, &[]).await?;
    assert_eq!(backup.status, 200);
    assert!(backup.body.starts_with("SQLite format 3"), "a SQLite file");

    // No secret in any page or API answer.
    for path in [
        "/",
        "/app.js",
        "/api/session",
        "/api/status",
        "/api/mappings",
        "/api/mappings-export",
        "/api/traffic",
        "/api/logs?level=TRACE",
        "/api/landing",
        "/api/caddy",
    ] {
        let a = b.call("GET", path, None, &[]).await?;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        for secret in [secret.as_str(), HASH, "hunter2", "saltsalt"] {
            assert!(
                !a.body.contains(secret) && !a.head.contains(&secret.to_ascii_lowercase()),
                "{path} shows a secret"
            );
        }
    }

    // Logout ends the session.
    assert_eq!(
        b.call("POST", "/api/logout", None, &["-H", &token])
            .await?
            .status,
        200
    );
    assert_eq!(b.call("GET", "/api/status", None, &[]).await?.status, 401);

    // Repeated failures from one address lock it out, with when to retry.
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            b.call("POST", "/api/login", Some(r#"{"password":"guess"}"#), &[])
                .await?,
        );
    }
    let last = last.context("tried")?;
    assert_eq!(last.status, 429, "{}", last.body);
    assert!(last.body.contains("try again in 1 minute"), "{}", last.body);
    let locked = b
        .call("POST", "/api/login", Some(r#"{"password":"hunter2"}"#), &[])
        .await?;
    assert_eq!(
        locked.status, 429,
        "even the right password waits: {}",
        locked.body
    );

    // No secret in the agent's log.
    let log = agent.output();
    assert!(!log.contains(&secret) && !log.contains("hunter2") && !log.contains(&csrf));
    Ok(())
}

/// The request inspector: one request through the edge and straight from
/// the internal service, with what differs; only GET and HEAD, only this
/// agent's mappings, a path that is a path, and a CSRF token.
#[tokio::test]
async fn the_inspector_compares_the_edge_with_the_internal_service() -> Result<()> {
    use base64::Engine as _;
    burrow_e2e::require!("curl", "python3");
    let secret = "i".repeat(40);
    let (st, agent, base) = with_ui(&secret, &[]).await?;
    let b = Browser {
        base,
        jar: st.dir.path().join("cookies"),
    };
    let token = logged_in(&b).await?;
    let (_svc, port) = service("seen").await?;
    let m = format!(r#"{{"hostname":"seen.tunnel.test","target":"http://127.0.0.1:{port}"}}"#);
    let made = b
        .call("POST", "/api/mappings", Some(&m), &["-H", &token])
        .await?;
    assert_eq!(made.status, 200, "{}", made.body);
    let body = |f: &Value| {
        let b64 = f["body_base64"].as_str().unwrap_or("");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default()
    };
    let inspect = |method: &str, host: &str, path: &str| {
        serde_json::json!({ "method": method, "hostname": host, "path": path }).to_string()
    };

    // Both sides answer; the service sees the edge's forwarding headers
    // and the public host on one side only.
    let got = b
        .inspect(&token, "GET", "seen.tunnel.test", "/a?b=1")
        .await?;
    assert_eq!(got.status, 200, "{}", got.body);
    let got = got.json();
    let (edge, direct) = (&got["edge"], &got["direct"]);
    assert_eq!(
        (edge["status"].as_u64(), direct["status"].as_u64()),
        (Some(200), Some(200)),
        "{got}"
    );
    let (eb, db) = (
        String::from_utf8(body(edge))?,
        String::from_utf8(body(direct))?,
    );
    assert!(
        eb.starts_with("service=seen path=/a?b=1 host=seen.tunnel.test "),
        "{eb}"
    );
    assert!(
        eb.contains("xff=127.0.0.1") && eb.contains("proto=https"),
        "{eb}"
    );
    assert!(
        db.starts_with(&format!(
            "service=seen path=/a?b=1 host=127.0.0.1:{port} xff=None"
        )),
        "{db}"
    );
    assert!(
        edge["via"]
            .as_str()
            .is_some_and(|v| v.starts_with("the gateway's edge at https://127.0.0.1:")),
        "{got}"
    );
    assert!(
        direct["via"]
            .as_str()
            .is_some_and(|v| v.contains("straight from the agent")),
        "{got}"
    );
    assert!(
        edge["total_ms"]
            .as_f64()
            .is_some_and(|t| t >= edge["head_ms"].as_f64().unwrap_or(f64::MAX))
    );

    // A long body: both cut at 128 KiB, the same bytes.
    let big = b
        .inspect(&token, "GET", "seen.tunnel.test", "/big?n=300000")
        .await?
        .json();
    let (eb, db) = (body(&big["edge"]), body(&big["direct"]));
    assert_eq!(
        (eb.len(), db.len()),
        (128 * 1024, 128 * 1024),
        "{}",
        big["edge"]["error"]
    );
    assert_eq!(eb, db);
    assert_eq!(
        (
            big["edge"]["truncated"].as_bool(),
            big["direct"]["truncated"].as_bool()
        ),
        (Some(true), Some(true))
    );

    // The internal service gone: the edge answers 502, the direct side
    // says why.
    let dead = format!(
        r#"{{"hostname":"dead.tunnel.test","target":"http://127.0.0.1:{}"}}"#,
        free_port()?
    );
    b.call("POST", "/api/mappings", Some(&dead), &["-H", &token])
        .await?;
    let gone = b
        .inspect(&token, "HEAD", "dead.tunnel.test", "/")
        .await?
        .json();
    assert_eq!(gone["edge"]["status"].as_u64(), Some(502), "{gone}");
    assert_eq!(gone["direct"]["status"], 0, "{gone}");
    assert!(
        gone["direct"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{gone}"
    );

    // Refused: other methods, paths that are not paths, hosts that are
    // not this agent's mappings, oversized paths, no CSRF token.
    for (probe, field) in [
        (inspect("POST", "seen.tunnel.test", "/"), "method"),
        (inspect("GET", "seen.tunnel.test", "a"), "path"),
        (inspect("GET", "seen.tunnel.test", "/a b"), "path"),
        (inspect("GET", "seen.tunnel.test", "/\r\nX-Evil: 1"), "path"),
        (
            inspect("GET", "seen.tunnel.test", &format!("/{}", "a".repeat(3000))),
            "path",
        ),
        (inspect("GET", "other.tunnel.test", "/"), "hostname"),
        (inspect("GET", "..", "/"), "hostname"),
    ] {
        let r = b
            .call("POST", "/api/inspect", Some(&probe), &["-H", &token])
            .await?;
        assert_eq!(
            (r.status, r.json()["field"].as_str()),
            (400, Some(field)),
            "{probe}: {}",
            r.body
        );
    }
    let no_token = b
        .call(
            "POST",
            "/api/inspect",
            Some(&inspect("GET", "seen.tunnel.test", "/")),
            &[],
        )
        .await?;
    assert_eq!(no_token.status, 403);
    // A disabled mapping is not published: the edge side says so.
    let off = format!(
        r#"{{"hostname":"seen.tunnel.test","target":"http://127.0.0.1:{port}","enabled":false}}"#
    );
    b.call(
        "PUT",
        "/api/mappings/seen.tunnel.test",
        Some(&off),
        &["-H", &token],
    )
    .await?;
    let off = b
        .inspect(&token, "GET", "seen.tunnel.test", "/")
        .await?
        .json();
    assert!(
        off["edge"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not published")),
        "{off}"
    );
    // No path, query or body in the agent's log.
    let log = agent.output();
    assert!(
        !log.contains("/a?b=1") && !log.contains("service=seen"),
        "{log}"
    );
    Ok(())
}

/// The browser script's directory (its `node_modules` from `npm ci`).
fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test]
async fn the_web_ui_works_in_chromium() -> Result<()> {
    let driver = browser_dir().join("node_modules/playwright-core");
    let need = format!("file:{}", driver.display());
    burrow_e2e::require!("chromium", "node", need.as_str());
    clicked_through("chromium").await
}

#[tokio::test]
async fn the_web_ui_works_in_firefox() -> Result<()> {
    let driver = browser_dir().join("node_modules/puppeteer-core");
    let need = format!("file:{}", driver.display());
    burrow_e2e::require!("firefox-esr", "node", need.as_str());
    clicked_through("firefox").await
}

/// Runs `tests/browser/ui.js` in `browser` against a gateway and an agent
/// with its UI; checks a screenshot of every page at both widths.
async fn clicked_through(browser: &str) -> Result<()> {
    let secret = "c".repeat(40);
    // Long enough for the steps before the expiry step, in the slower browser.
    let session_seconds = "15";
    let (st, agent, url) =
        with_ui(&secret, &[("BURROW_UI_SESSION_SECONDS", session_seconds)]).await?;
    let edge = st.edge().context("edge")?;
    let (_one, one) = service("one").await?;
    let (_two, two) = service("two").await?;
    // Kept as the test's artifact: every page at desktop and phone width.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-shots-{browser}"));
    std::fs::create_dir_all(&shots)?;
    let (edge_port, one, two) = (edge.port().to_string(), one.to_string(), two.to_string());
    let shots_s = shots.display().to_string();
    let home = st.dir.path().display().to_string();
    let dir = browser_dir();
    let (code, out, err) = run(
        "node",
        &["ui.js"],
        &dir,
        &[
            // The browser's own files (Firefox's crash helper) go there.
            ("HOME", home.as_str()),
            ("BROWSER", browser),
            ("UI_URL", url.as_str()),
            ("EDGE_PORT", edge_port.as_str()),
            ("SERVICE_ONE", one.as_str()),
            ("SERVICE_TWO", two.as_str()),
            ("SHOTS", shots_s.as_str()),
            ("SESSION_SECONDS", session_seconds),
        ],
    )
    .await?;
    assert_eq!(
        (code, out.trim()),
        (0, "ok"),
        "{err}\n(screenshots in {shots_s})\nagent:\n{}",
        agent.output()
    );
    for page in [
        "login",
        "dashboard",
        "mappings",
        "traffic",
        "logs",
        "inspect",
        "settings",
        "caddy",
        "lockout",
    ] {
        for width in ["desktop", "phone"] {
            let f = shots.join(format!("{page}-{width}.png"));
            assert!(
                std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
                "{}",
                f.display()
            );
        }
    }
    Ok(())
}

/// Logs a curl session in; its CSRF header.
async fn logged_in(b: &Browser) -> Result<String> {
    let ok = b
        .call("POST", "/api/login", Some(r#"{"password":"hunter2"}"#), &[])
        .await?;
    anyhow::ensure!(ok.status == 200, "login: {}", ok.body);
    Ok(format!(
        "X-CSRF-Token: {}",
        ok.json()["csrf"].as_str().context("csrf")?
    ))
}

/// Starts (again) an agent with `env` lines and a UI on a free port;
/// waits for its UI and its two links.
async fn start_agent(
    st: &mut burrow_e2e::registered::Setup,
    name: &str,
    env: &[(String, String)],
    jar: &Path,
) -> Result<(burrow_e2e::Proc, Browser)> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mark = st.gateway.proc.mark();
    let mut agent = burrow_e2e::Proc::spawn(
        name,
        &bin(),
        &[
            "run".to_owned(),
            "--ui-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ],
        &env,
    )?;
    let listening = agent.wait_event(burrow_agent::event::UI_LISTENING).await?;
    st.gateway.wait_links(mark, name, 2).await?;
    let base = listening["url"]
        .as_str()
        .context("url")?
        .trim_end_matches('/')
        .to_owned();
    Ok((
        agent,
        Browser {
            base,
            jar: jar.to_path_buf(),
        },
    ))
}

#[tokio::test]
async fn mappings_survive_restarts_and_each_agent_sees_only_its_own() -> Result<()> {
    burrow_e2e::require!("curl", "python3");
    let secret = "r".repeat(40);
    let mut st = setup_with_env(&bin(), &EDGE, &[], false, &[]).await?;
    // Two registered agents, each with its own UI and database file.
    let mut envs: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for name in ["alpha", "beta"] {
        let keys = st.gateway.cli.keygen(st.dir.path(), name).await?;
        let printed = st
            .gateway
            .cli
            .register(name, "k1", &keys.public.display().to_string())
            .await?;
        let mut env: Vec<(String, String)> = printed.into_iter().collect();
        if let Some(t) = &st.gateway.thumbprint {
            env.push(("GATEWAY_THUMBPRINT".into(), t.clone()));
        }
        let db = st.dir.path().join(format!("{name}.db"));
        env.extend([
            (
                "AUTH_SERVER_PRIVATE_KEY_PEM_PATH".to_owned(),
                keys.private.display().to_string(),
            ),
            ("BURROW_ALLOW_LOOPBACK".to_owned(), "true".to_owned()),
            ("Agent__Auth__PasswordHash".to_owned(), HASH.to_owned()),
            ("Agent__JwtSecret".to_owned(), secret.clone()),
            (
                "ConnectionStrings__DefaultConnection".to_owned(),
                format!("Data Source={}", db.display()),
            ),
            // Octoporty's default file name: logs/NAME.YYYY-MM-DD.log.
            (
                "Logging__FilePath".to_owned(),
                st.dir
                    .path()
                    .join(format!("logs-{name}/{name}-.log"))
                    .display()
                    .to_string(),
            ),
        ]);
        envs.push((name.to_owned(), env));
    }
    let jar = |n: &str| st.dir.path().join(format!("{n}.cookies"));
    let (jar_a, jar_b) = (jar("alpha"), jar("beta"));
    let (mut alpha, a) = start_agent(&mut st, "alpha", &envs[0].1, &jar_a).await?;
    let (_beta, b) = start_agent(&mut st, "beta", &envs[1].1, &jar_b).await?;
    let (ta, tb) = (logged_in(&a).await?, logged_in(&b).await?);
    let (_svc, port) = service("alpha").await?;
    let m = format!(r#"{{"hostname":"alpha.tunnel.test","target":"http://127.0.0.1:{port}"}}"#);
    let made = a
        .call("POST", "/api/mappings", Some(&m), &["-H", &ta])
        .await?;
    assert_eq!(made.status, 200, "{}", made.body);
    let edge = st.edge().context("edge")?;
    let out = edge_get(edge, "alpha.tunnel.test").await?.1;
    assert!(out.starts_with("service=alpha "), "{out}");
    // The other agent cannot take alpha's host name.
    let taken = r#"{"hostname":"alpha.tunnel.test","target":"http://127.0.0.1:1"}"#;
    let refused = b
        .call("POST", "/api/mappings", Some(taken), &["-H", &tb])
        .await?;
    let problem = refused.json()["gateway"]["mappings"][0]["problem"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        problem.contains("published by agent alpha"),
        "{}",
        refused.body
    );
    let out = edge_get(edge, "alpha.tunnel.test").await?.1;
    assert!(out.starts_with("service=alpha "), "{out}");
    // Nor fetch it through the inspector: the gateway checks whose it is.
    let peek = b.inspect(&tb, "GET", "alpha.tunnel.test", "/").await?;
    assert_eq!(peek.status, 200, "{}", peek.body);
    let peek = peek.json();
    assert_eq!(peek["edge"]["status"], 0, "{peek}");
    assert!(
        peek["edge"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not published for this agent")),
        "{peek}"
    );
    assert_eq!(peek["edge"]["body_base64"], "", "{peek}");
    // Each UI sees its own mappings and traffic only.
    let theirs = b
        .call("GET", "/api/traffic?limit=100", None, &[])
        .await?
        .json();
    assert!(
        theirs["records"]
            .as_array()
            .is_some_and(|r| r.iter().all(|t| t["agent_name"] == "beta")),
        "{theirs}"
    );
    let mut mine = Value::Null;
    for _ in 0..50 {
        mine = a
            .call("GET", "/api/traffic?limit=100", None, &[])
            .await?
            .json();
        if mine["records"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        mine["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|t| t["agent_name"] == "alpha")),
        "{mine}"
    );

    // The agent restarts: its database brings the mapping back.
    alpha.term()?;
    alpha.wait_exit().await?;
    st.ok(&["remove-route", "--hostname", "alpha.tunnel.test"])
        .await?;
    let gone = edge_get(edge, "alpha.tunnel.test").await?.1;
    assert!(gone.contains("Nothing here"), "{gone}");
    let (alpha2, a2) = start_agent(&mut st, "alpha", &envs[0].1, &jar_a).await?;
    let mut served = false;
    for _ in 0..50 {
        if edge_get(edge, "alpha.tunnel.test")
            .await?
            .1
            .starts_with("service=alpha ")
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        served,
        "the mapping is published again after the agent restarts"
    );
    // The Logs page reads the log file: the login of the first process
    // is there (this one saw no login), and the other agent's is not.
    let logs = a2
        .call("GET", "/api/logs?q=web%20ui%20login", None, &[])
        .await?
        .json();
    assert_eq!(logs["source"], "file", "{logs}");
    assert_eq!(logs["lines"].as_array().map(Vec::len), Some(1), "{logs}");
    assert_eq!(logs["lines"][0]["level"], "INFO", "{logs}");
    assert!(
        logs["lines"][0]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{logs}"
    );
    let warnings = a2
        .call("GET", "/api/logs?level=ERROR&q=web%20ui%20login", None, &[])
        .await?
        .json();
    assert_eq!(
        warnings["lines"].as_array().map(Vec::len),
        Some(0),
        "{warnings}"
    );
    // The old session still holds (same secret), and lists the mapping.
    let list = a2.call("GET", "/api/mappings", None, &[]).await?.json();
    assert_eq!(
        list["mappings"][0]["hostname"], "alpha.tunnel.test",
        "{list}"
    );

    // The gateway restarts: the agent reconnects and the route is served.
    st.gateway.restart_with(&[]).await?;
    // A new process: its events count from its start.
    st.gateway.wait_links(0, "alpha", 2).await?;
    let edge = st.edge().context("edge")?;
    let mut served = false;
    for _ in 0..50 {
        if edge_get(edge, "alpha.tunnel.test")
            .await?
            .1
            .starts_with("service=alpha ")
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served, "served after the gateway restarts");
    drop(alpha2);
    Ok(())
}

/// Octoporty's `.env` example and Caddyfile, names changed to loopback
/// test names (the gateway's host is 127.0.0.1, the tunnel domain
/// `tunnel.test`, sites on plain HTTP on loopback, `auto_https off`: no
/// certificates to get here; Caddy would otherwise turn its server to
/// HTTPS once the gateway adds a route for a host name): the agent
/// connects through Caddy, and a mapping made in the UI is served by Caddy.
#[tokio::test]
async fn octoporty_env_and_caddyfile_serve_a_ui_mapping_through_caddy() -> Result<()> {
    burrow_e2e::require!("curl", "caddy", "python3");
    let dir = tempfile::tempdir()?;
    let (admin, http) = (free_port()?, free_port()?);
    // The gateway's port, as in the Caddyfile (`reverse_proxy gateway:17200`).
    let gw_port = free_port()?;
    let caddyfile = format!(
        "{{\n  admin 127.0.0.1:{admin}\n  auto_https off\n}}\n\
         # Gateway WebSocket endpoint\n\
         http://127.0.0.1:{http} {{\n  bind 127.0.0.1\n  reverse_proxy 127.0.0.1:{gw_port}\n}}\n\
         # Tunneled services (managed dynamically by Gateway)\n\
         http://*.tunnel.test:{http} {{\n  bind 127.0.0.1\n  reverse_proxy 127.0.0.1:{gw_port}\n}}\n"
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, &caddyfile)?;
    let _caddy = tokio::process::Command::new("caddy")
        .args([
            "run",
            "--adapter",
            "caddyfile",
            "--config",
            &file.display().to_string(),
        ])
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("caddy")?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The .env template, filled in.
    let api_key = format!("{}-octoporty-api-key", "k".repeat(20));
    let jwt = format!("{}-octoporty-jwt-secret", "j".repeat(20));
    let env_file = format!(
        "# Gateway Configuration\nGATEWAY_API_KEY={api_key}\n\
         # Agent Configuration\nAGENT_GATEWAY_FQDN=127.0.0.1:{http}\nAGENT_API_KEY={api_key}\n\
         AGENT_JWT_SECRET={jwt}\nAGENT_AUTH_PASSWORD_HASH={HASH}\n\
         CONNECTION_STRING=Data Source={}\n",
        dir.path().join("octoporty.db").display()
    );
    let dotenv: Vec<(String, String)> = env_file
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let get = |k: &str| {
        dotenv
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let caddy_admin = format!("http://127.0.0.1:{admin}");
    let gw_env = [
        ("GATEWAY_API_KEY", get("GATEWAY_API_KEY")),
        ("Gateway__CaddyAdminUrl", caddy_admin),
        ("Gateway__Port", gw_port.to_string()),
    ];
    let gw_env: Vec<(&str, &str)> = gw_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let listen = format!("127.0.0.1:{gw_port}");
    let mut gw = burrow_e2e::Proc::spawn(
        "gateway",
        &bin(),
        &[
            "gateway".into(),
            "--listen".into(),
            listen,
            "--no-tls".into(),
            "--public-domain".into(),
            "tunnel.test".into(),
        ],
        &gw_env,
    )?;
    gw.wait_event(burrow_gateway::event::TUNNEL_LISTENING)
        .await?;
    // Octoporty derives wss://FQDN/tunnel; Caddy serves plain HTTP here.
    let agent_env: Vec<(String, String)> = dotenv
        .iter()
        .filter(|(k, _)| k.starts_with("AGENT_") || k == "CONNECTION_STRING")
        .cloned()
        .chain([
            (
                "Agent__GatewayUrl".to_owned(),
                format!("ws://127.0.0.1:{http}/tunnel"),
            ),
            ("BURROW_AGENT_NAME".to_owned(), "octoporty".to_owned()),
            ("BURROW_ALLOW_LOOPBACK".to_owned(), "true".to_owned()),
        ])
        .collect();
    let agent_env: Vec<(&str, &str)> = agent_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut agent = burrow_e2e::Proc::spawn(
        "agent",
        &bin(),
        &["run".into(), "--ui-listen".into(), "127.0.0.1:0".into()],
        &agent_env,
    )?;
    let listening = agent.wait_event(burrow_agent::event::UI_LISTENING).await?;
    gw.wait_event_after(0, burrow_gateway::event::AGENT_LINK_UP, |v| v["links"] == 2)
        .await?;
    let b = Browser {
        base: listening["url"]
            .as_str()
            .context("url")?
            .trim_end_matches('/')
            .to_owned(),
        jar: dir.path().join("cookies"),
    };
    let token = logged_in(&b).await?;
    let (_svc, port) = service("octo").await?;
    let m = format!(r#"{{"hostname":"app.tunnel.test","target":"http://127.0.0.1:{port}"}}"#);
    let made = b
        .call("POST", "/api/mappings", Some(&m), &["-H", &token])
        .await?;
    assert_eq!(
        made.json()["gateway"]["mappings"][0]["published"],
        true,
        "{}",
        made.body
    );
    // Served through Caddy, by the route the gateway put there.
    let mut body = String::new();
    for _ in 0..100 {
        let (_, out, _) = run(
            "curl",
            &[
                "-s",
                "-H",
                "Host: app.tunnel.test",
                &format!("http://127.0.0.1:{http}/"),
            ],
            Path::new("/"),
            &[],
        )
        .await?;
        body = out;
        if body.starts_with("service=octo ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, view0, _) = run(
        "curl",
        &[
            "-s",
            &format!("http://127.0.0.1:{admin}/config/apps/http/servers"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    let view0 = format!(
        "{view0}\nports: admin {admin} http {http} gateway {gw_port}\n{}",
        agent.output()
    );
    assert!(body.starts_with("service=octo "), "{body}\n{view0}");
    let view = b.call("GET", "/api/caddy", None, &[]).await?.json();
    assert_eq!(view["enabled"], true, "{view}");
    assert_eq!(
        view["routes"][0]["@id"], "burrow-route-app.tunnel.test",
        "{view}"
    );
    // No secret of the .env in either log.
    for out in [gw.output(), agent.output()] {
        assert!(!out.contains(&api_key) && !out.contains(&jwt));
    }
    Ok(())
}
