#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use super::*;

struct Pair {
    private: String,
    public: String,
}

fn pair(alg: &'static rcgen::SignatureAlgorithm) -> Pair {
    let k = rcgen::KeyPair::generate_for(alg).unwrap();
    Pair {
        private: k.serialize_pem(),
        public: k.public_key_pem(),
    }
}

/// One agent `edge` (client id `cid-edge`) with the given keys.
struct Registry(HashMap<String, String>);

impl Keys for Registry {
    fn agent(&self, client_id: &str) -> Option<String> {
        (client_id == "cid-edge").then(|| "edge".to_owned())
    }
    fn keys(&self, agent: &str) -> Vec<(String, String)> {
        let mut v: Vec<_> = if agent == "edge" {
            self.0.clone().into_iter().collect()
        } else {
            Vec::new()
        };
        v.sort();
        v
    }
}

const AUD: &str = "https://gw.example.com/token";
const NOW: u64 = 1_800_000_000;

#[test]
fn rs256_es256_and_eddsa_assertions_verify() {
    for (name, alg) in [
        ("rsa", &rcgen::PKCS_RSA_SHA256),
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ed", &rcgen::PKCS_ED25519),
    ] {
        let p = pair(alg);
        let reg = Registry(HashMap::from([(name.to_owned(), p.public.clone())]));
        let t = sign(p.private.as_bytes(), "cid-edge", Some(name), AUD, NOW, 60).unwrap();
        let v = verify(&t, &reg, AUD, NOW + 5).unwrap();
        assert_eq!(v.key_name, name);
        assert_eq!(v.claims.sub, "cid-edge");
        assert_eq!(v.claims.exp, NOW + 60);
        assert_eq!(v.claims.jti.len(), 32);
        let again = sign(p.private.as_bytes(), "cid-edge", Some(name), AUD, NOW, 60).unwrap();
        assert_ne!(
            verify(&again, &reg, AUD, NOW).unwrap().claims.jti,
            v.claims.jti
        );
    }
}

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Signs `header` and `claims` as given with an RSA key.
fn sign_raw(private: &str, header: serde_json::Value, claims: serde_json::Value) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::RS256).unwrap();
    format!("{input}.{sig}")
}

#[test]
fn nbf_ahead_and_critical_extensions_are_refused() {
    let rsa = pair(&rcgen::PKCS_RSA_SHA256);
    let reg = Registry(HashMap::from([("k1".to_owned(), rsa.public.clone())]));
    let claims = |nbf: Option<u64>, jti: &str| {
        let mut c = serde_json::json!({"iss": "cid-edge", "sub": "cid-edge", "aud": AUD,
            "iat": NOW, "exp": NOW + 60, "jti": jti});
        if let Some(n) = nbf {
            c["nbf"] = n.into();
        }
        c
    };
    let header = serde_json::json!({"alg": "RS256", "kid": "k1"});
    // The same assertion passes without the claim or header in question.
    let plain = sign_raw(&rsa.private, header.clone(), claims(None, "a"));
    assert!(verify(&plain, &reg, AUD, NOW).is_ok());
    let soon = sign_raw(&rsa.private, header.clone(), claims(Some(NOW + 30), "b"));
    assert!(verify(&soon, &reg, AUD, NOW).is_ok(), "within the leeway");
    let later = sign_raw(&rsa.private, header.clone(), claims(Some(NOW + 3600), "c"));
    assert_eq!(
        verify(&later, &reg, AUD, NOW),
        Err(AssertionError::NotYetValid(3600))
    );
    for crit in [
        serde_json::json!(["exp"]),
        serde_json::json!(["urn:example:unknown"]),
        serde_json::json!([]),
        serde_json::json!("b64"),
    ] {
        let mut h = header.clone();
        h["crit"] = crit.clone();
        h["urn:example:unknown"] = true.into();
        let t = sign_raw(&rsa.private, h, claims(None, "d"));
        assert!(
            matches!(
                verify(&t, &reg, AUD, NOW),
                Err(AssertionError::UnknownCritical(_))
            ),
            "{crit}"
        );
    }
}

