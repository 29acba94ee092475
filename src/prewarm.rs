//! `prewarm = N`: up to N upstream connections kept TCP-connected and TLS-handshaken, so that a
//! new client is relayed at once instead of waiting for resolve + connect + handshake.
//!
//! A background task per section refills the set with the section's own resolve, failover
//! order and `TIMEOUTconnect` (the same [`crate::open::dial`] a client uses). When the upstream is down it
//! backs off (doubling up to [`MAX_BACKOFF`]) and logs once until it recovers; it never spins,
//! not even against a server that completes each handshake and then closes (see [`Closing`]).
//! A connection is handed out only when it is still open (the server may close idle
//! connections, restart or fail over: the kernel's TCP state says so without reading) and its
//! address is still among those its `connect` host resolves to now (ElastiCache moves the
//! primary endpoint's name on failover). Warm connections are not clients: `maxConnections`
//! does not count them. A reload that changes the section, or finds its TLS files changed (a
//! new CRL, CA or certificate), drops them; one that leaves both unchanged keeps them.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::upstream::{ConnectError, ConnectTo, Upstreams};

/// The first wait after a failed refill.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between refill attempts while the upstream stays down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the warm set needs to know of a connection it keeps.
pub trait Kept: Send + 'static {
    /// Its TCP socket (owned by the connection): for checking that the server has not
    /// closed it.
    fn fd(&self) -> RawFd;
    /// The address it reached.
    fn addr(&self) -> SocketAddr;
    /// Which `connect` target.
    fn target(&self) -> usize;
    /// Takes in, without waiting, what the server sent while the connection was kept (TLS
    /// session tickets, for the next dial to resume with); `false` when that shows the
    /// connection closed or broken.
    fn absorb(&mut self) -> bool;
}

/// A section's warm connections and what wakes its refill task.
#[derive(Debug)]
pub struct Warm<C> {
    pool: Pool<C>,
    /// Stops the current refill task (replaced when an unchanged reload restarts it).
    refill: Mutex<Option<CancellationToken>>,
    /// [`Warm::close`] was called: nothing is taken back any more.
    closed: AtomicBool,
}

impl<C: Kept> Warm<C> {
    /// `None` for `prewarm = 0`. `counted` follows how many are ready (the section's gauge).
    pub fn new(want: usize, counted: Gauge) -> Option<Arc<Warm<C>>> {
        (want > 0).then(|| {
            Arc::new(Warm {
                pool: Pool::new(want, counted),
                refill: Mutex::new(None),
                closed: AtomicBool::new(false),
            })
        })
    }

    /// Starts (or, after an unchanged reload, restarts with the new `dial`) the refill task
    /// of section `service`. When `lifetime` is cancelled (the section stopped or changed)
    /// the warm connections are closed.
    pub fn start<F, Fut>(self: &Arc<Self>, service: &str, dial: F, lifetime: &CancellationToken)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<C, ConnectError>> + Send,
    {
        let stop = lifetime.child_token();
        let previous = lock(&self.refill).replace(stop.clone());
        if let Some(p) = previous {
            p.cancel();
        }
        let warm = self.clone();
        let lifetime = lifetime.clone();
        // Spawned outside the section's accept-loop span: name the section as those lines do.
        let span = tracing::info_span!("prewarm", service = %service);
        let task = async move {
            warm.pool.keep_filled(dial, C::absorb, &stop).await;
            if lifetime.is_cancelled() {
                let n = warm.pool.clear();
                debug!(closed = n, "section stopped or changed: warm connections closed");
            }
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
    }

    /// Takes back a connection a client is done with, reset for the next one (Redis reuse):
    /// kept while the set holds fewer than twice `prewarm` (the refill tops up to `prewarm`
    /// while connections are out with clients, and those come back on top of it). `false`:
    /// the set is full, the caller closes it.
    pub fn give_back(&self, c: C) -> bool {
        !self.closed.load(Ordering::Relaxed) && self.pool.put_back(c)
    }

    /// Stops the refill task and closes every warm connection (a reload found the section's
    /// TLS files changed: they were opened with the old ones). Returns how many were closed.
    pub fn close(&self) -> usize {
        // Connections still out with clients are not taken back either.
        self.closed.store(true, Ordering::Relaxed);
        if let Some(stop) = lock(&self.refill).take() {
            stop.cancel();
        }
        self.pool.clear()
    }

    /// A warm connection that is still open and still reaches an address the `connect` host
    /// resolves to now; `None` when there is none (the caller connects afresh). Whatever is
    /// taken or dropped is refilled in the background.
    pub async fn take(&self, upstreams: &Upstreams, connect_to: &ConnectTo) -> Option<C> {
        loop {
            let c = self.pool.pop()?;
            if !still_open(c.fd()) {
                debug!(upstream = %c.addr(), "a warm connection was closed by the server; dropped");
                continue;
            }
            match upstreams.addresses_now(connect_to, c.target()).await {
                Ok(now) if now.contains(&c.addr()) => return Some(c),
                Ok(now) => {
                    let stale = 1 + self
                        .pool
                        .retain(|d| d.target() != c.target() || now.contains(&d.addr()));
                    info!(upstream = %c.addr(), dropped = stale, "the upstream name no longer resolves to this address; warm connections to it closed");
                }
                Err(e) => {
                    debug!(error = %e, "cannot resolve the upstream now; not using a warm connection");
                    return None;
                }
            }
        }
    }
}

/// `TCP_ESTABLISHED` of the kernel's TCP states (`include/net/tcp_states.h`).
const TCP_ESTABLISHED: u8 = 1;

/// Whether the server has not closed the connection: its TCP state is still ESTABLISHED (a
/// FIN moves it to CLOSE_WAIT, a reset to CLOSE). Reads nothing, so TLS records the server
/// sent meanwhile (session tickets) stay for the TLS layer.
fn still_open(fd: RawFd) -> bool {
    // SAFETY: `fd` is a socket owned by the connection being checked (alive for this call);
    // getsockopt writes at most `len` bytes into `info`.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len) };
    r == 0 && info.tcpi_state == TCP_ESTABLISHED
}

/// Up to `want` items and the signal that one was taken.
#[derive(Debug)]
struct Pool<T> {
    want: usize,
    ready: Mutex<VecDeque<T>>,
    taken: Notify,
    /// Up and down with every item in or out (the metrics' warm-connections gauge).
    counted: Gauge,
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        self.counted.dec_by(lock(&self.ready).len() as i64);
    }
}

