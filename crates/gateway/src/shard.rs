//! Shards: single-threaded runtimes, one per core, each on a thread of its
//! own (`burrow-shard-N`). Connections are accepted on the main runtime and
//! handed, socket and all, to a shard, which serves them from then on: a
//! visitor connection, or an agent link with the streams it carries.
//!
//! Why: a request through the tunnel wakes the visitor's task, the link's
//! writer, the link's reader and the visitor's task again. When those run
//! on one thread the wake-ups are queue pushes; on a work-stealing pool
//! they are mostly cross-thread wake-ups (a futex and an inter-processor
//! interrupt each). Visitors therefore go to the shard of the link they
//! use when that is known at accept time (forwards), and otherwise use a
//! link of their own shard when the agent has one there
//! ([`crate::Registry::pick`]).
//!
//! Shard threads live as long as the process: tasks and database
//! connections made on them stay usable from everywhere.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tracing::{debug, warn};

thread_local! {
    /// The shard this thread runs, if it runs one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The shard the calling thread runs, if any.
pub(crate) fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Makes the calling thread count as shard `idx` (tests of shard-aware
/// choices without shard threads).
#[cfg(test)]
pub(crate) fn pretend(idx: Option<usize>) {
    CURRENT.with(|c| c.set(idx));
}

struct Shard {
    handle: Handle,
    /// Agent links it runs now.
    links: Arc<AtomicUsize>,
    /// Connections it serves now, links included.
    open: Arc<AtomicUsize>,
}

/// The gateway's shards; none means everything runs on the main runtime.
#[derive(Default)]
pub(crate) struct Shards {
    shards: Vec<Shard>,
}

/// Counts a connection (or a link) on its shard until dropped.
pub(crate) struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shards {
    /// Starts `n` shards. A shard whose runtime or thread cannot be made
    /// is left out (with a warning); with none, connections are served on
    /// the caller's runtime.
    pub(crate) fn start(n: usize) -> Self {
        let mut shards = Vec::with_capacity(n);
        for idx in 0..n {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!(shard = idx, error = %e, "no runtime for a shard; serving on fewer threads");
                    continue;
                }
            };
            let handle = rt.handle().clone();
            // Its place among the shards that did start: what `current`
            // answers on its thread, and the index the others find it at.
            let place = shards.len();
            let spawned = std::thread::Builder::new()
                .name(format!("burrow-shard-{place}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(place)));
                    // Runs the tasks it is given until the process ends.
                    rt.block_on(std::future::pending::<()>());
                });
            match spawned {
                Ok(_) => shards.push(Shard {
                    handle,
                    links: Arc::new(AtomicUsize::new(0)),
                    open: Arc::new(AtomicUsize::new(0)),
                }),
                Err(e) => {
                    warn!(shard = idx, error = %e, "no thread for a shard; serving on fewer threads");
                }
            }
        }
        Shards { shards }
    }

    /// How many shards run.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    /// Serves `tcp` with `serve` on the shard with the fewest agent links,
    /// of those the one with the fewest open connections: an agent's links
    /// (which may come next on any connection) spread over the shards, and
    /// visitors over the shards that hold links.
    pub(crate) fn serve_least_busy<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let idx = self
            .shards
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| {
                (
                    s.links.load(Ordering::Relaxed),
                    s.open.load(Ordering::Relaxed),
                )
            })
            .map(|(i, _)| i);
        self.serve_on(idx, tcp, serve);
    }

    /// Counts an agent link on the calling thread's shard until the
    /// returned guard is dropped; `None` off the shards.
    pub(crate) fn hold_link(&self) -> Option<Open> {
        let shard = self.shards.get(current()?)?;
        shard.links.fetch_add(1, Ordering::Relaxed);
        Some(Open(shard.links.clone()))
    }

    /// Serves `tcp` with `serve` on shard `idx` (here, without one).
    pub(crate) fn serve_on<F, Fut>(&self, idx: Option<usize>, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(shard) = idx.and_then(|i| self.shards.get(i)) else {
            tokio::spawn(serve(tcp));
            return;
        };
        // The socket leaves this runtime's reactor here and joins the
        // shard's there (a socket wakes the runtime it is registered with).
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "connection lost while handing it to a shard");
                return;
            }
        };
        shard.open.fetch_add(1, Ordering::Relaxed);
        let open = Open(shard.open.clone());
        shard.handle.spawn(async move {
            let _open = open;
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => debug!(error = %e, "connection lost while handing it to a shard"),
            }
        });
    }

    /// Runs `fut` on shard `idx` (here, without one).
    pub(crate) fn spawn_on<Fut>(&self, idx: usize, fut: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self.shards.get(idx % self.shards.len().max(1)) {
            Some(shard) => drop(shard.handle.spawn(fut)),
            None => drop(tokio::spawn(fut)),
        }
    }
}

/// How many shards to run: `TOKIO_WORKER_THREADS` when set (the main
/// runtime's worker count too), else one per core.
pub(crate) fn default_count() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_served_on_the_least_busy_shard_with_its_socket() {
        let shards = Shards::start(2);
        assert_eq!(shards.len(), 2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut seen = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
            let (tcp, _) = listener.accept().await.expect("accept");
            let (tx, rx) = tokio::sync::oneshot::channel();
            shards.serve_least_busy(tcp, move |mut tcp| async move {
                use tokio::io::AsyncWriteExt;
                // The socket works on the shard's own reactor.
                let _ = tcp.write_all(b"hi").await;
                let _ = tx.send(current());
                // Held open: the next connection goes elsewhere.
                std::future::pending::<()>().await;
            });
            seen.push(rx.await.expect("served"));
        }
        // Two open on different shards; the third joins one of them.
        assert_eq!(&seen[..2], &[Some(0), Some(1)]);
        assert!(seen[2].is_some());
        for c in &mut clients {
            use tokio::io::AsyncReadExt;
            let mut b = [0u8; 2];
            c.read_exact(&mut b).await.expect("read");
            assert_eq!(&b, b"hi");
        }
        assert_eq!(current(), None, "the test's own thread runs no shard");
    }
}
