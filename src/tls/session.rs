//! The client side's memory of TLS sessions, one store per section, keyed by the verified
//! name: TLS 1.3 tickets (each used once) and the last TLS 1.2 session (ticket or id). A new
//! connection to the same upstream then resumes instead of paying for a full handshake.
//!
//! rustls's own `ClientSessionMemoryCache` sizes its tables up front for the most entries it
//! may hold, which for a thousand sections would be megabytes held by nobody; this store
//! starts empty and holds only what it was given. It keeps at most `sessionCacheSize`
//! sessions in all (the oldest goes first; 0 = no limit) and forgets a session older than
//! `sessionCacheTimeout`.
//!
//! A burst of new connections (a reconnect storm after a failover, a pool filling at once)
//! empties the TLS 1.3 tickets (each used once; servers send two per handshake), and every
//! further handshake in the burst would be a full one: a certificate signature on the server
//! each. So a handshake that finds no ticket, while another handshake with the same server
//! began just now (its tickets are on their way), waits for one, at most [`TICKET_WAIT`]:
//! the burst then resumes in generations that double with each round trip.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls_pki_types::ServerName;

/// TLS 1.3 tickets kept per name. Servers send two per handshake and each connection uses
/// one, but in bursts: with `prewarm`, the refill and the clients that find the warm set
/// empty dial at once, before the connections just taken have read their tickets. With 8
/// kept, 4–5% of the handshakes of `redis-benchmark -k 0 -c 8` through `prewarm = 16` were
/// full ones (the store ran dry); with 32, none after the first. A ticket is a few hundred
/// bytes, and `sessionCacheSize` still bounds the section's total.
const TICKETS_PER_NAME: usize = 32;

/// The longest a handshake waits for a ticket from a handshake under way (see the module's
/// documentation): about ten generations of resumed handshakes to a server nearby, and less
/// than a full handshake costs to one far away.
pub const TICKET_WAIT: Duration = Duration::from_millis(50);

/// What one upstream name left behind.
#[derive(Debug, Default)]
struct Entry {
    /// The key-exchange group the server chose last (saves a round trip).
    kx_hint: Option<NamedGroup>,
    /// The last TLS 1.2 session, and when it was stored.
    tls12: Option<(Instant, Tls12ClientSessionValue)>,
    /// Unused TLS 1.3 tickets, oldest first.
    tls13: VecDeque<(Instant, Tls13ClientSessionValue)>,
    /// The server has issued TLS 1.3 tickets: worth waiting for.
    issues_tickets: bool,
    /// When the last handshake that did not wait began.
    started: Option<Instant>,
}

impl Entry {
    fn sessions(&self) -> usize {
        self.tls13.len() + usize::from(self.tls12.is_some())
    }

    /// When the oldest session here was stored.
    fn oldest(&self) -> Option<Instant> {
        let t12 = self.tls12.as_ref().map(|(t, _)| *t);
        let t13 = self.tls13.front().map(|(t, _)| *t);
        t12.into_iter().chain(t13).min()
    }

    /// Drops the oldest session here.
    fn drop_oldest(&mut self) {
        let t12 = self.tls12.as_ref().map(|(t, _)| *t);
        let t13 = self.tls13.front().map(|(t, _)| *t);
        match (t12, t13) {
            (Some(a), Some(b)) if b < a => drop(self.tls13.pop_front()),
            (Some(_), _) => self.tls12 = None,
            (None, _) => drop(self.tls13.pop_front()),
        }
    }
}

/// A section's session store.
#[derive(Debug)]
pub struct Store {
    /// By server name.
    entries: Mutex<HashMap<ServerName<'static>, Entry>>,
    /// `sessionCacheSize`: most sessions kept in all; 0 = no limit.
    size: usize,
    /// `sessionCacheTimeout`: a session older than this is not offered.
    timeout: Duration,
    /// Wakes one waiting handshake per ticket stored.
    arrived: Notify,
}

