//! Moving bytes both ways between the client and the upstream until both directions are done.
//!
//! Half-close is kept: when the client shuts its write side, the upstream is shut for writing
//! (a TLS close_notify) and the reply still flows back until the upstream closes. Bytes are
//! counted as they pass, so the log line has them even when the relay ends in an error. This
//! module knows nothing of TLS or Redis.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Client → upstream buffer: requests are small; one TLS record's worth.
const BUF_SIZE: usize = 16 * 1024;
/// The largest TLS record's payload.
const TLS_RECORD: usize = 16 * 1024;
/// Upstream → client buffer: several TLS records, so large values move in few writes.
const DOWN_BUF_SIZE: usize = 64 * 1024;

/// Bytes moved by one relay, readable while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client → upstream.
    pub up: AtomicU64,
    /// Upstream → client.
    pub down: AtomicU64,
    /// Totals that every byte counted here is added to as well (the service's, for metrics).
    totals: Option<Arc<Counters>>,
}

impl Counters {
    /// Counters for one relay that also add to `totals`.
    pub fn within(totals: Arc<Counters>) -> Counters {
        Counters {
            totals: Some(totals),
            ..Counters::default()
        }
    }

    /// Counts `n` bytes from the client.
    pub fn add_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
        if let Some(t) = &self.totals {
            t.up.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts `n` bytes from the upstream.
    pub fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
        if let Some(t) = &self.totals {
            t.down.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn total(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.down.load(Ordering::Relaxed)
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both sides closed in turn.
    Closed,
    /// No byte moved for the idle timeout.
    Idle(Duration),
    /// A read or write failed.
    Error(io::Error),
}

/// Relays until both directions are done, a side fails, or the connection idles too long.
///
/// Not an `async fn`: the streams are split here, before the future exists, so that the
/// future holds the four halves and not the streams as well (an `async fn` keeps its
/// arguments for its whole life, and the future is what an idle connection's task holds).
pub fn relay<C, U>(client: C, upstream: U, idle: Option<Duration>, counters: Arc<Counters>) -> impl Future<Output = End>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (client_r, client_w) = tokio::io::split(Counted::new(client, counters.clone(), true));
    let (up_r, up_w) = tokio::io::split(Counted::new(upstream, counters.clone(), false));
    async move {
        let both =
            async { tokio::try_join!(requests(client_r, up_w), pump(up_r, client_w, DOWN_BUF_SIZE)).map(|_| ()) };
        until_idle(both, idle, &counters).await
    }
}

/// Client → upstream. When the upstream stops taking bytes (Redis answered `QUIT`, or a
/// protocol error, and closed), what it already sent must still reach the client: the
/// client's remaining bytes are read and dropped (see [`drain_then`]) while the other
/// direction delivers the replies, instead of ending the whole relay at once.
async fn requests<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let (buf, n) = read_lent(&mut from, BUF_SIZE).await?;
        if n == 0 {
            lend::give(buf);
            return to.shutdown().await;
        }
        let written = write_flushed(&mut to, &buf[..n]).await;
        lend::give(buf);
        if let Err(e) = written {
            return drain_then(&mut from, e).await;
        }
    }
}

/// Copies until the end of `from`, then shuts `to` for writing.
async fn pump<R, W>(mut from: R, mut to: W, size: usize) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let (buf, n) = read_lent(&mut from, size).await?;
        if n == 0 {
            lend::give(buf);
            return to.shutdown().await;
        }
        let written = write_flushed(&mut to, &buf[..n]).await;
        lend::give(buf);
        written?;
    }
}

/// Reads into a buffer lent only while the read has bytes to give: while `from` has nothing
/// (an idle connection) no buffer is held. The caller gives the buffer back once its bytes
/// are written out.
async fn read_lent<R: AsyncRead + Unpin>(from: &mut R, size: usize) -> io::Result<(Box<[u8]>, usize)> {
    std::future::poll_fn(|cx| {
        let mut b = lend::take(size);
        let mut rb = ReadBuf::new(&mut b);
        match Pin::new(&mut *from).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                Poll::Ready(Ok((b, n)))
            }
            Poll::Ready(Err(e)) => {
                lend::give(b);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                lend::give(b);
                Poll::Pending
            }
        }
    })
    .await
}

/// A read from the client that failed: said as the client's, so that the log does not blame
/// the server (and suggest client certificates) for a client that reset its connection.
#[derive(Debug)]
pub struct ClientSide(io::Error);

impl std::fmt::Display for ClientSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client's side: {}", self.0)
    }
}

impl std::error::Error for ClientSide {}

/// Marks `e`, met reading from the client, as the client's (see [`ClientSide`]).
pub fn client_side(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), ClientSide(e))
}

/// Whether `e` was met reading from the client.
pub fn is_client_side(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ClientSide>())
}

/// Relay buffers lent while bytes are in flight, kept per thread for reuse (at most
/// [`lend::KEPT`] free ones per thread), so that a busy relay does not allocate per read.
mod lend {
    use std::cell::RefCell;

    /// The most free buffers a thread keeps.
    pub const KEPT: usize = 64;

