//! The probe and metrics listener of the gateway and the agent, and the
//! check behind `burrow ready`.
//!
//! One small HTTP/1.1 server on an address of the operator's choosing
//! (loopback, or a pod's port for Kubernetes probes), with three pages:
//! - `GET /healthz`: 200 while the process serves at all (a liveness probe).
//! - `GET /ready`: 200 when it should be given work, else 503 with the
//!   reason in the body (a readiness probe).
//! - `GET /metrics`: Prometheus metrics in the OpenMetrics text format,
//!   when the process has them.
//!
//! Nothing else is served, and nothing it serves takes credentials: keep
//! the address off the public internet.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub use prometheus_client;

/// The content type of [`Probes::metrics`]' text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the process should get work now: `Err` says why not.
pub type ReadyFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What the listener asks the process.
#[derive(Clone)]
pub struct Probes {
    /// The readiness check, run per `/ready` request (bound it: a probe
    /// that hangs is a failed probe).
    pub ready: Arc<dyn Fn() -> ReadyFuture + Send + Sync>,
    /// The metrics text, if the process has metrics.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

/// Longest one readiness check may take before it counts as not ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Answers one request on the probe listener.
pub async fn answer(probes: &Probes, method: &Method, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        );
    }
    match path {
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/ready" => match tokio::time::timeout(READY_TIMEOUT, (probes.ready)()).await {
            Ok(Ok(())) => respond(StatusCode::OK, TEXT, "ready\n".into()),
            Ok(Err(why)) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {why}\n"),
            ),
            Err(_) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!(
                    "not ready: the check took longer than {} s\n",
                    READY_TIMEOUT.as_secs()
                ),
            ),
        },
        "/metrics" => match &probes.metrics {
            Some(m) => respond(StatusCode::OK, METRICS_CONTENT_TYPE, m()),
            None => respond(
                StatusCode::NOT_FOUND,
                TEXT,
                "metrics are not enabled here\n".into(),
            ),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: /healthz, /ready and /metrics are served here\n".into(),
        ),
    }
}

/// Most connections the probe listener serves at once; more wait in the
/// accept queue.
const MAX_CONNECTIONS: usize = 64;

/// Serves the probe pages on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, probes: Probes, stop: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "probe listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: Request<Incoming>| {
                let probes = probes.clone();
                async move { Ok::<_, Infallible>(answer(&probes, req.method(), req.uri().path()).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

/// Why [`check`] found the process not ready.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing answered at the address.
    #[error("cannot reach the probe listener at {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// It answered something that is not HTTP.
    #[error("the probe listener at {0} did not answer HTTP")]
    NotHttp(SocketAddr),
    /// It said not ready (or anything but 200).
    #[error("{status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// No answer in time.
    #[error("the probe listener at {0} did not answer within {1} s")]
    Timeout(SocketAddr, u64),
}

/// Asks the probe listener at `addr` for `path` (`/ready` or `/healthz`);
/// `Ok` with its words when it answered 200.
pub async fn check(addr: SocketAddr, path: &str, within: Duration) -> Result<String, CheckError> {
    tokio::time::timeout(within, check_inner(addr, path))
        .await
        .unwrap_or(Err(CheckError::Timeout(addr, within.as_secs())))
}

async fn check_inner(addr: SocketAddr, path: &str) -> Result<String, CheckError> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| CheckError::Connect { addr, source })?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|source| CheckError::Connect { addr, source })?;
    let mut buf = Vec::new();
    // An answer is a few hundred bytes; a bound keeps a wrong address
    // (a stream of something else) from filling memory.
    let _ = (&mut tcp).take(64 * 1024).read_to_end(&mut buf).await;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let body_at = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(CheckError::NotHttp(addr)),
    };
    let status = resp.code.ok_or(CheckError::NotHttp(addr))?;
    let body = String::from_utf8_lossy(&buf[body_at..]).trim().to_owned();
    if status == 200 {
        Ok(body)
    } else {
        Err(CheckError::Status { status, body })
    }
}

/// Build information as Prometheus shows it: `burrow_build_info{version}`,
/// always 1.
pub fn register_build_info(registry: &mut prometheus_client::registry::Registry) {
    let info = prometheus_client::metrics::info::Info::new(vec![(
        "version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    )]);
    registry.register("burrow_build", "Burrow's version", info);
}

/// Label sets both sides' metrics use: fixed lists, never per visitor.
pub mod labels {
    use prometheus_client::encoding::EncodeLabelSet;

    /// What a stream carries (`forward`, `egress`, `http`).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    pub struct Kind {
        /// The kind.
        pub kind: &'static str,
    }

    /// Bytes of a kind, one way (`in`, `out`).
    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    pub struct Bytes {
        /// The kind.
        pub kind: &'static str,
        /// `in` or `out`.
        pub direction: &'static str,
    }

    /// Why something was refused.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    pub struct Reason {
        /// The reason.
        pub reason: &'static str,
    }
}

/// Brings `counter` up to `total`, a count kept elsewhere (it never goes
/// down).
pub fn catch_up(counter: &prometheus_client::metrics::counter::Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The registry's text, in the OpenMetrics format.
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        tracing::warn!("metrics could not be encoded");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(ready: Result<(), String>) -> Probes {
        let mut reg = prometheus_client::registry::Registry::default();
        register_build_info(&mut reg);
        let reg = Arc::new(reg);
        Probes {
            ready: Arc::new(move || {
                let r = ready.clone();
                Box::pin(async move { r })
            }),
            metrics: Some(Arc::new(move || encode(&reg))),
        }
    }

    async fn listener(p: Probes) -> (SocketAddr, CancellationToken) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(serve(l, p, stop.clone()));
        (addr, stop)
    }

    #[tokio::test]
    async fn ready_healthz_and_metrics_answer_as_probes_expect() {
        let (addr, stop) = listener(probes(Ok(()))).await;
        let t = Duration::from_secs(5);
        assert_eq!(check(addr, "/ready", t).await.expect("ready"), "ready");
        assert_eq!(check(addr, "/healthz", t).await.expect("alive"), "ok");
        let m = check(addr, "/metrics", t).await.expect("metrics");
        assert!(
            m.contains(&format!(
                "burrow_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{m}"
        );
        match check(addr, "/admin", t).await {
            Err(CheckError::Status { status: 404, .. }) => {}
            other => panic!("{other:?}"),
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn not_ready_is_a_503_with_the_reason_and_a_dead_address_is_said() {
        let (addr, stop) = listener(probes(Err("draining".into()))).await;
        match check(addr, "/ready", Duration::from_secs(5)).await {
            Err(CheckError::Status { status: 503, body }) => {
                assert_eq!(body, "not ready: draining");
            }
            other => panic!("{other:?}"),
        }
        // Liveness is not readiness.
        assert!(
            check(addr, "/healthz", Duration::from_secs(5))
                .await
                .is_ok()
        );
        stop.cancel();
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("addr");
        drop(dead);
        match check(dead_addr, "/ready", Duration::from_secs(5)).await {
            Err(e @ CheckError::Connect { .. }) => {
                assert!(e.to_string().contains(&dead_addr.to_string()), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hanging_check_is_not_ready_and_other_methods_are_refused() {
        let p = Probes {
            ready: Arc::new(|| Box::pin(std::future::pending())),
            metrics: None,
        };
        tokio::time::pause();
        let r = answer(&p, &Method::GET, "/ready").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::resume();
        let r = answer(&p, &Method::POST, "/healthz").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = answer(&p, &Method::GET, "/metrics").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
