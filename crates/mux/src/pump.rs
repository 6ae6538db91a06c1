//! [`pump`]: move bytes between a stream and a TCP connection.

use std::io;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::{MuxError, MuxStream, ResetCode};

/// Most bytes read from TCP per chunk. The buffer is allocated only once the
/// socket is readable, so an idle connection holds no buffer at all.
const CHUNK: usize = 64 * 1024;
/// Fewest bytes read per chunk.
const MIN_CHUNK: usize = 4 * 1024;

/// How a [`pump`] ended, with the bytes moved each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PumpOutcome {
    /// Bytes read from TCP and sent on the stream.
    pub tcp_to_stream: u64,
    /// Bytes received on the stream and written to TCP.
    pub stream_to_tcp: u64,
    /// `None` when both directions closed cleanly; otherwise what broke.
    pub error: Option<String>,
}

enum Broke {
    Tcp(io::Error),
    Stream(MuxError),
}

async fn write_all(tcp: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        tcp.writable().await?;
        match tcp.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Joins `stream` and `tcp` until both directions are done.
///
/// A TCP EOF becomes a stream half-close and the reverse, so protocols that
/// half-close (HTTP/1.0 clients, `git`, `nc -N`) work. A reset or lost link
/// on the stream resets the TCP connection (RST, not FIN), so the client
/// sees the failure; a TCP error resets the stream.
pub async fn pump(stream: MuxStream, tcp: TcpStream) -> PumpOutcome {
    let _ = tcp.set_nodelay(true);
    // Split so the read side goes through `AsyncRead`: after a partial read
    // tokio clears readiness itself, saving the extra `recvfrom` that only
    // returns EAGAIN (one per request in a keep-alive load).
    let (mut rd, wr) = tcp.into_split();
    let tcp: &TcpStream = wr.as_ref();
    let mut up_n = 0u64;
    let mut down_n = 0u64;
    let up = async {
        // Sized from the last read: bulk transfers read 64 KiB at a time,
        // chatty ones 4 KiB. The buffer is handed off whole with each chunk,
        // so nothing is held while the socket is idle.
        let mut want = MIN_CHUNK;
        loop {
            rd.readable().await.map_err(Broke::Tcp)?;
            let mut buf = BytesMut::with_capacity(want);
            match rd.read_buf(&mut buf).await {
                Ok(0) => return stream.finish().await.map_err(Broke::Stream),
                Ok(n) => {
                    up_n += n as u64;
                    want = if n == want {
                        (want * 2).min(CHUNK)
                    } else {
                        (n * 2).clamp(MIN_CHUNK, CHUNK)
                    };
                    stream.send(buf.freeze()).await.map_err(Broke::Stream)?;
                }
                Err(e) => return Err(Broke::Tcp(e)),
            }
        }
    };
    let down = async {
        while let Some(chunk) = stream.recv().await.map_err(Broke::Stream)? {
            down_n += chunk.len() as u64;
            // A slow client can keep this write waiting for long; a stream
            // that breaks meanwhile must reset the client now, not when the
            // write completes (or never, at shutdown: the process would exit
            // and the kernel would close the socket with a clean FIN).
            tokio::select! {
                r = write_all(tcp, &chunk) => r.map_err(Broke::Tcp)?,
                e = stream.broken() => return Err(Broke::Stream(e)),
            }
        }
        socket2::SockRef::from(&tcp)
            .shutdown(std::net::Shutdown::Write)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotConnected {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(Broke::Tcp)
    };
    let result = tokio::try_join!(up, down);
    let error = match result {
        Ok(_) => None,
        Err(Broke::Tcp(e)) => {
            stream.reset(ResetCode::ConnectionReset);
            Some(format!("tcp: {e}"))
        }
        Err(Broke::Stream(e)) => {
            // Abort the TCP connection so the client sees a reset, not EOF.
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(std::time::Duration::ZERO));
            Some(format!("tunnel: {e}"))
        }
    };
    // `forget`: dropping the write half would send a FIN, and a client that
    // must see a reset would read a clean EOF first. The socket closes (with
    // the RST set up above, on failure) when the read half goes.
    wr.forget();
    drop(rd);
    drop(stream);
    PumpOutcome {
        tcp_to_stream: up_n,
        stream_to_tcp: down_n,
        error,
    }
}
