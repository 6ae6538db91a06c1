//! The OpenAPI 3.1 document of the admin API, built from the one table of
//! operations below and the schemas of [`crate::types`]. `docs/api.json`
//! is this document; a test fails when the two differ (regenerate it with
//! `BURROW_BLESS=1 cargo test -p burrow-api`), and the end-to-end suite
//! holds every documented answer against the running gateway.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::types::*;

/// A query parameter an operation takes.
#[derive(Debug)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// `string`, `integer` or `boolean`.
    pub kind: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// One documented operation.
#[derive(Debug)]
pub struct Operation {
    /// OpenAPI `operationId`.
    pub id: &'static str,
    /// HTTP method.
    pub method: &'static str,
    /// Path template under [`crate::PREFIX`] (`/agents/{agent}`).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// The CLI command that calls it.
    pub command: &'static str,
    /// The request body's schema, if it takes one.
    pub request: Option<fn(&mut SchemaGenerator) -> Schema>,
    /// The success status.
    pub status: u16,
    /// The success body's schema.
    pub response: fn(&mut SchemaGenerator) -> Schema,
    /// Query parameters.
    pub params: &'static [Param],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

const FORCE: &[Param] = &[Param {
    name: "force",
    kind: "boolean",
    description: "Remove the agent's last key too (it can no longer authenticate).",
}];

const CHECK: &[Param] = &[Param {
    name: "check",
    kind: "boolean",
    description: "Run each rule's reachability check through its agent.",
}];

const TRAFFIC: &[Param] = &[
    Param {
        name: "kind",
        kind: "string",
        description: "http, egress, forward or auth.",
    },
    Param {
        name: "agent",
        kind: "string",
        description: "Records of this agent.",
    },
    Param {
        name: "host",
        kind: "string",
        description: "Records for this host (HTTP).",
    },
    Param {
        name: "status",
        kind: "integer",
        description: "Records with this status (0-999).",
    },
    Param {
        name: "since",
        kind: "integer",
        description: "Records at or after this time (microseconds since the epoch).",
    },
    Param {
        name: "until",
        kind: "integer",
        description: "Records before this time (microseconds since the epoch).",
    },
    Param {
        name: "limit",
        kind: "integer",
        description: "Most records (1-1000, default 100).",
    },
    Param {
        name: "offset",
        kind: "integer",
        description: "Records skipped (0-100000); page further back with until.",
    },
];

const AGENT_CHECK: &[Param] = &[
    Param {
        name: "target",
        kind: "string",
        description: "HOST:PORT to check (required): one the agent's allow-list, FQDN rules or routes give it.",
    },
    Param {
        name: "tls",
        kind: "boolean",
        description: "Also handshake TLS and validate the certificate.",
    },
];

const AGENT_LOGS: &[Param] = &[
    Param {
        name: "level",
        kind: "string",
        description: "The least severe level wanted: error, warn, info (default), debug or trace.",
    },
    Param {
        name: "after",
        kind: "integer",
        description: "Only lines after this time (microseconds since the epoch); absent: the latest lines.",
    },
    Param {
        name: "wait",
        kind: "integer",
        description: "With after and no line yet, wait up to this many seconds (0-25) for one.",
    },
    Param {
        name: "max",
        kind: "integer",
        description: "Most lines (1-500, default 100).",
    },
];

/// Every operation the admin API serves.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        id: "listAgents",
        method: "GET",
        path: "/agents",
        summary: "Registered agents, with their links to this gateway.",
        command: "burrow list-agents",
        request: None,
        status: 200,
        response: schema::<Vec<Agent>>,
        params: &[],
    },
    Operation {
        id: "registerAgent",
        method: "POST",
        path: "/agents",
        summary: "Register an agent with its first key and, optionally, FQDN rules (one transaction).",
        command: "burrow register",
        request: Some(schema::<NewAgent>),
        status: 201,
        response: schema::<Registered>,
        params: &[],
    },
    Operation {
        id: "unregisterAgent",
        method: "DELETE",
        path: "/agents/{agent}",
        summary: "Remove an agent, its keys, rules and routes; close its links.",
        command: "burrow unregister",
        request: None,
        status: 200,
        response: schema::<Unregistered>,
        params: &[],
    },
    Operation {
        id: "listKeys",
        method: "GET",
        path: "/agents/{agent}/keys",
        summary: "An agent's keys.",
        command: "burrow list-keys",
        request: None,
        status: 200,
        response: schema::<Vec<Key>>,
        params: &[],
    },
    Operation {
        id: "addKey",
        method: "POST",
        path: "/agents/{agent}/keys",
        summary: "Add a key to an agent (rotation).",
        command: "burrow add-key",
        request: Some(schema::<NewKey>),
        status: 201,
        response: schema::<Key>,
        params: &[],
    },
    Operation {
        id: "removeKey",
        method: "DELETE",
        path: "/agents/{agent}/keys/{key}",
        summary: "Remove a key; links authenticated with it close.",
        command: "burrow remove-key",
        request: None,
        status: 200,
        response: schema::<KeyRemoved>,
        params: FORCE,
    },
    Operation {
        id: "listFqdnRules",
        method: "GET",
        path: "/fqdn-rules",
        summary: "FQDN rules (egress by name), optionally checked.",
        command: "burrow list-fqdn",
        request: None,
        status: 200,
        response: schema::<Vec<Rule>>,
        params: CHECK,
    },
    Operation {
        id: "putFqdnRule",
        method: "PUT",
        path: "/fqdn-rules/{fqdn}",
        summary: "Create (201) or replace (200) an FQDN rule.",
        command: "burrow add-fqdn",
        request: Some(schema::<RuleRequest>),
        status: 201,
        response: schema::<Rule>,
        params: &[],
    },
    Operation {
        id: "removeFqdnRule",
        method: "DELETE",
        path: "/fqdn-rules/{fqdn}",
        summary: "Remove an FQDN rule.",
        command: "burrow remove-fqdn",
        request: None,
        status: 200,
        response: schema::<RuleRemoved>,
        params: &[],
    },
    Operation {
        id: "listRoutes",
        method: "GET",
        path: "/routes",
        summary: "Published routes (public host name to an agent's internal URL).",
        command: "burrow list-routes",
        request: None,
        status: 200,
        response: schema::<Vec<Route>>,
        params: &[],
    },
    Operation {
        id: "putRoute",
        method: "PUT",
        path: "/routes/{hostname}",
        summary: "Publish (201) or change (200) a route.",
        command: "burrow add-route",
        request: Some(schema::<RouteRequest>),
        status: 201,
        response: schema::<Route>,
        params: &[],
    },
    Operation {
        id: "removeRoute",
        method: "DELETE",
        path: "/routes/{hostname}",
        summary: "Remove a route.",
        command: "burrow remove-route",
        request: None,
        status: 200,
        response: schema::<RouteRemoved>,
        params: &[],
    },
    Operation {
        id: "listTraffic",
        method: "GET",
        path: "/traffic",
        summary: "The traffic audit trail, newest first.",
        command: "(the admin API only)",
        request: None,
        status: 200,
        response: schema::<TrafficPage>,
        params: TRAFFIC,
    },
    Operation {
        id: "createAdminKey",
        method: "POST",
        path: "/admin-keys",
        summary: "Create an admin API key (shown once).",
        command: "burrow admin-key create",
        request: Some(schema::<NewAdminKey>),
        status: 201,
        response: schema::<AdminKeyCreated>,
        params: &[],
    },
    Operation {
        id: "listAdminKeys",
        method: "GET",
        path: "/admin-keys",
        summary: "List the admin API keys (never the keys themselves): id, name, created, expires, last used, revoked.",
        command: "burrow admin-key list",
        request: None,
        status: 200,
        response: schema::<Vec<AdminKeyInfo>>,
        params: &[],
    },
    Operation {
        id: "revokeAdminKey",
        method: "DELETE",
        path: "/admin-keys/{id}",
        summary: "Revoke an admin API key (409 if it is the last one that works).",
        command: "burrow admin-key revoke",
        request: None,
        status: 200,
        response: schema::<AdminKeyRevoked>,
        params: &[],
    },
    Operation {
        id: "agentInfo",
        method: "GET",
        path: "/agents/{agent}/info",
        summary: "Ask a connected agent what it is and holds: version, OS, uptime, settings (secrets masked), links, streams, rules and routes (501 from an agent too old to answer).",
        command: "burrow agent-info",
        request: None,
        status: 200,
        response: schema::<AgentInfo>,
        params: &[],
    },
    Operation {
        id: "agentCheck",
        method: "GET",
        path: "/agents/{agent}/check",
        summary: "Have a connected agent resolve, connect and (with tls) handshake with a target it may reach, step by step.",
        command: "burrow agent-check",
        request: None,
        status: 200,
        response: schema::<CheckReport>,
        params: AGENT_CHECK,
    },
    Operation {
        id: "agentLogs",
        method: "GET",
        path: "/agents/{agent}/logs",
        summary: "A connected agent's recent log lines, or (with after and wait) the next ones: a live tail.",
        command: "burrow agent-logs",
        request: None,
        status: 200,
        response: schema::<AgentLogs>,
        params: AGENT_LOGS,
    },
];