#[test]
fn every_refusal_has_its_own_error() {
    let rsa = pair(&rcgen::PKCS_RSA_SHA256);
    let other = pair(&rcgen::PKCS_RSA_SHA256);
    let ec = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let reg = Registry(HashMap::from([
        ("k1".to_owned(), rsa.public.clone()),
        ("ec".to_owned(), ec.public.clone()),
    ]));
    let ok = |t: &str, now| verify(t, &reg, AUD, now);
    let t = sign(rsa.private.as_bytes(), "cid-edge", Some("k1"), AUD, NOW, 60).unwrap();

    assert!(matches!(
        ok(&t, NOW + 60 + LEEWAY + 1),
        Err(AssertionError::Expired(_))
    ));
    assert!(matches!(
        ok(&t, NOW - LEEWAY - 10),
        Err(AssertionError::FromTheFuture(_))
    ));
    assert!(matches!(
        verify(&t, &reg, "https://other/token", NOW),
        Err(AssertionError::WrongAudience { .. })
    ));
    // Signed by a key that is not the registered one.
    let forged = sign(
        other.private.as_bytes(),
        "cid-edge",
        Some("k1"),
        AUD,
        NOW,
        60,
    )
    .unwrap();
    assert!(matches!(
        ok(&forged, NOW),
        Err(AssertionError::BadSignature(_))
    ));
    // Unknown key name, unknown client.
    let t2 = sign(
        rsa.private.as_bytes(),
        "cid-edge",
        Some("gone"),
        AUD,
        NOW,
        60,
    )
    .unwrap();
    assert!(matches!(
        ok(&t2, NOW),
        Err(AssertionError::UnknownKey { .. })
    ));
    let t3 = sign(
        rsa.private.as_bytes(),
        "cid-nobody",
        Some("k1"),
        AUD,
        NOW,
        60,
    )
    .unwrap();
    assert!(matches!(
        ok(&t3, NOW),
        Err(AssertionError::UnknownClient(_))
    ));
    // An RSA signature presented for the EC key.
    let t4 = sign(rsa.private.as_bytes(), "cid-edge", Some("ec"), AUD, NOW, 60).unwrap();
    assert!(matches!(
        ok(&t4, NOW),
        Err(AssertionError::AlgMismatch { .. })
    ));

    // alg none, HS256, no kid, iss != sub, too long a life: hand-made.
    let claims = serde_json::json!({"iss":"cid-edge","sub":"cid-edge","aud":AUD,"iat":NOW,"exp":NOW+60,"jti":"x"});
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg":"none","kid":"k1"})),
        b64(&claims)
    );
    assert_eq!(ok(&none, NOW), Err(AssertionError::AlgNone));
    let hs = format!(
        "{}.{}.c2ln",
        b64(&serde_json::json!({"alg":"HS256","kid":"k1"})),
        b64(&claims)
    );
    assert!(matches!(
        ok(&hs, NOW),
        Err(AssertionError::UnsupportedAlg(_))
    ));
    let nokid = format!(
        "{}.{}.c2ln",
        b64(&serde_json::json!({"alg":"RS256"})),
        b64(&claims)
    );
    assert!(matches!(
        ok(&nokid, NOW),
        Err(AssertionError::BadSignature(_))
    ));
    // Without a kid, the key that verifies is found among the agent's.
    let t6 = sign(ec.private.as_bytes(), "cid-edge", None, AUD, NOW, 60).unwrap();
    assert_eq!(ok(&t6, NOW).unwrap().key_name, "ec");
    let t7 = sign(rsa.private.as_bytes(), "cid-edge", None, AUD, NOW, 60).unwrap();
    assert_eq!(ok(&t7, NOW).unwrap().key_name, "k1");
    let t8 = sign(other.private.as_bytes(), "cid-edge", None, AUD, NOW, 60).unwrap();
    assert!(matches!(ok(&t8, NOW), Err(AssertionError::BadSignature(_))));
    let empty = Registry(HashMap::new());
    assert!(matches!(
        verify(&t7, &empty, AUD, NOW),
        Err(AssertionError::NoKeys(_))
    ));
    let mut c = claims.clone();
    c["iss"] = "someone-else".into();
    let iss = format!(
        "{}.{}.c2ln",
        b64(&serde_json::json!({"alg":"RS256","kid":"k1"})),
        b64(&c)
    );
    assert_eq!(ok(&iss, NOW), Err(AssertionError::IssuerMismatch));
    for bad in ["", "a.b", "!!!.???.###", &"a".repeat(MAX_LEN + 1)] {
        assert!(
            matches!(ok(bad, NOW), Err(AssertionError::Malformed(_))),
            "{bad:.20}"
        );
    }
    // A signed assertion claiming a long life is refused.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let long = Claims {
        iss: "cid-edge".into(),
        sub: "cid-edge".into(),
        aud: AUD.into(),
        iat: NOW,
        exp: NOW + 3600,
        nbf: None,
        jti: "j".into(),
    };
    let t5 = jsonwebtoken::encode(
        &header,
        &long,
        &EncodingKey::from_rsa_pem(rsa.private.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(ok(&t5, NOW), Err(AssertionError::TooLong(3600))));
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

#[test]
fn keys_made_by_openssl_work_and_small_rsa_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The Octopus Connection Agent's commands.
    openssl(&["genrsa", "-out", "key.pem", "2048"], d);
    openssl(&["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"], d);
    let private = std::fs::read(d.join("key.pem")).unwrap();
    let public = std::fs::read_to_string(d.join("pub.pem")).unwrap();
    let info = KeyInfo::from_pem(&public).unwrap();
    assert_eq!(info.algorithm, KeyAlgorithm::Rsa(2048));
    assert!(info.fingerprint.starts_with("SHA256:"));
    let reg = Registry(HashMap::from([("seed".to_owned(), public)]));
    let t = sign(&private, "cid-edge", Some("seed"), AUD, NOW, 60).unwrap();
    verify(&t, &reg, AUD, NOW).unwrap();

    openssl(&["genrsa", "-out", "small.pem", "1024"], d);
    openssl(
        &["rsa", "-in", "small.pem", "-pubout", "-out", "small.pub"],
        d,
    );
    let small = std::fs::read_to_string(d.join("small.pub")).unwrap();
    let e = KeyInfo::from_pem(&small).unwrap_err();
    assert_eq!(e, crate::pubkey::KeyError::TooSmall(1024));
    assert!(e.to_string().contains("2048"));

    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "p384.pem",
        ],
        d,
    );
    openssl(
        &["pkey", "-in", "p384.pem", "-pubout", "-out", "p384.pub"],
        d,
    );
    let p384 = std::fs::read_to_string(d.join("p384.pub")).unwrap();
    assert_eq!(
        KeyInfo::from_pem(&p384).unwrap_err(),
        crate::pubkey::KeyError::Unsupported
    );
    assert_eq!(
        KeyInfo::from_pem("hello").unwrap_err(),
        crate::pubkey::KeyError::NotPem
    );
    let truncated = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----";
    assert!(matches!(
        KeyInfo::from_pem(truncated).unwrap_err(),
        crate::pubkey::KeyError::Malformed(_)
    ));
}
