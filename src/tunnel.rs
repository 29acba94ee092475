//! The whole set of services: bind every listener first (all or nothing), serve, apply a new
//! set of sections on reload (each service is a handle that can be stopped on its own), and at
//! shutdown let open connections finish within `TIMEOUTclose`.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Listen, ServiceConfig};
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::service::{self, Shared};
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
        addr: Listen,
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
    services: Vec<(Vec<Listener>, Arc<Shared>)>,
    connect_to: ConnectTo,
    metrics: Arc<Metrics>,
}

/// One service while it accepts: its accept-loop tasks (one per `accept`), the token that stops that loop, and what
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
    tasks: Vec<JoinHandle<Listener>>,
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
            bound.push((bind(&s, s.config.accept.iter())?, s));
        }
        Ok(Bound {
            services: bound,
            connect_to: connect_to.clone(),
            metrics,
        })
    }

    /// Starts a service's accept loops, one per listener; `announce` logs a "listening" line
    /// per listener and the section's warnings. `lifetime` is the section's own (new) or the
    /// one it had before an unchanged reload.
    fn spawn(&mut self, listeners: Vec<Listener>, shared: Arc<Shared>, announce: bool, lifetime: CancellationToken) {
        if announce {
            self::announce(&listeners, &shared);
        }
        if let Some(cluster) = &shared.redis {
            cluster.attach(&self.tracker, &lifetime, service::serve_node);
        }
        if let Some(warm) = &shared.warm {
            let s = shared.clone();
            let dial = move || {
                let s = s.clone();
                async move { crate::open::dial(&s).await }
            };
            warm.start(&shared.config.name, dial, &lifetime);
        }
        let bound: Vec<String> = listeners.iter().map(|l| l.local().to_string()).collect();
        shared.metrics.listening(&shared.config, bound.join(", "));
        let stop = lifetime.child_token();
        let span = tracing::info_span!("service", service = %shared.config.name);
        let tasks = listeners
            .into_iter()
            .map(|l| {
                let fut = service::accept_loop(l, shared.clone(), self.tracker.clone(), stop.clone());
                tokio::spawn(tracing::Instrument::instrument(fut, span.clone()))
            })
            .collect();
        let running = Running {
            shared,
            stop,
            lifetime,
            tasks,
        };
        let old = self.services.insert(running.shared.config.name.clone(), running);
        debug_assert!(old.is_none(), "a running service was replaced without being stopped");
    }

    /// Stops a service for good (its node listeners too) and closes its listeners (a Unix
    /// socket file goes with its listener); its connections go on.
    async fn stop(&mut self, name: &str) {
        if let Some((_listeners, lifetime)) = self.pause(name).await {
            lifetime.cancel();
        }
    }

    /// Stops a service's accept loops only; returns its listeners (those whose loop did not
    /// panic) and its lifetime token.
    async fn pause(&mut self, name: &str) -> Option<(Vec<Listener>, CancellationToken)> {
        let running = self.services.remove(name)?;
        running.stop.cancel();
        running.shared.metrics.stopped();
        let mut listeners = Vec::with_capacity(running.tasks.len());
        for task in running.tasks {
            listeners.extend(task.await.ok());
        }
        Some((listeners, running.lifetime))
    }

    /// Applies a new set of sections: removed ones stop accepting, added ones start, changed
    /// ones restart (keeping the listener of every `accept` address that stays). Open connections are
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
        let listeners = bind(&shared, shared.config.accept.iter()).map_err(ReloadError::NotStarted)?;
        self.spawn(listeners, shared, true, CancellationToken::new());
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
        // Addresses that stay keep their listener (and a port 0 its port).
        let kept = stays(&old.config.accept, &fresh.config.accept);
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
        // Unchanged: cluster clients keep the node listener ports they were told about, and
        // the warm connections stay.
        if same {
            fresh.redis.clone_from(&old.redis);
            fresh.warm.clone_from(&old.warm);
        }
        let shared = Arc::new(fresh);
        let new_only = shared
            .config
            .accept
            .iter()
            .zip(&kept)
            .filter(|(_, k)| !**k)
            .map(|(a, _)| a);
        let mut added = bind(&shared, new_only).map_err(ReloadError::KeptOld)?.into_iter();
        let (mut old_listeners, lifetime) = self.pause(&name).await.unwrap_or_default();
        let lifetime = if same {
            lifetime
        } else {
            lifetime.cancel();
            CancellationToken::new()
        };
        let mut listeners = Vec::with_capacity(kept.len());
        for (addr, kept) in shared.config.accept.iter().zip(kept) {
            let old = old_listeners.iter().position(|l| kept && l.listen == *addr);
            match (old, kept) {
                (Some(i), _) => listeners.push(old_listeners.swap_remove(i)),
                (None, false) => listeners.extend(added.next()),
                // An old loop that panicked took its listener with it: bind it afresh.
                (None, true) => listeners.extend(bind(&shared, [addr].into_iter()).map_err(ReloadError::NotStarted)?),
            }
        }
        // What is left of the old listeners are addresses that went: they close here.
        drop(old_listeners);
        if same {
            debug!(service = %name, "unchanged: TLS files read again, listener and node listeners kept");
        } else {
            info!(service = %name, rebound = !same_port, "changed: restarting with the new settings");
        }
        self.spawn(listeners, shared, !same, lifetime);
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
        for (listeners, shared) in self.services {
            tunnel.spawn(listeners, shared, true, CancellationToken::new());
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

/// For each new `accept` address, whether an old one of the same value stays for it (each
/// old address serves one new one: two `127.0.0.1:0` lines are two listeners).
fn stays(old: &[Listen], new: &[Listen]) -> Vec<bool> {
    let mut left: Vec<&Listen> = old.iter().collect();
    new.iter()
        .map(|a| match left.iter().position(|o| *o == a) {
            Some(i) => {
                left.swap_remove(i);
                true
            }
            None => false,
        })
        .collect()
}

/// Binds these `accept` addresses of a section, all or none (a failure closes what was bound).
fn bind<'a>(s: &Shared, addrs: impl Iterator<Item = &'a Listen>) -> Result<Vec<Listener>, StartError> {
    addrs
        .map(|addr| {
            Listener::bind(addr, &s.config.socket_options).map_err(|source| StartError::Bind {
                service: s.config.name.clone(),
                addr: addr.clone(),
                hint: bind_hint(&source),
                source,
            })
        })
        .collect()
}

