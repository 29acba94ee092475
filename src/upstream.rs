//! Reaching the upstream over TCP: resolve the `connect` hosts at the moment of each
//! connection (never cached: ElastiCache endpoints move during failover and TLS migration),
//! then try every address of every target in turn within one deadline.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Host, Target};

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

/// Resolves and connects, trying targets in order and each of their addresses in turn.
pub async fn connect(targets: &[Target], overrides: &ConnectTo, timeout: Duration) -> Result<Connected, ConnectError> {
    let deadline = Instant::now() + timeout;
    let mut err = ConnectError {
        attempts: Vec::new(),
        timed_out: false,
    };
    for (i, target) in targets.iter().enumerate() {
        let real = overrides.apply(target);
        let addrs = match tokio::time::timeout_at(deadline, resolve(real)).await {
            Err(_) => {
                err.timed_out = true;
                err.attempts.push((real.to_string(), "DNS lookup timed out".into()));
                return Err(err);
            }
            Ok(Err(e)) => {
                err.attempts
                    .push((real.to_string(), format!("cannot resolve host: {e}")));
                continue;
            }
            Ok(Ok(a)) => a,
        };
        for addr in addrs {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => {
                    err.timed_out = true;
                    err.attempts.push((addr.to_string(), "no answer".into()));
                    return Err(err);
                }
                Ok(Err(e)) => err.attempts.push((addr.to_string(), describe_io(&e))),
                Ok(Ok(stream)) => {
                    // Redis is request/response: Nagle would add a round trip to small replies.
                    let _ = stream.set_nodelay(true);
                    return Ok(Connected {
                        stream,
                        addr,
                        target: i,
                    });
                }
            }
        }
    }
    Err(err)
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
        _ => e.to_string(),
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

    #[tokio::test]
    async fn tries_next_address_after_refusal() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_port = live.local_addr().unwrap().port();
        let targets = [
            crate::config::parse_target(&format!("127.0.0.1:{dead_port}")).unwrap(),
            crate::config::parse_target(&format!("127.0.0.1:{live_port}")).unwrap(),
        ];
        let c = connect(&targets, &ConnectTo::default(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(c.target, 1);
        assert_eq!(c.addr.port(), live_port);
        let e = connect(&targets[..1], &ConnectTo::default(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
    }
}
