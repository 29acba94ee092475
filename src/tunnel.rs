//! The whole set of services: bind every listener first (all or nothing), serve, apply a new
//! set of sections on reload (each service is a handle that can be stopped on its own), and at
//! shutdown let open connections finish within `TIMEOUTclose`.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::ServiceConfig;
use crate::metrics::Metrics;
use crate::service::{self, Shared};
use crate::sockopt;
use crate::sockopt::{Side, SocketOption};
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

/// Every service bound, not yet accepting (so that the pid file is written and privileges are
/// dropped before the first client is served).
#[derive(Debug)]
pub struct Bound {
    services: Vec<(TcpListener, Arc<Shared>)>,
    connect_to: ConnectTo,
    metrics: Arc<Metrics>,
}

/// One service while it accepts: its accept-loop task, the token that stops that loop, and what
/// its connections share. Connections are not owned here: they run on the tunnel's tracker, so
/// stopping a service never cuts them.
#[derive(Debug)]
struct Running {
    shared: Arc<Shared>,
    /// Stops the accept loop only (a restart on reload).
    stop: CancellationToken,
    /// Stops everything the section owns beyond its accept loop: its cluster node listeners.
    /// Kept across a reload that leaves the section unchanged; `stop` is its child.
    lifetime: CancellationToken,
    task: JoinHandle<TcpListener>,
}

/// Every service accepting, by section name, and every open connection.
#[derive(Debug)]
pub struct Tunnel {
    services: BTreeMap<String, Running>,
    /// Every connection of every service, current or removed, for draining at shutdown.
    tracker: TaskTracker,
    connect_to: ConnectTo,
    /// Every section's counters.
    metrics: Arc<Metrics>,
}

/// What a reload did, for its log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Sections started.
    pub added: usize,
    /// Sections that stopped accepting.
    pub removed: usize,
    /// Sections restarted with new settings.
    pub changed: usize,
    /// Sections left as they were.
    pub unchanged: usize,
    /// Sections whose new settings could not be applied (each logged).
    pub failed: usize,
}

impl Tunnel {
    /// Sets up TLS for every service, then binds every `accept` address. If any of it fails,
    /// whatever was bound is closed again and nothing listens. The sections count in `metrics`.
    pub async fn bind(
        services: Vec<ServiceConfig>,
        connect_to: &ConnectTo,
        metrics: Arc<Metrics>,
    ) -> Result<Bound, StartError> {
        metrics.configured(&services);
        let mut shared = Vec::with_capacity(services.len());
        for config in services {
            shared.push(Arc::new(prepare(config, connect_to, &metrics)?));
        }
        let mut bound = Vec::with_capacity(shared.len());
        for s in shared {
            bound.push((listen(&s).await?, s));
        }
        Ok(Bound {
            services: bound,
            connect_to: connect_to.clone(),
            metrics,
        })
    }

    /// Starts a service's accept loop; `announce` logs its "listening" line and warnings.
    /// `lifetime` is the section's own (new) or the one it had before an unchanged reload.
    fn spawn(&mut self, listener: TcpListener, shared: Arc<Shared>, announce: bool, lifetime: CancellationToken) {
        if announce {
            self::announce(&listener, &shared);
        }
        if let Some(cluster) = &shared.redis {
            cluster.attach(&self.tracker, &lifetime);
        }
        shared.metrics.listening(&shared.config);
        let stop = lifetime.child_token();
        let span = tracing::info_span!("service", service = %shared.config.name);
        let fut = service::accept_loop(listener, shared.clone(), self.tracker.clone(), stop.clone());
        let task = tokio::spawn(tracing::Instrument::instrument(fut, span));
        let running = Running {
            shared,
            stop,
            lifetime,
            task,
        };
        let old = self.services.insert(running.shared.config.name.clone(), running);
        debug_assert!(old.is_none(), "a running service was replaced without being stopped");
    }

    /// Stops a service for good (its node listeners too) and returns its listener; its
    /// connections go on.
    async fn stop(&mut self, name: &str) -> Option<TcpListener> {
        let (listener, lifetime) = self.pause(name).await?;
        lifetime.cancel();
        listener
    }

