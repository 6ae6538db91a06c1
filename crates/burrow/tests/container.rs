//! The container image (`deploy/Dockerfile`), built and run with podman
//! as a user would run it: the Connection Agent's `register` and `run`
//! lines with the image name changed, an exec probe, a gateway keeping its
//! data in a volume across restarts. No registry is reachable here, so the
//! base image is made from Debian's archive (mmdebstrap) and the build
//! stage is replaced by the binary under test (`--build-context`), as
//! `../shared/CONTAINERS.md` describes. Everything on loopback
//! (`--network host`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_e2e::cli::env_lines;
use burrow_e2e::registered::{run, setup};
use burrow_e2e::servers::{free_port, web_service};
use burrow_e2e::until;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const IMAGE: &str = "localhost/burrow:test";

/// podman with its own storage (removed at the end) and the settings this
/// machine needs.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Result<Podman> {
        let dir = tempfile::tempdir()?;
        // This sandbox cannot set podman's default ulimits.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n",
        )?;
        Ok(Podman { dir })
    }

    /// `podman ARGS` with `env` added: (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<(i32, String, String)> {
        let root = self.dir.path().join("storage").display().to_string();
        let runroot = self.dir.path().join("run").display().to_string();
        let mut all = vec![
            "--runtime",
            "/usr/sbin/runc",
            "--cgroup-manager=cgroupfs",
            "--root",
            &root,
            "--runroot",
            &runroot,
        ];
        all.extend_from_slice(args);
        let conf = self
            .dir
            .path()
            .join("containers.conf")
            .display()
            .to_string();
        let mut env_all = vec![("CONTAINERS_CONF", conf.as_str())];
        env_all.extend_from_slice(env);
        let out = tokio::time::timeout(
            Duration::from_secs(300),
            tokio::process::Command::new("podman")
                .args(&all)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", self.dir.path())
                .envs(env_all.iter().copied())
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .with_context(|| format!("podman {args:?} hung"))??;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `podman ARGS`, which must succeed: its stdout.
    async fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        let (code, out, err) = self.run(args, env).await?;
        if code != 0 {
            bail!("podman {args:?} exited {code}: {err}{out}");
        }
        Ok(out)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers, mounts and images go with the storage.
        let root = self.dir.path().join("storage");
        let runroot = self.dir.path().join("run");
        let _ = std::process::Command::new("podman")
            .args(["--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs"])
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["system", "reset", "--force"])
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Debian 12's minimal root file system, made once per target directory.
async fn bookworm_tar() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container-base");
    std::fs::create_dir_all(&dir)?;
    let tar = dir.join("bookworm-minbase.tar");
    if tar.exists() {
        return Ok(tar);
    }
    let partial = dir.join(format!("partial-{}.tar", std::process::id()));
    let sources = "/etc/apt/sources.list.d/debian.sources";
    let mut args = vec![
        "--variant=minbase",
        "--include=ca-certificates",
        "bookworm",
        partial.to_str().context("path")?,
    ];
    if Path::new(sources).exists() {
        args.push(sources);
    }
    let (code, _, err) = run("mmdebstrap", &args, Path::new("/"), &[]).await?;
    if code != 0 {
        bail!("mmdebstrap failed: {err}");
    }
    std::fs::rename(&partial, &tar)?;
    Ok(tar)
}

