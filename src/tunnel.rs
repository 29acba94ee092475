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
        hint: std::borrow::Cow<'static, str>,
    },
}

/// Every service bound, not yet accepting (so that the pid file is written and privileges are
/// dropped before the first client is served).
#[derive(Debug)]
pub struct Bound {
    services: Vec<(Vec<Listener>, Arc<Shared>)>,
    connect_to: ConnectTo,
    metrics: Arc<Metrics>,
    cut: CancellationToken,
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
    /// Cuts every open connection (each logs its line) once `TIMEOUTclose` is over.
    cut: CancellationToken,
}

/// How long cut connections get to log their line and close at shutdown.
const CUT_GRACE: Duration = Duration::from_secs(2);

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
        let cut = CancellationToken::new();
        let mut shared = Vec::with_capacity(services.len());
        for config in services {
            shared.push(Arc::new(prepare(config, connect_to, &metrics, &cut)?));
        }
        let mut bound = Vec::with_capacity(shared.len());
        for s in shared {
            bound.push((bind(&s, s.config.accept.iter())?, s));
        }
        Ok(Bound {
            services: bound,
            connect_to: connect_to.clone(),
            metrics,
            cut,
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
            cluster.attach(&self.tracker, &lifetime, service::serve_node, &self.cut);
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
        let shared =
            Arc::new(prepare(config, &self.connect_to, &self.metrics, &self.cut).map_err(ReloadError::NotStarted)?);
        let listeners =
            bind(&shared, shared.config.accept.iter()).map_err(|e| ReloadError::NotStarted(self.held_here(e)))?;
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
        let mut fresh = prepare(config, &self.connect_to, &self.metrics, &self.cut).map_err(ReloadError::KeptOld)?;
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
        // the warm connections stay, unless the TLS files changed: they were verified (or
        // presented a certificate) by the old ones, and a new CRL may revoke their server.
        if same {
            fresh.redis.clone_from(&old.redis);
            if old.material == fresh.material {
                fresh.warm.clone_from(&old.warm);
            } else if let Some(warm) = &old.warm {
                let closed = warm.close();
                info!(service = %name, closed, "TLS files changed (CAfile/CApath/CRL/cert/key): warm connections closed; opening new ones");
            }
        }
        let shared = Arc::new(fresh);
        let new_only = shared
            .config
            .accept
            .iter()
            .zip(&kept)
            .filter(|(_, k)| !**k)
            .map(|(a, _)| a);
        let mut added = bind(&shared, new_only)
            .map_err(|e| ReloadError::KeptOld(self.held_here(e)))?
            .into_iter();
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

    /// A bind that failed because another section of this retunnel holds the address (two
    /// sections that swap ports in one reload): say so, instead of blaming another program.
    /// Sections are changed one at a time and each keeps serving until its new listeners are
    /// bound, so a swap cannot be done in place.
    fn held_here(&self, e: StartError) -> StartError {
        let StartError::Bind {
            service,
            addr,
            source,
            hint,
        } = e
        else {
            return e;
        };
        let holder = self
            .services
            .values()
            .find(|r| r.shared.config.name != service && r.shared.config.accept.contains(&addr));
        let hint = match holder {
            Some(r) if source.kind() == io::ErrorKind::AddrInUse => format!(
                "section [{}] of this retunnel still listens there: sections cannot swap addresses in one reload; restart retunnel, or move [{}] to a free address, reload, then reload again",
                r.shared.config.name, r.shared.config.name
            )
            .into(),
            _ => hint,
        };
        StartError::Bind {
            service,
            addr,
            source,
            hint,
        }
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
        drain(&self.tracker, grace, &self.cut).await
    }
}

/// Waits up to `grace` for the (closed) tracker's tasks to end, then fires `cut` and gives
/// the rest [`CUT_GRACE`] to log their line and close. Returns how many were cut.
async fn drain(tracker: &TaskTracker, grace: Duration, cut: &CancellationToken) -> usize {
    if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
        return 0;
    }
    let left = tracker.len();
    warn!(left, "connections still open after TIMEOUTclose; closing them");
    cut.cancel();
    // Each cut connection logs its line as it ends; the bound only guards against a task
    // that does not end.
    let _ = tokio::time::timeout(CUT_GRACE, tracker.wait()).await;
    left
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
            cut: self.cut,
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

/// Loads a section's TLS settings: everything a connection shares; `cut` ends its
/// connections at shutdown.
fn prepare(
    config: ServiceConfig,
    connect_to: &ConnectTo,
    metrics: &Metrics,
    cut: &CancellationToken,
) -> Result<Shared, StartError> {
    let service = config.name.clone();
    let counters = metrics.service(&service);
    let mut shared =
        Shared::new(config, connect_to.clone(), counters).map_err(|source| StartError::Tls { service, source })?;
    shared.cut = cut.clone();
    Ok(shared)
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
                hint: listen_hint(&source, addr).into(),
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
        // `::ffff:127.0.0.1` (an IPv4-mapped address) is loopback too.
        .filter(|a| !a.ip().to_canonical().is_loopback());
    for addr in open.filter(|_| c.accept_tls.is_none()) {
        out.push(format!(
            "accept {addr}: plain-text Redis traffic is accepted from the network, not only from this host; use 127.0.0.1 unless other hosts must reach this tunnel"
        ));
    }
    let off_host = |t: &crate::config::Target| match &t.host {
        crate::config::Host::Ip(ip) => !ip.to_canonical().is_loopback(),
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

/// What to do when an `accept` address cannot be bound: a Unix socket path has its own
/// causes (shared with `check`).
pub fn listen_hint(e: &io::Error, addr: &Listen) -> &'static str {
    if !matches!(addr, Listen::Unix(_)) {
        return bind_hint(e);
    }
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "stop the process that listens on it (see `ss -lxp`), or choose another socket path in `accept`"
        }
        io::ErrorKind::PermissionDenied => {
            "retunnel may not create a file in that directory; fix its permissions or choose another socket path in `accept`"
        }
        _ => bind_hint(e),
    }
}

