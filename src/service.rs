//! One service's accept loop. It only accepts: every connection gets its own task, so a slow
//! DNS answer, connect or handshake never holds up the next client. Past `maxConnections` a
//! client is closed at once rather than kept waiting: a client that waits silently looks like
//! a hung server, one that is closed retries or reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::ServiceConfig;
use crate::listener::{Client, Listener, Peer};
use crate::metrics::ServiceMetrics;
use crate::prewarm::Warm;
use crate::tls::{self, TlsClient, TlsServer};
use crate::upstream::{ConnectTo, Upstreams};

/// What every connection of a service needs, shared between its tasks.
#[derive(Debug)]
pub struct Shared {
    /// The section's settings.
    pub config: ServiceConfig,
    /// Its TLS client.
    pub tls: TlsClient,
    /// `--connect-to` mappings.
    pub connect_to: ConnectTo,
    /// Server mode: the TLS acceptor for clients.
    pub acceptor: Option<TlsServer>,
    /// The `connect` targets, with the failover order and memory.
    pub upstreams: Upstreams,
    /// One permit per open connection when `maxConnections` is set.
    pub limit: Option<Arc<Semaphore>>,
    /// `protocol = redis`: the section's cluster node listeners.
    pub redis: Option<Arc<crate::redis::Cluster>>,
    /// The section's counters (node listeners count under their section).
    pub metrics: Arc<ServiceMetrics>,
    /// `prewarm` > 0: the upstream connections kept ready for new clients.
    pub warm: Option<Arc<Warm<crate::open::Dialed>>>,
    /// The server refused `RESET` (Redis before 6.2): upstream connections are not reused.
    pub reset_refused: std::sync::atomic::AtomicBool,
    /// Fires at shutdown once `TIMEOUTclose` is over: open connections end, each with its
    /// own "connection closed" line (`reason=shutdown`).
    pub cut: CancellationToken,
    /// A digest of the TLS files' contents when they were loaded ([`tls::material_digest`]):
    /// a reload that finds them changed does not keep what was opened with the old ones.
    pub material: u64,
}

impl Shared {
    /// Loads the TLS material (both sides) and sets up the per-service state.
    pub fn new(
        config: ServiceConfig,
        connect_to: ConnectTo,
        metrics: Arc<ServiceMetrics>,
    ) -> Result<Shared, tls::SetupError> {
        // Taken before loading: a file that changes meanwhile then counts as changed at the
        // next reload, never as unchanged.
        let material = tls::material_digest(&config.tls, config.accept_tls.as_ref());
        let (tls, acceptor) = tls::load(&config.tls, config.accept_tls.as_ref())?;
        let redis = crate::redis::Cluster::for_section(&config, &connect_to, &metrics);
        let shared = Shared::from_parts(config, connect_to, tls, acceptor, redis, metrics);
        Ok(Shared { material, ..shared })
    }

    /// Assembles a service from TLS material already loaded (node listeners share their
    /// section's); the failover state and the connection limit start fresh.
    pub fn from_parts(
        config: ServiceConfig,
        connect_to: ConnectTo,
        tls: TlsClient,
        acceptor: Option<TlsServer>,
        redis: Option<Arc<crate::redis::Cluster>>,
        metrics: Arc<ServiceMetrics>,
    ) -> Shared {
        Shared {
            upstreams: Upstreams::new(config.connect.clone(), config.failover),
            limit: config.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            warm: Warm::new(config.prewarm, metrics.warm_gauge()),
            reset_refused: std::sync::atomic::AtomicBool::new(false),
            cut: CancellationToken::new(),
            material: 0,
            tls,
            acceptor,
            redis,
            connect_to,
            config,
            metrics,
        }
    }

    /// What each side speaks, for the start-up line.
    pub fn describe_tls(&self) -> String {
        let upstream = if self.config.connect_tls {
            self.tls.describe()
        } else {
            "plain TCP".into()
        };
        match self.acceptor {
            Some(_) => format!("clients: TLS; upstream: {upstream}"),
            None => upstream,
        }
    }

    /// A permit for one more connection; `Err` when `maxConnections` are already open.
    fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match &self.limit {
            None => Ok(None),
            Some(sem) => sem.clone().try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }
}

