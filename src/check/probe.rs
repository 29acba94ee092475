//! The steps, per section and all sections at once: bind `accept`, resolve each `connect`
//! host, TCP-connect to every address, handshake with the section's own TLS client, inspect
//! the certificate, PING Redis. A step that fails stops that target; later steps are marked
//! as skipped. Every network step is bounded by the section's `TIMEOUTconnect`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::{Connect, Mark, Report, SectionReport, Step, TargetReport, cert, redis};
use crate::config::{Config, Host, Listen, ServiceConfig, Target, Warning};
use crate::listener::Listener;
use crate::tls::{HandshakeError, TlsClient, TlsStream};
use crate::upstream::{ConnectTo, describe_io};

/// Certificates expiring sooner than this get a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Checks every section of `config` concurrently.
pub async fn run(config: &Config, warnings: &[Warning], map: &ConnectTo) -> Report {
    let handles: Vec<_> = config
        .services
        .iter()
        .map(|svc| (svc.name.clone(), tokio::spawn(section(svc.clone(), map.clone()))))
        .collect();
    let mut sections = Vec::with_capacity(handles.len());
    for (name, handle) in handles {
        sections.push(handle.await.unwrap_or_else(|e| crashed(name, e)));
    }
    Report {
        config: config.path.display().to_string(),
        ok: sections.iter().all(|s| s.ok),
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
        sections,
    }
}

/// A section whose check panicked still gets a failing row, never a silent gap.
fn crashed(name: String, e: tokio::task::JoinError) -> SectionReport {
    SectionReport {
        name,
        accept: String::new(),
        ok: false,
        bind: fail(format!("internal error while checking: {e}")),
        targets: Vec::new(),
    }
}

async fn section(svc: ServiceConfig, map: ConnectTo) -> SectionReport {
    let bind = match accept_side(&svc) {
        Some(problem) => fail(problem),
        None => bind_all(&svc.accept),
    };
    let client = TlsClient::new(&svc.tls).map_err(|e| e.to_string());
    let mut targets = Vec::with_capacity(svc.connect.len());
    for t in &svc.connect {
        targets.push(target(&svc, t, &map, &client).await);
    }
    SectionReport {
        name: svc.name.clone(),
        accept: svc.accept_list(),
        ok: bind.mark != Mark::Fail && targets.iter().any(TargetReport::ok),
        bind,
        targets,
    }
}

/// Server mode: what is wrong with our certificate and key (`cert`/`key`), loaded as the
/// daemon loads them at start; clients could not be served with them.
fn accept_side(svc: &ServiceConfig) -> Option<String> {
    let pair = svc.accept_tls.as_ref()?;
    let e = crate::tls::TlsServer::new(pair, &svc.tls).err()?;
    Some(format!("server-mode TLS towards clients: {e}"))
}

