//! Tests that need something this machine may lack (a client such as
//! `openssl` or `caddy`, PostgreSQL, root for tmpfs mounts) start with
//! [`require!`](crate::require): without it, the test passes as skipped and
//! names the skip on stderr, past the test harness's capture, so a plain
//! `cargo test` says what it did not run. With `BURROW_TEST_STRICT=1` (set
//! by `.ci/run`) a skip is a failure instead: CI never passes by skipping.

use std::io::Write as _;

/// Whether `tool` is an executable on `PATH`.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(tool);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
    })
}

/// The PostgreSQL server the tests use: `BURROW_TEST_POSTGRES_URL`, by
/// default the development machines' (trust auth, database `test`).
pub fn postgres_url() -> String {
    std::env::var("BURROW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn postgres_reachable() -> bool {
    let url = postgres_url();
    let host_port = url
        .split('@')
        .nth(1)
        .unwrap_or(&url)
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let host_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5432")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&host_port.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        })
}

/// Whether one need is met. Besides program names: `postgres` (the test
/// server answers), `root` (tmpfs mounts), `python3:MODULE` (a module
/// imports).
fn met(need: &str) -> bool {
    match need {
        "postgres" => postgres_reachable(),
        "root" => std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                == Some("0")
        }),
        n if n.starts_with("python3:") => std::process::Command::new("python3")
            .args(["-c", &format!("import {}", &n[8..])])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        n if n.starts_with("file:") => std::path::Path::new(&n[5..]).exists(),
        tool => on_path(tool),
    }
}

/// Whether strict mode is on (`BURROW_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("BURROW_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Whether everything in `needs` is here. If not: in strict mode, panics
/// naming what is missing; otherwise writes `SKIPPED <test>: needs …` to
/// stderr and returns false (the caller returns early).
pub fn needs(needs: &[&str]) -> bool {
    let missing: Vec<&str> = needs.iter().copied().filter(|n| !met(n)).collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    let what = missing.join(", ");
    assert!(
        !strict(),
        "{test} needs {what}, which this machine lacks (BURROW_TEST_STRICT=1: a skip is a failure; bash .ci/run installs it)"
    );
    // Straight to the process's stderr: the harness captures only print
    // macros, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs {what} (bash .ci/run installs it)"
    );
    false
}

/// Returns `Ok(())` from the test (skipped, and said so) unless every
/// need is met: `require!("openssl", "curl")`, `require!("postgres")`.
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if !$crate::needs::needs(&[$($need),+]) {
            return Ok(());
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_tell_present_from_missing() {
        assert!(met("sh"));
        assert!(!met("no-such-tool-burrow-test"));
        if !strict() {
            assert!(!needs(&["no-such-tool-burrow-test"]));
        }
        assert!(needs(&["sh"]));
    }
}