/// Serves a cluster node listener as a service of its own (see [`crate::redis::nodes`]).
pub fn serve_node(
    node: crate::redis::nodes::NodeSection,
    listener: Listener,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut shared = Shared::from_parts(
        node.config,
        node.connect_to,
        node.tls,
        node.acceptor,
        Some(node.cluster),
        node.metrics,
    );
    shared.cut = node.cut;
    let serving = accept_loop(listener, Arc::new(shared), tracker, stop);
    Box::pin(async move {
        serving.await;
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Accepts until `stop` fires; connections are spawned on `tracker` so that the caller can
/// wait for them to finish. Hands the listener back, so that a reload that changes only the
/// upstream side keeps the port open (clients queue in the backlog meanwhile). The address
/// counts as retunnel's own (see [`crate::own`]) from this call on, not from the first poll.
pub fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> impl Future<Output = Listener> {
    let own = crate::own::Listening::register(listener.tcp_addr());
    async move {
        let listener = accept_until(listener, shared, tracker, stop).await;
        drop(own);
        listener
    }
}

async fn accept_until(
    listener: Listener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> Listener {
    // Failed accepts in a row: a burst of them (EMFILE) is logged once, at its start.
    let mut failing = 0u64;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return listener,
            r = listener.accept() => r,
        };
        if accepted.is_ok() && failing > 0 {
            info!(failed = failing, "accepting again");
            failing = 0;
        }
        match accepted {
            Ok((sock, peer)) => match shared.admit() {
                Ok(permit) => spawn_connection(sock, peer, permit, &shared, &tracker),
                Err(()) => {
                    shared.metrics.refused();
                    warn!(%peer, limit = shared.config.max_connections, "connection limit reached (maxConnections); closing the new client");
                    drop(sock);
                }
            },
            Err(e) => {
                // EMFILE/ENFILE (out of file descriptors) would otherwise spin this loop at
                // full speed; back off and let open connections finish.
                if failing == 0 {
                    match crate::process::out_of_descriptors(&e) {
                        Some(fix) => error!(
                            "cannot accept clients: {fix}; retrying every 100 ms, logged once until a client is accepted again"
                        ),
                        None => {
                            error!(error = %e, "accept failed; retrying every 100 ms, logged once until a client is accepted again")
                        }
                    }
                }
                failing += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn spawn_connection(
    sock: Client,
    peer: Peer,
    permit: Option<OwnedSemaphorePermit>,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("conn", id, %peer, worker = tracing::field::Empty);
    let shared = shared.clone();
    let open = shared.metrics.accepted();
    let cut = shared.cut.clone();
    let memory = crate::memory::opened();
    let metrics = shared.metrics.clone();
    let lost = move || metrics.closed(crate::metrics::Close::Error);
    crate::workers::spawn(
        tracker,
        sock,
        move |sock, worker| {
            async move {
                tracing::Span::current().record("worker", worker);
                // Made and pinned inside the task's future: captured ready-made, or handed to
                // select! by value, it would be stored twice in the task (measured: 65 KB per
                // idle connection instead of 33).
                let conn = crate::connection::handle(sock, shared, cut.clone());
                tokio::pin!(conn);
                // A connection cut while relaying logs its own line (see `connection::handle`);
                // this covers one cut before that, still connecting.
                tokio::select! {
                    biased;
                    () = &mut conn => {}
                    () = cut.cancelled() => info!(reason = %"shutdown", "connection closed before it was relaying"),
                }
                drop(permit); // the slot frees when the connection is done
                drop(open);
                drop(memory); // may give what the connection freed back to the system
            }
            .instrument(span)
        },
        lost,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection's task holds is its future: it was 65 KB once (a future
    /// stored twice, the Redis relay's inline, the opening futures kept beside the relay's).
    #[test]
    fn a_connection_task_stays_small() {
        fn size_of_output<F>(_: impl Fn(Client, Arc<Shared>) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let task = size_of_output(|sock, shared| {
            crate::connection::handle(sock, shared, tokio_util::sync::CancellationToken::new())
        });
        assert!(task <= 4096, "a connection's future takes {task} bytes");
    }
}