/// One "listening" line per listener, naming where it really listens (the port the system
/// picked for port 0), then the section's warnings.
fn announce(listeners: &[Listener], s: &Shared) {
    let targets: Vec<String> = s.config.connect.iter().map(|t| t.to_string()).collect();
    for l in listeners {
        info!(
            service = %s.config.name,
            accept = %l.local(),
            connect = %targets.join(", "),
            tls = %s.describe_tls(),
            "listening"
        );
    }
    // The warnings name the addresses bound, not `:0`.
    let mut bound = s.config.clone();
    bound.accept = listeners.iter().map(Listener::bound).collect();
    for w in risks(&bound) {
        warn!(service = %s.config.name, "{w}");
    }
}

/// What in a section's settings exposes traffic, in words for the start-up log and for
/// `retunnel check` (which reports what the daemon would warn about).
pub fn risks(c: &ServiceConfig) -> Vec<String> {
    let mut out = Vec::new();
    let open = c
        .accept
        .iter()
        .filter_map(Listen::tcp)
        .filter(|a| !a.ip().is_loopback());
    for addr in open.filter(|_| c.accept_tls.is_none()) {
        out.push(format!(
            "accept {addr}: plain-text Redis traffic is accepted from the network, not only from this host; use 127.0.0.1 unless other hosts must reach this tunnel"
        ));
    }
    let off_host = |t: &crate::config::Target| match &t.host {
        crate::config::Host::Ip(ip) => !ip.is_loopback(),
        crate::config::Host::Name(n) => n != "localhost",
    };
    if !c.connect_tls && c.connect.iter().any(off_host) {
        out.push("the upstream is reached in plain text over the network; set `connectTLS = yes` if it speaks TLS, or connect to it on this host".into());
    }
    if c.connect_tls && !c.tls.verify_chain && !c.tls.verify_peer {
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
        io::ErrorKind::AlreadyExists => "remove that file, or choose another socket path in `accept`",
        io::ErrorKind::NotFound => {
            "the socket's directory does not exist; create it or choose another path in `accept`"
        }
        _ => "check the `accept` address",
    }
}