/// Binds every `accept` address as the daemon would, then lets go; the first that fails or
/// warns is the answer.
fn bind_all(addrs: &[Listen]) -> Step {
    let steps: Vec<Step> = addrs.iter().map(bind).collect();
    let failed = steps.iter().position(|s| s.mark != Mark::Ok);
    match failed {
        Some(i) => steps.into_iter().nth(i).expect("position is in range"),
        None => ok(format!(
            "{} free",
            addrs.iter().map(Listen::to_string).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn bind(addr: &Listen) -> Step {
    match Listener::bind(addr, &[]) {
        Ok(_) => ok(format!("{addr} is free")),
        Err(e) => {
            // In use is what a running tunnel looks like: `check` must work as a health
            // check of a live config, so that is a warning, not a failure.
            let message = format!("cannot listen on {addr}: {e}; {}", crate::tunnel::listen_hint(&e, addr));
            if e.kind() == io::ErrorKind::AddrInUse {
                warn(format!("{message} (expected if this config is already running)"))
            } else {
                fail(message)
            }
        }
    }
}

async fn target(svc: &ServiceConfig, t: &Target, map: &ConnectTo, client: &Result<TlsClient, String>) -> TargetReport {
    let real = map.apply(t);
    let mut r = untried(t, real);
    let addrs = resolve(real, svc.connect_timeout, &mut r).await;
    let Some((tcp, addr)) = connect_all(&addrs, svc.connect_timeout, &mut r).await else {
        return r;
    };
    if !svc.connect_tls {
        // Server mode without connectTLS: the upstream is plain TCP, as the daemon uses it.
        let plain = || Step {
            mark: Mark::Skip,
            message: "plain TCP upstream (client = no without connectTLS)".into(),
        };
        r.tls = plain();
        r.certificate = plain();
        ping(tcp, svc.connect_timeout, &mut r).await;
        return r;
    }
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            r.tls = fail(format!("TLS settings: {e}"));
            return r;
        }
    };
    if let Some(tls) = handshake(svc, client, &t.host, tcp, addr, &mut r).await {
        ping(tls, svc.connect_timeout, &mut r).await;
        resumption(client, &t.host, addr, svc.connect_timeout, &mut r).await;
    }
    r
}

/// A second handshake with the section's client, which now holds the first one's session:
/// does the server let new connections resume (and skip the full handshake's cost)?
async fn resumption(client: &TlsClient, host: &Host, addr: SocketAddr, limit: Duration, r: &mut TargetReport) {
    let again = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        client.handshake(host, tcp).await.ok()
    };
    let Ok(Some(stream)) = timeout(limit, again).await else {
        return;
    };
    let resumed = crate::tls::resumed(stream.session());
    if let Some(s) = &mut r.session {
        s.resumed = Some(resumed);
    }
    r.tls.message.push_str(match resumed {
        true => "; a new connection resumed the session",
        false => "; a new connection did not resume (the server keeps no session for it)",
    });
}

fn untried(t: &Target, real: &Target) -> TargetReport {
    let skip = || Step {
        mark: Mark::Skip,
        message: "not tried (an earlier step failed)".into(),
    };
    TargetReport {
        target: t.to_string(),
        connect_to: (real != t).then(|| real.to_string()),
        dns: skip(),
        addresses: Vec::new(),
        tcp: skip(),
        connects: Vec::new(),
        tls: skip(),
        session: None,
        certificate: skip(),
        cert: None,
        verify_problems: Vec::new(),
        redis: skip(),
        server: None,
    }
}

async fn resolve(t: &Target, limit: Duration, r: &mut TargetReport) -> Vec<SocketAddr> {
    let name = match &t.host {
        Host::Ip(ip) => {
            r.dns = ok(format!("{ip} is an address; no lookup"));
            r.addresses = vec![ip.to_string()];
            return vec![SocketAddr::new(*ip, t.port)];
        }
        Host::Name(n) => n,
    };
    let addrs: Vec<SocketAddr> = match timeout(limit, tokio::net::lookup_host((name.as_str(), t.port))).await {
        Err(_) => {
            r.dns = fail(format!(
                "no DNS answer for {name} within {}s (TIMEOUTconnect)",
                limit.as_secs()
            ));
            return Vec::new();
        }
        Ok(Err(e)) => {
            r.dns = fail(format!(
                "{name} does not resolve: {e}; check the name (a private endpoint resolves only inside its VPC)"
            ));
            return Vec::new();
        }
        Ok(Ok(a)) => a.collect(),
    };
    r.addresses = addrs.iter().map(|a| a.ip().to_string()).collect();
    r.dns = ok(format!("{name} → {}", r.addresses.join(", ")));
    addrs
}

/// Connects to every address at once; keeps the first (in DNS order) that answered.
async fn connect_all(addrs: &[SocketAddr], limit: Duration, r: &mut TargetReport) -> Option<(TcpStream, SocketAddr)> {
    if addrs.is_empty() {
        return None;
    }
    let tries: Vec<_> = addrs.iter().map(|a| tokio::spawn(connect_one(*a, limit))).collect();
    let mut first = None;
    for (addr, handle) in addrs.iter().zip(tries) {
        let (ms, result) = handle.await.unwrap_or_else(|e| (0.0, Err(e.to_string())));
        let error = match result {
            Ok(stream) => {
                first.get_or_insert((stream, *addr));
                None
            }
            Err(e) => Some(e),
        };
        r.connects.push(Connect {
            address: addr.to_string(),
            ms,
            error,
        });
    }
    r.tcp = tcp_step(&r.connects);
    first
}

async fn connect_one(addr: SocketAddr, limit: Duration) -> (f64, Result<TcpStream, String>) {
    let started = Instant::now();
    let result = match timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => Err(format!(
            "no answer within {}s (TIMEOUTconnect); a firewall or security group drops it",
            limit.as_secs()
        )),
        Ok(Err(e)) => Err(describe_io(&e)),
        Ok(Ok(s)) => Ok(s),
    };
    (millis(started.elapsed()), result)
}