    /// Stops a service's accept loop only; returns its listener and its lifetime token.
    async fn pause(&mut self, name: &str) -> Option<(Option<TcpListener>, CancellationToken)> {
        let running = self.services.remove(name)?;
        running.stop.cancel();
        running.shared.metrics.stopped();
        Some((running.task.await.ok(), running.lifetime))
    }

    /// Applies a new set of sections: removed ones stop accepting, added ones start, changed
    /// ones restart (on the same listener when `accept` did not change). Open connections are
    /// never cut. A section whose new settings fail (TLS files, bind) is logged and keeps its
    /// old settings, or does not start if it is new; the others are not disturbed.
    pub async fn reload(&mut self, services: Vec<ServiceConfig>) -> ReloadSummary {
        let mut sum = ReloadSummary::default();
        self.metrics.configured(&services);
        let removed: Vec<String> = self
            .services
            .keys()
            .filter(|name| !services.iter().any(|s| &&s.name == name))
            .cloned()
            .collect();
        // Removed sections go first, so that a section added on a freed port can bind it.
        for name in removed {
            self.stop(&name).await;
            info!(service = %name, "removed: no longer accepting; its open connections continue");
            sum.removed += 1;
        }
        for config in services {
            match self.services.get(&config.name) {
                Some(r) => {
                    let same = r.shared.config == config;
                    match self.change(config).await {
                        Ok(()) if same => sum.unchanged += 1,
                        Ok(()) => sum.changed += 1,
                        Err(e) => sum.fail(e),
                    }
                }
                None => match self.add(config).await {
                    Ok(()) => sum.added += 1,
                    Err(e) => sum.fail(e),
                },
            }
        }
        sum
    }

    async fn add(&mut self, config: ServiceConfig) -> Result<(), ReloadError> {
        let shared = Arc::new(prepare(config, &self.connect_to, &self.metrics).map_err(ReloadError::NotStarted)?);
        let listener = listen(&shared).await.map_err(ReloadError::NotStarted)?;
        self.spawn(listener, shared, true, CancellationToken::new());
        Ok(())
    }

    /// Restarts a section with new settings, or with the same ones: its TLS files are read
    /// again either way, so that a renewed CA bundle is picked up by a reload, as stunnel does.
    /// Everything that can fail happens before the old loop stops, so a failure leaves the
    /// section running as it was.
    async fn change(&mut self, config: ServiceConfig) -> Result<(), ReloadError> {
        let Some(old) = self.services.get(&config.name).map(|r| r.shared.clone()) else {
            return self.add(config).await;
        };
        let mut fresh = prepare(config, &self.connect_to, &self.metrics).map_err(ReloadError::KeptOld)?;
        let name = fresh.config.name.clone();
        let same = old.config == fresh.config;
        let same_port = old.config.accept == fresh.config.accept;
        let accept_side = |c: &ServiceConfig| -> Vec<SocketOption> {
            let on_listener = |o: &&SocketOption| o.side == Side::Accept;
            c.socket_options.iter().filter(on_listener).copied().collect()
        };
        if same_port && accept_side(&old.config) != accept_side(&fresh.config) {
            warn!(service = %name, "`socket = a:` options apply when the port is bound: they take effect at the next restart or `accept` change");
        }
        // Connections opened before the reload hold permits of the old limit: sharing it
        // keeps `maxConnections` true across reloads.
        if old.config.max_connections == fresh.config.max_connections {
            fresh.limit.clone_from(&old.limit);
        }
        // Unchanged: cluster clients keep the node listener ports they were told about.
        if same {
            fresh.redis.clone_from(&old.redis);
        }
        let shared = Arc::new(fresh);
        let new_listener = match same_port {
            true => None,
            false => Some(listen(&shared).await.map_err(ReloadError::KeptOld)?),
        };
        let (old_listener, lifetime) = self.pause(&name).await.unwrap_or_default();
        let lifetime = if same {
            lifetime
        } else {
            lifetime.cancel();
            CancellationToken::new()
        };
        let listener = match new_listener.or(old_listener) {
            Some(l) => l,
            // The old loop panicked and took its listener with it: bind afresh.
            None => listen(&shared).await.map_err(ReloadError::NotStarted)?,
        };
        if same {
            debug!(service = %name, "unchanged: TLS files read again, listener and node listeners kept");
        } else {
            info!(service = %name, rebound = !same_port, "changed: restarting with the new settings");
        }
        self.spawn(listener, shared, !same, lifetime);
        Ok(())
    }

