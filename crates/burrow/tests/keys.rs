//! `burrow keygen` as a user runs it, checked with openssl.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn burrow(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burrow"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn keygen_writes_the_pair_openssl_would_and_never_overwrites() {
    if !burrow_e2e::needs::needs(&["openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = burrow(&["keygen", "--agent-name", "edge-1"], d);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("RSA 2048") && text.contains("SHA256:"),
        "{text}"
    );
    let private: PathBuf = d.join("ConnectionAgent-edge-1.pem");
    let public = d.join("ConnectionAgent-edge-1.pem.pub");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // openssl reads the private key and derives exactly the public key file.
    let derived = openssl(&["rsa", "-in", "ConnectionAgent-edge-1.pem", "-pubout"], d);
    assert!(derived.status.success(), "{derived:?}");
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap(),
        std::fs::read_to_string(&public).unwrap()
    );
    let check = openssl(
        &[
            "rsa",
            "-in",
            "ConnectionAgent-edge-1.pem",
            "-check",
            "-noout",
        ],
        d,
    );
    assert!(check.status.success(), "{check:?}");

    // A second run refuses and changes nothing.
    let before = std::fs::read(&private).unwrap();
    let again = burrow(&["keygen", "--agent-name", "edge-1"], d);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&private).unwrap(), before);

    // Other types, JSON output, and bad input.
    let ed = burrow(
        &[
            "keygen",
            "--agent-name",
            "edge-2",
            "--key-type",
            "ed25519",
            "--json",
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_slice(&ed.stdout).unwrap();
    assert_eq!(v["algorithm"], "Ed25519 256");
    let bad = burrow(&["keygen", "--agent-name", "bad name"], d);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid agent name"));
    let usage = burrow(&["keygen", "--agent-name", "x", "--key-type", "dsa"], d);
    assert_eq!(usage.status.code(), Some(2));
    assert!(!d.join("ConnectionAgent-bad name.pem").exists());
    assert!(!d.join("ConnectionAgent-x.pem").exists());
}