impl<T> Pool<T> {
    fn new(want: usize, counted: Gauge) -> Pool<T> {
        Pool {
            want,
            ready: Mutex::new(VecDeque::with_capacity(want)),
            taken: Notify::new(),
            counted,
        }
    }

    fn len(&self) -> usize {
        lock(&self.ready).len()
    }

    /// The oldest item; wakes the refill.
    fn pop(&self) -> Option<T> {
        let item = lock(&self.ready).pop_front();
        if item.is_some() {
            self.counted.dec();
            self.taken.notify_one();
        }
        item
    }

    /// Adds an item that came back, unless `2 × want` are ready already.
    fn put_back(&self, item: T) -> bool {
        let mut ready = lock(&self.ready);
        if ready.len() >= 2 * self.want {
            return false;
        }
        ready.push_back(item);
        self.counted.inc();
        true
    }

    /// Keeps the items `keep` approves; wakes the refill. Returns how many went.
    fn retain(&self, keep: impl FnMut(&mut T) -> bool) -> usize {
        let mut ready = lock(&self.ready);
        let before = ready.len();
        ready.retain_mut(keep);
        let gone = before - ready.len();
        drop(ready);
        self.counted.dec_by(gone as i64);
        if gone > 0 {
            self.taken.notify_one();
        }
        gone
    }

    /// Drops every item; returns how many.
    fn clear(&self) -> usize {
        let mut ready = lock(&self.ready);
        let n = ready.len();
        ready.clear();
        self.counted.dec_by(n as i64);
        n
    }