    thread_local! {
        static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `size` bytes: a kept one, or a new one.
    pub fn take(size: usize) -> Box<[u8]> {
        FREE.with_borrow_mut(|free| match free.iter().position(|b| b.len() == size) {
            Some(i) => free.swap_remove(i),
            None => vec![0; size].into_boxed_slice(),
        })
    }

    /// Gives a buffer back for reuse.
    pub fn give(b: Box<[u8]>) {
        FREE.with_borrow_mut(|free| {
            if free.len() < KEPT {
                free.push(b);
            }
        });
    }
}

/// Writes all of `data` and flushes it (a TLS stream may hold a record back otherwise).
pub async fn write_flushed<W: AsyncWrite + Unpin>(to: &mut W, data: &[u8]) -> io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

/// The most a client may still send, and have dropped, after the upstream stopped taking
/// bytes: enough for a long pipeline behind a `QUIT`.
const DRAIN_MAX: u64 = 64 << 20;

/// After a write to the upstream failed with `e`: reads and drops what the client still
/// sends, until it closes (or [`DRAIN_MAX`]), then returns `e`. Closing a socket with unread
/// bytes sends a reset, which can destroy replies still on their way to the client.
pub async fn drain_then<R: AsyncRead + Unpin>(from: &mut R, e: io::Error) -> io::Result<()> {
    let _ = tokio::io::copy(&mut from.take(DRAIN_MAX), &mut tokio::io::sink()).await;
    Err(e)
}

/// Runs a relay future to its end, or until `counters` stop moving for `idle`.
pub async fn until_idle(
    relay: impl Future<Output = io::Result<()>>,
    idle: Option<Duration>,
    counters: &Counters,
) -> End {
    let Some(idle) = idle else {
        return ended(relay.await);
    };
    tokio::pin!(relay);
    // Look eight times per period, so that a connection is closed at most an eighth of the
    // period late (checking once per period would allow up to twice the period).
    let tick = (idle / 8).max(Duration::from_millis(1));
    let mut seen = counters.total();
    let mut quiet = Duration::ZERO;
    loop {
        tokio::select! {
            r = &mut relay => return ended(r),
            () = tokio::time::sleep(tick) => {
                let now = counters.total();
                quiet = if now == seen { quiet + tick } else { Duration::ZERO };
                seen = now;
                if quiet >= idle {
                    return End::Idle(idle);
                }
            }
        }
    }
}

fn ended(r: io::Result<()>) -> End {
    match r {
        Ok(()) => End::Closed,
        Err(e) => End::Error(e),
    }
}

/// Counts the bytes read from a stream (reads from the client count as up, from the upstream
/// as down); writes pass straight through.
struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
    up: bool,
    /// An error met while reading ahead, reported by the next read: TCP reports a reset
    /// only once, and losing it would turn a reset into a clean end of stream.
    deferred: Option<io::Error>,
}

impl<S> Counted<S> {
    fn new(inner: S, counters: Arc<Counters>, up: bool) -> Counted<S> {
        Counted {
            inner,
            counters,
            up,
            deferred: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let up = self.up;
        match self.as_mut().read_counted(cx, buf) {
            Poll::Ready(Err(e)) if up => Poll::Ready(Err(client_side(e))),
            other => other,
        }
    }
}

impl<S: AsyncRead + Unpin> Counted<S> {
    fn read_counted(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.deferred.take() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        // A TLS stream yields one record (at most 16 KiB) per read. After a full record more
        // are likely queued behind it (a large value): keep reading, so that the copy writes
        // one large chunk instead of one per record. A short read means the message ended;
        // another read would only cost a syscall on the latency path. An EOF or error met on
        // the way is left for the next read to report.
        let mut last = buf.filled().len() - before;
        if matches!(r, Poll::Ready(Ok(()))) {
            while last >= TLS_RECORD && buf.remaining() > 0 {
                let mark = buf.filled().len();
                match Pin::new(&mut self.inner).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) => last = buf.filled().len() - mark,
                    Poll::Ready(Err(e)) => {
                        self.deferred = Some(e);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            match self.up {
                true => self.counters.add_up(n),
                false => self.counters.add_down(n),
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn half_close_still_delivers_reply_and_counts() {
        let (mut client, relay_client) = duplex(64);
        let (relay_up, mut server) = duplex(64);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(relay(relay_client, relay_up, None, counters.clone()));
        client.write_all(b"PING\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut req = Vec::new();
        server.read_to_end(&mut req).await.unwrap();
        assert_eq!(req, b"PING\r\n");
        server.write_all(b"+PONG\r\n").await.unwrap();
        drop(server);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"+PONG\r\n");
        assert!(matches!(task.await.unwrap(), End::Closed));
        assert_eq!(counters.up.load(Ordering::Relaxed), 6);
        assert_eq!(counters.down.load(Ordering::Relaxed), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_is_closed() {
        let (_client, relay_client) = duplex(64);
        let (relay_up, _server) = duplex(64);
        let end = relay(
            relay_client,
            relay_up,
            Some(Duration::from_secs(30)),
            Default::default(),
        )
        .await;
        assert!(matches!(end, End::Idle(_)));
    }

    /// Yields one full TLS record, then a reset.
    struct RecordThenReset(bool);

    impl AsyncRead for RecordThenReset {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            if self.0 {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            self.0 = true;
            buf.put_slice(&[7u8; TLS_RECORD]);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_error_met_reading_ahead_is_reported_next() {
        let mut r = Counted {
            inner: RecordThenReset(false),
            counters: Default::default(),
            up: false,
            deferred: None,
        };
        let mut buf = vec![0u8; 4 * TLS_RECORD];
        assert_eq!(r.read(&mut buf).await.unwrap(), TLS_RECORD);
        let e = r.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_period_counts_from_the_last_byte() {
        let (mut client, relay_client) = duplex(64);
        let (relay_up, mut server) = duplex(64);
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(relay(
            relay_client,
            relay_up,
            Some(Duration::from_secs(30)),
            Default::default(),
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        client.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();
        assert!(matches!(task.await.unwrap(), End::Idle(_)));
        let took = start.elapsed();
        // Quiet from t=10 s: closed at 40 s, at most an eighth of the period late.
        assert!(
            took >= Duration::from_secs(40) && took <= Duration::from_millis(43_750),
            "{took:?}"
        );
    }
}
