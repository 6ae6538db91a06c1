#![allow(clippy::unwrap_used)]

use super::*;

fn parse(method: &str, path_and_query: &str) -> Result<Endpoint, Invalid> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    Endpoint::parse(method, path, query)
}

fn every_endpoint() -> Vec<Endpoint> {
    let a = || "home".to_owned();
    vec![
        Endpoint::ListAgents,
        Endpoint::Register,
        Endpoint::Unregister { agent: a() },
        Endpoint::ListKeys { agent: a() },
        Endpoint::AddKey { agent: a() },
        Endpoint::RemoveKey {
            agent: a(),
            key: "k2".into(),
            force: true,
        },
        Endpoint::RemoveKey {
            agent: a(),
            key: "k2".into(),
            force: false,
        },
        Endpoint::ListRules { check: true },
        Endpoint::ListRules { check: false },
        Endpoint::PutRule {
            fqdn: "*.corp.internal".into(),
        },
        Endpoint::RemoveRule {
            fqdn: "git.corp.internal".into(),
        },
        Endpoint::ListRoutes,
        Endpoint::PutRoute {
            hostname: "app.tunnel.example.com".into(),
        },
        Endpoint::RemoveRoute {
            hostname: "app.tunnel.example.com".into(),
        },
        Endpoint::Traffic(TrafficQuery::default()),
        Endpoint::Traffic(TrafficQuery {
            kind: Some("http".into()),
            agent: Some("home".into()),
            host: Some("a b&c".into()),
            status: Some(502),
            since: Some(1),
            until: Some(2),
            limit: Some(10),
            offset: Some(5),
        }),
        Endpoint::CreateAdminKey,
        Endpoint::ListAdminKeys,
        Endpoint::RevokeAdminKey {
            id: "0123456789ab".into(),
        },
        Endpoint::AgentInfo { agent: a() },
        Endpoint::AgentCheck {
            agent: a(),
            target: "git.corp.internal:443".into(),
            tls: true,
        },
        Endpoint::AgentCheck {
            agent: a(),
            target: "[fd00::1]:22".into(),
            tls: false,
        },
        Endpoint::AgentLogs {
            agent: a(),
            query: LogsQuery::default(),
        },
        Endpoint::AgentLogs {
            agent: a(),
            query: LogsQuery {
                level: Some("debug".into()),
                after: Some(17),
                wait: Some(20),
                max: Some(500),
            },
        },
    ]
}

#[test]
fn what_the_client_sends_the_server_parses_back() {
    for e in every_endpoint() {
        let back = parse(e.method(), &e.path_and_query());
        assert_eq!(back.as_ref(), Ok(&e), "{}", e.path_and_query());
    }
}

#[test]
fn every_operation_is_an_endpoint_and_every_endpoint_is_documented() {
    let used: std::collections::BTreeSet<&str> =
        every_endpoint().iter().map(|e| e.operation().id).collect();
    let documented: std::collections::BTreeSet<&str> =
        openapi::OPERATIONS.iter().map(|o| o.id).collect();
    assert_eq!(used, documented);
    for op in openapi::OPERATIONS {
        let path = op
            .path
            .replace("{agent}", "home")
            .replace("{key}", "k1")
            .replace("{fqdn}", "git.corp.internal")
            .replace("{hostname}", "app.example.com")
            .replace("{id}", "0123456789ab");
        let required = if op.id == "agentCheck" {
            "?target=git.corp.internal:22"
        } else {
            ""
        };
        let e = parse(op.method, &format!("{PREFIX}{path}{required}")).unwrap();
        assert_eq!(e.operation().id, op.id);
    }
}

