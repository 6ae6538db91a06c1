//! The admin API as `docs/api.json` documents it, held against a running
//! gateway: every documented operation is served and its answer matches
//! the documented schema, a path or method it does not document is 404,
//! and refusals have the documented error body.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use anyhow::Result;
use burrow_e2e::registered::{Setup, run, setup};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_burrow"))
}

/// The committed document.
fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.json"))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A validator for one schema of the document (its `$ref`s resolved).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut s = schema.clone();
    s["$defs"] = doc["components"]["schemas"].clone();
    let text = serde_json::to_string(&s)
        .unwrap()
        .replace("#/components/schemas/", "#/$defs/");
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// One call through curl: (status, JSON body).
async fn call(st: &Setup, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let url = st.api_url(path);
    let auth = st.auth_header();
    let mut args = vec!["-sk", "-X", method, "-H", &auth, "-w", "\n%{http_code}"];
    let data;
    if let Some(b) = body {
        data = b.to_string();
        args.extend([
            "-H",
            "content-type: application/json",
            "--data-binary",
            &data,
        ]);
    }
    args.push(&url);
    let (code, out, err) = run("curl", &args, Path::new("/"), &[]).await?;
    anyhow::ensure!(code == 0, "curl {method} {url}: {err}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    let v = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)
            .map_err(|e| anyhow::anyhow!("{method} {path}: not JSON ({e}): {body}"))?
    };
    Ok((status.trim().parse()?, v))
}

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_as_documented() -> Result<()> {
    burrow_e2e::require!("curl", "openssl");
    let st = setup(bin(), &[], &[], true).await?;
    let doc = document();
    let keys = st.dir.path().join("more-keys");
    let out = keys.display().to_string();
    st.ok(&["keygen", "--agent-name", "api", "--out-dir", &out])
        .await?;
    st.ok(&["keygen", "--agent-name", "api2", "--out-dir", &out])
        .await?;
    let pem = |n: &str| {
        std::fs::read_to_string(keys.join(format!("ConnectionAgent-{n}.pem.pub"))).unwrap()
    };
    let spare: Value = serde_json::from_str(
        &st.ok(&["admin-key", "create", "--name", "spare", "--json"])
            .await?,
    )?;
    let spare = spare["id"].as_str().unwrap_or_default().to_owned();
    // Each operation, in an order that leaves what the next one needs.
    let calls: Vec<(&str, &str, String, Option<Value>, u16)> = vec![
        ("listAgents", "GET", "/agents".into(), None, 200),
        (
            "registerAgent",
            "POST",
            "/agents".into(),
            Some(
                json!({ "agent_name": "api", "key_name": "k1", "public_key": pem("api"),
                         "fqdns": ["git.api.test"] }),
            ),
            201,
        ),
        ("listKeys", "GET", "/agents/api/keys".into(), None, 200),
        (
            "addKey",
            "POST",
            "/agents/api/keys".into(),
            Some(json!({ "key_name": "k2", "public_key": pem("api2") })),
            201,
        ),
        (
            "removeKey",
            "DELETE",
            "/agents/api/keys/k1".into(),
            None,
            200,
        ),
        (
            "listFqdnRules",
            "GET",
            "/fqdn-rules?check=true".into(),
            None,
            200,
        ),
        (
            "putFqdnRule",
            "PUT",
            "/fqdn-rules/smtp.api.test".into(),
            Some(json!({ "agent_name": "api", "ports": "25,587", "check_port": 587 })),
            201,
        ),
        (
            "removeFqdnRule",
            "DELETE",
            "/fqdn-rules/smtp.api.test".into(),
            None,
            200,
        ),
        (
            "putRoute",
            "PUT",
            "/routes/app.api.test".into(),
            Some(json!({ "agent_name": "api", "target": "http://127.0.0.1:9" })),
            201,
        ),
        ("listRoutes", "GET", "/routes".into(), None, 200),
        (
            "removeRoute",
            "DELETE",
            "/routes/app.api.test".into(),
            None,
            200,
        ),
        (
            "listTraffic",
            "GET",
            "/traffic?kind=egress&limit=5".into(),
            None,
            200,
        ),
        (
            "createAdminKey",
            "POST",
            "/admin-keys".into(),
            Some(json!({ "name": "api-test", "expires_in_seconds": 60 })),
            201,
        ),
        ("listAdminKeys", "GET", "/admin-keys".into(), None, 200),
        (
            "revokeAdminKey",
            "DELETE",
            format!("/admin-keys/{spare}"),
            None,
            200,
        ),
        ("agentInfo", "GET", "/agents/edge/info".into(), None, 200),
        (
            "agentCheck",
            "GET",
            format!("/agents/edge/check?target={}", st.gateway.addr),
            None,
            200,
        ),
        (
            "agentLogs",
            "GET",
            "/agents/edge/logs?level=warn&max=5".into(),
            None,
            200,
        ),
        ("unregisterAgent", "DELETE", "/agents/api".into(), None, 200),
    ];
    let mut served = std::collections::BTreeSet::new();
    for (id, method, path, body, want) in &calls {
        let (status, v) = call(&st, method, path, body.as_ref()).await?;
        assert_eq!(status, *want, "{id}: {method} {path}: {v}");
        let template = burrow_api::Endpoint::parse(
            method,
            &format!("/api/v1{}", path.split('?').next().unwrap()),
            path.split_once('?').map(|(_, q)| q),
        )
        .unwrap()
        .operation()
        .path;
        let op = &doc["paths"][format!("/api/v1{template}")][method.to_ascii_lowercase()];
        assert_eq!(
            op["operationId"], *id,
            "{method} {path} is documented as {id}"
        );
        let schema = &op["responses"][want.to_string()]["content"]["application/json"]["schema"];
        let errors: Vec<String> = validator(&doc, schema)
            .iter_errors(&v)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{id}: the answer does not match its schema: {errors:?}\n{v}"
        );
        served.insert(id.to_string());
    }
    let documented: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(served, documented, "every documented operation was called");

    // What the document does not name is not served; refusals carry the
    // documented error body.
    let error = validator(&doc, &json!({ "$ref": "#/components/schemas/ErrorBody" }));
    for (method, path, want) in [
        ("GET", "/nothing", 404),
        ("PATCH", "/agents", 404),
        ("GET", "/agents/edge", 404),
        ("POST", "/routes", 404),
        ("GET", "/traffic?kind=bogus", 400),
        ("GET", "/traffic?limit=-1", 400),
        ("GET", "/agents?page=2", 400),
        ("DELETE", "/agents/nobody", 404),
    ] {
        let (status, v) = call(&st, method, path, None).await?;
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(error.is_valid(&v), "{method} {path}: {v}");
    }
    // A misspelt field is refused by name, not ignored.
    let (status, v) = call(
        &st,
        "PUT",
        "/routes/typo.api.test",
        Some(
            &json!({ "agent_name": "edge", "target": "http://127.0.0.1:9", "proxy_protocl": true }),
        ),
    )
    .await?;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("proxy_protocl"),
        "{v}"
    );
    Ok(())
}
