//! A fault relay: a TCP relay between an agent and its gateway (on
//! 127.0.0.1) that can kill every connection through it, blackhole them
//! (stop moving bytes while keeping them open, as a dead path does), flip
//! bytes past TCP's checksum (the bytes it relays are already checked), and
//! delay each chunk. This kernel has no `sch_netem`, so faults are made in
//! user space, as the links see them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does to the bytes, switched while it runs.
#[derive(Default)]
struct Faults {
    blackhole: AtomicBool,
    /// Bytes still to corrupt, one per chunk, agent to gateway.
    corrupt: AtomicU64,
    delay_ms: AtomicU64,
}

/// Counters, for the reliability report.
#[derive(Default, Debug)]
pub struct RelayStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Bytes relayed, both ways.
    pub bytes: AtomicU64,
    /// Bytes flipped.
    pub corrupted: AtomicU64,
    /// Connections killed.
    pub killed: AtomicU64,
}

/// A running relay; stops when dropped.
pub struct FaultRelay {
    /// Where agents dial instead of the gateway.
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    /// Counters.
    pub stats: Arc<RelayStats>,
    kill: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultRelay {
    /// Relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(RelayStats::default());
        let (kill, kill_rx) = watch::channel(0u64);
        let (f, s) = (faults.clone(), stats.clone());
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::Relaxed);
                let (f, s, mut kill_rx) = (f.clone(), s.clone(), kill_rx.clone());
                kill_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let killed = tokio::select! {
                        () = relay((&down, &up), &f, &s) => false,
                        _ = kill_rx.changed() => true,
                    };
                    if killed {
                        s.killed.fetch_add(1, Ordering::Relaxed);
                        // A reset both ways, as a dropped path or a crashed
                        // middlebox gives.
                        let _ = down.set_zero_linger();
                        let _ = up.set_zero_linger();
                    }
                });
            }
        });
        Ok(FaultRelay {
            addr,
            faults,
            stats,
            kill,
            task,
        })
    }

    /// Resets every connection through the relay now.
    pub fn kill_all(&self) {
        self.kill.send_modify(|n| *n += 1);
    }

    /// Stops (`true`) or resumes moving bytes; connections stay open.
    pub fn blackhole(&self, on: bool) {
        self.faults.blackhole.store(on, Ordering::Relaxed);
    }

    /// Flips one byte in each of the next `n` chunks from the agent (the
    /// data of a download).
    pub fn corrupt(&self, n: u64) {
        self.faults.corrupt.store(n, Ordering::Relaxed);
    }

    /// Holds each chunk this long before passing it on.
    pub fn delay(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.faults.delay_ms.store(ms, Ordering::Relaxed);
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.task.abort();
        self.kill_all();
    }
}

/// Copies both ways until either side ends.
async fn relay((down, up): (&TcpStream, &TcpStream), f: &Faults, s: &RelayStats) {
    tokio::select! {
        () = copy(down, up, f, s, true) => {}
        () = copy(up, down, f, s, false) => {}
    }
}

async fn copy(from: &TcpStream, to: &TcpStream, f: &Faults, s: &RelayStats, from_agent: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while f.blackhole.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let delay = f.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        while f.blackhole.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if from_agent
            && f.corrupt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1))
                .is_ok()
        {
            buf[n / 2] ^= 0x5a;
            s.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        if write_all(to, &buf[..n]).await.is_err() {
            return;
        }
        s.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `conn` to its end, hashing; (bytes, SHA-256, how it ended).
pub async fn read_hashed(conn: &mut TcpStream) -> (u64, [u8; 32], std::io::Result<()>) {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match conn.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) => break Err(e),
        }
    };
    let _ = conn.shutdown().await;
    (n, h.finalize().into(), end)
}

/// Writes a fault test's figures to `docs/reliability/NAME.md` (the suite
/// regenerates them on every run; `docs/reliability.md` links them).
pub fn report(name: &str, markdown: &str) -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reliability");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.md")), markdown)
}
