//! The TLS streams the relay gets. A peer that closes TCP without a TLS close_notify is taken
//! as a close, as OpenSSL-based proxies take it: Redis servers and clients routinely skip it,
//! and RESP frames its own messages, so a cut reply is seen as one by the client anyway.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TLS stream whose missing close_notify reads as end of stream.
#[derive(Debug)]
pub struct Stream<S>(pub(super) S);

impl<IO> Stream<tokio_rustls::client::TlsStream<IO>> {
    /// The session's state (version, cipher, resumption).
    pub fn session(&self) -> &rustls::CommonState {
        self.0.get_ref().1
    }
}

impl Stream<tokio_rustls::client::TlsStream<crate::workers::Socket>> {
    /// Moves the socket to the current thread's event loop (see [`crate::workers::Socket`]).
    pub fn follow(&mut self) -> io::Result<()> {
        self.0.get_mut().0.follow()
    }
}

impl<IO> Stream<tokio_rustls::server::TlsStream<IO>> {
    /// The session's state (version, cipher, resumption).
    pub fn session(&self) -> &rustls::CommonState {
        self.0.get_ref().1
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