/// Builds the image from `deploy/Dockerfile` with the binary under test.
async fn build(p: &Podman) -> Result<()> {
    let tar = bookworm_tar().await?;
    p.ok(
        &[
            "import",
            tar.to_str().context("path")?,
            "docker.io/library/debian:bookworm-slim",
        ],
        &[],
    )
    .await?;
    // The build stage's layout: /out/burrow.
    let pre = p.dir.path().join("build-stage");
    std::fs::create_dir_all(pre.join("out"))?;
    std::fs::copy(bin(), pre.join("out/burrow"))?;
    let context = format!("build={}", pre.display());
    let dockerfile = repo().join("deploy/Dockerfile");
    let repo_dir = repo();
    p.ok(
        &[
            "build",
            "--network",
            "host",
            "--build-context",
            &context,
            "-f",
            dockerfile.to_str().context("path")?,
            "-t",
            IMAGE,
            repo_dir.to_str().context("path")?,
        ],
        &[],
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_image_runs_the_connection_agents_register_and_run_lines_and_keeps_gateway_data()
-> Result<()> {
    burrow_e2e::require!(
        "podman",
        "mmdebstrap",
        "file:/usr/sbin/runc",
        "root",
        "curl"
    );
    let p = Podman::new()?;
    build(&p).await?;

    // `docker run --rm IMAGE --help`: the commands.
    let help = p.ok(&["run", "--rm", IMAGE, "--help"], &[]).await?;
    for cmd in [
        "gateway",
        "run",
        "register",
        "add-fqdn",
        "list-agents",
        "ready",
    ] {
        assert!(help.contains(&format!("\n  {cmd} ")), "{cmd}: {help}");
    }
    let config = p
        .ok(
            &[
                "image",
                "inspect",
                "--format",
                "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Env}}",
                IMAGE,
            ],
            &[],
        )
        .await?;
    assert!(
        config.starts_with("1000:1000 [/usr/local/bin/burrow]")
            && config.contains("BURROW_DATA_DIR=/app/data"),
        "{config}"
    );

    // A gateway on the host, as in the cloud.
    let st = setup(&bin(), &[], &[], false).await?;
    let connect_url = st.gateway.connect_url().to_owned();
    let thumbprint = st.gateway.thumbprint.clone().context("TLS")?;
    let api_key = st.gateway.admin_key().to_owned();
    let keys = st.gateway.cli.keygen(st.dir.path(), "boxed").await?;
    // `docker run --rm IMAGE register --connect-url … --octopus-cloud-instance-api-key …`
    let printed = p
        .ok(
            &[
                "run",
                "--rm",
                "--network",
                "host",
                "--env",
                "GATEWAY_THUMBPRINT",
                IMAGE,
                "register",
                "--connect-url",
                &connect_url,
                "--octopus-cloud-instance-api-key",
                &api_key,
                "--agent-name",
                "boxed",
                "--key-name",
                "k1",
                "--public-key",
                &keys.public_pem,
            ],
            &[("GATEWAY_THUMBPRINT", &thumbprint)],
        )
        .await?;
    let vars = env_lines(&printed);
    for v in [
        "AUTH_SERVER_DOMAIN",
        "AUTH_SERVER_CLIENT_ID",
        "API_AUDIENCE",
        "CONNECT_URL",
    ] {
        assert!(vars.contains_key(v), "{v} missing from {printed}");
    }

    // `docker run … run` with the values it printed and the private key
    // in AUTH_SERVER_PRIVATE_KEY_PEM (from podman's environment, so it is
    // not on a command line).
    let private = std::fs::read_to_string(&keys.private)?;
    let probe = format!("127.0.0.1:{}", free_port()?);
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("AUTH_SERVER_PRIVATE_KEY_PEM", private.as_str()),
        ("GATEWAY_THUMBPRINT", thumbprint.as_str()),
        ("BURROW_HEALTH_LISTEN", probe.as_str()),
        ("BURROW_UI_LISTEN", "off"),
        ("BURROW_ALLOW_LOOPBACK", "true"),
        ("BURROW_MAP_HOST", "svc.internal.test=127.0.0.1"),
    ]);
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "connection-agent",
        "--network",
        "host",
    ];
    for (k, _) in &env {
        args.extend(["--env", k]);
    }
    args.extend([IMAGE, "run"]);
    p.ok(&args, &env).await?;
    let (_, ps, _) = run("ps", &["axww", "-o", "args"], Path::new("/"), &[]).await?;
    assert!(!ps.contains("PRIVATE KEY"), "the private key shows in ps");
    until(Duration::from_secs(30), "the agent is ready", || async {
        let (code, _, _) = p
            .run(&["exec", "connection-agent", "burrow", "ready"], &[])
            .await?;
        Ok(code == 0)
    })
    .await?;
    let listed = st.ok(&["list-agents"]).await?;
    assert!(listed.contains("boxed"), "{listed}");
    // Traffic through the containerized agent.
    let (_svc, port) = web_service("inside").await?;
    st.ok(&[
        "add-fqdn",
        "--agent-name",
        "boxed",
        "--fqdn",
        "svc.internal.test",
    ])
    .await?;
    let (code, out, err) = run(
        "curl",
        &[
            "-sS",
            "-x",
            &st.proxy_url(),
            &format!("http://svc.internal.test:{port}/via-container"),
        ],
        Path::new("/"),
        &[],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("service=inside path=/via-container"),
        "{out}"
    );
    // `docker stop`: SIGTERM, a drain, exit 0.
    p.ok(&["stop", "-t", "20", "connection-agent"], &[]).await?;
    let status = p
        .ok(
            &[
                "inspect",
                "--format",
                "{{.State.ExitCode}}",
                "connection-agent",
            ],
            &[],
        )
        .await?;
    assert_eq!(status.trim(), "0", "the agent exits cleanly on SIGTERM");
    let logs = p.run(&["logs", "connection-agent"], &[]).await?.2;
    assert!(logs.contains("agent stopped"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");

    // A gateway in the image keeps its data in the volume.
    let gw_port = free_port()?;
    let listen = format!("127.0.0.1:{gw_port}");
    let gateway = |name: &'static str| {
        let listen = listen.clone();
        let p = &p;
        async move {
            p.ok(
                &[
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "host",
                    "-v",
                    "burrow-data:/app/data",
                    IMAGE,
                    "gateway",
                    "--listen",
                    &listen,
                    "--proxy-listen",
                    "off",
                    "--edge-https-listen",
                    "off",
                    "--edge-http-listen",
                    "off",
                ],
                &[],
            )
            .await
        }
    };
    let healthy = || async {
        let (_, out, _) = run(
            "curl",
            &["-sk", &format!("https://{listen}/ready")],
            Path::new("/"),
            &[],
        )
        .await?;
        Ok(out == "ready\n")
    };
    gateway("gw1").await?;
    until(Duration::from_secs(30), "gateway container ready", healthy).await?;
    let first = p
        .ok(
            &[
                "run",
                "--rm",
                "-v",
                "burrow-data:/app/data",
                IMAGE,
                "thumbprint",
            ],
            &[],
        )
        .await?;
    let logs = p.run(&["logs", "gw1"], &[]).await?.1;
    assert!(logs.contains("Bootstrap admin API key"), "{logs}");
    p.ok(&["stop", "-t", "20", "gw1"], &[]).await?;
    gateway("gw2").await?;
    until(Duration::from_secs(30), "restarted gateway ready", healthy).await?;
    let second = p
        .ok(
            &[
                "run",
                "--rm",
                "-v",
                "burrow-data:/app/data",
                IMAGE,
                "thumbprint",
            ],
            &[],
        )
        .await?;
    assert_eq!(first, second, "the same certificate after a restart");
    let logs = p.run(&["logs", "gw2"], &[]).await?.1;
    assert!(
        !logs.contains("Bootstrap admin API key"),
        "the database was kept: no second bootstrap key: {logs}"
    );
    let files = p
        .ok(
            &[
                "run",
                "--rm",
                "--entrypoint",
                "/bin/ls",
                "-v",
                "burrow-data:/app/data",
                IMAGE,
                "-ln",
                "/app/data",
            ],
            &[],
        )
        .await?;
    assert!(files.contains("burrow.db"), "{files}");
    for line in files.lines().filter(|l| l.starts_with('-')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields.get(2),
            Some(&"1000"),
            "owned by the image's user: {line}"
        );
        if line.contains("key") {
            assert!(
                line.starts_with("-rw-------"),
                "a key readable by others: {line}"
            );
        }
    }
    p.ok(&["stop", "-t", "20", "gw2"], &[]).await?;
    Ok(())
}
