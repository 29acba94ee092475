//! Reaching the upstream: resolve the `connect` hosts at the moment of each connection (never
//! cached: ElastiCache endpoints move during failover and TLS migration), then try every
//! address of every target in turn within one deadline, in the order the `failover` policy
//! gives, with targets that just failed moved to the back. A target has failed when the TCP
//! connect or the step after it (the TLS handshake, given by the caller so that this module
//! knows no TLS engine) fails or stalls past its share of the deadline.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::warn;

use crate::config::{Failover, Host, SocketOption, Target};
use crate::metrics::{Classify, Reason, Stage};
use crate::sockopt;

/// `--connect-to HOST:PORT:ADDR:PORT` mappings (as curl's): connect to ADDR:PORT whenever a
/// target names HOST:PORT, while TLS still verifies HOST. For testing a cut-over before DNS
/// changes, and for running an unchanged config against local servers.
#[derive(Debug, Clone, Default)]
pub struct ConnectTo {
    map: HashMap<(String, u16), Target>,
}

impl ConnectTo {
    /// Adds a mapping given as `HOST:PORT:ADDR:PORT`.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (from, to) = ConnectTo::parse(spec)?;
        self.map
            .insert((from.host.to_string().to_ascii_lowercase(), from.port), to);
        Ok(())
    }

    /// Parses `HOST:PORT:ADDR:PORT` (IPv6 addresses in brackets) into the target named and the
    /// one connected to instead.
    pub fn parse(spec: &str) -> Result<(Target, Target), String> {
        let bad = || format!("`{spec}` is not HOST:PORT:ADDR:PORT (for example db.example.com:6379:127.0.0.1:16379)");
        let (from, to) = split_pair(spec).ok_or_else(bad)?;
        let from = crate::config::parse_target(from).map_err(|e| format!("{}: {e}", bad()))?;
        let to = crate::config::parse_target(to).map_err(|e| format!("{}: {e}", bad()))?;
        Ok((from, to))
    }

    /// Whether `host:port` has a mapping (the operator named it: it belongs to the setup).
    pub fn maps(&self, host: &str, port: u16) -> bool {
        self.map.contains_key(&(host.to_ascii_lowercase(), port))
    }

    /// The target to really connect to for `t`.
    pub fn apply<'a>(&'a self, t: &'a Target) -> &'a Target {
        self.map
            .get(&(t.host.to_string().to_ascii_lowercase(), t.port))
            .unwrap_or(t)
    }
}

