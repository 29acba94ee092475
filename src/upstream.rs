//! Reaching the upstream over TCP: resolve the `connect` hosts at the moment of each
//! connection (never cached: ElastiCache endpoints move during failover and TLS migration),
//! then try every address of every target in turn within one deadline, in the order the
//! `failover` policy gives, with targets that just failed moved to the back.

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
use crate::sockopt;

/// `--connect-to HOST:PORT:ADDR:PORT` mappings (as curl's): connect to ADDR:PORT whenever a
/// target names HOST:PORT, while TLS still verifies HOST. For testing a cut-over before DNS
/// changes, and for running an unchanged config against local servers.
#[derive(Debug, Clone, Default)]
pub struct ConnectTo {
    map: HashMap<(String, u16), Target>,
}

impl ConnectTo {
    /// Parses `HOST:PORT:ADDR:PORT` (IPv6 addresses in brackets).
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let bad = || format!("`{spec}` is not HOST:PORT:ADDR:PORT (for example db.example.com:6379:127.0.0.1:16379)");
        let (from, to) = split_pair(spec).ok_or_else(bad)?;
        let from = crate::config::parse_target(from).map_err(|e| format!("{}: {e}", bad()))?;
        let to = crate::config::parse_target(to).map_err(|e| format!("{}: {e}", bad()))?;
        self.map
            .insert((from.host.to_string().to_ascii_lowercase(), from.port), to);
        Ok(())
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

/// A TCP connection to one of the targets.
#[derive(Debug)]
pub struct Connected {
    /// The stream, with TCP_NODELAY set.
    pub stream: TcpStream,
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

    /// Connects to the first target that answers, in [`Upstreams::order`], within `timeout`.
    pub async fn connect(
        &self,
        overrides: &ConnectTo,
        timeout: Duration,
        opts: &[SocketOption],
    ) -> Result<Connected, ConnectError> {
        let now = Instant::now();
        let deadline = now + timeout;
        let mut err = ConnectError {
            attempts: Vec::new(),
            timed_out: false,
        };
        for i in self.order(now) {
            let real = overrides.apply(&self.targets[i]);
            match try_target(real, deadline, opts, &mut err).await {
                Attempt::Connected(stream, addr) => {
                    self.mark(i, None);
                    return Ok(Connected {
                        stream,
                        addr,
                        target: i,
                    });
                }
                // With one target there is no other to try, and the closing line says why.
                Attempt::Failed if self.targets.len() > 1 => {
                    warn!(upstream = %real, "upstream failed; trying the next target, and this one last for {}s", FAILED_TRIED_LAST.as_secs());
                    self.mark(i, Some(Instant::now()));
                }
                Attempt::Failed => self.mark(i, Some(Instant::now())),
                Attempt::TimedOut => {
                    self.mark(i, Some(Instant::now()));
                    return Err(err);
                }
            }
        }
        Err(err)
    }
}

enum Attempt {
    Connected(TcpStream, SocketAddr),
    /// Every address failed; the reasons are in the error.
    Failed,
    /// The deadline ran out.
    TimedOut,
}

/// Tries every address of one target in turn, recording each failure in `err`.
async fn try_target(real: &Target, deadline: Instant, opts: &[SocketOption], err: &mut ConnectError) -> Attempt {
    let addrs = match tokio::time::timeout_at(deadline, resolve(real)).await {
        Err(_) => {
            err.timed_out = true;
            err.attempts.push((real.to_string(), "DNS lookup timed out".into()));
            return Attempt::TimedOut;
        }
        Ok(Err(e)) => {
            err.attempts
                .push((real.to_string(), format!("cannot resolve host: {e}")));
            return Attempt::Failed;
        }
        Ok(Ok(a)) => a,
    };
    for addr in addrs {
        match tokio::time::timeout_at(deadline, sockopt::connect(addr, opts)).await {
            Err(_) => {
                err.timed_out = true;
                err.attempts.push((addr.to_string(), "no answer".into()));
                return Attempt::TimedOut;
            }
            Ok(Err(e)) => err.attempts.push((addr.to_string(), describe_io(&e))),
            Ok(Ok(stream)) => return Attempt::Connected(stream, addr),
        }
    }
    Attempt::Failed
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
        let c = prio(&targets)
            .connect(&ConnectTo::default(), Duration::from_secs(5), &[])
            .await
            .unwrap();
        assert_eq!(c.target, 1);
        assert_eq!(c.addr.port(), live_port);
        let e = prio(&targets[..1])
            .connect(&ConnectTo::default(), Duration::from_secs(5), &[])
            .await
            .unwrap_err();
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
        let none = ConnectTo::default();
        let c = up.connect(&none, Duration::from_secs(5), &[]).await.unwrap();
        assert_eq!(c.target, 1);
        assert_eq!(up.order(Instant::now()), [1, 0]);
        let c = up.connect(&none, Duration::from_secs(5), &[]).await.unwrap();
        assert_eq!(c.target, 1);
    }
}
