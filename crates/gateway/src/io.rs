//! Reading off a connection before it is handed on: the one head reader
//! (the edge's HTTP/1.1 path and the egress proxy) and the one rewinding
//! reader (bytes read while deciding what a connection is, put back in
//! front for whoever serves it).

use std::io;
use std::pin::Pin;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Room kept free in a head buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// How reading a head ended.
pub(crate) enum Head<T, E> {
    /// `parse` found a whole head.
    Read(T),
    /// `parse` refused what came.
    Refused(E),
    /// The peer closed, the read failed, or the deadline passed first.
    Ended,
}

/// Reads from `r` into `buf` until `parse` finds a whole head at its start
/// (`Ok(Some)`) or refuses it (`Err`); `Ok(None)` asks for more. The
/// wait ends at `deadline`, kept with `timer`: a connection re-arms one
/// timer rather than making one per head.
pub(crate) async fn read_head<R, T, E>(
    r: &mut R,
    buf: &mut BytesMut,
    deadline: Instant,
    timer: &mut Pin<&mut Sleep>,
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Head<T, E>
where
    R: AsyncRead + Unpin,
{
    loop {
        match parse(buf) {
            Ok(Some(h)) => return Head::Read(h),
            Ok(None) => {}
            Err(e) => return Head::Refused(e),
        }
        let read = loop {
            tokio::select! {
                n = read_more(r, buf) => break Some(n),
                () = timer.as_mut() => {
                    if Instant::now() >= deadline {
                        break None;
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        };
        match read {
            Some(Ok(n)) if n > 0 => {}
            _ => return Head::Ended,
        }
    }
}

/// Reads what is there into `buf`, growing it by a chunk when it is
/// nearly full.
pub(crate) async fn read_more<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    r.read_buf(buf).await
}

/// A connection with bytes already read from it put back in front.
pub(crate) struct Rewind<I> {
    pre: BytesMut,
    io: I,
}

impl<I> Rewind<I> {
    /// `io`, whose next bytes are `pre`.
    pub(crate) fn new(pre: BytesMut, io: I) -> Self {
        Rewind { pre, io }
    }

    /// The connection, and what was put back but not yet read.
    pub(crate) fn into_parts(self) -> (I, BytesMut) {
        (self.io, self.pre)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            let front = self.pre.split_to(n);
            buf.put_slice(&front);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_rewound_connection_reads_what_was_put_back_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        let mut r = Rewind::new(BytesMut::from(&b"hello"[..]), b);
        let mut got = [0u8; 11];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        let (_, rest) = r.into_parts();
        assert!(rest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_is_read_whole_refused_or_given_up_at_the_deadline() {
        let find = |b: &[u8]| -> Result<Option<usize>, ()> {
            if b.starts_with(b"bad") {
                return Err(());
            }
            Ok(b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4))
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GET / HTTP/1.1\r\n\r\nrest")
            .await
            .unwrap();
        assert!(matches!(
            read_head(&mut b, &mut buf, deadline, &mut timer, find).await,
            Head::Read(18)
        ));
        let mut buf = BytesMut::from(&b"bad"[..]);
        assert!(matches!(
            read_head(&mut b, &mut buf, deadline, &mut timer, find).await,
            Head::Refused(())
        ));
        let mut buf = BytesMut::new();
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GET / HT")
            .await
            .unwrap();
        assert!(matches!(
            read_head(&mut b, &mut buf, deadline, &mut timer, find).await,
            Head::Ended
        ));
        assert!(Instant::now() >= deadline);
    }
}
