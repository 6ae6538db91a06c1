//! Simulated agents for the reconnect-storm benchmark (`bench/storm.sh`):
//! N agents in one process, each holding one raw-TLS link to the gateway
//! (pre-shared key, the gateway's certificate pinned), redialing with the
//! agent's backoff when it drops and honouring the gateway's busy answers
//! (`Retry-After` floor, jitter kept), as `burrow run` does.
//!
//! ```text
//! storm --url tls://127.0.0.1:PORT --thumbprint HEX --psk-file F --agents N
//!       [--delay SECONDS] [--limit SECONDS]
//! ```
//! Prints `all N connected` once every agent is up; then, after the
//! gateway restarts (every link drops), one JSON line: seconds from the
//! first drop until all were connected again, and the dial failures seen
//! meanwhile by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow_mux::Session;
use burrow_transport::handshake::{self, HandshakeError};
use burrow_transport::tls::{ServerTrust, Thumbprint, client_config};
use burrow_transport::{Backoff, Dialer, TransportError, TunnelUrl, proxy::ProxyEnv};
use burrow_wire::{Hello, PROTOCOL_VERSION, RejectCode, capabilities};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Shared {
    connected: AtomicUsize,
    failures: Mutex<BTreeMap<String, u64>>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A failure's kind, and the wait the gateway asked for, if it did.
fn kind(e: &(dyn std::error::Error + 'static)) -> (String, Option<Duration>) {
    if let Some(h) = e.downcast_ref::<HandshakeError>() {
        return match h {
            HandshakeError::Rejected {
                code: RejectCode::Busy,
                ..
            } => (
                "busy (hello refused)".into(),
                Some(Duration::from_secs(burrow_wire::BUSY_RETRY_AFTER_SECS)),
            ),
            HandshakeError::Rejected { code, .. } => (format!("refused {code:?}"), None),
            other => (format!("hello: {other}"), None),
        };
    }
    if let Some(t) = e.downcast_ref::<TransportError>() {
        return match t {
            TransportError::Busy { retry_after } => ("busy (503)".into(), Some(*retry_after)),
            TransportError::Connect { .. } => ("connect refused".into(), None),
            TransportError::Timeout(_) => ("timeout".into(), None),
            _ => ("tls or transport".into(), None),
        };
    }
    ("other".into(), None)
}

async fn agent(
    i: usize,
    dialer: Arc<Dialer>,
    psk: Arc<String>,
    delay: Duration,
    shared: Arc<Shared>,
) {
    let mut backoff = Backoff::new(delay, Duration::from_secs(60));
    loop {
        let dialed: Res<Session> = async {
            let mut link = dialer.dial(None, Duration::from_secs(15)).await?;
            let hello = Hello {
                version: PROTOCOL_VERSION,
                agent_name: format!("sim-{i}"),
                software_version: env!("CARGO_PKG_VERSION").into(),
                capabilities: vec![capabilities::STREAMS.into()],
                credential: psk.to_string(),
            };
            handshake::dial(&mut link, hello).await?;
            let config = burrow_mux::Config {
                dialer: true,
                heartbeat: Some(Duration::from_secs(30)),
                ..burrow_mux::Config::default()
            };
            let (session, mut incoming) = Session::new(link.reader, link.writer, config);
            tokio::spawn(async move { while incoming.next().await.is_some() {} });
            Ok(session)
        }
        .await;
        match dialed {
            Ok(session) => {
                backoff.reset();
                shared.connected.fetch_add(1, Ordering::SeqCst);
                session.closed().await;
                shared.connected.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => {
                let (k, asked) = kind(e.as_ref());
                *shared
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(k)
                    .or_default() += 1;
                let d = match asked {
                    Some(a) => backoff.next_delay_after(&mut rand::rng(), a),
                    None => backoff.next_delay(&mut rand::rng()),
                };
                tokio::time::sleep(d).await;
                continue;
            }
        }
        // Dropped: the first redial waits as an agent's does.
        let d = backoff.next_delay(&mut rand::rng());
        tokio::time::sleep(d).await;
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = TunnelUrl::parse(&arg(&args, "--url").ok_or("--url")?)?;
    let thumb: Thumbprint = arg(&args, "--thumbprint")
        .ok_or("--thumbprint")?
        .parse()
        .map_err(|e| format!("--thumbprint: {e}"))?;
    let psk = std::fs::read_to_string(arg(&args, "--psk-file").ok_or("--psk-file")?)?
        .trim()
        .to_owned();
    let n: usize = arg(&args, "--agents").ok_or("--agents")?.parse()?;
    let delay = Duration::from_secs_f64(arg(&args, "--delay").map_or(Ok(1.0), |d| d.parse())?);
    let limit = Duration::from_secs(arg(&args, "--limit").map_or(Ok(300), |d| d.parse())?);
    let cfg = client_config(
        None,
        &ServerTrust::Pinned(vec![thumb]),
        "gateway",
        "",
        url.scheme.alpn(),
    )?;
    let dialer = Arc::new(Dialer::new(url, Some(cfg), &ProxyEnv::default())?);
    let shared = Arc::new(Shared {
        connected: AtomicUsize::new(0),
        failures: Mutex::new(BTreeMap::new()),
    });
    let psk = Arc::new(psk);
    let started = Instant::now();
    for i in 0..n {
        tokio::spawn(agent(i, dialer.clone(), psk.clone(), delay, shared.clone()));
    }
    let tick = Duration::from_millis(20);
    let wait = |want: Box<dyn Fn(usize) -> bool + Send>| {
        let shared = shared.clone();
        async move {
            let since = Instant::now();
            while !want(shared.connected.load(Ordering::SeqCst)) {
                if since.elapsed() > limit {
                    return Err(format!(
                        "gave up after {limit:?}: {} connected",
                        shared.connected.load(Ordering::SeqCst)
                    ));
                }
                tokio::time::sleep(tick).await;
            }
            Ok(since.elapsed())
        }
    };
    let first = wait(Box::new(move |c| c == n)).await?;
    println!("all {n} connected in {:.2} s", first.as_secs_f64());
    shared
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    // The storm: wait for the drop, then for every agent to be back.
    wait(Box::new(move |c| c < n)).await?;
    let dropped_at = Instant::now();
    wait(Box::new(move |c| c == n)).await?;
    let back = dropped_at.elapsed();
    let failures = shared
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let list: Vec<String> = failures
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    println!(
        "{{\"agents\": {n}, \"reconnected_all_s\": {:.3}, \"total_s\": {:.1}, \"failures\": {{{}}}}}",
        back.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        list.join(", ")
    );
    Ok(())
}
