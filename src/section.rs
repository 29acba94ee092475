//! What a section gives the connection core ([`crate::connection`]): its client side opened
//! with the section's socket options and TLS, its upstreams (warm when it keeps some, else
//! dialed), and the protocol between them: bytes, or Redis with its cluster node listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::either::Either;
use tracing::{debug, warn};

use crate::connection::Section;
use crate::listener::Client;
use crate::metrics::ServiceMetrics;
use crate::open::{self, Accepted, Dialed, Opened};
use crate::redis::reuse::{self, ResetError};
use crate::relay::{self, Counters, End};
use crate::service::Shared;

impl Section for Shared {
    type Client = Accepted;
    type Upstream = Opened;

    fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    async fn open_client(&self, client: Client) -> Option<Accepted> {
        open::open_client(client, self).await
    }

    async fn open_upstream(&self) -> Result<Opened, String> {
        let opened = open::open_upstream(self, true).await?;
        match &opened.conn.stream {
            Either::Left(tls) => {
                debug!(upstream = %opened.conn.addr, resumed = crate::tls::resumed(tls.session()), "upstream ready");
            }
            Either::Right(_) => debug!(upstream = %opened.conn.addr, "upstream ready"),
        }
        Ok(opened)
    }

    async fn refuse(&self, mut client: Accepted, why: &str) {
        if self.redis.is_some() {
            self.metrics.error_reply();
            crate::redis::send_error(&mut client.stream, why).await;
        }
    }

    fn upstream_addr(upstream: &Opened) -> SocketAddr {
        upstream.conn.addr
    }

    /// Not an `async fn`: the ends are handed to the relay here, so the future returned is
    /// the relay's alone (see [`crate::connection::handle`]).
    fn relay(&self, client: Accepted, upstream: Opened, counters: Arc<Counters>) -> impl Future<Output = End> + Send {
        let idle = self.config.idle_timeout;
        let (Some(cluster), Ok(ip)) = (&self.redis, client.local_ip) else {
            return Either::Left(relay::relay(client.stream, upstream.conn.stream, idle, counters));
        };
        cluster.reached(upstream.conn.addr.ip());
        let Dialed {
            stream,
            addr,
            target,
            fd,
        } = upstream.conn;
        let up = crate::redis::relay::Upstream {
            stream,
            addr,
            reach: self,
            reset_first: upstream.warm,
            reuse: self.warm.is_some() && !self.reset_refused.load(Ordering::Relaxed),
            on_readonly: self.config.redis.as_ref().map(|r| r.on_readonly).unwrap_or_default(),
        };
        // Boxed: the Redis relay's future is many times the plain one's (it can reopen an
        // upstream mid-connection), and inline it would size every connection's task.
        Either::Right(Box::pin(async move {
            let (end, back) =
                crate::redis::relay::relay((client.stream, client.fd), up, ip, cluster.clone(), idle, counters).await;
            if let Some(stream) = back {
                self.keep(Dialed {
                    stream,
                    addr,
                    target,
                    fd,
                })
                .await;
            }
            end
        }))
    }

    fn no_client_cert(&self) -> bool {
        self.config.connect_tls && self.config.tls.identity.is_none()
    }
}

impl Shared {
    /// Resets an upstream connection its client left at a clean point and gives it to the
    /// warm set for the next client (see [`crate::redis::reuse`]); closes it when that fails.
    async fn keep(&self, mut conn: Dialed) {
        let Some(warm) = &self.warm else { return };
        let upstream = conn.addr;
        match reuse::reset(&mut conn.stream, self.config.connect_timeout).await {
            Ok(()) if warm.give_back(conn) => {
                debug!(%upstream, "upstream connection reset and kept for the next client (reuse)")
            }
            Ok(()) => debug!(%upstream, "upstream connection reset, but the warm set is full; closed"),
            Err(ResetError::Refused(reply)) => {
                if !self.reset_refused.swap(true, Ordering::Relaxed) {
                    warn!(%upstream, %reply, "the server refused RESET (Redis before 6.2?): this section's upstream connections are not reused");
                }
            }
            Err(e) => debug!(%upstream, error = %e, "upstream connection not reused; closed"),
        }
    }
}
