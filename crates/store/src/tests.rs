//! The same behaviour checked on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `BURROW_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test works in a fresh
//! schema it drops afterwards.

#![allow(clippy::unwrap_used)]

use super::*;
use sqlx::Row;

fn pg_base() -> String {
    burrow_e2e::needs::postgres_url()
}

/// A fresh schema on the test server, dropped when the guard goes.
struct PgSchema {
    admin: AnyPool,
    name: String,
    url: String,
}

impl PgSchema {
    async fn new() -> PgSchema {
        sqlx::any::install_default_drivers();
        let base = pg_base();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {} is needed for the store tests (set BURROW_TEST_POSTGRES_URL): {e}",
                    redact_url(&base)
                )
            });
        let name = format!("burrow_t_{}", random_id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        PgSchema { admin, name, url }
    }

    async fn drop(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }
}

/// A plain FQDN rule (no options) for `agent`.
fn plain_rule(fqdn: &str, agent: &str) -> FqdnRule {
    FqdnRule {
        fqdn: fqdn.into(),
        agent: agent.into(),
        ignore_certificate_errors: false,
        tls: false,
        check_port: None,
        check_tls: false,
        ports: None,
        created_at: now_micros(),
        updated_at: now_micros(),
    }
}

fn key(agent: &str, name: &str) -> AgentKey {
    AgentKey {
        agent: agent.into(),
        name: name.into(),
        algorithm: "RSA".into(),
        bits: 2048,
        fingerprint: format!("fp-{agent}-{name}"),
        public_pem: "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n".into(),
        created_at: now_micros(),
    }
}

