//! What a section gives the connection core ([`crate::connection`]): its client side opened
//! with the section's socket options and TLS, its upstreams (warm when it keeps some, else
//! dialed), and the protocol between them: bytes, or Redis with its cluster node listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::debug;

use crate::connection::Section;
use crate::listener::Client;
use crate::metrics::ServiceMetrics;
use crate::open::{self, Accepted, Opened};
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
            tokio_util::either::Either::Left(tls) => {
                debug!(upstream = %opened.conn.addr, resumed = crate::tls::resumed(tls.session()), "upstream ready");
            }
            tokio_util::either::Either::Right(_) => debug!(upstream = %opened.conn.addr, "upstream ready"),
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

    async fn relay(&self, client: Accepted, upstream: Opened, counters: Arc<Counters>) -> End {
        let idle = self.config.idle_timeout;
        let (Some(cluster), Ok(ip)) = (&self.redis, client.local_ip) else {
            return relay::relay(client.stream, upstream.conn.stream, idle, counters).await;
        };
        cluster.reached(upstream.conn.addr.ip());
        let up = crate::redis::relay::Upstream {
            stream: upstream.conn.stream,
            addr: upstream.conn.addr,
            reach: self,
            reset_first: upstream.warm,
            on_readonly: self.config.redis.as_ref().map(|r| r.on_readonly).unwrap_or_default(),
        };
        crate::redis::relay::relay((client.stream, client.fd), up, ip, cluster.clone(), idle, counters).await
    }

    fn no_client_cert(&self) -> bool {
        self.config.connect_tls && self.config.tls.identity.is_none()
    }
}