/// Splits `a:b:c:d` (with bracketed IPv6 parts) into `a:b` and `c:d`.
fn split_pair(spec: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    let mut colons = 0;
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                colons += 1;
                if colons == 2 {
                    return Some((&spec[..i], &spec[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Why no TCP connection could be made.
#[derive(Debug)]
pub struct ConnectError {
    /// Each target or address tried, with what happened.
    pub attempts: Vec<(String, String)>,
    /// Whether the deadline ran out.
    pub timed_out: bool,
    /// Where and why the last attempt failed, for the metrics.
    pub last: Option<(Stage, Reason)>,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            f.write_str("timed out (TIMEOUTconnect); ")?;
        }
        let tried: Vec<String> = self.attempts.iter().map(|(a, why)| format!("{a}: {why}")).collect();
        write!(f, "{}", tried.join("; "))
    }
}

impl std::error::Error for ConnectError {}

/// A connection to one of the targets, TCP connected and `finish`ed.
#[derive(Debug)]
pub struct Reached<S> {
    /// The stream (TCP with TCP_NODELAY set, under TLS unless the section is plain).
    pub stream: S,
    /// The address it reached.
    pub addr: SocketAddr,
    /// Which target (as configured, before `--connect-to`).
    pub target: usize,
}

/// How long a target that just failed is tried last. A dead node otherwise costs every new
/// client a refused (or, worse, a silent) connect before the next target is tried; ElastiCache
/// and MemoryDB fail over within about 30 s, and after that the preferred target should lead
/// again. A failed target is never skipped, only moved to the back.
pub const FAILED_TRIED_LAST: Duration = Duration::from_secs(30);

/// A service's `connect` targets, the `failover` policy, and which targets failed lately.
#[derive(Debug)]
pub struct Upstreams {
    /// As configured (before `--connect-to`).
    targets: Vec<Target>,
    /// `prio` or `rr`.
    failover: Failover,
    /// Where the next round-robin connection starts.
    next: AtomicUsize,
    /// When each target last failed; `None`: it answered last time (or was never tried).
    failed_at: Mutex<Vec<Option<Instant>>>,
}

impl Upstreams {
    /// The targets of one service with its `failover` policy.
    pub fn new(targets: Vec<Target>, failover: Failover) -> Upstreams {
        let n = targets.len();
        Upstreams {
            targets,
            failover,
            next: AtomicUsize::new(0),
            failed_at: Mutex::new(vec![None; n]),
        }
    }

    /// The configured targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// What target `i` resolves to now (after `--connect-to`): a warm connection is handed out
    /// only while its address is still among these.
    pub async fn addresses_now(&self, overrides: &ConnectTo, i: usize) -> io::Result<Vec<SocketAddr>> {
        resolve(overrides.apply(&self.targets[i])).await
    }

    /// The order in which to try the targets now: by policy, then whatever failed within
    /// [`FAILED_TRIED_LAST`] moved to the back (keeping their relative order).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.targets.len();
        let start = match self.failover {
            Failover::Prio => 0,
            Failover::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n.max(1),
        };
        let failed = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        let recent = |i: usize| failed[i].is_some_and(|t| now.saturating_duration_since(t) < FAILED_TRIED_LAST);
        let by_policy = (0..n).map(|k| (start + k) % n);
        let (mut order, late): (Vec<usize>, Vec<usize>) = by_policy.partition(|&i| !recent(i));
        order.extend(late);
        order
    }

    fn mark(&self, target: usize, failed: Option<Instant>) {
        self.failed_at.lock().unwrap_or_else(|e| e.into_inner())[target] = failed;
    }

    /// Reaches the first target that answers and completes `finish` (the TLS handshake, or
    /// nothing for plain TCP), trying targets in [`Upstreams::order`] within `timeout`.
    ///
    /// A target fails when it refuses, stays silent, or fails or stalls in `finish` (plain
    /// text, a wrong certificate, no handshake answer): the next target is tried and the failed
    /// one goes to the back. Each target, and each address of a target, gets an equal share of
    /// what is left of `timeout`, so a silent first target cannot use up the whole of it; what
    /// a target leaves unused passes on to the next.
    pub async fn connect<S, E, F, Fut>(
        &self,
        overrides: &ConnectTo,
        timeout: Duration,
        opts: &[SocketOption],
        finish: F,
    ) -> Result<Reached<S>, ConnectError>
    where
        E: fmt::Display + Classify,
        F: Fn(usize, TcpStream) -> Fut,
        Fut: Future<Output = Result<S, E>>,
    {
        let now = Instant::now();
        let deadline = now + timeout;
        let order = self.order(now);
        let mut err = ConnectError {
            attempts: Vec::new(),
            timed_out: false,
            last: None,
        };
        for (k, &i) in order.iter().enumerate() {
            let real = overrides.apply(&self.targets[i]);
            let share = share_of(deadline, order.len() - k);
            match try_target(real, share, opts, &mut err, |s| finish(i, s)).await {
                Ok((stream, addr)) => {
                    self.mark(i, None);
                    return Ok(Reached {
                        stream,
                        addr,
                        target: i,
                    });
                }
                Err(()) => self.mark(i, Some(Instant::now())),
            }
            let more = k + 1 < order.len() && Instant::now() < deadline;
            // With one target there is no other to try, and the closing line says why.
            if more {
                let why = err.attempts.last().map(|(_, w)| w.as_str()).unwrap_or_default();
                warn!(upstream = %real, error = %why, "upstream failed; trying the next target, and this one last for {}s", FAILED_TRIED_LAST.as_secs());
            }
        }
        err.timed_out = Instant::now() >= deadline;
        Err(err)
    }

    /// Whether `addr` is still among the addresses the targets resolve to now (`--connect-to`
    /// applied; a fresh lookup). `None` when a lookup failed: then nobody can tell. A Redis
    /// connection asks this on `-READONLY` to tell a primary that moved from a replica.
    pub async fn still_resolves(&self, overrides: &ConnectTo, addr: SocketAddr) -> Option<bool> {
        let mut unknown = false;
        for t in &self.targets {
            match resolve(overrides.apply(t)).await {
                Ok(addrs) if addrs.contains(&addr) => return Some(true),
                Ok(_) => {}
                Err(_) => unknown = true,
            }
        }
        (!unknown).then_some(false)
    }
}

/// An equal share of what is left until `deadline` for one of `left` candidates.
fn share_of(deadline: Instant, left: usize) -> Instant {
    let now = Instant::now();
    now + deadline.saturating_duration_since(now) / left.max(1) as u32
}

/// Tries every address of one target in turn, each within its share of `deadline`, recording
/// each failure in `err`.
async fn try_target<S, E, Fut>(
    real: &Target,
    deadline: Instant,
    opts: &[SocketOption],
    err: &mut ConnectError,
    finish: impl Fn(TcpStream) -> Fut,
) -> Result<(S, SocketAddr), ()>
where
    E: fmt::Display + Classify,
    Fut: Future<Output = Result<S, E>>,
{
    let addrs = match tokio::time::timeout_at(deadline, resolve(real)).await {
        Err(_) => {
            err.last = Some((Stage::Connect, Reason::Timeout));
            err.attempts.push((real.to_string(), "DNS lookup timed out".into()));
            return Err(());
        }
        Ok(Err(e)) => {
            err.last = Some((Stage::Connect, Reason::Dns));
            err.attempts.push((real.to_string(), describe_resolve(&e)));
            return Err(());
        }
        Ok(Ok(a)) => a,
    };
    for (j, &addr) in addrs.iter().enumerate() {
        let share = share_of(deadline, addrs.len() - j);
        match try_addr(addr, share, opts, &finish).await {
            Ok(s) => return Ok((s, addr)),
            Err((stage, reason, why)) => {
                err.last = Some((stage, reason));
                err.attempts.push((addr.to_string(), why));
            }
        }
    }
    Err(())
}

/// A TCP connection was taken but no TLS answer came: most often a plain-TCP port, whose
/// server waits silently for a command while the handshake waits for a TLS reply.
const HANDSHAKE_TIMED_OUT: &str = "TLS handshake timed out (TIMEOUTconnect): the server took the TCP connection but sent no TLS answer; is this a TLS port? (a plain-TCP Redis waits silently for a command; connect to the server's TLS port)";

/// TCP connect, then `finish`, both before `deadline`. `Err`: where and why it failed, and
/// what went wrong in words (`finish`'s own errors name their step).
async fn try_addr<S, E, Fut>(
    addr: SocketAddr,
    deadline: Instant,
    opts: &[SocketOption],
    finish: impl Fn(TcpStream) -> Fut,
) -> Result<S, (Stage, Reason, String)>
where
    E: fmt::Display + Classify,
    Fut: Future<Output = Result<S, E>>,
{
    use Stage::{Connect, Handshake};
    if crate::own::is_listening_on(addr) {
        return Err((Connect, Reason::Unreachable, crate::own::LOOP.into()));
    }
    let stream = match tokio::time::timeout_at(deadline, sockopt::connect(addr, opts)).await {
        Err(_) => return Err((Connect, Reason::Timeout, "no answer (TIMEOUTconnect)".into())),
        Ok(Err(e)) => return Err((Connect, e.reason(), describe_io(&e))),
        Ok(Ok(stream)) => stream,
    };
    match tokio::time::timeout_at(deadline, finish(stream)).await {
        Err(_) => Err((Handshake, Reason::Timeout, HANDSHAKE_TIMED_OUT.into())),
        Ok(Err(e)) => Err((Handshake, e.reason(), e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// A failed DNS lookup in words a user acts on.
fn describe_resolve(e: &io::Error) -> String {
    match crate::process::out_of_descriptors(e).or_else(crate::process::descriptors_exhausted) {
        Some(fix) => format!("cannot resolve host: {fix}"),
        None => format!("cannot resolve host: {e}"),
    }
}

async fn resolve(t: &Target) -> io::Result<Vec<SocketAddr>> {
    match &t.host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, t.port)]),
        Host::Name(name) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), t.port)).await?.collect();
            if addrs.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
            }
            Ok(addrs)
        }
    }
}