/// Everything a store must do, on whichever backend.
async fn exercise(s: &Store) {
    // Agents: create, refuse a taken name, refuse past the limit without
    // changing anything.
    s.create_agent("edge-1", "cid-1", 2).await.unwrap();
    let e = s.create_agent("edge-1", "cid-x", 2).await.unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    s.create_agent("edge-2", "cid-2", 2).await.unwrap();
    let e = s.create_agent("edge-3", "cid-3", 2).await.unwrap_err();
    assert!(e.to_string().contains("BURROW_MAX_AGENTS"), "{e}");
    assert_eq!(s.agents().await.unwrap().len(), 2);
    assert!(s.agent("edge-3").await.unwrap().is_none());
    let a = s.agent_by_client_id("cid-2").await.unwrap().unwrap();
    assert_eq!(a.name, "edge-2");
    s.touch_agent("edge-1", "0.1.0", "10.0.0.7:51000")
        .await
        .unwrap();
    let a = s.agent("edge-1").await.unwrap().unwrap();
    assert_eq!(a.version.as_deref(), Some("0.1.0"));
    assert_eq!(a.remote_addr.as_deref(), Some("10.0.0.7:51000"));
    assert!(a.last_seen.is_some_and(|t| t >= a.created_at));

    // Keys.
    s.add_key(&key("edge-1", "key-b")).await.unwrap();
    s.add_key(&key("edge-1", "key-a")).await.unwrap();
    // A taken name with another key: exists; a key some agent has
    // already, under any name, for any agent: in use, naming where.
    let e = s
        .add_key(&AgentKey {
            fingerprint: "fp-other".into(),
            ..key("edge-1", "key-a")
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    for (agent, name) in [
        ("edge-1", "key-a"),
        ("edge-1", "key-c"),
        ("edge-2", "key-x"),
    ] {
        let e = s
            .add_key(&AgentKey {
                agent: agent.into(),
                name: name.into(),
                ..key("edge-1", "key-a")
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::KeyInUse { agent, key } if agent == "edge-1" && key == "key-a"),
            "{e}"
        );
    }
    let e = s.add_key(&key("ghost", "k")).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    let names: Vec<String> = s
        .keys("edge-1")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["key-a", "key-b"]);
    assert_eq!(
        s.keys("edge-1").await.unwrap()[0],
        key_with_time(&s.keys("edge-1").await.unwrap()[0])
    );
    s.remove_key("edge-1", "key-b").await.unwrap();
    let e = s.remove_key("edge-1", "key-b").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");

    // FQDN rules follow their agent.
    let rule = FqdnRule {
        ignore_certificate_errors: true,
        ..plain_rule("git.internal.example", "edge-1")
    };
    s.add_fqdn_rule(&rule).await.unwrap();
    assert!(matches!(
        s.add_fqdn_rule(&rule).await.unwrap_err(),
        StoreError::Exists { .. }
    ));
    assert_eq!(s.fqdn_rules().await.unwrap(), vec![rule.clone()]);
    // Put: update in place (creation time kept), or create.
    let changed = FqdnRule {
        ignore_certificate_errors: false,
        tls: true,
        check_port: Some(8443),
        ports: Some("8443,22".parse().unwrap()),
        created_at: rule.created_at + 5,
        updated_at: rule.updated_at + 5,
        ..rule.clone()
    };
    assert!(!s.put_fqdn_rule(&changed).await.unwrap());
    let got = s.fqdn_rules().await.unwrap();
    assert_eq!(
        (got[0].tls, got[0].check_port, got[0].created_at),
        (true, Some(8443), rule.created_at)
    );
    assert_eq!(
        got[0].ports.as_ref().map(|p| p.to_string()).as_deref(),
        Some("22,8443")
    );
    let wild = FqdnRule {
        fqdn: "*.lan".into(),
        ..changed.clone()
    };
    assert!(s.put_fqdn_rule(&wild).await.unwrap());
    assert_eq!(s.fqdn_rules().await.unwrap().len(), 2);
    let ghost = FqdnRule {
        agent: "ghost".into(),
        ..wild.clone()
    };
    assert!(matches!(
        s.put_fqdn_rule(&ghost).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    s.remove_fqdn_rule("*.lan").await.unwrap();

    // Routes: put creates then updates; they follow their agent.
    let route = Route {
        hostname: "app.tunnel.example.com".into(),
        agent: "edge-1".into(),
        target: "http://10.0.0.5:8080".into(),
        ignore_certificate_errors: false,
        proxy_protocol: false,
        created_at: now_micros(),
        updated_at: now_micros(),
        origin: RouteOrigin::Admin,
    };
    assert!(s.put_route(&route).await.unwrap());
    let changed = Route {
        target: "https://nas.lan:5001".into(),
        ignore_certificate_errors: true,
        proxy_protocol: true,
        ..route.clone()
    };
    assert!(!s.put_route(&changed).await.unwrap());
    assert_eq!(s.routes().await.unwrap(), vec![changed.clone()]);
    assert!(matches!(
        s.put_route(&Route {
            agent: "ghost".into(),
            ..route.clone()
        })
        .await
        .unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // An agent's own routes: a sync replaces them, the operator's stay.
    let own = |host: &str, target: &str| Route {
        hostname: host.into(),
        target: target.into(),
        origin: RouteOrigin::Agent,
        ..route.clone()
    };
    s.replace_agent_routes(
        "edge-1",
        &[
            own("a.tunnel.example.com", "http://a:1"),
            own("b.tunnel.example.com", "http://b:1"),
        ],
    )
    .await
    .unwrap();
    s.replace_agent_routes("edge-1", &[own("b.tunnel.example.com", "http://b:2")])
        .await
        .unwrap();
    let hosts: Vec<(String, String, RouteOrigin)> = s
        .routes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.hostname, r.target, r.origin))
        .collect();
    assert_eq!(
        hosts,
        vec![
            (
                "app.tunnel.example.com".into(),
                "https://nas.lan:5001".into(),
                RouteOrigin::Admin
            ),
            (
                "b.tunnel.example.com".into(),
                "http://b:2".into(),
                RouteOrigin::Agent
            ),
        ]
    );
    // Landing pages: domain and page set apart; they go with the agent.
    s.set_landing_domain("edge-1", Some("example.com"))
        .await
        .unwrap();
    s.set_landing_html("edge-1", Some("<h1>hi</h1>"))
        .await
        .unwrap();
    s.set_landing_domain("edge-1", Some("example.org"))
        .await
        .unwrap();
    assert_eq!(
        s.landings().await.unwrap(),
        vec![Landing {
            agent: "edge-1".into(),
            domain: Some("example.org".into()),
            html: Some("<h1>hi</h1>".into()),
        }]
    );
    s.set_landing_html("edge-1", None).await.unwrap();
    assert_eq!(s.landings().await.unwrap()[0].html, None);
    // A pre-shared-key agent gets a row once, however often it asks.
    s.ensure_agent("psk-agent", 100).await.unwrap();
    s.ensure_agent("psk-agent", 100).await.unwrap();
    assert!(s.agent("psk-agent").await.unwrap().is_some());
    s.delete_agent("psk-agent").await.unwrap();

    // Unregistering takes keys, rules, routes and landing pages along.
    s.delete_agent("edge-1").await.unwrap();
    assert!(s.landings().await.unwrap().is_empty());
    assert!(s.keys("edge-1").await.unwrap().is_empty());
    assert!(s.fqdn_rules().await.unwrap().is_empty());
    assert!(s.routes().await.unwrap().is_empty());
    assert!(matches!(
        s.remove_route("app.tunnel.example.com").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        s.delete_agent("edge-1").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        s.remove_fqdn_rule("git.internal.example")
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // Admin keys: stored by hash, revocable.
    let k = AdminKey {
        id: "bk_0001".into(),
        name: "bootstrap".into(),
        hash: "01ff".into(),
        created_at: now_micros(),
        expires_at: Some(now_micros() + 3_600_000_000),
        revoked: false,
        last_used_at: None,
    };
    s.insert_admin_key(&k).await.unwrap();
    assert_eq!(s.admin_key("bk_0001").await.unwrap(), Some(k.clone()));
    // The last key that works stays: nobody is locked out.
    assert!(matches!(
        s.revoke_admin_key("bk_0001", now_micros()).await,
        Err(StoreError::LastAdminKey(_))
    ));
    // An expired one does not count as working.
    let old = AdminKey {
        id: "bk_0000".into(),
        expires_at: Some(now_micros() - 1),
        ..k.clone()
    };
    s.insert_admin_key(&old).await.unwrap();
    assert!(matches!(
        s.revoke_admin_key("bk_0001", now_micros()).await,
        Err(StoreError::LastAdminKey(_))
    ));
    let next = AdminKey {
        id: "bk_0002".into(),
        expires_at: None,
        ..k.clone()
    };
    s.insert_admin_key(&next).await.unwrap();
    s.revoke_admin_key("bk_0001", now_micros()).await.unwrap();
    assert!(s.admin_key("bk_0001").await.unwrap().unwrap().revoked);
    s.revoke_admin_key("bk_0001", now_micros()).await.unwrap();
    s.admin_key_used("bk_0002", 42).await.unwrap();
    assert_eq!(
        s.admin_key("bk_0002").await.unwrap().unwrap().last_used_at,
        Some(42)
    );
    assert_eq!(s.admin_keys().await.unwrap().len(), 3);
    assert!(s.revoke_admin_key("nope", now_micros()).await.is_err());

    // Assertion ids: once only, until they expire.
    let later = now_micros() + 60_000_000;
    assert!(s.use_jti("jti-1", later).await.unwrap());
    assert!(
        !s.use_jti("jti-1", later).await.unwrap(),
        "a replay is caught"
    );
    assert!(s.use_jti("jti-old", now_micros() - 1).await.unwrap());
    assert!(
        s.use_jti("jti-old", later).await.unwrap(),
        "expired ids are purged"
    );

    // Registration with a first key is all or nothing: past the limit,
    // or with a taken name, neither the agent nor the key is stored.
    s.register_agent("edge-9", "cid-9", &key("edge-9", "k1"), 2, &[])
        .await
        .unwrap();
    assert_eq!(s.keys("edge-9").await.unwrap().len(), 1);
    let e = s
        .register_agent("edge-10", "cid-10", &key("edge-10", "k1"), 2, &[])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AgentLimit { max: 2 }), "{e}");
    assert!(s.keys("edge-10").await.unwrap().is_empty());
    let e = s
        .register_agent("edge-9", "cid-11", &key("edge-9", "k2"), 5, &[])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    assert_eq!(s.keys("edge-9").await.unwrap().len(), 1);
    // With its rules: a rule another agent holds refuses the whole
    // registration; nothing of it is left.
    s.add_fqdn_rule(&plain_rule("taken.example", "edge-9"))
        .await
        .unwrap();
    let before = s.fqdn_rules().await.unwrap();
    let e = s
        .register_agent(
            "edge-12",
            "cid-12",
            &key("edge-12", "k1"),
            50,
            &[
                plain_rule("fresh.example", "edge-12"),
                plain_rule("taken.example", "edge-12"),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Exists {
                what: "FQDN rule",
                ..
            }
        ),
        "{e}"
    );
    assert!(s.agent("edge-12").await.unwrap().is_none());
    assert!(s.keys("edge-12").await.unwrap().is_empty());
    assert_eq!(s.fqdn_rules().await.unwrap(), before);
    s.register_agent(
        "edge-12",
        "cid-12",
        &key("edge-12", "k1"),
        50,
        &[plain_rule("fresh.example", "edge-12")],
    )
    .await
    .unwrap();
    assert_eq!(s.fqdn_rules().await.unwrap().len(), before.len() + 1);
    s.remove_fqdn_rule("fresh.example").await.unwrap();
    s.remove_fqdn_rule("taken.example").await.unwrap();
    s.delete_agent("edge-12").await.unwrap();

    // Settings: initialised once, then stable.
    let v = s
        .setting_or_init("audience", || "a-1".into())
        .await
        .unwrap();
    assert_eq!(v, "a-1");
    let v = s
        .setting_or_init("audience", || "a-2".into())
        .await
        .unwrap();
    assert_eq!(v, "a-1", "the first value stays");

    // Traffic: batches in, filtered and paged out, pruned by age and count.
    let base = now_micros();
    let batch: Vec<Traffic> = (0..6)
        .map(|i| Traffic {
            at: base + i,
            kind: if i % 2 == 0 {
                TrafficKind::Http
            } else {
                TrafficKind::Egress
            },
            agent: "edge-2".into(),
            host: "app.example".into(),
            path: "/p".into(),
            status: if i == 4 { 502 } else { 200 },
            bytes_in: i,
            bytes_out: 10 * i,
            ..Traffic::default()
        })
        .collect();
    s.insert_traffic(&batch).await.unwrap();
    let all = TrafficFilter {
        limit: 100,
        ..TrafficFilter::default()
    };
    let got = s.traffic(&all).await.unwrap();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].at, base + 5, "newest first");
    let http = s
        .traffic(&TrafficFilter {
            kind: Some(TrafficKind::Http),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(http.len(), 3);
    let bad = s
        .traffic(&TrafficFilter {
            status: Some(502),
            kind: Some(TrafficKind::Http),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!((bad.len(), bad[0].bytes_out), (1, 40));
    let page = s
        .traffic(&TrafficFilter {
            limit: 2,
            offset: 2,
            since: Some(base + 1),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|t| t.at).collect::<Vec<_>>(),
        [base + 3, base + 2]
    );
    // A batch of another kind, long ago: one more block.
    let many: Vec<Traffic> = (0..150)
        .map(|i| Traffic {
            at: base - 1_000_000 + i,
            kind: TrafficKind::Forward,
            ..Traffic::default()
        })
        .collect();
    s.insert_traffic(&many).await.unwrap();
    let forwards = s
        .traffic(&TrafficFilter {
            kind: Some(TrafficKind::Forward),
            limit: 1000,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(forwards.len(), 150);
    // Retention goes by whole blocks (a write batch of one kind, agent,
    // route and target): by age, the blocks that ended before the cutoff.
    assert_eq!(
        s.prune_traffic(base - 500_000, 100).await.unwrap(),
        150,
        "the old block"
    );
    assert_eq!(
        s.prune_traffic(base + 1, 100).await.unwrap(),
        0,
        "a block with newer records stays whole"
    );
    assert_eq!(s.traffic(&all).await.unwrap().len(), 6);
    // By count: the newest blocks that fit; egress (3) fits in 4, http
    // (3 more) does not.
    assert_eq!(s.prune_traffic(0, 4).await.unwrap(), 3, "by count");
    let left = s.traffic(&all).await.unwrap();
    assert!(
        left.iter().all(|t| t.kind == TrafficKind::Egress),
        "{left:?}"
    );
    assert_eq!(left.len(), 3);
    assert_eq!(s.prune_traffic(0, 0).await.unwrap(), 3, "keep none");
    assert!(s.traffic(&all).await.unwrap().is_empty());

    // Many blocks whose spans interleave: every page of every filter is
    // what sorting all records would give.
    let mut written: Vec<Traffic> = Vec::new();
    for b in 0..12i64 {
        let batch: Vec<Traffic> = (0..40i64)
            .map(|i| Traffic {
                // Batches overlap in time; records of one batch are not
                // in time order.
                at: base + b * 3 + (i * 7) % 40,
                kind: TrafficKind::Http,
                agent: format!("a{}", b % 3),
                route: "r".into(),
                host: format!("h{}", i % 2),
                status: if i % 5 == 0 { 404 } else { 200 },
                bytes_in: b * 100 + i,
                ..Traffic::default()
            })
            .collect();
        s.insert_traffic(&batch).await.unwrap();
        written.extend(batch);
    }
    let filters = [
        TrafficFilter::default(),
        TrafficFilter {
            agent: Some("a1".into()),
            ..TrafficFilter::default()
        },
        TrafficFilter {
            host: Some("h0".into()),
            status: Some(404),
            ..TrafficFilter::default()
        },
        TrafficFilter {
            since: Some(base + 20),
            until: Some(base + 50),
            ..TrafficFilter::default()
        },
    ];
    for f in filters {
        let mut expected: Vec<&Traffic> = written
            .iter()
            .filter(|t| {
                f.agent.as_ref().is_none_or(|a| *a == t.agent)
                    && f.host.as_ref().is_none_or(|h| *h == t.host)
                    && f.status.is_none_or(|x| x == t.status)
                    && f.since.is_none_or(|x| t.at >= x)
                    && f.until.is_none_or(|x| t.at < x)
            })
            .collect();
        expected.sort_by_key(|t| std::cmp::Reverse(t.at));
        for (limit, offset) in [(7, 0), (7, 7), (50, 13), (1000, 0), (5, 470)] {
            let got = s
                .traffic(&TrafficFilter {
                    limit,
                    offset,
                    ..f.clone()
                })
                .await
                .unwrap();
            let want: Vec<i64> = expected
                .iter()
                .skip(offset as usize)
                .take(limit as usize)
                .map(|t| t.at)
                .collect();
            assert_eq!(
                got.iter().map(|t| t.at).collect::<Vec<_>>(),
                want,
                "{f:?} limit {limit} offset {offset}"
            );
        }
    }

    // Audit, newest first.
    s.audit("bootstrap", "register", "edge-2", "client id cid-2")
        .await
        .unwrap();
    s.audit("bootstrap", "unregister", "edge-1", "")
        .await
        .unwrap();
    let log = s.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(log[0].at >= log[1].at);
}

/// Replicas and presence: announced, replaced, expired, removed.
async fn presence(s: &Store) {
    let r = |id: &str, url: &str| Replica {
        id: id.into(),
        advertise_url: url.into(),
        draining: false,
    };
    s.announce_replica(&r("gw-a", "tls://10.0.0.1:17200"), 60_000_000)
        .await
        .unwrap();
    s.announce_replica(&r("gw-b", ""), 60_000_000)
        .await
        .unwrap();
    // Already expired: never listed.
    s.announce_replica(&r("gw-dead", "tls://10.0.0.9:17200"), -1)
        .await
        .unwrap();
    let held = |agent: &str, links: i64| Held {
        agent: agent.into(),
        links,
        rtt_us: Some(1500),
        since: 1_000_000,
    };
    s.set_presence("gw-a", &[held("home", 2), held("lab", 1)], 60_000_000)
        .await
        .unwrap();
    s.set_presence(
        "gw-b",
        &[Held {
            rtt_us: None,
            ..held("home", 3)
        }],
        60_000_000,
    )
    .await
    .unwrap();
    s.set_presence("gw-dead", &[held("home", 9)], 60_000_000)
        .await
        .unwrap();
    let ids: Vec<String> = s
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["gw-a", "gw-b"]);
    let home = s.presence("home").await.unwrap();
    assert_eq!(
        home.iter()
            .map(|p| (p.replica.id.as_str(), p.links))
            .collect::<Vec<_>>(),
        [("gw-b", 3), ("gw-a", 2)],
        "most links first; the dead replica's rows are not read"
    );
    assert_eq!(home[1].replica.advertise_url, "tls://10.0.0.1:17200");
    assert_eq!((home[0].rtt_us, home[1].rtt_us), (None, Some(1500)));
    assert_eq!(home[1].since, 1_000_000);
    let all = s.presence_all().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|(a, p)| (a.as_str(), p.replica.id.as_str()))
            .collect::<Vec<_>>(),
        [("home", "gw-b"), ("home", "gw-a"), ("lab", "gw-a")]
    );
    // A replica's rows are replaced whole.
    s.set_presence("gw-a", &[held("lab", 2)], 60_000_000)
        .await
        .unwrap();
    assert_eq!(s.presence("home").await.unwrap().len(), 1);
    // Draining is said; expired presence is not read.
    s.announce_replica(
        &Replica {
            draining: true,
            ..r("gw-b", "")
        },
        60_000_000,
    )
    .await
    .unwrap();
    assert!(s.presence("home").await.unwrap()[0].replica.draining);
    s.set_presence("gw-b", &[held("home", 1)], -1)
        .await
        .unwrap();
    assert!(s.presence("home").await.unwrap().is_empty());
    s.remove_replica("gw-a").await.unwrap();
    assert!(s.presence("lab").await.unwrap().is_empty());
    assert_eq!(s.replicas().await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_replicas_and_presence_expire_and_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).await.unwrap();
    presence(&s).await;
}

#[tokio::test]
async fn postgres_replicas_and_presence_expire_and_are_replaced() {
    if !burrow_e2e::needs::needs(&["postgres"]) {
        return;
    }
    let pg = PgSchema::new().await;
    let s = Store::open(&pg.url).await.unwrap();
    presence(&s).await;
    s.close().await;
    pg.drop().await;
}

fn key_with_time(k: &AgentKey) -> AgentKey {
    AgentKey {
        created_at: k.created_at,
        ..key(&k.agent, &k.name)
    }
}

#[tokio::test]
async fn sqlite_store_does_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).await.unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    exercise(&s).await;
}

#[tokio::test]
async fn postgres_store_does_everything() {
    if !burrow_e2e::needs::needs(&["postgres"]) {
        return;
    }
    let pg = PgSchema::new().await;
    let s = Store::open(&pg.url).await.unwrap();
    assert_eq!(s.backend(), Backend::Postgres);
    exercise(&s).await;
    s.close().await;
    pg.drop().await;
}

#[tokio::test]
async fn committed_writes_survive_a_reopen_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).await.unwrap();
    s.create_agent("kept", "cid", 5).await.unwrap();
    s.add_key(&key("kept", "k1")).await.unwrap();
    // A second process on the same file sees what was acknowledged.
    let other = Store::open_in(dir.path()).await.unwrap();
    assert!(other.agent("kept").await.unwrap().is_some());
    assert_eq!(other.keys("kept").await.unwrap().len(), 1);
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM burrow_schema")
        .fetch_one(&other.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n, SCHEMA_VERSION);
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_postgres_replicas_migrate_once() {
    if !burrow_e2e::needs::needs(&["postgres"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_in(dir.path()).await.unwrap();
    sqlx::query("INSERT INTO burrow_schema (version, name, applied_at) VALUES (99, 'future', 0)")
        .execute(&s.pool)
        .await
        .unwrap();
    s.close().await;
    let e = Store::open_in(dir.path()).await.unwrap_err();
    assert!(e.to_string().contains("upgrade Burrow"), "{e}");

    // Several replicas opening one fresh PostgreSQL schema at once.
    let pg = PgSchema::new().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = pg.url.clone();
        tasks.push(tokio::spawn(async move { Store::open(&url).await }));
    }
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        s.close().await;
    }
    pg.drop().await;
}

#[tokio::test]
async fn bad_urls_are_refused_without_their_password() {
    let e = Store::open("mysql://root:hunter2@db/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BURROW_DATABASE_URL") && !e.contains("hunter2"),
        "{e}"
    );
    assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
}

