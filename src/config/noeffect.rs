//! Lines that are valid but change nothing, said as warnings (a file still loads): a
//! single-value option written twice (the last line counts), verification options in server
//! mode that have nothing to verify, and `clusterPorts` ranges that include a port another
//! listener of retunnel holds.

use std::net::{IpAddr, SocketAddr};

use super::lines::{Entry, Section};
use super::options::{self, Support};
use super::{At, Listen, Parser, ServiceConfig, Warning};

/// The options whose every line adds to the ones before (all others: the last line counts).
const REPEATABLE: &[&str] = &["accept", "connect", "checkIP", "options", "socket", "include"];

/// Options about the certificate's name: only an upstream reached with TLS has one to check.
const NAME_CHECKS: &[&str] = &["checkHost", "checkIP", "sni"];

/// Options about trust: in server mode without `connectTLS` they judge client certificates,
/// which are asked for only with `verify`/`verifyChain`/`verifyPeer`.
const TRUST: &[&str] = &["CAfile", "CApath", "CRLfile", "CRLpath"];

/// What [`Parser::server_mode_lines`] needs to know of a server-mode section.
pub(super) struct ServerMode<'h> {
    /// `file:line: [name]`, as the section's other messages start.
    pub header: &'h str,
    /// Whether clients are asked for certificates.
    pub asks_clients: bool,
}

impl Parser<'_> {
    /// Warns at each repeated line of a single-value option: only the last one counts.
    pub(super) fn repeated(&mut self, lines: &[(Option<&str>, &Entry)]) {
        for (i, &(section, entry)) in lines.iter().enumerate() {
            let Some(spec) = options::lookup(&entry.key) else {
                continue;
            };
            if !matches!(spec.support, Support::Honoured(_)) || REPEATABLE.contains(&spec.name) {
                continue;
            }
            let same = |e: &&Entry| options::lookup(&e.key).is_some_and(|s| s.name == spec.name);
            let Some(first) = lines[..i].iter().map(|&(_, e)| e).find(same) else {
                continue;
            };
            let msg = format!(
                "is written again (first at {}); only the last `{}` line counts, so remove the others",
                self.where_written(first),
                spec.name
            );
            self.warn(&At { section, entry }, msg);
        }
    }

    /// Server mode without `connectTLS`: name checks have no upstream certificate to check,
    /// and trust files judge nothing unless clients are asked for certificates.
    pub(super) fn server_mode_lines(&mut self, mode: &ServerMode, written: impl Fn(&str) -> bool) {
        for name in NAME_CHECKS.iter().filter(|n| written(n)) {
            self.warnings.push(Warning(format!(
                "{}: `{name}` has no effect: with `client = no` the upstream is plain TCP unless `connectTLS = yes`, and client certificates are not checked for names; remove it, or add `connectTLS = yes` if the upstream speaks TLS",
                mode.header
            )));
        }
        if mode.asks_clients {
            return;
        }
        for name in TRUST.iter().filter(|n| written(n)) {
            self.warnings.push(Warning(format!(
                "{}: `{name}` has no effect: with `client = no` it judges client certificates, which are asked for only with `verifyChain = yes` (or `verify`/`verifyPeer`); add that line, or `connectTLS = yes` if it is meant for the upstream, or remove it",
                mode.header
            )));
        }
    }

    /// Warns about `clusterPorts` ports where another listener of retunnel (a section's
    /// `accept`, this one's included, or `metrics`) already listens: node listeners skip them.
    pub(super) fn cluster_port_clashes(
        &mut self,
        sections: &[Section],
        out: &[ServiceConfig],
        metrics: Option<SocketAddr>,
    ) {
        let mut taken: Vec<(SocketAddr, String)> = out
            .iter()
            .flat_map(|s| {
                s.accept
                    .iter()
                    .filter_map(Listen::tcp)
                    .map(move |a| (a, format!("[{}] accepts clients", s.name)))
            })
            .collect();
        taken.extend(metrics.map(|m| (m, "the metrics endpoint listens".to_string())));
        for svc in out {
            let Some((first, last)) = svc.redis.as_ref().and_then(|r| r.cluster_ports) else {
                continue;
            };
            let Some(ip) = svc.accept.iter().find_map(Listen::tcp).map(|a| a.ip()) else {
                continue;
            };
            let Some(section) = sections.iter().find(|s| s.name.as_deref() == Some(svc.name.as_str())) else {
                continue;
            };
            let header = format!("{}:{}: [{}]", self.file_of(section).display(), section.line, svc.name);
            for (addr, what) in &taken {
                if !(first..=last).contains(&addr.port()) || !overlap(ip, addr.ip()) {
                    continue;
                }
                self.warnings.push(Warning(format!(
                    "{header}: clusterPorts = {first}-{last} includes {}, where {what} ({addr}); node listeners skip it, so the range has one port fewer: move the range or that listener",
                    addr.port()
                )));
            }
        }
    }
}

/// Whether listeners on `a` and `b` (same port) would clash: the same address, or a wildcard.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical() || a.is_unspecified() || b.is_unspecified()
}
