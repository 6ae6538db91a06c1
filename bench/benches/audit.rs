//! The traffic audit trail's write cost: 1,000 records as the edge makes
//! them, inserted into a SQLite file (the embedded default, WAL mode) with
//! `Store::insert_traffic`, beside building the same records alone in the
//! same run (Criterion reports both per record). And its read cost at the
//! default retention (1,000,000 records, in the writer's 8,192-record
//! batches from 50 clients): the newest page, and a page by a host no
//! record has, which reads every block.
// Criterion's macros generate undocumented items; setup failures panic.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use burrow_store::{Store, Traffic, TrafficFilter, now_micros};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn record(i: i64) -> Traffic {
    Traffic {
        at: now_micros() + i,
        kind: burrow_store::TrafficKind::Http,
        agent: "home".into(),
        route: "app.tunnel.example.com".into(),
        client: "203.0.113.7:51234".into(),
        method: "GET".into(),
        host: "app.tunnel.example.com".into(),
        path: "/static/app.js".into(),
        status: 200,
        target: "http://10.0.0.5:8080".into(),
        bytes_in: 412,
        bytes_out: 1_337,
        duration_ms: 1,
        ..Traffic::default()
    }
}

fn audit(c: &mut Criterion) {
    const N: usize = 1_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(Store::open_in(dir.path())).unwrap();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("build 1000 records", |b| {
        b.iter(|| black_box((0..N as i64).map(record).collect::<Vec<_>>()))
    });
    g.bench_function("insert 1000 records (SQLite file)", |b| {
        b.to_async(&rt).iter_batched(
            || (0..N as i64).map(record).collect::<Vec<_>>(),
            |batch| {
                let store = &store;
                async move { store.insert_traffic(&batch).await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn listing(c: &mut Criterion) {
    const RECORDS: i64 = 1_000_000;
    const BATCH: i64 = 8_192;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(Store::open_in(dir.path())).unwrap();
    rt.block_on(async {
        let mut i = 0;
        while i < RECORDS {
            let batch: Vec<Traffic> = (i..(i + BATCH).min(RECORDS))
                .map(|n| Traffic {
                    client: format!("203.0.113.{}:{}", n % 50, 40_000 + n % 50),
                    ..record(n * 15)
                })
                .collect();
            store.insert_traffic(&batch).await.unwrap();
            i += BATCH;
        }
    });
    let mut g = c.benchmark_group("audit listing, 1,000,000 records");
    g.sample_size(10);
    let page = |host: Option<&str>| TrafficFilter {
        host: host.map(str::to_owned),
        limit: 50,
        ..TrafficFilter::default()
    };
    g.bench_function("newest 50", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(store.traffic(&page(None)).await.unwrap().len(), 50);
        })
    });
    g.bench_function("50 by a host no record has (reads every block)", |b| {
        b.to_async(&rt).iter(|| async {
            let none = store.traffic(&page(Some("elsewhere.example.com"))).await;
            assert!(none.unwrap().is_empty());
        })
    });
    g.finish();
}

criterion_group!(benches, audit, listing);
criterion_main!(benches);
