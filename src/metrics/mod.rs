//! What the daemon counts and how it is read. Each section has a [`ServiceMetrics`] handle in
//! its shared state; connections bump it at the few points where they change state (accepted,
//! upstream reached or not, closed). A bump is one atomic add: nothing on the data path takes
//! a lock. The registry of sections has a lock, taken only when sections start, stop or are
//! read by a scrape.
//!
//! - [`histogram`]: the lock-free duration histogram.
//! - [`export`]: the Prometheus text (prometheus-client's encoder) and the table of metrics.
//! - [`health`]: the health rule, and the JSON of `/health` and `/status`.
//! - [`server`]: the HTTP listener (hyper) of `metrics = ADDR:PORT`.
//! - [`client`]: asking a running retunnel, for `retunnel status`.

pub mod client;
pub mod export;
pub mod health;
pub mod histogram;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::ServiceConfig;
use crate::relay::Counters;
use histogram::Histogram;

/// Why a client's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Both sides closed in turn.
    Closed,
    /// `TIMEOUTidle` ran out.
    Idle,
    /// A read or write failed while relaying.
    Error,
    /// No upstream could be reached (counted in the upstream failures too).
    UpstreamFailed,
    /// Server mode: the client's TLS handshake failed.
    ClientHandshake,
}

impl Close {
    /// Every reason, in the order of the counters.
    pub const ALL: [Close; 5] = [
        Close::Closed,
        Close::Idle,
        Close::Error,
        Close::UpstreamFailed,
        Close::ClientHandshake,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Close::Closed => "closed",
            Close::Idle => "idle_timeout",
            Close::Error => "error",
            Close::UpstreamFailed => "upstream_failed",
            Close::ClientHandshake => "client_handshake",
        }
    }
}

/// Where reaching the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// DNS and TCP.
    Connect,
    /// The TLS handshake.
    Handshake,
}

impl Stage {
    /// Both stages.
    pub const ALL: [Stage; 2] = [Stage::Connect, Stage::Handshake];

    /// The `stage` label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Handshake => "handshake",
        }
    }

    /// The reasons a failure at this stage can have.
    pub fn reasons(self) -> &'static [Reason] {
        match self {
            Stage::Connect => &[Reason::Dns, Reason::Refused, Reason::Unreachable, Reason::Timeout],
            Stage::Handshake => &[Reason::Timeout, Reason::TlsVerify, Reason::TlsOther],
        }
    }
}

/// Why reaching the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The host name did not resolve.
    Dns,
    /// Nothing listens there (connection refused).
    Refused,
    /// Any other TCP error (no route, reset, …).
    Unreachable,
    /// `TIMEOUTconnect` ran out.
    Timeout,
    /// The certificate did not verify.
    TlsVerify,
    /// Any other TLS failure.
    TlsOther,
}

impl Reason {
    /// Every reason, in the order of the counters.
    pub const ALL: [Reason; 6] = [
        Reason::Dns,
        Reason::Refused,
        Reason::Unreachable,
        Reason::Timeout,
        Reason::TlsVerify,
        Reason::TlsOther,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Refused => "refused",
            Reason::Unreachable => "unreachable",
            Reason::Timeout => "timeout",
            Reason::TlsVerify => "tls_verify",
            Reason::TlsOther => "tls_other",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|&r| r == self).unwrap_or(0)
    }
}

/// An error that knows which [`Reason`] it counts as.
pub trait Classify {
    /// The `reason` label.
    fn reason(&self) -> Reason;
}

impl Classify for std::io::Error {
    fn reason(&self) -> Reason {
        match self.kind() {
            std::io::ErrorKind::ConnectionRefused => Reason::Refused,
            std::io::ErrorKind::TimedOut => Reason::Timeout,
            _ => Reason::Unreachable,
        }
    }
}

impl Classify for crate::tls::HandshakeError {
    fn reason(&self) -> Reason {
        match self {
            crate::tls::HandshakeError::Verify { .. } => Reason::TlsVerify,
            _ => Reason::TlsOther,
        }
    }
}

/// What a `protocol = redis` rewrite changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// A `-MOVED`/`-ASK` redirect.
    Redirect,
    /// A topology reply (`CLUSTER SLOTS|SHARDS|NODES|REPLICAS`, also inside `EXEC`).
    Topology,
}

impl Rewrite {
    /// Both kinds.
    pub const ALL: [Rewrite; 2] = [Rewrite::Redirect, Rewrite::Topology];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Rewrite::Redirect => "redirect",
            Rewrite::Topology => "topology",
        }
    }
}

/// What `retunnel status` shows of a section beside its counters.
#[derive(Debug, Clone, Default)]
pub struct SectionInfo {
    /// Where it listens.
    pub accept: String,
    /// Its `connect` targets.
    pub connect: String,
    /// `protocol = redis`.
    pub redis: bool,
    /// `prewarm` > 0.
    pub prewarm: bool,
}

