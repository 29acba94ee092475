//! The addresses retunnel itself listens on (every section's and every cluster node
//! listener's), so that a connection about to tunnel into retunnel itself can be refused: a
//! Redis redirect naming one of them would otherwise open a node listener that connects to
//! itself, and one client connection would chain thousands. Registered by the accept loop
//! for as long as it runs.

use std::net::SocketAddr;
use std::sync::Mutex;

static LISTENING: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

fn listening() -> std::sync::MutexGuard<'static, Vec<SocketAddr>> {
    LISTENING.lock().unwrap_or_else(|e| e.into_inner())
}

/// One of retunnel's listening addresses, registered until dropped.
#[derive(Debug)]
pub struct Listening(Option<SocketAddr>);

impl Listening {
    /// Registers `addr` (`None`: the listener's address could not be read; nothing to do).
    pub fn register(addr: Option<SocketAddr>) -> Listening {
        if let Some(a) = addr {
            listening().push(a);
        }
        Listening(addr)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let Some(addr) = self.0 else { return };
        let mut all = listening();
        if let Some(i) = all.iter().position(|a| *a == addr) {
            all.swap_remove(i);
        }
    }
}

/// Whether a connection from `local` to `peer` reached one of retunnel's own listeners: the
/// same address, or the port of a listener on every interface (`0.0.0.0`, `::`) reached on a
/// loopback or this host's own address.
pub fn reaches_self(local: SocketAddr, peer: SocketAddr) -> bool {
    let peer_ip = peer.ip().to_canonical();
    let on_this_host = peer_ip.is_loopback() || peer_ip == local.ip().to_canonical();
    listening().iter().any(|l| {
        l.port() == peer.port() && (l.ip().to_canonical() == peer_ip || (l.ip().is_unspecified() && on_this_host))
    })
}

/// Whether a node at `addr` would be one of retunnel's own listeners (before connecting).
pub fn is_listening_on(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    listening().iter().any(|l| {
        l.port() == addr.port() && (l.ip().to_canonical() == ip || (l.ip().is_unspecified() && ip.is_loopback()))
    })
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
        drop((g1, g2));
        assert!(!is_listening_on(a));
        assert!(!reaches_self(elsewhere, a));
    }
}
