#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

fn ephemeral(name: &str) -> Arc<LiveIdentity> {
    LiveIdentity::load(IdentitySource::Ephemeral {
        names: vec![name.into()],
    })
    .unwrap()
}

/// One handshake over an in-memory pipe; returns the client's result and
/// the thumbprint the server saw.
async fn handshake(
    server: Arc<LiveIdentity>,
    client: Option<Arc<LiveIdentity>>,
    trust: ServerTrust,
) -> (std::io::Result<()>, Option<Thumbprint>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server_config(server).unwrap());
    let srv = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await.ok()?;
        let seen = peer_thumbprint(tls.get_ref().1);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.ok()?;
        tls.write_all(&buf).await.ok()?;
        tls.flush().await.ok()?;
        seen
    });
    let cfg = client_config(client, &trust, "the gateway", "set X", ALPN_BURROW).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let res = async {
        let mut tls = TlsConnector::from(cfg).connect(name, a).await?;
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(())
    }
    .await;
    let seen = srv.await.unwrap();
    (res, seen)
}

#[tokio::test]
async fn pinned_server_with_client_certificate() {
    let (server, client) = (ephemeral("localhost"), ephemeral("agent"));
    let trust = ServerTrust::Pinned(vec![Thumbprint::of_der(b"old"), server.thumbprint()]);
    let (res, seen) = handshake(server, Some(client.clone()), trust).await;
    res.unwrap();
    assert_eq!(seen, Some(client.thumbprint()));
}

#[tokio::test]
async fn wrong_pin_names_both_thumbprints() {
    let server = ephemeral("localhost");
    let wrong = Thumbprint::of_der(b"not it");
    let (res, _) = handshake(server.clone(), None, ServerTrust::Pinned(vec![wrong])).await;
    let e = res.expect_err("must refuse");
    let pin = pin_error(&e).expect("a PinError inside");
    let msg = pin.to_string();
    assert!(msg.contains(&server.thumbprint().to_string()), "{msg}");
    assert!(msg.contains(&wrong.to_string()), "{msg}");
    assert!(msg.contains("set X"), "{msg}");
}

#[tokio::test]
async fn ca_roots_refuse_a_self_signed_server_and_say_how_to_pin() {
    let server = ephemeral("localhost");
    let other = ephemeral("localhost");
    let pem = tempfile::NamedTempFile::new().unwrap();
    let der = other.current().certified.cert[0].clone();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref());
    std::fs::write(
        pem.path(),
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    let trust = roots_from_pem_file(pem.path()).unwrap();
    let (res, _) = handshake(server.clone(), None, trust).await;
    let e = res.expect_err("must refuse");
    let msg = pin_error(&e).expect("a PinError").to_string();
    assert!(msg.contains("not trusted by the CA roots"), "{msg}");
    assert!(msg.contains(&server.thumbprint().to_string()), "{msg}");
}

#[test]
fn generated_identity_is_kept_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let src = IdentitySource::Generated {
        dir: data.clone(),
        role: "gateway".into(),
        names: vec!["localhost".into()],
    };
    let first = src.load().unwrap();
    assert!(first.created);
    let again = src.load().unwrap();
    assert!(!again.created);
    assert_eq!(first.thumbprint, again.thumbprint);
    let (cert, key) = generated_paths(&data, "gateway");
    assert_eq!(thumbprint_of_pem_file(&cert).unwrap(), first.thumbprint);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for p in [&cert, &key] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}

#[test]
fn imported_files_must_match_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = IdentitySource::Generated {
        dir: dir.path().into(),
        role: "a".into(),
        names: vec!["a".into()],
    };
    let b = IdentitySource::Generated {
        dir: dir.path().into(),
        role: "b".into(),
        names: vec!["b".into()],
    };
    a.load().unwrap();
    b.load().unwrap();
    let (ca, _) = generated_paths(dir.path(), "a");
    let (_, kb) = generated_paths(dir.path(), "b");
    let mixed = IdentitySource::Files {
        cert: ca.clone(),
        key: kb,
    };
    let e = mixed.load().expect_err("mismatched").to_string();
    assert!(e.contains("do not belong together"), "{e}");
    let missing = IdentitySource::Files {
        cert: dir.path().join("nope.pem"),
        key: ca,
    };
    let e = missing.load().expect_err("missing").to_string();
    assert!(e.contains("nope.pem"), "{e}");
}

#[test]
fn reload_swaps_the_certificate_and_keeps_it_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = IdentitySource::Generated {
        dir: dir.path().into(),
        role: "gateway".into(),
        names: vec!["localhost".into()],
    };
    let live = LiveIdentity::load(src).unwrap();
    let old = live.thumbprint();
    let (cert, key) = generated_paths(dir.path(), "gateway");
    std::fs::write(&cert, "garbage").unwrap();
    assert!(live.reload().is_err());
    assert_eq!(live.thumbprint(), old);
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(&key).unwrap();
    let new = live.reload().unwrap();
    assert_ne!(new, old);
    assert_eq!(live.thumbprint(), new);
}

#[test]
fn only_aead_suites_and_modern_versions() {
    let p = provider();
    assert!(!p.cipher_suites.is_empty());
    for s in &p.cipher_suites {
        assert!(is_aead(s.suite()), "{:?}", s.suite());
    }
    assert_eq!(VERSIONS.len(), 2);
}