    /// Dials until `want` items are ready, then waits until one is taken, until `stop`. A
    /// failed dial waits a back-off that doubles up to [`MAX_BACKOFF`]; the first failure of a
    /// run is logged as a warning, the rest at debug, and the recovery once.
    async fn keep_filled<E, F, Fut>(&self, dial: F, mut absorb: impl FnMut(&mut T) -> bool, stop: &CancellationToken)
    where
        E: std::fmt::Display,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff: Option<Duration> = None;
        let mut closing = Closing::default();
        loop {
            while self.len() < self.want {
                // The connections dialed before have their session tickets by now: into
                // the store with them, so that this dial resumes.
                let closed = self.retain(&mut absorb);
                if closed > 0 {
                    let wait = closing.wait();
                    debug!(
                        closed,
                        retry_in_ms = wait.as_millis() as u64,
                        "warm connections the server closed meanwhile; dropped"
                    );
                    if stopped_during(wait, stop).await {
                        return;
                    }
                    closing.waited();
                    continue;
                }
                let r = tokio::select! {
                    () = stop.cancelled() => return,
                    r = dial() => r,
                };
                match r {
                    Ok(item) => {
                        if backoff.take().is_some() {
                            info!("upstream reachable again; refilling warm connections");
                        }
                        let n = {
                            let mut ready = lock(&self.ready);
                            ready.push_back(item);
                            self.counted.inc();
                            ready.len()
                        };
                        debug!(ready = n, "warm upstream connection ready");
                    }
                    Err(e) => {
                        if backoff.is_none() {
                            warn!(error = %e, "cannot open a warm upstream connection; retrying with back-off (logged once until it works)");
                        }
                        let wait = doubled(backoff);
                        debug!(error = %e, retry_in_ms = wait.as_millis() as u64, "warm connection failed");
                        backoff = Some(wait);
                        if stopped_during(wait, stop).await {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.taken.notified() => {}
            }
        }
    }
}

/// Back-off for a server that closes connections soon after they open: one that refuses
/// this client's certificate after the TLS 1.3 handshake (the client side is done first),
/// or a TLS proxy with nothing behind it. Each dial succeeds, so the dial back-off never
/// applies; without this the refill would redial at handshake speed.
#[derive(Debug, Default)]
struct Closing {
    /// The last wait, and when it ended.
    last: Option<(Duration, Instant)>,
    /// Closures in a row, each within a few waits of the one before.
    runs: u32,
    /// The warning was logged for this run.
    warned: bool,
}

impl Closing {
    /// Closures in a row before the warning: a server's idle timeout closes the whole set at
    /// once, which is one.
    const WARN_AFTER: u32 = 3;

    /// The wait before the next dial, now that kept connections were found closed: doubling
    /// while closures keep coming, from [`FIRST_BACKOFF`] again after a quiet spell.
    fn wait(&mut self) -> Duration {
        let in_a_row = self.last.filter(|(w, ended)| ended.elapsed() < *w * 4);
        if in_a_row.is_some() {
            self.runs += 1;
        } else {
            self.runs = 1;
            self.warned = false;
        }
        let wait = doubled(in_a_row.map(|(w, _)| w));
        if self.runs == Self::WARN_AFTER && !std::mem::replace(&mut self.warned, true) {
            warn!(
                "the upstream keeps closing warm connections right after they open (a client certificate it refuses? a TLS proxy with nothing behind it?); refilling with back-off (logged once)"
            );
        }
        self.last = Some((wait, Instant::now()));
        wait
    }

    /// The wait is over: closures count as in a row from now.
    fn waited(&mut self) {
        if let Some((_, ended)) = &mut self.last {
            *ended = Instant::now();
        }
    }
}

/// The back-off after `previous`: [`FIRST_BACKOFF`] at first, then doubling up to
/// [`MAX_BACKOFF`].
fn doubled(previous: Option<Duration>) -> Duration {
    previous.map_or(FIRST_BACKOFF, |w| (w * 2).min(MAX_BACKOFF))
}

/// Waits `wait`, or until `stop`; true when stopped.
async fn stopped_during(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::Instant;

    /// A down upstream (a real refused port) is retried with a doubling back-off, not in a
    /// loop: the clock is paused, so the runtime jumps from one back-off timer to the next and
    /// the attempts are counted against virtual time.
    #[tokio::test(start_paused = true)]
    async fn a_down_upstream_is_retried_with_a_doubling_back_off() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let pool: Arc<Pool<tokio::net::TcpStream>> = Arc::new(Pool::new(4, Gauge::default()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (p, a, s) = (pool.clone(), attempts.clone(), stop.clone());
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let dial = || {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::net::TcpStream::connect(addr)
            };
            p.keep_filled(dial, |_| true, &s).await;
        });
        while attempts.load(Ordering::SeqCst) < 8 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Seven back-offs came before the eighth attempt: 0.2 s doubling.
        let waited: Duration = (0..7).map(|k| FIRST_BACKOFF * 2u32.pow(k)).sum();
        assert!(started.elapsed() >= waited, "{:?} < {waited:?}", started.elapsed());
        // Past the cap, one attempt per MAX_BACKOFF.
        let before = attempts.load(Ordering::SeqCst);
        tokio::time::sleep(MAX_BACKOFF * 4).await;
        let more = attempts.load(Ordering::SeqCst) - before;
        assert!(more <= 5, "{more} attempts in {:?}", MAX_BACKOFF * 4);
        assert_eq!(pool.len(), 0);
        stop.cancel();
        task.await.unwrap();
    }

    /// Filled to `want`, refilled after a take, and nothing more.
    #[tokio::test]
    async fn fills_to_want_and_refills_what_is_taken() {
        let pool: Arc<Pool<usize>> = Arc::new(Pool::new(3, Gauge::default()));
        let n = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (p, c, s) = (pool.clone(), n.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let dial = || {
                let k = c.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, String>(k) }
            };
            p.keep_filled(dial, |_| true, &s).await;
        });
        while pool.len() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.counted.get(), 3, "the gauge follows the items");
        assert_eq!(pool.pop(), Some(0));
        while pool.len() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(n.load(Ordering::SeqCst), 4);
        assert_eq!(pool.counted.get(), 3);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(pool.retain(|k| *k != 1), 1);
        assert_eq!(pool.counted.get(), 2);
        assert_eq!(pool.clear(), 2);
        assert_eq!(pool.counted.get(), 0);
    }

    #[tokio::test]
    async fn a_socket_the_peer_closed_is_noticed_without_reading() {
        use std::os::fd::AsRawFd;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"unread").await.unwrap();
        assert!(still_open(c.as_raw_fd()));
        drop(s);
        // Reading to the end waits for the FIN; the check must then say closed.
        let mut c = c;
        let mut all = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut c, &mut all).await.unwrap();
        assert_eq!(all, b"unread");
        assert!(!still_open(c.as_raw_fd()));
    }
}