fn traffic_burst(n: usize, tag: &str) -> Vec<Traffic> {
    (0..n)
        .map(|i| Traffic {
            at: now_micros() + i64::try_from(i).unwrap(),
            kind: TrafficKind::Http,
            agent: "a0".into(),
            route: format!("r{tag}.example"),
            path: format!("/{tag}/{i}/{}", "p".repeat(200)),
            ..Traffic::default()
        })
        .collect()
}

#[tokio::test]
async fn a_full_disk_fails_writes_and_acknowledges_only_what_lasts() {
    if !burrow_e2e::needs::needs(&["root"]) {
        return;
    }
    let disk = burrow_e2e::disk::SmallDisk::new("2m").unwrap();
    let s = Store::open_in(disk.path()).await.unwrap();
    s.create_agent("a0", "cid-a0", 1000).await.unwrap();
    disk.fill().unwrap();
    // Every change is either refused (disk full) or durable.
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        let name = format!("full{i}");
        match s.create_agent(&name, &format!("cid-{name}"), 1000).await {
            Ok(_) => acked.push(name),
            Err(e) => {
                assert!(matches!(e, StoreError::DiskFull(_)), "{e}");
                assert!(e.to_string().contains("disk is full"), "{e}");
                refused += 1;
            }
        }
        let _ = s.insert_traffic(&traffic_burst(50, &i.to_string())).await;
    }
    assert!(refused > 0, "the disk never filled: {acked:?}");
    disk.free().unwrap();
    // Space is back: changes succeed again without a restart, and another
    // process can take the write lock.
    for i in 0..5 {
        let name = format!("after{i}");
        s.create_agent(&name, &format!("cid-{name}"), 1000)
            .await
            .unwrap();
        acked.push(name);
    }
    let other = Store::open_in(disk.path()).await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        other.create_agent("other", "cid-other", 1000),
    )
    .await
    .expect("the other process took the write lock")
    .unwrap();
    acked.push("other".into());
    other.close().await;
    s.close().await;
    drop(s);
    // After a restart: everything acknowledged is there, nothing else.
    let s = Store::open_in(disk.path()).await.unwrap();
    let names: Vec<String> = s
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    for n in &acked {
        assert!(
            names.contains(n),
            "{n} was acknowledged and is gone: {names:?}"
        );
    }
    assert_eq!(names.len(), acked.len() + 1, "{names:?}");
    s.close().await;
}
