//! One client connection, in its own task: open the client side, reach an upstream, relay,
//! account for the end and log one line. Nothing here may block the accept loop or another
//! connection.
//!
//! This is the relay core, a leaf: it knows nothing of services, warm connections or Redis.
//! Everything that differs between sections comes from outside through [`Section`]: how the
//! client side is opened (socket options, server-mode TLS), where the upstream comes from
//! (dialed afresh, kept warm, reused) and what goes back afterwards, and which protocol
//! speaks between the two (bytes, or Redis).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::listener::Client;
use crate::metrics::{Close, ServiceMetrics};
use crate::relay::{Counters, End};
use crate::upstream;

/// What a connection is given from outside: its two ends and the protocol between them.
pub trait Section: Send + Sync {
    /// The client's side, opened.
    type Client: Send;
    /// An upstream connection, ready to relay.
    type Upstream: Send;

    /// The section's counters.
    fn metrics(&self) -> &ServiceMetrics;

    /// Opens the client side; `None`: the client is gone (already logged).
    fn open_client(&self, client: Client) -> impl Future<Output = Option<Self::Client>> + Send;

    /// An upstream for this client; `Err`: none (already logged), and why, for the client.
    fn open_upstream(&self) -> impl Future<Output = Result<Self::Upstream, String>> + Send;

    /// Tells the client that no upstream could be reached, as its protocol allows.
    fn refuse(&self, client: Self::Client, why: &str) -> impl Future<Output = ()> + Send;

    /// The address `upstream` reached, for the log line.
    fn upstream_addr(upstream: &Self::Upstream) -> SocketAddr;

    /// Relays until the connection is done (and hands back what outlives it).
    fn relay(
        &self,
        client: Self::Client,
        upstream: Self::Upstream,
        counters: Arc<Counters>,
    ) -> impl Future<Output = End> + Send;

    /// The upstream is TLS without a client certificate: a server that closes before
    /// answering may want one (said in the log line).
    fn no_client_cert(&self) -> bool;
}

/// Serves one accepted client until both directions are done, or `cut` fires (at shutdown,
/// once `TIMEOUTclose` is over).
///
/// The task's future is what an idle connection costs, so it is kept to the relay's own:
/// opening both ends runs in a future of its own, boxed and gone before relaying starts, and
/// the opened ends are moved into the relay inside a block, so that their slots are not kept
/// beside it.
pub async fn handle<S: Section>(client: Client, section: Arc<S>, cut: CancellationToken) {
    let started = Instant::now();
    let metrics = section.metrics();
    let counters = Arc::new(Counters::within(metrics.bytes.clone()));
    let (relaying, addr) = {
        let Some((client, upstream)) = Box::pin(open_both(client, &*section)).await else {
            return;
        };
        let addr = S::upstream_addr(&upstream);
        (section.relay(client, upstream, counters.clone()), addr)
    };
    // Pinned where it is: handed to select! by value it would be kept twice.
    tokio::pin!(relaying);
    // At shutdown, past `TIMEOUTclose`, the relay is dropped (both sockets close) and the
    // connection still gets its line, with what it moved.
    let end = tokio::select! {
        biased;
        end = &mut relaying => Some(end),
        () = cut.cancelled() => None,
    };
    metrics.closed(match end {
        Some(End::Closed) => Close::Closed,
        Some(End::Idle(_)) => Close::Idle,
        Some(End::Error(_)) | None => Close::Error,
    });
    log_end(end.as_ref(), addr, &counters, started, section.no_client_cert());
}

/// Opens the client side, then an upstream; `None` when either failed (logged and counted,
/// and the client told when its protocol allows).
async fn open_both<S: Section>(client: Client, section: &S) -> Option<(S::Client, S::Upstream)> {
    let metrics = section.metrics();
    let Some(client) = section.open_client(client).await else {
        metrics.closed(Close::ClientHandshake);
        return None;
    };
    match section.open_upstream().await {
        Ok(upstream) => Some((client, upstream)),
        Err(why) => {
            metrics.closed(Close::UpstreamFailed);
            section.refuse(client, &why).await;
            None
        }
    }
}

/// The connection's one line; `end` is `None` for a connection cut at shutdown.
fn log_end(end: Option<&End>, upstream: SocketAddr, c: &Counters, started: Instant, no_client_cert: bool) {
    let up = c.up.load(Ordering::Relaxed);
    let down = c.down.load(Ordering::Relaxed);
    let ms = started.elapsed().as_millis() as u64;
    let Some(end) = end else {
        info!(%upstream, bytes_up = up, bytes_down = down, duration_ms = ms, reason = %"shutdown", "connection closed");
        return;
    };
    let reason = match end {
        End::Closed => "closed".to_string(),
        End::Idle(d) => format!("idle for {}s (TIMEOUTidle)", d.as_secs()),
        // A TLS 1.3 server that demands a client certificate says so in an alert after the
        // handshake, which a reset often overtakes: say what the likely cause is.
        End::Error(e) if crate::tls::after_handshake(e).is_some() => {
            format!("error: {}", crate::tls::after_handshake(e).unwrap_or_default())
        }
        End::Error(e)
            if down == 0
                && no_client_cert
                && !crate::relay::is_client_side(e)
                && matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof)
                && !e.to_string().contains("client certificate") =>
        {
            format!(
                "error: {}; the server closed before answering: if it requires client certificates, set `cert` and `key`",
                upstream::describe_io(e)
            )
        }
        End::Error(e) => format!("error: {}", upstream::describe_io(e)),
    };
    info!(%upstream, bytes_up = up, bytes_down = down, duration_ms = ms, %reason, "connection closed");
}
