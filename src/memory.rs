//! Giving memory freed by closed connections back to the system. glibc's allocator keeps
//! what a burst of connections freed inside its arenas: 2,000 idle connections opened and
//! closed left the process at the burst's size (48.8 MB against 9.9 MB before), and a later
//! burst served from another thread's arena doubled it. After connections close, retunnel
//! asks the allocator to return its free pages (`malloc_trim`), at most once a second, once
//! [`TRIM_AFTER`] connections have closed since the last time or none is open any more
//! (measured: back to 10.6 MB). Other allocators were measured too: see `bench/profiling.md`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::debug;

/// Connections closed since the last trim that make another one worth it.
const TRIM_AFTER: usize = 64;

/// How long closes are gathered before a trim (a burst closes over a while).
const GATHER: Duration = Duration::from_secs(1);

static OPEN: AtomicUsize = AtomicUsize::new(0);
static CLOSED: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicBool = AtomicBool::new(false);

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct Open(());

/// Counts a connection as open.
pub fn opened() -> Open {
    OPEN.fetch_add(1, Ordering::Relaxed);
    Open(())
}

impl Drop for Open {
    fn drop(&mut self) {
        let open = OPEN.fetch_sub(1, Ordering::Relaxed) - 1;
        let closed = CLOSED.fetch_add(1, Ordering::Relaxed) + 1;
        if (closed >= TRIM_AFTER || open == 0) && !PENDING.swap(true, Ordering::AcqRel) {
            schedule();
        }
    }
}

/// Trims once [`GATHER`] has passed, on a blocking thread (a trim walks the whole heap).
fn schedule() {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Ordering::Release);
        return;
    };
    rt.spawn(async {
        tokio::time::sleep(GATHER).await;
        let closed = CLOSED.swap(0, Ordering::Relaxed);
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(move || trim(closed)).await;
    });
}

fn trim(closed: usize) {
    let before = rss_kib();
    // SAFETY: malloc_trim only returns free pages of the allocator's own heap.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
    debug!(
        closed,
        rss_before_kib = before,
        rss_after_kib = rss_kib(),
        "returned freed memory to the system"
    );
}

/// The resident set size, from /proc/self/statm (0 where there is none).
fn rss_kib() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page / 1024
}
