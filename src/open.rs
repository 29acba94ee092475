//! Both ends of a section's connection, opened: the client side (socket options, and the
//! TLS handshake in server mode) and the upstream (a warm connection, or resolve, TCP and TLS,
//! each bounded by `TIMEOUTconnect`). The prewarm refill dials with the same [`dial`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::either::Either;
use tracing::{debug, warn};

use crate::listener::Client;
use crate::metrics::{Classify, Reason, Stage};
use crate::service::Shared;
use crate::sockopt::{self, Side};
use crate::tls::{HandshakeError, ServerTlsStream, TlsStream};
use crate::upstream;

/// The client's side: plain TCP, or TLS in server mode (boxed: the TLS state is over a
/// kilobyte, which a plain client would otherwise carry unused for its whole life).
pub type ClientStream = Either<NotTls<Client>, Box<ServerTlsStream>>;

/// The upstream's side: TLS, or plain TCP in server mode without `connectTLS`.
pub type UpstreamStream = Either<TlsStream, crate::workers::Socket>;

/// A client, opened, with what a Redis relay needs to know of its socket.
pub struct Accepted {
    /// The stream.
    pub stream: ClientStream,
    /// The address the client reached us by (node listeners are named by it); `Err` for a
    /// Unix socket client, and when the section is not a Redis one (nothing asks).
    pub local_ip: io::Result<IpAddr>,
    /// The TCP socket under the stream: a Redis relay sends a closing reply and the close
    /// together.
    pub fd: Option<RawFd>,
}

/// Sets the `l:` socket options and, in server mode, runs the client's TLS handshake within
/// `TIMEOUTconnect`. `None`: the client is gone (already logged). A Unix socket client is
/// plain (the config takes Unix sockets in client mode only).
pub async fn open_client(client: Client, shared: &Shared) -> Option<Accepted> {
    let (local_ip, fd) = match &client {
        // Only a Redis relay asks (a system call per connection saved elsewhere).
        Either::Left(tcp) if shared.redis.is_some() => {
            (tcp.local_addr().map(|a| a.ip().to_canonical()), Some(tcp.as_raw_fd()))
        }
        Either::Left(tcp) => (Err(io::ErrorKind::Unsupported.into()), Some(tcp.as_raw_fd())),
        Either::Right(_) => (Err(io::ErrorKind::Unsupported.into()), None),
    };
    let stream = open_stream(client, shared).await?;
    Some(Accepted { stream, local_ip, fd })
}

async fn open_stream(client: Client, shared: &Shared) -> Option<ClientStream> {
    let client = match client {
        Either::Left(tcp) => tcp,
        Either::Right(unix) => return Some(Either::Left(NotTls::new(Either::Right(unix)))),
    };
    let _ = client.set_nodelay(true);
    if let Err(e) = sockopt::apply(SockRef::from(&client), &shared.config.socket_options, Side::Local) {
        warn!(error = %e, "cannot set a `socket = l:` option on the client socket");
    }
    let Some(acceptor) = &shared.acceptor else {
        return Some(Either::Left(NotTls::new(Either::Left(client))));
    };
    let timeout = shared.config.connect_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(client)).await {
        Ok(Ok(tls)) => Some(Either::Right(Box::new(tls))),
        Ok(Err(e)) => {
            warn!(error = %e, "closing client");
            None
        }
        Err(_) => {
            warn!(
                timeout_s = timeout.as_secs(),
                "client TLS handshake timed out (TIMEOUTconnect); closing client"
            );
            None
        }
    }
}

/// An upstream connection handed to a client, and whether it was kept warm before.
#[derive(Debug)]
pub struct Opened {
    /// The connection.
    pub conn: Dialed,
    /// It came from the warm set (`prewarm`): it was opened, and logged in as whatever the
    /// server grants a new connection, before this client came.
    pub warm: bool,
}

/// Hands out a warm connection when the section keeps some (`prewarm`) and `warm` allows
/// it, or connects to the first upstream that answers. `Err`: no upstream (already logged),
/// and why, for the client.
pub async fn open_upstream(shared: &Shared, warm: bool) -> Result<Opened, String> {
    let metrics = &shared.metrics;
    if let Some(set) = shared.warm.as_ref().filter(|_| warm)
        && let Some(mut conn) = set.take(&shared.upstreams, &shared.connect_to).await
    {
        match conn.follow() {
            Ok(()) => {
                debug!(upstream = %conn.addr, "using a warm upstream connection (prewarm)");
                metrics.reached();
                return Ok(Opened { conn, warm: true });
            }
            Err(e) => debug!(error = %e, "a warm connection could not move to this thread; connecting afresh"),
        }
    }
    match dial(shared).await {
        Ok(conn) => {
            metrics.reached();
            Ok(Opened { conn, warm: false })
        }
        Err(e) => {
            let (stage, reason) = e.last.unwrap_or((Stage::Connect, Reason::Unreachable));
            metrics.failed(stage, reason);
            warn!(error = %e, "cannot reach upstream; closing client");
            Err(format!("cannot reach upstream: {e}"))
        }
    }
}