    /// Stops every accept loop, then waits for open connections, at most the longest
    /// `TIMEOUTclose` of the services. Returns how many were still open when it gave up.
    pub async fn shutdown(mut self) -> usize {
        let grace = self
            .services
            .values()
            .map(|r| r.shared.config.close_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let names: Vec<String> = self.services.keys().cloned().collect();
        for r in self.services.values() {
            r.lifetime.cancel();
        }
        for name in names {
            self.stop(&name).await; // the listeners close here
        }
        self.tracker.close();
        let open = self.tracker.len();
        if open == 0 {
            return 0;
        }
        info!(
            open,
            grace_s = grace.as_secs(),
            "stopped accepting; waiting for open connections (TIMEOUTclose)"
        );
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            let left = self.tracker.len();
            warn!(left, "connections still open after TIMEOUTclose; closing them");
            return left;
        }
        0
    }
}

impl ReloadSummary {
    fn fail(&mut self, e: ReloadError) {
        error!("{e}");
        self.failed += 1;
    }
}

impl Bound {
    /// Starts every accept loop.
    pub fn start(self) -> Tunnel {
        let mut tunnel = Tunnel {
            services: BTreeMap::new(),
            tracker: TaskTracker::new(),
            connect_to: self.connect_to,
            metrics: self.metrics,
        };
        for (listener, shared) in self.services {
            tunnel.spawn(listener, shared, true, CancellationToken::new());
        }
        tunnel
    }
}

/// Why one section's new settings were not applied on reload.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    /// A new section that could not start.
    #[error("{0}; this section is not running")]
    NotStarted(StartError),
    /// A changed section that keeps running with its previous settings.
    #[error("{0}; this section keeps running with its previous settings")]
    KeptOld(StartError),
}

/// Loads a section's TLS settings: everything a connection shares.
fn prepare(config: ServiceConfig, connect_to: &ConnectTo, metrics: &Metrics) -> Result<Shared, StartError> {
    let service = config.name.clone();
    let counters = metrics.service(&service);
    Shared::new(config, connect_to.clone(), counters).map_err(|source| StartError::Tls { service, source })
}

async fn listen(s: &Shared) -> Result<TcpListener, StartError> {
    let addr = s.config.accept;
    sockopt::bind_listener(addr, &s.config.socket_options).map_err(|source| StartError::Bind {
        service: s.config.name.clone(),
        addr,
        hint: bind_hint(&source),
        source,
    })
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
    for w in risks(&s.config) {
        warn!(service = %s.config.name, "{w}");
    }
}

/// What in a section's settings exposes traffic, in words for the start-up log and for
/// `retunnel check` (which reports what the daemon would warn about).
pub fn risks(c: &ServiceConfig) -> Vec<String> {
    let mut out = Vec::new();
    if !c.accept.ip().is_loopback() && c.accept_tls.is_none() {
        out.push(format!(
            "accept {}: plain-text Redis traffic is accepted from the network, not only from this host; use 127.0.0.1 unless other hosts must reach this tunnel",
            c.accept
        ));
    }
    let off_host = |t: &crate::config::Target| match &t.host {
        crate::config::Host::Ip(ip) => !ip.is_loopback(),
        crate::config::Host::Name(n) => n != "localhost",
    };
    if !c.connect_tls && c.connect.iter().any(off_host) {
        out.push("the upstream is reached in plain text over the network; set `connectTLS = yes` if it speaks TLS, or connect to it on this host".into());
    }
    if c.connect_tls && !c.tls.verify_chain {
        out.push("the upstream certificate is NOT verified (verifyChain = no / verify = 0): anyone on the path can read and change the traffic".into());
    }
    out
}

/// What to do when an `accept` address cannot be bound (shared with `check`).
pub fn bind_hint(e: &io::Error) -> &'static str {
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
