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

    /// For a connection kept idle (`prewarm`): takes in, without waiting, the TLS records
    /// the server sent since the handshake. Those are its session tickets, which then go to
    /// the section's session store at once; left unread until a client takes the connection,
    /// the refill would dial with an empty store (a full handshake: a certificate chain to
    /// verify here, a signature to make on the server). `false`: the server closed the
    /// connection (close_notify or end of stream) or sent something broken; drop it. Any
    /// application data stays buffered for the relay.
    pub fn absorb(&mut self) -> bool {
        let (sock, tls) = self.0.get_mut();
        let Some(tcp) = sock.tcp() else { return false };
        let mut from = TryRead(tcp);
        while tls.wants_read() {
            match tls.read_tls(&mut from) {
                Ok(0) => return false,
                Ok(_) => match tls.process_new_packets() {
                    Ok(state) if state.peer_has_closed() => return false,
                    Ok(_) => {}
                    Err(_) => return false,
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }
}

/// Reads a tokio socket without waiting: `WouldBlock` when nothing is there.
struct TryRead<'a>(&'a tokio::net::TcpStream);

impl io::Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
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