/// One section's counters. Shared by its connections, its node listeners and the scrapes; it
/// outlives a reload that changes the section, so counters keep counting.
#[derive(Debug)]
pub struct ServiceMetrics {
    /// When the process's metrics started: timestamps below are milliseconds after it, plus 1.
    clock: Instant,
    /// Where it listens and what it connects to (changed only when the section (re)starts).
    info: RwLock<SectionInfo>,
    /// Its accept loop runs.
    listening: AtomicBool,
    /// Connections open now.
    pub(crate) open: Gauge,
    /// Connections accepted.
    pub(crate) accepted: Counter,
    /// Clients closed at once by `maxConnections`.
    pub(crate) refused: Counter,
    /// Ended connections, by [`Close`].
    pub(crate) closed: [Counter; Close::ALL.len()],
    /// Failed attempts to reach the upstream, by [`Stage`] then [`Reason`].
    pub(crate) failures: [[Counter; Reason::ALL.len()]; Stage::ALL.len()],
    /// DNS and TCP connect durations (successful ones).
    pub(crate) connect_seconds: Histogram,
    /// TLS handshake durations (successful ones).
    pub(crate) handshake_seconds: Histogram,
    /// Successful TLS handshakes: full (0) and resumed (1).
    pub(crate) handshakes: [Counter; 2],
    /// Bytes relayed, both ways; every connection's counters add to these.
    pub bytes: Arc<Counters>,
    /// `prewarm`: upstream connections ready for new clients now.
    pub(crate) warm: Gauge,
    /// `protocol = redis`: node listeners open now.
    pub(crate) node_listeners: Gauge,
    /// Replies rewritten, by [`Rewrite`].
    pub(crate) rewrites: [Counter; Rewrite::ALL.len()],
    /// `-ERR retunnel: …` replies sent to Redis clients.
    pub(crate) error_replies: Counter,
    /// `-READONLY` replies met (a primary that was demoted): the connection replayed onto the
    /// new primary (0) or closed after the error (1).
    pub(crate) readonly: [Counter; 2],
    /// When the upstream was last reached (0: never).
    last_ok_ms: AtomicU64,
    /// When an attempt last failed (0: never).
    last_failed_ms: AtomicU64,
    /// The last failure's [`Reason`] index plus 1 (0: none yet).
    last_reason: AtomicU8,
}

/// Keeps a connection counted as open; dropping it closes it in the counts.
#[derive(Debug)]
pub struct OpenGuard(Arc<ServiceMetrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.dec();
    }
}

impl ServiceMetrics {
    fn new(clock: Instant) -> ServiceMetrics {
        ServiceMetrics {
            clock,
            info: RwLock::default(),
            listening: AtomicBool::new(false),
            open: Gauge::default(),
            accepted: Counter::default(),
            refused: Counter::default(),
            closed: Default::default(),
            failures: Default::default(),
            connect_seconds: Histogram::default(),
            handshake_seconds: Histogram::default(),
            handshakes: Default::default(),
            bytes: Arc::default(),
            warm: Gauge::default(),
            node_listeners: Gauge::default(),
            rewrites: Default::default(),
            error_replies: Counter::default(),
            readonly: Default::default(),
            last_ok_ms: AtomicU64::new(0),
            last_failed_ms: AtomicU64::new(0),
            last_reason: AtomicU8::new(0),
        }
    }

    /// A client was accepted: counted, and open until the guard is dropped.
    pub fn accepted(self: &Arc<Self>) -> OpenGuard {
        self.accepted.inc();
        self.open.inc();
        OpenGuard(self.clone())
    }

    /// A client was closed at once by `maxConnections`.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// A connection ended.
    pub fn closed(&self, why: Close) {
        self.closed[Close::ALL.iter().position(|&c| c == why).unwrap_or(0)].inc();
    }

    /// TCP to the upstream is up after `took`.
    pub fn connected(&self, took: Duration) {
        self.connect_seconds.observe(took);
    }

    /// The TLS handshake with the upstream succeeded after `took`, resuming a session or not.
    pub fn handshaken(&self, took: Duration, resumed: bool) {
        self.handshake_seconds.observe(took);
        self.handshakes[usize::from(resumed)].inc();
    }