fn tcp_step(connects: &[Connect]) -> Step {
    let failed: Vec<String> = connects
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.address, c.error.as_ref()?)))
        .collect();
    let good: Vec<String> = connects
        .iter()
        .filter(|c| c.error.is_none())
        .map(|c| format!("{} in {} ms", c.address, c.ms))
        .collect();
    match (good.is_empty(), failed.is_empty()) {
        (true, _) => fail(format!(
            "{}; check the host, the port and any firewall",
            failed.join("; ")
        )),
        (false, true) => ok(good.join(", ")),
        (false, false) => warn(format!("{}; but {}", good.join(", "), failed.join("; "))),
    }
}

/// The section's own handshake decides; the inspecting one explains.
async fn handshake(
    svc: &ServiceConfig,
    client: &TlsClient,
    host: &Host,
    tcp: TcpStream,
    addr: SocketAddr,
    r: &mut TargetReport,
) -> Option<TlsStream> {
    let name = client.verified_name(host);
    let started = Instant::now();
    let own = async {
        let result = timeout(svc.connect_timeout, client.handshake(host, tcp)).await;
        (result, millis(started.elapsed()))
    };
    // Side by side, so that a server that never answers costs one timeout, not two.
    let sni = client.sends_sni(host);
    let ((result, ms), inspected) = tokio::join!(own, cert::inspect(addr, &svc.tls, &name, sni, svc.connect_timeout));
    if let Ok(i) = &inspected {
        r.session = Some(super::Session {
            ms,
            ..i.session.clone()
        });
        r.cert.clone_from(&i.cert);
        r.verify_problems.clone_from(&i.problems);
    }
    let session = r.session.as_ref().map(|s| {
        format!(
            "{} {} in {ms} ms",
            s.version,
            s.cipher.as_deref().unwrap_or("(cipher unknown)")
        )
    });
    match result {
        Err(_) => {
            r.tls = fail(format!(
                "no TLS handshake within {}s (TIMEOUTconnect); is this a TLS port?",
                svc.connect_timeout.as_secs()
            ));
            None
        }
        Ok(Ok(stream)) => {
            r.tls = ok(session.unwrap_or_else(|| format!("handshake in {ms} ms")));
            r.certificate = accepted(svc, r, inspected.err());
            Some(stream)
        }
        Ok(Err(e @ HandshakeError::Verify { .. })) => {
            // The server speaks TLS, but the section's handshake fails: not a ✓.
            r.tls = match session {
                Some(s) => fail(format!(
                    "the section's handshake fails on the certificate (below); the server speaks {s}"
                )),
                None => fail(e.to_string()),
            };
            // Without the chain checked, only the section's pin (or name) refused it: its
            // own sentence, not what a chain check would add.
            r.certificate = match svc.tls.verify_chain && !r.verify_problems.is_empty() {
                true => fail(r.verify_problems.join("; ")),
                false => fail(e.to_string()),
            };
            None
        }
        Ok(Err(e)) => {
            r.tls = fail(e.to_string());
            None
        }
    }
}

