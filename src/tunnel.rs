//! The whole set of services: bind every listener first (all or nothing), then serve until the
//! shutdown signal, then let open connections finish within `TIMEOUTclose`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::ServiceConfig;
use crate::service::{self, Shared};
use crate::sockopt;
use crate::tls;
use crate::upstream::ConnectTo;

/// Why the tunnel could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A section's TLS settings could not be loaded.
    #[error("[{service}] {source}")]
    Tls {
        /// The section.
        service: String,
        /// What failed.
        source: tls::SetupError,
    },
    /// A section could not listen.
    #[error("[{service}] cannot listen on {addr}: {source}; {hint}")]
    Bind {
        /// The section.
        service: String,
        /// The `accept` address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
}

/// Every service bound and ready to serve.
#[derive(Debug)]
pub struct Tunnel {
    services: Vec<(TcpListener, Arc<Shared>)>,
}

impl Tunnel {
    /// Sets up TLS for every service, then binds every `accept` address. If any of it fails,
    /// whatever was bound is closed again and nothing listens.
    pub async fn bind(services: Vec<ServiceConfig>, connect_to: &ConnectTo) -> Result<Tunnel, StartError> {
        let mut shared = Vec::with_capacity(services.len());
        for config in services {
            let service = config.name.clone();
            let s = Shared::new(config, connect_to.clone()).map_err(|source| StartError::Tls { service, source })?;
            shared.push(Arc::new(s));
        }
        let mut bound = Vec::with_capacity(shared.len());
        for s in shared {
            let addr = s.config.accept;
            let listener =
                sockopt::bind_listener(addr, &s.config.socket_options).map_err(|source| StartError::Bind {
                    service: s.config.name.clone(),
                    addr,
                    hint: bind_hint(&source),
                    source,
                })?;
            bound.push((listener, s));
        }
        Ok(Tunnel { services: bound })
    }

    /// The addresses actually bound, in section order (useful with port 0 in tests).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.services.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
    }

    /// Serves until `shutdown` is cancelled, then waits for open connections, at most the
    /// longest `TIMEOUTclose` of the services. Returns how many were still open when it gave up.
    pub async fn serve(self, shutdown: CancellationToken) -> usize {
        let tracker = TaskTracker::new();
        let grace = self
            .services
            .iter()
            .map(|(_, s)| s.config.close_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let mut loops = Vec::new();
        for (listener, shared) in self.services {
            announce(&listener, &shared);
            let span = tracing::info_span!("service", service = %shared.config.name);
            let fut = service::accept_loop(listener, shared, tracker.clone(), shutdown.clone());
            loops.push(tokio::spawn(tracing::Instrument::instrument(fut, span)));
        }
        shutdown.cancelled().await;
        for l in loops {
            let _ = l.await; // the listeners close here
        }
        tracker.close();
        let open = tracker.len();
        if open == 0 {
            return 0;
        }
        info!(
            open,
            grace_s = grace.as_secs(),
            "stopped accepting; waiting for open connections (TIMEOUTclose)"
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            let left = tracker.len();
            warn!(left, "connections still open after TIMEOUTclose; closing them");
            return left;
        }
        0
    }
}

fn announce(listener: &TcpListener, s: &Shared) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| s.config.accept.to_string());
    let targets: Vec<String> = s.config.connect.iter().map(|t| t.to_string()).collect();
    info!(
        service = %s.config.name,
        accept = %addr,
        connect = %targets.join(", "),
        tls = %s.describe_tls(),
        "listening"
    );
    if !s.config.accept.ip().is_loopback() && s.acceptor.is_none() {
        warn!(service = %s.config.name, accept = %addr,
            "plain-text Redis traffic is accepted from the network, not only from this host; use 127.0.0.1 unless other hosts must reach this tunnel");
    }
    if s.config.connect_tls && !s.config.tls.verify_chain {
        warn!(service = %s.config.name,
            "the upstream certificate is NOT verified (verifyChain = no / verify = 0): anyone on the path can read and change the traffic");
    }
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "another program listens there (see `ss -ltnp`); stop it or choose another port in `accept`"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port above 1023"
        }
        io::ErrorKind::AddrNotAvailable => "this host has no such address; use 127.0.0.1 or one of its own addresses",
        _ => "check the `accept` address",
    }
}