    /// The upstream is reached (TCP, and TLS when the section speaks it).
    pub fn reached(&self) {
        self.last_ok_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// An attempt to reach the upstream failed.
    pub fn failed(&self, stage: Stage, reason: Reason) {
        // A handshake that fails with a socket error (a reset mid-handshake) is a TLS failure.
        let reason = match stage.reasons().contains(&reason) {
            true => reason,
            false => Reason::TlsOther,
        };
        let s = Stage::ALL.iter().position(|&x| x == stage).unwrap_or(0);
        self.failures[s][reason.index()].inc();
        self.last_reason.store(reason.index() as u8 + 1, Ordering::Relaxed);
        self.last_failed_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A Redis client was sent `-ERR retunnel: …`.
    pub fn error_reply(&self) {
        self.error_replies.inc();
    }

    /// A `-READONLY` reply moved the connection to the new primary (`replayed`) or closed it.
    pub fn readonly(&self, replayed: bool) {
        self.readonly[usize::from(!replayed)].inc();
    }

    /// A reply was rewritten to name local node listeners.
    pub fn rewritten(&self, kind: Rewrite) {
        self.rewrites[Rewrite::ALL.iter().position(|&k| k == kind).unwrap_or(0)].inc();
    }

    /// The gauge of warm connections, for the section's `prewarm` pool to move (a pool
    /// replaced by a reload adds and takes away its own, so the sum stays right).
    pub fn warm_gauge(&self) -> Gauge {
        self.warm.clone()
    }

    /// A cluster node listener opened; the guard closes it in the counts.
    pub fn node_listener(self: &Arc<Self>) -> NodeListenerGuard {
        self.node_listeners.inc();
        NodeListenerGuard(self.clone())
    }

    /// The section accepts now on `accept` (the bound addresses: `accept = 0` gets a port),
    /// with these settings.
    pub fn listening(&self, config: &ServiceConfig, accept: String) {
        let connect: Vec<String> = config.connect.iter().map(|t| t.to_string()).collect();
        *self.info.write().unwrap_or_else(|e| e.into_inner()) = SectionInfo {
            accept,
            connect: connect.join(", "),
            redis: config.redis.is_some(),
            prewarm: config.prewarm > 0,
        };
        self.listening.store(true, Ordering::Relaxed);
    }

    /// The section's accept loop stopped.
    pub fn stopped(&self) {
        self.listening.store(false, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open_now(&self) -> i64 {
        self.open.get()
    }

    /// Whether the accept loop runs.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Where it listens and what it connects to.
    pub fn info(&self) -> SectionInfo {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last failure's reason, if any failed yet.
    pub fn last_reason(&self) -> Option<Reason> {
        let i = self.last_reason.load(Ordering::Relaxed);
        Reason::ALL.get(usize::from(i).checked_sub(1)?).copied()
    }

    /// (last success, last failure), as times since the metrics started; `None`: never.
    pub fn last_attempts(&self) -> (Option<Duration>, Option<Duration>) {
        let at = |ms: u64| ms.checked_sub(1).map(Duration::from_millis);
        (
            at(self.last_ok_ms.load(Ordering::Relaxed)),
            at(self.last_failed_ms.load(Ordering::Relaxed)),
        )
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Keeps a node listener counted as open.
#[derive(Debug)]
pub struct NodeListenerGuard(Arc<ServiceMetrics>);

impl Drop for NodeListenerGuard {
    fn drop(&mut self) {
        self.0.node_listeners.dec();
    }
}

/// Every section's counters and the process's own.
#[derive(Debug)]
pub struct Metrics {
    /// The epoch of the sections' timestamps.
    clock: Instant,
    /// When the process started, for `retunnel_start_time_seconds`.
    started: SystemTime,
    /// The configured sections, by name.
    sections: RwLock<BTreeMap<String, Arc<ServiceMetrics>>>,
    /// Reloads that applied (0) and that failed (1).
    pub(crate) reloads: [Counter; 2],
    /// 1 for the configuration read at start, plus one per reload that applied.
    pub(crate) generation: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let generation = Gauge::default();
        generation.set(1);
        Metrics {
            clock: Instant::now(),
            started: SystemTime::now(),
            sections: RwLock::default(),
            reloads: Default::default(),
            generation,
        }
    }
}

impl Metrics {
    /// The counters of section `name`, created on first use; the same handle across reloads.
    pub fn service(&self, name: &str) -> Arc<ServiceMetrics> {
        if let Some(s) = self.read().get(name) {
            return s.clone();
        }
        let mut all = self.sections.write().unwrap_or_else(|e| e.into_inner());
        all.entry(name.to_string())
            .or_insert_with(|| Arc::new(ServiceMetrics::new(self.clock)))
            .clone()
    }

    /// The sections now configured: the others are forgotten (their open connections keep
    /// their handle), and every one is known, even one that could not start.
    pub fn configured(&self, services: &[ServiceConfig]) {
        self.sections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| services.iter().any(|s| &s.name == name));
        for s in services {
            self.service(&s.name);
        }
    }

    /// A reload ended: `applied` when the file was valid (a new generation), `ok` when
    /// nothing failed.
    pub fn reloaded(&self, applied: bool, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
        if applied {
            self.generation.inc();
        }
    }

    /// Every configured section with its counters, by name.
    pub fn sections(&self) -> Vec<(String, Arc<ServiceMetrics>)> {
        self.read().iter().map(|(n, s)| (n.clone(), s.clone())).collect()
    }

    /// When the process started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The time on the sections' clock.
    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ServiceMetrics>>> {
        self.sections.read().unwrap_or_else(|e| e.into_inner())
    }
}