/// Connects to the first upstream that answers and, unless the section connects in plain
/// TCP, completes the TLS handshake with it; a target that fails either step is a failed
/// target, and the next one is tried. Logs nothing itself: a client and the prewarm refill
/// report failures differently.
pub async fn dial(shared: &Shared) -> Result<Dialed, upstream::ConnectError> {
    let svc = &shared.config;
    let targets = shared.upstreams.targets();
    let metrics = &shared.metrics;
    let start = Instant::now();
    // Called once TCP is up: the time so far is the connect time (DNS and any failed target
    // included).
    let finish = |i: usize, tcp: TcpStream| async move {
        metrics.connected(start.elapsed());
        if reaches_self(&tcp) {
            return Err(OpenError::Loop);
        }
        let fd = tcp.as_raw_fd();
        if !svc.connect_tls {
            return Ok((Either::Right(crate::workers::Socket::new(tcp)), fd));
        }
        let handshake = Instant::now();
        let tls = shared.tls.handshake(&targets[i].host, tcp).await;
        if let Ok(s) = &tls {
            metrics.handshaken(handshake.elapsed(), crate::tls::resumed(s.session()));
        }
        tls.map(|t| (Either::Left(t), fd)).map_err(OpenError::Tls)
    };
    let r = shared
        .upstreams
        .connect(&shared.connect_to, svc.connect_timeout, &svc.socket_options, finish)
        .await?;
    let (stream, fd) = r.stream;
    Ok(Dialed {
        stream,
        addr: r.addr,
        target: r.target,
        fd,
    })
}

/// An upstream connection, ready to relay (or to keep warm).
#[derive(Debug)]
pub struct Dialed {
    /// TLS (or plain TCP) to the upstream.
    pub stream: UpstreamStream,
    /// The address it reached.
    pub addr: SocketAddr,
    /// Which `connect` target.
    pub target: usize,
    /// Its TCP socket, owned by `stream`: for checking that the server has not closed it.
    pub fd: RawFd,
}

impl Dialed {
    /// Moves the connection's socket to the current thread's event loop (a warm one was
    /// opened on another: see [`crate::workers::Socket`]).
    pub fn follow(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Either::Left(tls) => tls.follow(),
            Either::Right(tcp) => tcp.follow(),
        }
    }
}

/// Why the step after the TCP connect failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// The handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(#[from] HandshakeError),
    /// The connection reached one of retunnel's own listeners.
    #[error("{}", crate::own::LOOP)]
    Loop,
}

impl Classify for OpenError {
    fn reason(&self) -> Reason {
        match self {
            OpenError::Tls(e) => e.reason(),
            OpenError::Loop => Reason::Unreachable,
        }
    }
}

/// Whether `tcp` reached one of retunnel's own listeners (see [`crate::own`]).
fn reaches_self(tcp: &TcpStream) -> bool {
    match (tcp.local_addr(), tcp.peer_addr()) {
        (Ok(local), Ok(peer)) => crate::own::reaches_self(local, peer),
        _ => false,
    }
}

/// A Redis connection reaches its `connect` names again as a new connection would: after a
/// failover, to tell a moved primary from a replica and to reach the new one.
impl crate::redis::failover::Reach for Shared {
    type Stream = UpstreamStream;

    async fn still_resolves(&self, addr: SocketAddr) -> Option<bool> {
        self.upstreams.still_resolves(&self.connect_to, addr).await
    }

    async fn reopen(&self) -> Result<(UpstreamStream, SocketAddr), String> {
        // Never a warm connection: it could carry a login from before the server's password
        // changed, and the rebuilt state would not reset it.
        let Dialed { stream, addr, .. } = open_upstream(self, false).await?.conn;
        if let Some(cluster) = &self.redis {
            cluster.reached(addr.ip());
        }
        Ok((stream, addr))
    }

    fn timeout(&self) -> std::time::Duration {
        self.config.connect_timeout
    }
}

/// A plain-TCP client stream that fails its first read when the client opens with a TLS
/// handshake record: `redis-cli --tls` pointed at a plain listener (the AWS guide's commands
/// carry `--tls`) would otherwise wait for a handshake answer until TIMEOUTidle. Neither RESP
/// nor inline Redis commands can start with 0x16.
pub struct NotTls<S> {
    inner: S,
    checked: bool,
}

impl<S> NotTls<S> {
    fn new(inner: S) -> NotTls<S> {
        NotTls { inner, checked: false }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NotTls<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.checked && buf.filled().len() > before {
            self.checked = true;
            let first = &buf.filled()[before..];
            if first[0] == 0x16 && first.get(1).is_none_or(|&b| b == 0x03) {
                // Refused bytes are not relayed: they do not count in `bytes_up`.
                buf.set_filled(before);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the client speaks TLS, but this port takes plain TCP: drop --tls (redis-cli) or ssl=True, or make the section `client = no` with `cert`/`key`",
                )));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NotTls<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl crate::prewarm::Kept for Dialed {
    fn fd(&self) -> RawFd {
        self.fd
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn target(&self) -> usize {
        self.target
    }
    fn absorb(&mut self) -> bool {
        match &mut self.stream {
            Either::Left(tls) => tls.absorb(),
            Either::Right(_) => true,
        }
    }
}
