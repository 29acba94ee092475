//! One service's accept loop. It only accepts: every connection gets its own task, so a slow
//! DNS answer, connect or handshake never holds up the next client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info_span};

use crate::config::ServiceConfig;
use crate::tls::TlsClient;
use crate::upstream::ConnectTo;

/// What every connection of a service needs, shared between its tasks.
#[derive(Debug)]
pub struct Shared {
    /// The section's settings.
    pub config: ServiceConfig,
    /// Its TLS client.
    pub tls: TlsClient,
    /// `--connect-to` mappings.
    pub connect_to: ConnectTo,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Accepts until `stop` fires; connections are spawned on `tracker` so that the caller can
/// wait for them to finish. Hands the listener back, so that a reload that changes only the
/// upstream side keeps the port open (clients queue in the backlog meanwhile).
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> TcpListener {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return listener,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => spawn_connection(sock, peer, &shared, &tracker),
            Err(e) => {
                // EMFILE/ENFILE (out of file descriptors) would otherwise spin this loop at
                // full speed; back off and let open connections finish.
                error!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn spawn_connection(sock: tokio::net::TcpStream, peer: SocketAddr, shared: &Arc<Shared>, tracker: &TaskTracker) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("conn", id, %peer);
    tracker.spawn(crate::connection::handle(sock, shared.clone()).instrument(span));
}
