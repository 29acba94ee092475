//! The addresses retunnel itself listens on (every section's, every cluster node listener's
//! and the metrics endpoint's), so that a connection about to tunnel into retunnel itself can
//! be refused: a `connect` or a Redis redirect naming one of them would otherwise connect to
//! retunnel, which would connect again, and one client connection would chain thousands.
//! Registered by the accept loop for as long as it runs.
//!
//! An upstream address is checked before connecting ([`is_listening_on`]: the same address,
//! or a loopback one for a wildcard listener) and once connected ([`reaches_self`]: also this
//! host's other addresses). An address found only the second way is remembered, so that the
//! connection it started (accepted by retunnel meanwhile) is refused before it connects: the
//! chain ends there.

use std::net::SocketAddr;
use std::sync::Mutex;

/// The registered listeners, and the addresses found to reach one of them (with that one).
static LISTENING: Mutex<Own> = Mutex::new(Own {
    listeners: Vec::new(),
    learned: Vec::new(),
});

#[derive(Debug)]
struct Own {
    /// Every registered listening address.
    listeners: Vec<SocketAddr>,
    /// Upstream addresses that turned out to reach a listener, and which one.
    learned: Vec<(SocketAddr, SocketAddr)>,
}

/// At most this many learned addresses (a host has few addresses; ports are the listeners').
const MAX_LEARNED: usize = 256;

/// What a refused connection is told (and logs).
pub const LOOP: &str = "this address is one of retunnel's own listeners, so connecting would loop back into retunnel (each connection opening another); point `connect` at the TLS server instead";

fn own() -> std::sync::MutexGuard<'static, Own> {
    LISTENING.lock().unwrap_or_else(|e| e.into_inner())
}

/// One of retunnel's listening addresses, registered until dropped.
#[derive(Debug)]
pub struct Listening(Option<SocketAddr>);

impl Listening {
    /// Registers `addr` (`None`: the listener's address could not be read; nothing to do).
    pub fn register(addr: Option<SocketAddr>) -> Listening {
        if let Some(a) = addr {
            own().listeners.push(a);
        }
        Listening(addr)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let Some(addr) = self.0 else { return };
        let mut own = own();
        if let Some(i) = own.listeners.iter().position(|a| *a == addr) {
            own.listeners.swap_remove(i);
        }
        if !own.listeners.contains(&addr) {
            own.learned.retain(|(_, l)| *l != addr);
        }
    }
}

/// Whether a connection from `local` to `peer` reached one of retunnel's own listeners: the
/// same address, or the port of a listener on every interface (`0.0.0.0`, `::`) reached on a
/// loopback or this host's own address.
/// Remembers `peer` so that [`is_listening_on`] knows it from then on.
pub fn reaches_self(local: SocketAddr, peer: SocketAddr) -> bool {
    let peer_ip = peer.ip().to_canonical();
    let on_this_host = peer_ip.is_loopback() || peer_ip == local.ip().to_canonical();
    let mut own = own();
    let reached = own.listeners.iter().copied().find(|l| {
        l.port() == peer.port() && (l.ip().to_canonical() == peer_ip || (l.ip().is_unspecified() && on_this_host))
    });
    let Some(listener) = reached else { return false };
    if own.learned.len() < MAX_LEARNED && !own.learned.iter().any(|(a, _)| *a == peer) {
        own.learned.push((peer, listener));
    }
    true
}

/// Whether connecting to `addr` would reach one of retunnel's own listeners, as far as can be
/// told before connecting.
pub fn is_listening_on(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let own = own();
    let listener = own.listeners.iter().any(|l| {
        l.port() == addr.port() && (l.ip().to_canonical() == ip || (l.ip().is_unspecified() && ip.is_loopback()))
    });
    listener || own.learned.iter().any(|(a, _)| *a == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_addresses_are_self_until_dropped() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:2".parse().unwrap();
        let elsewhere: SocketAddr = "10.0.0.9:5555".parse().unwrap();
        let (g1, g2) = (Listening::register(Some(a)), Listening::register(Some(any)));
        assert!(is_listening_on(a));
        assert!(is_listening_on("[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert!(is_listening_on("127.0.0.5:2".parse().unwrap()));
        assert!(!is_listening_on("127.0.0.1:3".parse().unwrap()));
        assert!(!is_listening_on("10.0.0.1:1".parse().unwrap()));
        assert!(reaches_self(elsewhere, a));
        assert!(reaches_self(
            "10.0.0.9:4444".parse().unwrap(),
            "10.0.0.9:2".parse().unwrap()
        ));
        assert!(!reaches_self(elsewhere, "10.0.0.1:2".parse().unwrap()));
        // This host's own address reaching the wildcard listener is known before connecting
        // from then on.
        assert!(is_listening_on("10.0.0.9:2".parse().unwrap()));
        drop((g1, g2));
        assert!(!is_listening_on(a));
        assert!(!reaches_self(elsewhere, a));
        assert!(
            !is_listening_on("10.0.0.9:2".parse().unwrap()),
            "forgotten with its listener"
        );
    }
}