/// What to do when a TCP address cannot be bound (shared with `check` and `metrics`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// TIMEOUTclose on paused time (the process test only checks that connections are cut
    /// and logged): connections that finish within the grace are waited for, the rest are
    /// cut when it is over, not before and not later.
    #[tokio::test(start_paused = true)]
    async fn drain_waits_the_grace_then_cuts_the_rest() {
        let tracker = TaskTracker::new();
        let cut = CancellationToken::new();
        let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
        for (i, finishes_after) in [(0, Some(2)), (1, None), (2, None)] {
            let (cut, ended) = (cut.clone(), ended.clone());
            tracker.spawn(async move {
                let done = async {
                    match finishes_after {
                        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = done => ended.lock().unwrap().push((i, "finished", Instant::now())),
                    () = cut.cancelled() => ended.lock().unwrap().push((i, "cut", Instant::now())),
                }
            });
        }
        tracker.close();
        let start = Instant::now();
        assert_eq!(drain(&tracker, Duration::from_secs(5), &cut).await, 2);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let ended = ended.lock().unwrap();
        assert_eq!(ended.len(), 3, "{ended:?}");
        for (i, how, at) in ended.iter() {
            let (want, after) = if *i == 0 { ("finished", 2) } else { ("cut", 5) };
            assert_eq!(
                (*how, *at - start),
                (want, Duration::from_secs(after)),
                "connection {i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drain_returns_as_soon_as_every_connection_is_done() {
        let tracker = TaskTracker::new();
        tracker.spawn(tokio::time::sleep(Duration::from_millis(300)));
        tracker.close();
        let start = Instant::now();
        assert_eq!(
            drain(&tracker, Duration::from_secs(60), &CancellationToken::new()).await,
            0
        );
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }
}