#[test]
fn bad_parameters_are_refused_naming_them() {
    let cases = [
        ("GET", "/api/v1/traffic?limit=-1", "limit"),
        ("GET", "/api/v1/traffic?limit=1001", "limit"),
        ("GET", "/api/v1/traffic?limit=ten", "limit"),
        (
            "GET",
            "/api/v1/traffic?offset=100001",
            "page further back with until",
        ),
        ("GET", "/api/v1/traffic?kind=bogus", "unknown traffic kind"),
        ("GET", "/api/v1/traffic?status=1000", "status"),
        (
            "GET",
            "/api/v1/traffic?color=red",
            "unknown query parameter color",
        ),
        ("GET", "/api/v1/traffic?limit=1&limit=2", "more than once"),
        ("GET", "/api/v1/agents?x=1", "takes none"),
        (
            "GET",
            "/api/v1/fqdn-rules?check=yes",
            "check must be true or false",
        ),
        (
            "DELETE",
            "/api/v1/agents/a/keys/k?force=1",
            "force must be true or false",
        ),
        (
            "DELETE",
            "/api/v1/agents/a/keys/k?check=true",
            "unknown query parameter check",
        ),
        ("GET", "/api/v1/agents/../keys", "`..` segments"),
        ("GET", "/api/v1/agents/%2e%2E/keys", "`..` segments"),
        ("DELETE", "/api/v1/agents/a%20b", "invalid agent name"),
        ("DELETE", "/api/v1/agents/a/keys/k$", "invalid key name"),
        ("PUT", "/api/v1/fqdn-rules/a..b", "invalid FQDN"),
        ("PUT", "/api/v1/routes/*.example.com", "invalid host name"),
        (
            "GET",
            "/api/v1/agents/a/check",
            "target (HOST:PORT) is required",
        ),
        ("GET", "/api/v1/agents/a/check?target=git", "no :PORT"),
        ("GET", "/api/v1/agents/a/check?target=git:0", "1-65535"),
        (
            "GET",
            "/api/v1/agents/a/check?target=a/b:80",
            "not a host name",
        ),
        (
            "GET",
            "/api/v1/agents/a/check?target=g:1&x=1",
            "unknown query parameter x",
        ),
        ("GET", "/api/v1/agents/a/logs?level=loud", "unknown level"),
        ("GET", "/api/v1/agents/a/logs?wait=26", "wait"),
        ("GET", "/api/v1/agents/a/logs?max=0", "max"),
        ("GET", "/api/v1/agents/../info", "`..` segments"),
    ];
    for (m, p, want) in cases {
        let e = parse(m, p).unwrap_err();
        assert_eq!(e.status, 400, "{p}: {e}");
        assert!(e.message.contains(want), "{p}: {e}");
    }
    for (m, p) in [
        ("GET", "/api/v1/nothing"),
        ("PATCH", "/api/v1/agents"),
        ("GET", "/api/v2/agents"),
        ("POST", "/api/v1/traffic"),
    ] {
        assert_eq!(parse(m, p).unwrap_err().status, 404, "{m} {p}");
    }
}

#[test]
fn names_in_paths_are_lowercased_where_they_are_host_names() {
    assert_eq!(
        parse("PUT", "/api/v1/routes/App.Example.COM"),
        Ok(Endpoint::PutRoute {
            hostname: "app.example.com".into()
        })
    );
    assert_eq!(parse("GET", "/api/v1/agents/"), Ok(Endpoint::ListAgents));
}

#[test]
fn request_bodies_refuse_unknown_fields() {
    let e = serde_json::from_str::<types::RouteRequest>(
        r#"{"agent_name":"a","target":"http://x:1","proxy_protocl":true}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("proxy_protocl"), "{e}");
}

#[test]
fn rule_ports_are_checked_with_the_check_port() {
    assert!(
        validate::rule_ports(Some("22,443"), Some(443))
            .unwrap()
            .is_some()
    );
    assert!(validate::rule_ports(None, None).unwrap().is_none());
    let e = validate::rule_ports(Some("22"), Some(443)).unwrap_err();
    assert!(e.message.contains("not among"), "{e}");
    assert!(validate::rule_ports(Some("x"), None).is_err());
    assert!(validate::rule_ports(None, Some(0)).is_err());
}

/// `docs/api.json` is the generated document (`BURROW_BLESS=1` rewrites it).
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&openapi::document()).unwrap()
    );
    if std::env::var_os("BURROW_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api.json is not the generated document: run BURROW_BLESS=1 cargo test -p burrow-api"
    );
    let doc = openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every $ref resolves.
    let text = generated.as_str();
    for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "unresolved $ref {name}"
        );
    }
}

/// A documented answer validates against its schema; a wrong one does not.
#[test]
fn answers_are_checked_against_their_schemas() {
    let doc = openapi::document();
    let schema = |path: &str, method: &str, status: &str| {
        let mut s = doc["paths"][path][method]["responses"][status]["content"]["application/json"]
            ["schema"]
            .clone();
        s["$defs"] = doc["components"]["schemas"].clone();
        let text = serde_json::to_string(&s)
            .unwrap()
            .replace("#/components/schemas/", "#/$defs/");
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    };
    let v = schema("/api/v1/routes/{hostname}", "delete", "200");
    assert!(v.is_valid(&serde_json::json!({ "hostname": "a.example.com" })));
    assert!(!v.is_valid(&serde_json::json!({ "host": "a.example.com" })));
    let v = schema("/api/v1/agents", "get", "200");
    assert!(v.is_valid(&serde_json::json!([])));
    assert!(!v.is_valid(&serde_json::json!([{ "agent_name": "a" }])));
}
