//! One client connection, in its own task: reach the upstream (resolve, TCP, TLS, each
//! bounded by `TIMEOUTconnect`), relay, and log one line when it ends. Nothing here may block
//! the accept loop or another connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::relay::{self, Counters, End};
use crate::service::Shared;
use crate::upstream;

/// Serves one accepted client until both directions are done.
pub async fn handle(mut client: TcpStream, shared: Arc<Shared>) {
    let started = Instant::now();
    let _ = client.set_nodelay(true);
    let svc = &shared.config;
    let connected = match upstream::connect(&svc.connect, &shared.connect_to, svc.connect_timeout).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot reach upstream; closing client");
            redis_error(&mut client, &shared, &format!("cannot reach upstream: {e}")).await;
            return;
        }
    };
    let upstream_addr = connected.addr;
    let host = &svc.connect[connected.target].host;
    let tls = match tokio::time::timeout(svc.connect_timeout, shared.tls.handshake(host, connected.stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(upstream = %upstream_addr, error = %e, "TLS handshake failed; closing client");
            redis_error(&mut client, &shared, &e.to_string()).await;
            return;
        }
        Err(_) => {
            warn!(upstream = %upstream_addr, timeout_s = svc.connect_timeout.as_secs(), "TLS handshake timed out (TIMEOUTconnect); closing client");
            redis_error(
                &mut client,
                &shared,
                &format!("TLS handshake with {upstream_addr} timed out (TIMEOUTconnect)"),
            )
            .await;
            return;
        }
    };
    debug!(upstream = %upstream_addr, "upstream ready");
    let counters = Arc::new(Counters::default());
    let end = match &shared.redis {
        None => relay::relay(client, tls, svc.idle_timeout, counters.clone()).await,
        Some(cluster) => {
            let base = crate::redis::nodes::base_host(&svc.connect[connected.target]);
            crate::redis::relay::relay(client, tls, cluster.clone(), base, svc.idle_timeout, counters.clone()).await
        }
    };
    log_end(&end, upstream_addr, &counters, started);
}

/// In a `protocol = redis` section, the client hears why as a Redis error.
async fn redis_error(client: &mut TcpStream, shared: &Shared, why: &str) {
    if shared.redis.is_some() {
        crate::redis::send_error(client, why).await;
    }
}

fn log_end(end: &End, upstream: SocketAddr, c: &Counters, started: Instant) {
    let up = c.up.load(Ordering::Relaxed);
    let down = c.down.load(Ordering::Relaxed);
    let ms = started.elapsed().as_millis() as u64;
    let reason = match end {
        End::Closed => "closed".to_string(),
        End::Idle(d) => format!("idle for {}s (TIMEOUTidle)", d.as_secs()),
        End::Error(e) => format!("error: {}", upstream::describe_io(e)),
    };
    info!(%upstream, bytes_up = up, bytes_down = down, duration_ms = ms, %reason, "connection closed");
}
