//! Where connections run: one single-threaded runtime per worker thread, each with its own
//! event loop, as nginx runs one process per core. A client accepted on the control runtime
//! is handed, as a plain socket, to the worker with the fewest open connections, and lives
//! there until it closes.
//!
//! Measured against tokio's work-stealing runtime on the same 2 cores (`bench/profiling.md`):
//! with every connection's wake-ups on one thread's own event loop, no other thread is woken to
//! look for work and none steals a task away from its sockets; pipelined requests went 1.15×
//! faster for less CPU. Several workers keep a burst of TLS handshakes (500 clients at once)
//! on several cores.
//!
//! Nothing here knows what a connection does: [`spawn`] takes a socket and a task to run with
//! it. Without [`start`] (tests, `retunnel check`) tasks run on the caller's runtime.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use tokio::runtime::Handle;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::listener::Client;

/// The worker runtimes, once started.
static WORKERS: OnceLock<Vec<Worker>> = OnceLock::new();

/// One worker thread's runtime, and how many connections run on it.
struct Worker {
    handle: Handle,
    open: AtomicUsize,
}

/// A worker's runtime. Its blocking pool (DNS lookups, giving memory back) is named too, so
/// that a look at the process's threads shows whose they are.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("retunnel-block")
        .build()
}

/// How many workers `threads = auto` starts: one per CPU this process may use.
pub fn auto() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Makes the calling thread, whose runtime is `control`, worker 0, and starts `n - 1` more
/// worker threads, each running a single-threaded runtime for the life of the process. The
/// control thread takes connections too: a client it accepts for itself is not handed over
/// at all, and the warm connections it opens are at home there. Call once, before serving;
/// a second call changes nothing.
pub fn start(n: usize, control: Handle) -> io::Result<()> {
    if WORKERS.get().is_some() {
        return Ok(());
    }
    let mut workers = Vec::with_capacity(n.max(1));
    workers.push(Worker {
        handle: control,
        open: AtomicUsize::new(0),
    });
    for i in 1..n.max(1) {
        let rt = runtime()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name(format!("retunnel-worker-{i}"))
            .spawn(move || {
                HERE.with(|h| h.set(Some(i)));
                rt.block_on(std::future::pending::<()>())
            })?;
        workers.push(Worker {
            handle,
            open: AtomicUsize::new(0),
        });
    }
    HERE.with(|h| h.set(Some(0)));
    let _ = WORKERS.set(workers);
    Ok(())
}

/// Runs `task(sock, worker)` on the worker with the fewest open connections, the control
/// thread last among equals (its control work would hold them up), tracked by `tracker`
/// (`worker` is the worker's number, for the log); without workers, on the current runtime as
/// worker 0. The socket is moved to the worker's event loop
/// first; a socket that cannot be moved (the system refused to watch it) is logged and
/// closed, the task does not run, and `lost` runs instead (to count it).
pub fn spawn<F, Fut, L>(tracker: &TaskTracker, sock: Client, task: F, lost: L)
where
    F: FnOnce(Client, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    L: FnOnce() + Send + 'static,
{
    let Some((i, worker)) = WORKERS.get().and_then(|w| {
        w.iter()
            .enumerate()
            .min_by_key(|&(i, w)| (w.open.load(Ordering::Relaxed), i == 0))
    }) else {
        tracker.spawn(task(sock, 0));
        return;
    };
    let open = Open::new(&worker.open);
    if here() == Some(i) {
        // This thread's own: the socket is already on its event loop.
        tracker.spawn(async move {
            let _open = open;
            task(sock, i).await
        });
        return;
    }
    let sock = match detach(sock) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot hand the client to a worker thread; closing it");
            lost();
            return;
        }
    };
    tracker.spawn_on(
        async move {
            let _open = open;
            match attach(sock) {
                Ok(sock) => task(sock, i).await,
                Err(e) => {
                    warn!(error = %e, "cannot watch the client socket; closing it");
                    lost();
                }
            }
        },
        &worker.handle,
    );
}

/// A client socket between two event loops.
type Detached = Either<std::net::TcpStream, std::os::unix::net::UnixStream>;

/// Takes the socket off the current event loop (it stays non-blocking).
fn detach(sock: Client) -> io::Result<Detached> {
    Ok(match sock {
        Either::Left(tcp) => Either::Left(tcp.into_std()?),
        Either::Right(unix) => Either::Right(unix.into_std()?),
    })
}

/// Puts the socket on the current (the worker's) event loop.
fn attach(sock: Detached) -> io::Result<Client> {
    Ok(match sock {
        Either::Left(tcp) => Either::Left(TcpStream::from_std(tcp)?),
        Either::Right(unix) => Either::Right(tokio::net::UnixStream::from_std(unix)?),
    })
}

/// One connection counted on a worker until dropped (the workers live as long as the
/// process).
struct Open(&'static AtomicUsize);

impl Open {
    fn new(count: &'static AtomicUsize) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The worker this thread runs (0: the control thread; `None`: no workers started, or a
    /// thread that is none of them, such as the blocking pool's).
    static HERE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn here() -> Option<usize> {
    HERE.with(|h| h.get())
}

/// An upstream TCP socket that can follow its connection to another thread's event loop: a
/// warm connection is opened on the control runtime, and a reused one comes back from any
/// worker, but the client that takes it runs on its own worker. Left where it was, every
/// read and write of it would wake two threads.
#[derive(Debug)]
pub struct Socket {
    tcp: Option<TcpStream>,
    /// The worker whose event loop watches it.
    home: Option<usize>,
}

impl Socket {
    /// A socket watched by the current thread's event loop.
    pub fn new(tcp: TcpStream) -> Socket {
        Socket {
            tcp: Some(tcp),
            home: here(),
        }
    }

    /// The TCP stream; `None` after a failed [`Socket::follow`].
    pub fn tcp(&self) -> Option<&TcpStream> {
        self.tcp.as_ref()
    }

    /// Moves the socket to the current thread's event loop, if another one watches it. On
    /// an error the socket is closed and every later read or write fails.
    pub fn follow(&mut self) -> io::Result<()> {
        let here = here();
        if self.home == here {
            return Ok(());
        }
        let tcp = self.tcp.take().ok_or_else(gone)?.into_std()?;
        self.tcp = Some(TcpStream::from_std(tcp)?);
        self.home = here;
        Ok(())
    }

    /// Runs `op` on the TCP stream; after a failed [`Socket::follow`], the error that says so.
    fn with<T>(
        self: Pin<&mut Self>,
        op: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match self.get_mut().tcp.as_mut() {
            Some(tcp) => op(Pin::new(tcp)),
            None => Poll::Ready(Err(gone())),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost moving between threads",
    )
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.with(|tcp| tcp.poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.with(|tcp| tcp.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|tcp| tcp.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|tcp| tcp.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|tcp| tcp.poll_shutdown(cx))
    }
}