/// The certificate step after the section's handshake passed.
fn accepted(svc: &ServiceConfig, r: &TargetReport, inspect_error: Option<String>) -> Step {
    let Some(c) = &r.cert else {
        let why = inspect_error.unwrap_or_else(|| "the server sent none".into());
        return ok(format!("accepted (details unavailable: {why})"));
    };
    let would = || match r.verify_problems.is_empty() {
        true => "it would pass a chain check".to_string(),
        false => format!("a chain check would fail: {}", r.verify_problems.join("; ")),
    };
    match (svc.tls.verify_chain, svc.tls.verify_peer) {
        (false, false) => return warn(format!("NOT verified (verifyChain = no / --insecure); {}", would())),
        (false, true) => {
            return ok(format!(
                "pinned to CAfile/CApath: it is one of the certificates there (chain not checked; {})",
                would()
            ));
        }
        (true, _) => {}
    }
    let pinned = match svc.tls.verify_peer {
        true => " + pinned to CAfile/CApath",
        false => "",
    };
    let name = verified_for(&svc.tls, c);
    if c.days_left < EXPIRY_WARNING_DAYS {
        return warn(format!(
            "verified for {name}{pinned}, but expires in {} day(s) ({}); renew it soon",
            c.days_left, c.not_after
        ));
    }
    ok(format!("verified for {name}{pinned}"))
}

/// What the certificate was verified for: the name, or with `checkIP` the `checkIP` (or
/// `checkHost`) values it carries, which is what the section judges by then.
fn verified_for(s: &crate::config::TlsSettings, c: &super::CertInfo) -> String {
    if s.check_ips.is_empty() {
        return c.verified_name.clone();
    }
    let ips = s
        .check_ips
        .iter()
        .map(|ip| (format!("IP:{ip}"), format!("{ip} (checkIP)")));
    let host = s
        .check_host
        .iter()
        .map(|h| (format!("DNS:{h}"), format!("{h} (checkHost)")));
    let carried: Vec<String> = ips
        .chain(host)
        .filter(|(san, _)| c.sans.iter().any(|s| s.eq_ignore_ascii_case(san)))
        .map(|(_, said)| said)
        .collect();
    match carried.is_empty() {
        false => carried.join(", "),
        true => {
            let all: Vec<String> = s
                .check_ips
                .iter()
                .map(ToString::to_string)
                .chain(s.check_host.clone())
                .collect();
            format!("one of {} (checkIP/checkHost)", all.join(", "))
        }
    }
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: S, limit: Duration, r: &mut TargetReport) {
    let info = match timeout(limit, redis::probe(stream)).await {
        Err(_) => {
            r.redis = fail(format!(
                "no answer to PING within {}s; is this port Redis?",
                limit.as_secs()
            ));
            return;
        }
        Ok(Err(e)) => {
            r.redis = fail(e);
            return;
        }
        Ok(Ok(info)) => info,
    };
    r.redis = if info.auth_required {
        ok(format!(
            "reachable: NOAUTH in {} ms (a password is set; clients must AUTH, role and version need it)",
            info.ms
        ))
    } else if info.reply == "PONG" {
        ok(format!("PONG in {} ms{}", info.ms, about(&info)))
    } else {
        warn(format!("reachable, but PING answered: {}", info.reply))
    };
    r.server = Some(info);
}

/// `; replica of 10.0.0.5:6379 (link up), redis 7.1.0`, or as much of it as the server told.
fn about(info: &super::RedisInfo) -> String {
    let role = match (&info.role, &info.primary) {
        (Some(r), Some(p)) => Some(format!("{r} of {p}")),
        (Some(r), None) => Some(r.clone()),
        (None, _) => None,
    };
    let version = info.version.as_ref().map(|v| format!("redis {v}"));
    let parts: Vec<String> = role.into_iter().chain(version).collect();
    match parts.is_empty() {
        true => String::new(),
        false => format!("; {}", parts.join(", ")),
    }
}

/// Milliseconds with one decimal, for reports.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn ok(message: String) -> Step {
    Step {
        mark: Mark::Ok,
        message,
    }
}

fn warn(message: String) -> Step {
    Step {
        mark: Mark::Warn,
        message,
    }
}

fn fail(message: String) -> Step {
    Step {
        mark: Mark::Fail,
        message,
    }
}