/// An I/O error in words a user acts on.
pub fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (nothing listens there)".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ if crate::process::out_of_descriptors(e).is_some() => {
            crate::process::out_of_descriptors(e).unwrap_or_default().into()
        }
        _ => {
            let text = e.to_string();
            if text.contains("certificate required") {
                format!("{text}: the server wants a client certificate; set `cert` and `key`")
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_parses_and_maps() {
        let mut c = ConnectTo::default();
        c.add("Master.Example.com:6379:127.0.0.1:16379").unwrap();
        c.add("[::1]:1:[::1]:2").unwrap();
        let t = crate::config::parse_target("master.example.com:6379").unwrap();
        assert_eq!(c.apply(&t).to_string(), "127.0.0.1:16379");
        let t6 = crate::config::parse_target("[::1]:1").unwrap();
        assert_eq!(c.apply(&t6).to_string(), "[::1]:2");
        assert!(c.add("nonsense").is_err());
        assert!(c.add("a:1:b").is_err());
    }

    /// Connects in plain TCP (nothing to finish).
    async fn plain(up: &Upstreams, timeout: Duration) -> Result<Reached<TcpStream>, ConnectError> {
        let none = ConnectTo::default();
        up.connect(&none, timeout, &[], |_, s| async { Ok::<_, io::Error>(s) })
            .await
    }

    /// A target nothing listens on, then a live one (keep the listener alive).
    async fn dead_then_live() -> (Vec<Target>, tokio::net::TcpListener) {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_port = live.local_addr().unwrap().port();
        let targets = vec![
            crate::config::parse_target(&format!("127.0.0.1:{dead_port}")).unwrap(),
            crate::config::parse_target(&format!("127.0.0.1:{live_port}")).unwrap(),
        ];
        (targets, live)
    }

    #[tokio::test]
    async fn tries_next_address_after_refusal() {
        let (targets, live) = dead_then_live().await;
        let live_port = live.local_addr().unwrap().port();
        let prio = |t: &[Target]| Upstreams::new(t.to_vec(), Failover::Prio);
        let c = plain(&prio(&targets), Duration::from_secs(5)).await.unwrap();
        assert_eq!(c.target, 1);
        assert_eq!(c.addr.port(), live_port);
        let e = plain(&prio(&targets[..1]), Duration::from_secs(5)).await.unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
    }

    fn targets(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| crate::config::parse_target(&format!("127.0.0.1:{}", 1000 + i)).unwrap())
            .collect()
    }

    #[test]
    fn prio_keeps_order_and_rr_rotates() {
        let now = Instant::now();
        let p = Upstreams::new(targets(3), Failover::Prio);
        assert_eq!(p.order(now), [0, 1, 2]);
        assert_eq!(p.order(now), [0, 1, 2]);
        let rr = Upstreams::new(targets(3), Failover::RoundRobin);
        assert_eq!(rr.order(now), [0, 1, 2]);
        assert_eq!(rr.order(now), [1, 2, 0]);
        assert_eq!(rr.order(now), [2, 0, 1]);
        assert_eq!(rr.order(now), [0, 1, 2]);
    }

    #[test]
    fn a_target_that_just_failed_goes_last_for_a_while() {
        let now = Instant::now();
        let p = Upstreams::new(targets(3), Failover::Prio);
        p.mark(0, Some(now));
        assert_eq!(p.order(now), [1, 2, 0]);
        assert_eq!(p.order(now + FAILED_TRIED_LAST - Duration::from_secs(1)), [1, 2, 0]);
        assert_eq!(p.order(now + FAILED_TRIED_LAST), [0, 1, 2]);
        p.mark(0, None);
        assert_eq!(p.order(now), [0, 1, 2]);
    }

    /// With real sockets: the dead first target is tried, then the live one; the next
    /// connection starts with the live one.
    #[tokio::test]
    async fn failed_target_is_tried_last_on_the_next_connection() {
        let (ts, _live) = dead_then_live().await;
        let up = Upstreams::new(ts, Failover::Prio);
        let c = plain(&up, Duration::from_secs(5)).await.unwrap();
        assert_eq!(c.target, 1);
        assert_eq!(up.order(Instant::now()), [1, 0]);
        let c = plain(&up, Duration::from_secs(5)).await.unwrap();
        assert_eq!(c.target, 1);
    }

    /// A listener that greets every connection with `greeting` (and keeps it open).
    async fn greeter(greeting: &'static [u8]) -> (Target, tokio::task::JoinHandle<()>) {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = crate::config::parse_target(&l.local_addr().unwrap().to_string()).unwrap();
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(greeting).await;
                open.push(s);
            }
        });
        (t, task)
    }

    /// Stands in for a handshake: reads the greeting; `+` passes, anything else fails.
    async fn greeted(mut s: TcpStream) -> io::Result<u8> {
        use tokio::io::AsyncReadExt;
        match s.read_u8().await? {
            b'+' => Ok(b'+'),
            b => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("got {:?} instead of a handshake answer", b as char),
            )),
        }
    }

    /// Defect 1 of issue 11: a target that accepts TCP and then fails the handshake is a
    /// failed target like one that refuses: the next is tried, and it goes last.
    #[tokio::test]
    async fn a_failed_handshake_falls_through_and_goes_last() {
        let (bad, _b) = greeter(b"-ERR not TLS\r\n").await;
        let (good, _g) = greeter(b"+").await;
        for failover in [Failover::Prio, Failover::RoundRobin] {
            let up = Upstreams::new(vec![bad.clone(), good.clone()], failover);
            for _ in 0..4 {
                let c = up
                    .connect(&ConnectTo::default(), Duration::from_secs(5), &[], |_, s| greeted(s))
                    .await
                    .unwrap();
                assert_eq!(c.target, 1);
            }
            assert_eq!(up.order(Instant::now())[0], 1, "{failover:?}");
        }
        let only_bad = Upstreams::new(vec![bad], Failover::Prio);
        let e = only_bad
            .connect(&ConnectTo::default(), Duration::from_secs(5), &[], |_, s| greeted(s))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("got '-' instead of a handshake answer"), "{e}");
    }

    /// Defect 1 of issue 11: a target that accepts TCP and never answers gets its share of
    /// the timeout, not all of it, so the next target is still tried. Time is paused: the
    /// runtime jumps to the next timer once the silent target is the only thing left to wait on.
    #[tokio::test(start_paused = true)]
    async fn a_silent_target_gets_only_its_share_of_the_timeout() {
        let (silent, _s) = greeter(b"").await;
        let (good, _g) = greeter(b"+").await;
        let up = Upstreams::new(vec![silent, good], Failover::Prio);
        let started = Instant::now();
        let timeout = Duration::from_secs(10);
        let c = up
            .connect(&ConnectTo::default(), timeout, &[], |_, s| greeted(s))
            .await
            .unwrap();
        assert_eq!(c.target, 1);
        assert_eq!(started.elapsed(), timeout / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shares_split_what_is_left() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(12);
        assert_eq!(share_of(deadline, 3), now + Duration::from_secs(4));
        assert_eq!(share_of(deadline, 1), deadline);
        assert_eq!(share_of(now, 2), now);
    }
}
