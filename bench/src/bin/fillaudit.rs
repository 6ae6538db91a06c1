//! Fills a gateway's embedded store with traffic records for one agent,
//! as the edge would have written them, for `bench/ui.sh` (the UI's
//! Traffic page over a full audit trail).
//!
//! ```text
//! fillaudit DATA_DIR AGENT RECORDS HOSTS
//! ```
//! Records are spread over `HOSTS` host names `m0.tunnel.test`… and over
//! the last hours (one every 50 ms, the newest now), in the writer's
//! 8,192-record batches; statuses are mostly 200, some 404 and 502.

use std::path::PathBuf;

use burrow_store::{Store, Traffic, TrafficKind, now_micros};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BATCH: u64 = 8_192;

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, agent, records, hosts] = args.as_slice() else {
        return Err("usage: fillaudit DATA_DIR AGENT RECORDS HOSTS".into());
    };
    let (records, hosts): (u64, u64) = (records.parse()?, hosts.parse()?);
    let store = Store::open_in(&PathBuf::from(dir)).await?;
    let now = now_micros();
    let mut i = 0;
    while i < records {
        let batch: Vec<Traffic> = (i..(i + BATCH).min(records))
            .map(|n| {
                let host = format!("m{}.tunnel.test", n % hosts.max(1));
                Traffic {
                    at: now - i64::try_from((records - n) * 50_000).unwrap_or(0),
                    kind: TrafficKind::Http,
                    agent: agent.clone(),
                    route: host.clone(),
                    client: format!("203.0.113.{}:{}", n % 50, 40_000 + n % 50),
                    method: "GET".into(),
                    host,
                    path: format!("/page/{}", n % 97),
                    status: match n % 50 {
                        0 => 502,
                        1..=3 => 404,
                        _ => 200,
                    },
                    target: "http://127.0.0.1:18421".into(),
                    bytes_in: 412,
                    bytes_out: 1_337,
                    duration_ms: 1,
                    ..Traffic::default()
                }
            })
            .collect();
        store.insert_traffic(&batch).await?;
        i += BATCH;
    }
    println!("{records} records for {agent}");
    Ok(())
}
