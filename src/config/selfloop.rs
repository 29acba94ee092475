//! A `connect` that names one of retunnel's own `accept` addresses. Every client connection
//! would connect to retunnel again, which would connect again, until every file descriptor is
//! taken; stunnel lets it loop. Judged from the text alone (no DNS): the same port on
//! `localhost`, a loopback address, a wildcard address, or the same literal. The daemon also
//! refuses, per connection, an upstream address that turns out to be one of its listeners
//! (`crate::own`), for names this cannot judge.

use std::net::{IpAddr, SocketAddr};

use super::lines::Entry;
use super::values::{self, Host, Listen, Target};
use super::{At, Parser};

/// One section's effective lines, with the section they are reported in (`None`: written in
/// the global part, a default).
pub(super) struct Lines<'e> {
    /// The section name.
    pub name: &'e str,
    /// Its lines and the global defaults it inherits.
    pub entries: Vec<(Option<&'e str>, &'e Entry)>,
}

/// Whether a connection to `target` would reach a listener bound to `accept`.
pub fn reaches(target: &Target, accept: SocketAddr) -> bool {
    if accept.port() == 0 || target.port != accept.port() {
        return false;
    }
    let to = match &target.host {
        Host::Name(n) => match n.eq_ignore_ascii_case("localhost") {
            true => return accept.ip().is_loopback() || accept.ip().is_unspecified(),
            false => return false,
        },
        Host::Ip(ip) => ip.to_canonical(),
    };
    let on = accept.ip().to_canonical();
    // Connecting to 0.0.0.0 or :: reaches this host's own listeners.
    let local = to.is_loopback() || to.is_unspecified();
    to == on || (on.is_unspecified() && local && same_family(on, to)) || (to.is_unspecified() && on.is_loopback())
}

/// A listener on `0.0.0.0` takes IPv4 only; one on `::` takes both (Linux's default).
fn same_family(listener: IpAddr, to: IpAddr) -> bool {
    listener.is_ipv6() || to.is_ipv4()
}

impl Parser<'_> {
    /// Reports every `connect` line that reaches an `accept` line of any section, naming both.
    pub(super) fn self_loops(&mut self, sections: &[Lines]) {
        for from in sections {
            for &(written_in, connect) in from.entries.iter().filter(|(_, e)| is(e, "connect")) {
                let Ok(target) = values::target(&connect.value) else {
                    continue;
                };
                for to in sections {
                    self.loop_into(
                        &At {
                            section: written_in,
                            entry: connect,
                        },
                        &target,
                        from.name,
                        to,
                    );
                }
            }
        }
    }

    /// One `connect` target against the `accept` lines of section `to`.
    fn loop_into(&mut self, at: &At, target: &Target, from: &str, to: &Lines) {
        for &(_, accept) in to.entries.iter().filter(|(_, e)| is(e, "accept")) {
            let Ok(Listen::Tcp(addr)) = values::listen(&accept.value) else {
                continue;
            };
            if !reaches(target, addr) {
                continue;
            }
            let whose = match to.name == from {
                true => "this section's own".to_string(),
                false => format!("[{}]'s", to.name),
            };
            let line = self.where_written(accept);
            self.problem(
                at,
                format!(
                    "{target} is {whose} `accept` ({line}: accept = {}): retunnel would connect to itself, and each client would chain connections until no file descriptor is left; point `connect` at the TLS server (for example `connect = my-cache.xxxxxx.cache.amazonaws.com:6379`) or give `accept` another port",
                    accept.value
                ),
            );
        }
    }

    /// `file:line`, or the flag on the command line.
    pub(super) fn where_written(&self, e: &Entry) -> String {
        match self.flags {
            true => super::oneoff::flag_of(&e.key),
            false => format!("{}:{}", e.file.as_deref().unwrap_or(self.path).display(), e.line),
        }
    }
}

fn is(e: &Entry, key: &str) -> bool {
    e.key.eq_ignore_ascii_case(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        values::target(s).unwrap()
    }

    #[test]
    fn loopback_wildcard_and_equal_literals_reach_the_listener() {
        let lo: SocketAddr = "127.0.0.1:6391".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:6391".parse().unwrap();
        let any6: SocketAddr = "[::]:6391".parse().unwrap();
        let lan: SocketAddr = "10.1.2.3:6391".parse().unwrap();
        for (target, accept) in [
            ("localhost:6391", lo),
            ("LocalHost:6391", any),
            ("127.0.0.1:6391", lo),
            ("127.0.0.1:6391", any),
            ("127.0.0.2:6391", any),
            ("0.0.0.0:6391", lo),
            ("[::1]:6391", any6),
            ("[::ffff:127.0.0.1]:6391", lo),
            ("127.0.0.1:6391", any6),
            ("10.1.2.3:6391", lan),
        ] {
            assert!(reaches(&t(target), accept), "{target} -> {accept}");
        }
        for (target, accept) in [
            ("localhost:6392", lo),
            ("127.0.0.2:6391", lo),
            ("[::1]:6391", any),
            ("10.1.2.3:6391", lo),
            ("db.example.com:6391", lo),
            ("localhost:6391", "127.0.0.1:0".parse().unwrap()),
        ] {
            assert!(!reaches(&t(target), accept), "{target} -> {accept}");
        }
    }
}