/// The operation with `id`.
///
/// # Panics
/// Never for the ids [`crate::Endpoint::operation`] uses: a test looks
/// each one up.
pub fn operation(id: &str) -> &'static Operation {
    #[allow(clippy::expect_used)]
    OPERATIONS
        .iter()
        .find(|o| o.id == id)
        .expect("every endpoint is in OPERATIONS")
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true,
                    "schema": { "type": "string" } })
        })
        .collect()
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let error = schema::<ErrorBody>(&mut g);
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut params = path_params(op.path);
        params.extend(op.params.iter().map(|p| {
            json!({ "name": p.name, "in": "query", "required": false,
                    "description": p.description, "schema": { "type": p.kind } })
        }));
        let mut responses = Map::new();
        let body = |s: &Schema| json!({ "content": { "application/json": { "schema": s } } });
        let mut ok = body(&(op.response)(&mut g));
        ok["description"] = json!("Done.");
        responses.insert(op.status.to_string(), ok);
        if op.id == "putFqdnRule" || op.id == "putRoute" {
            let mut replaced = body(&(op.response)(&mut g));
            replaced["description"] = json!("Replaced.");
            responses.insert("200".into(), replaced);
        }
        let mut refused = body(&error);
        refused["description"] = json!(
            "Refused: bad input (400), no or wrong key (401), not found (404), conflict (409), over a limit (413, 429), disk full (507)."
        );
        responses.insert("default".into(), refused);
        let mut o = json!({
            "operationId": op.id,
            "summary": op.summary,
            "description": format!("CLI: `{}`.", op.command),
            "parameters": params,
            "responses": responses,
        });
        if let Some(req) = op.request {
            o["requestBody"] = json!({ "required": true,
                "content": { "application/json": { "schema": req(&mut g) } } });
        }
        let entry = paths
            .entry(format!("{}{}", crate::PREFIX, op.path))
            .or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = o;
    }
    let schemas: Map<String, Value> = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Burrow admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The gateway's admin API, on its tunnel port. Every call needs `Authorization: Bearer bk_…` (an admin API key). Times are microseconds since the Unix epoch (UTC).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "adminKey": { "type": "http", "scheme": "bearer" } },
        },
        "security": [ { "adminKey": [] } ],
    })
}