impl Store {
    /// An empty store (allocates nothing until the first session).
    pub fn new(size: usize, timeout: Duration) -> Store {
        Store {
            entries: Mutex::default(),
            size,
            timeout,
            arrived: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ServerName<'static>, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a handshake with `name`: when there is no ticket for it, the server issues
    /// them, and another handshake with it began within [`TICKET_WAIT`], waits for a ticket
    /// (at most [`TICKET_WAIT`]). Otherwise, or then, notes that a handshake begins.
    pub async fn ticket_or_wait(&self, name: &ServerName<'static>) {
        let deadline = tokio::time::Instant::now() + TICKET_WAIT;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if !self.waits(name) {
                return;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                self.begins(name);
                return;
            }
        }
    }

    /// Whether a handshake with `name` should wait for a ticket now; when not, it begins.
    fn waits(&self, name: &ServerName<'static>) -> bool {
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(name) else {
            return false; // never reached before: nothing known to wait for
        };
        let now = Instant::now();
        let wait = e.issues_tickets && e.tls13.is_empty() && e.started.is_some_and(|t| now - t < TICKET_WAIT);
        if !wait {
            e.started = Some(now);
        }
        wait
    }

    fn begins(&self, name: &ServerName<'static>) {
        if let Some(e) = self.lock().get_mut(name) {
            e.started = Some(Instant::now());
        }
    }

    fn fresh(&self, stored: Instant) -> bool {
        stored.elapsed() < self.timeout
    }

    /// Makes room for one more session under `sessionCacheSize`.
    fn make_room(&self, entries: &mut HashMap<ServerName<'static>, Entry>) {
        if self.size == 0 {
            return;
        }
        while entries.values().map(Entry::sessions).sum::<usize>() >= self.size {
            let oldest = entries
                .iter()
                .filter_map(|(name, e)| Some((e.oldest()?, name.clone())))
                .min_by_key(|(t, _)| *t);
            let Some((_, name)) = oldest else { return };
            if let Some(e) = entries.get_mut(&name) {
                e.drop_oldest();
            }
        }
    }
}

impl ClientSessionStore for Store {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.lock().entry(server_name).or_default().kx_hint = Some(group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().get(server_name).and_then(|e| e.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        let mut entries = self.lock();
        if let Some(e) = entries.get_mut(&server_name) {
            e.tls12 = None;
        }
        self.make_room(&mut entries);
        entries.entry(server_name).or_default().tls12 = Some((Instant::now(), value));
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let entries = self.lock();
        let (stored, value) = entries.get(server_name)?.tls12.as_ref()?;
        self.fresh(*stored).then(|| value.clone())
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        if let Some(e) = self.lock().get_mut(server_name) {
            e.tls12 = None;
        }
    }

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut entries = self.lock();
        self.make_room(&mut entries);
        let entry = entries.entry(server_name).or_default();
        entry.issues_tickets = true;
        if entry.tls13.len() >= TICKETS_PER_NAME {
            entry.tls13.pop_front();
        }
        entry.tls13.push_back((Instant::now(), value));
        drop(entries);
        self.arrived.notify_one();
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let mut entries = self.lock();
        let tickets = &mut entries.get_mut(server_name)?.tls13;
        // Newest first: the likeliest to be within the server's ticket lifetime.
        while let Some((stored, value)) = tickets.pop_back() {
            if self.fresh(stored) {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_store_answers_nothing_and_allocates_nothing() {
        let s = Store::new(10, Duration::from_secs(300));
        let name = ServerName::try_from("db.example").unwrap();
        assert!(s.kx_hint(&name).is_none());
        assert!(s.tls12_session(&name).is_none());
        assert!(s.take_tls13_ticket(&name).is_none());
        assert_eq!(s.lock().capacity(), 0);
    }

    #[test]
    fn kx_hints_are_kept_per_name() {
        let s = Store::new(10, Duration::from_secs(300));
        let a = ServerName::try_from("a.example").unwrap();
        let b = ServerName::try_from("b.example").unwrap();
        s.set_kx_hint(a.clone(), NamedGroup::X25519);
        assert_eq!(s.kx_hint(&a), Some(NamedGroup::X25519));
        assert_eq!(s.kx_hint(&b), None);
    }
}
