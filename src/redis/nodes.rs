//! The cluster nodes of one `protocol = redis` section: for every node a reply names
//! (`host:port`), one local listener, opened on first sight and kept as long as the section
//! runs, that tunnels to that node with the section's TLS settings. Node listeners are
//! Redis-aware too, since any node may answer with a redirect or a topology reply. A client
//! can make a reply name any node, so a section opens at most one listener per `clusterPorts`
//! port, else [`DEFAULT_MAX_NODES`].
//!
//! TLS towards a node verifies the node's host name; a node known only by IP is verified
//! against the section's `checkHost` (or `sni`), else its `connect` host name: managed
//! clusters put one wildcard name in every node's certificate.
//!
//! Which nodes get a listener (the README's "Which nodes get a listener"): a client can make
//! Redis send any redirect text, so a redirect opens a listener only for a node that belongs
//! to the cluster: one a topology reply named (it has a listener already), a `connect` host
//! name itself (on any port), one under the domain of a `connect` host name (`clustercfg.x.cache.amazonaws.com` → `*.x.cache…`), one in
//! the network (IPv4 /16, IPv6 /56) of an upstream address this section reached, or one
//! `--connect-to` maps. And no node listener ever tunnels into retunnel itself.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Host, ServiceConfig, Target};
use crate::metrics::ServiceMetrics;
use crate::redis::rewrite::Seen;
use crate::tls::{TlsClient, TlsServer};
use crate::upstream::ConnectTo;

/// Node listeners a section opens at most without `clusterPorts` (whose range size is the cap
/// otherwise). Replies name nodes by content, and a client can make Redis send any error text
/// (`EVAL "return redis.error_reply('MOVED 1 h:p')" 0`), so the count must be bounded:
/// ElastiCache and MemoryDB clusters have at most 500 nodes, so big ones set a range.
pub const DEFAULT_MAX_NODES: usize = 256;

/// Everything a node listener's service is made of but its socket.
#[derive(Debug)]
pub struct NodeSection {
    /// The section's settings, named after the node, `connect` being the node.
    pub config: ServiceConfig,
    /// `--connect-to` mappings.
    pub connect_to: ConnectTo,
    /// The TLS client verifying the node.
    pub tls: TlsClient,
    /// Server mode: the acceptor for clients.
    pub acceptor: Option<TlsServer>,
    /// The section's registry, which the node's connections rewrite replies with.
    pub cluster: Arc<Cluster>,
    /// The section's counters.
    pub metrics: Arc<ServiceMetrics>,
    /// Cuts the node's connections at shutdown (set when its listener opens).
    pub cut: CancellationToken,
}

/// Serves a node listener until the section stops: given by the service layer.
pub type ServeNode = fn(
    NodeSection,
    crate::listener::Listener,
    TaskTracker,
    CancellationToken,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The node listeners of one section.
#[derive(Debug)]
pub struct Cluster {
    /// The section the nodes belong to.
    section: ServiceConfig,
    /// `--connect-to` mappings, applied to node addresses too.
    connect_to: ConnectTo,
    /// The listeners opened so far.
    nodes: Mutex<Listeners>,
    /// Where node connections are tracked and when they stop (set when the section starts).
    runtime: OnceLock<(TaskTracker, CancellationToken, ServeNode, CancellationToken)>,
    /// The section's counters, which its node listeners add to.
    metrics: Arc<ServiceMetrics>,
}

/// The node listeners opened so far.
#[derive(Debug)]
struct Listeners {
    /// Node `(host in lower case, port)` → local port.
    by_node: HashMap<(String, u16), u16>,
    /// Where the search for a free `clusterPorts` port resumes.
    next_port: u16,
    /// TLS clients by the name they verify instead of the node's (`None`: the node's host
    /// name): at most two per section, as loading trust anchors takes milliseconds.
    tls: HashMap<Option<String>, TlsClient>,
    /// Server mode (`client = no`): the acceptor node listeners share, loaded on first use.
    acceptor: Option<TlsServer>,
    /// The cap on node listeners was reached and said so (once: replies keep coming).
    capped: bool,
    /// A redirect to a node outside the cluster was refused and said so (once).
    refused: bool,
    /// Upstream addresses this section's connections reached (at most [`MAX_REACHED`]):
    /// the networks redirects may name nodes in by IP.
    reached: Vec<IpAddr>,
}

/// Distinct upstream addresses remembered per section: a cluster's nodes, with room to spare.
const MAX_REACHED: usize = 1024;

impl Cluster {
    /// The registry for a section, if it is a `protocol = redis` one.
    pub fn for_section(
        section: &ServiceConfig,
        connect_to: &ConnectTo,
        metrics: &Arc<ServiceMetrics>,
    ) -> Option<Arc<Cluster>> {
        let settings = section.redis.as_ref()?;
        let first = settings.cluster_ports.map_or(0, |(a, _)| a);
        Some(Arc::new(Cluster {
            section: section.clone(),
            connect_to: connect_to.clone(),
            nodes: Mutex::new(Listeners {
                by_node: HashMap::new(),
                next_port: first,
                tls: HashMap::new(),
                acceptor: None,
                capped: false,
                refused: false,
                reached: Vec::new(),
            }),
            runtime: OnceLock::new(),
            metrics: metrics.clone(),
        }))
    }

    /// The section's counters.
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    /// Hands over the section's task tracker and shutdown signal, what serves a node
    /// listener (a service's accept loop, given from outside: services are built on this
    /// module, not the other way round), and the signal that cuts open connections once
    /// `TIMEOUTclose` is over.
    pub fn attach(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        serve: ServeNode,
        cut: &CancellationToken,
    ) {
        let _ = self
            .runtime
            .set((tracker.clone(), shutdown.clone(), serve, cut.clone()));
    }

    /// The local port tunnelling to node `host:port`, opening it on first use. `None` (with a
    /// warning) if no listener could be opened; the reply then keeps the node's own address.
    pub fn local_port(self: &Arc<Self>, host: &str, port: u16, seen: Seen) -> Option<u16> {
        let key = (host.to_ascii_lowercase(), port);
        if let Some(known) = self.known(&mut self.lock(), &key) {
            return known;
        }
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let Ok(target) = crate::config::parse_target(&format!("{bracketed}:{port}")) else {
            // No node has such an address: a client made it up (a script's error text), and a
            // warning per reply would let it fill the log.
            debug!(node = %format!("{host}:{port}"), "a reply names a node by an address that is none; passing it unchanged");
            return None;
        };
        if seen == Seen::Redirect && !self.belongs(&target) {
            self.refuse(&target);
            return None;
        }
        if self.is_own(&target) {
            debug!(node = %target, "a reply names one of retunnel's own listeners; passing it unchanged");
            return None;
        }
        // TLS is set up without the lock (reading CA files takes milliseconds, and every reply
        // naming a node waits for it); the listener is opened under it, after looking again.
        let opened = self.node_service(target).and_then(|service| {
            let mut nodes = self.lock();
            if let Some(known) = self.known(&mut nodes, &key) {
                return Ok(known);
            }
            let local = self.open(service, &mut nodes)?;
            nodes.by_node.insert(key, local);
            Ok(Some(local))
        });
        opened.unwrap_or_else(|why| {
            warn!(node = %format!("{host}:{port}"), error = %why, "cannot open a listener for a cluster node; the client gets its real address");
            None
        })
    }

    /// Notes an upstream address a connection of this section reached: redirects may name
    /// nodes in its network by IP.
    pub fn reached(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut nodes = self.lock();
        if nodes.reached.len() < MAX_REACHED && !nodes.reached.contains(&ip) {
            nodes.reached.push(ip);
        }
    }

    /// Whether a node named only by a redirect belongs to the cluster (see the module doc).
    fn belongs(&self, node: &Target) -> bool {
        if self.connect_to.maps(&node.host.to_string(), node.port) {
            return true;
        }
        match &node.host {
            Host::Ip(ip) => self.lock().reached.iter().any(|r| same_network(*r, ip.to_canonical())),
            // The `connect` host itself (a cluster announcing its nodes by the endpoint's name,
            // on other ports), or a host under its domain.
            Host::Name(name) => {
                self.is_connect_host(name)
                    || self.section.connect.iter().any(|t| match &t.host {
                        Host::Name(ours) => cluster_domain(ours).is_some_and(|d| in_domain(name, d)),
                        Host::Ip(_) => false,
                    })
            }
        }
    }

    /// Whether `name` is the host name of one of the section's `connect` targets.
    fn is_connect_host(&self, name: &str) -> bool {
        self.section
            .connect
            .iter()
            .any(|t| matches!(&t.host, Host::Name(ours) if ours.eq_ignore_ascii_case(name)))
    }

    /// Says once per section that a redirect named a node outside the cluster.
    fn refuse(&self, node: &Target) {
        if std::mem::replace(&mut self.lock().refused, true) {
            debug!(node = %node, "a redirect names a node outside the cluster; passing it unchanged");
            return;
        }
        warn!(
            node = %node,
            "a redirect names a node outside the cluster (no topology reply named it, and it is neither under the domain of a `connect` host nor in the network of an upstream this section reached); it passes unchanged and no listener opens for it (logged once); if it is a real node, map it with --connect-to"
        );
    }

    /// Whether `node` (after `--connect-to`) is one of retunnel's own listeners, or a port of
    /// `clusterPorts` on the section's own address (where a node listener may open next).
    fn is_own(&self, node: &Target) -> bool {
        let real = self.connect_to.apply(node);
        let ours = self.listen_ip();
        let range = self.section.redis.as_ref().and_then(|r| r.cluster_ports);
        let in_range = range.is_some_and(|(a, b)| (a..=b).contains(&real.port));
        let ip = match &real.host {
            Host::Ip(ip) => *ip,
            // Names are not resolved here. The `connect` host, admitted by name on any port
            // (it may well be `localhost`), is taken for this host: a `clusterPorts` port or
            // the port of one of retunnel's listeners is its own. (A connection that still
            // reaches retunnel is refused when it connects.)
            Host::Name(name) if self.is_connect_host(name) => {
                let loopback = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
                return in_range
                    || [ours, loopback]
                        .iter()
                        .any(|ip| crate::own::is_listening_on(SocketAddr::new(*ip, real.port)));
            }
            Host::Name(_) => return false,
        };
        let same_ip = ip.to_canonical() == ours.to_canonical() || (ours.is_unspecified() && ip.is_loopback());
        (same_ip && in_range) || crate::own::is_listening_on(SocketAddr::new(ip, real.port))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(port)` for a node with a listener, `Some(None)` when no more may be opened, `None`
    /// when one may be opened for it.
    fn known(&self, nodes: &mut Listeners, key: &(String, u16)) -> Option<Option<u16>> {
        if let Some(&local) = nodes.by_node.get(key) {
            return Some(Some(local));
        }
        let max = self.max_nodes();
        // Ports of the range other programs hold count against it too: once the search for a
        // free one reached its end, every new node would fail (and warn) again.
        let range = self.section.redis.as_ref().and_then(|r| r.cluster_ports);
        let exhausted = range.is_some_and(|(first, last)| !(first..=last).contains(&nodes.next_port));
        if nodes.by_node.len() < max && !exhausted {
            return None;
        }
        if !std::mem::replace(&mut nodes.capped, true) {
            let fix = match self.section.redis.as_ref().and_then(|r| r.cluster_ports) {
                Some((a, b)) => format!("widen clusterPorts = {a}-{b}"),
                None => format!("set clusterPorts to a range of more than {max} ports"),
            };
            warn!(
                max_nodes = max,
                "this section has opened as many cluster node listeners as it may; replies naming further nodes pass unchanged (logged once); if the cluster has more nodes, {fix}"
            );
        }
        Some(None)
    }

    /// How many node listeners this section may open: one per `clusterPorts` port, else
    /// [`DEFAULT_MAX_NODES`].
    fn max_nodes(&self) -> usize {
        match self.section.redis.as_ref().and_then(|r| r.cluster_ports) {
            Some((first, last)) => usize::from(last - first) + 1,
            None => DEFAULT_MAX_NODES,
        }
    }

    /// Everything a node listener needs but its socket: its config and TLS, loaded (once per
    /// section and verified name) without holding the lock.
    fn node_service(self: &Arc<Self>, target: Target) -> Result<NodeSection, String> {
        let settings = self.node_tls(&target.host);
        let cached = self.lock().tls.get(&settings.check_host).cloned();
        let tls = match cached {
            Some(tls) => tls,
            None => {
                let tls = TlsClient::new(&settings).map_err(|e| e.to_string())?;
                let mut nodes = self.lock();
                nodes.tls.entry(settings.check_host).or_insert(tls).clone()
            }
        };
        let mut config = self.section.clone();
        config.name = format!("{}/{target}", self.section.name);
        config.connect = vec![target];
        let acceptor = self.acceptor()?;
        Ok(NodeSection {
            config,
            connect_to: self.connect_to.clone(),
            tls,
            acceptor,
            cluster: self.clone(),
            metrics: self.metrics.clone(),
            cut: CancellationToken::new(),
        })
    }

    /// Opens the listener for a node and starts its accept loop (under the lock: binding is
    /// quick, and the `clusterPorts` search ends at the range's end).
    fn open(&self, mut service: NodeSection, nodes: &mut Listeners) -> Result<u16, String> {
        let (tracker, shutdown, serve, cut) = self.runtime.get().ok_or("the section is not running")?;
        service.cut = cut.clone();
        let listener = self.bind(&mut nodes.next_port)?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let node = self.connect_to.apply(&service.config.connect[0]);
        if matches!(node.host, Host::Ip(ip) if ip.to_canonical() == local.ip().to_canonical() && node.port == local.port())
        {
            return Err(format!(
                "the node's address {local} is the very port its listener got; a listener tunnelling into itself would loop"
            ));
        }
        // A root span: the listener outlives the connection whose reply opened it.
        let span = info_span!(parent: None, "service", service = %service.config.name);
        let node = &service.config.connect[0];
        info!(parent: &span, node = %node, listen = %local, "cluster node listener opened");
        let listener = tokio::net::TcpListener::from_std(listener)
            .and_then(crate::listener::Listener::from_tcp)
            .map_err(|e| e.to_string())?;
        let fut = serve(service, listener, tracker.clone(), shutdown.clone());
        let open = self.metrics.node_listener();
        tracker.spawn(
            async move {
                fut.await;
                drop(open);
            }
            .instrument(span),
        );
        Ok(local.port())
    }

    /// In server mode, the TLS acceptor for clients of node listeners (the section's `cert`),
    /// loaded on first use without holding the lock.
    fn acceptor(&self) -> Result<Option<TlsServer>, String> {
        let Some(pair) = &self.section.accept_tls else {
            return Ok(None);
        };
        if let Some(acceptor) = self.lock().acceptor.clone() {
            return Ok(Some(acceptor));
        }
        let acceptor = TlsServer::new(pair, &self.section.tls).map_err(|e| e.to_string())?;
        Ok(Some(self.lock().acceptor.get_or_insert(acceptor).clone()))
    }

    /// The IP node listeners bind: the first TCP `accept`'s (a Redis section has no Unix
    /// socket one).
    fn listen_ip(&self) -> IpAddr {
        self.section
            .accept
            .iter()
            .find_map(|a| a.tcp())
            .map_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |a| a.ip())
    }

    /// Binds on the section's `accept` address: a free port, or the next free one of `clusterPorts`.
    fn bind(&self, next: &mut u16) -> Result<std::net::TcpListener, String> {
        let ip = self.listen_ip();
        let range = self.section.redis.as_ref().and_then(|r| r.cluster_ports);
        let Some((first, last)) = range else {
            return listen(SocketAddr::new(ip, 0)).map_err(|e| format!("cannot listen on {ip}: {e}"));
        };
        while *next >= first && *next <= last {
            let port = *next;
            *next = next.wrapping_add(1);
            if let Ok(l) = listen(SocketAddr::new(ip, port)) {
                return Ok(l);
            }
        }
        Err(format!(
            "no free port left in clusterPorts = {first}-{last}; widen the range (one port per cluster node)"
        ))
    }

    fn node_tls(&self, host: &Host) -> crate::config::TlsSettings {
        let mut tls = self.section.tls.clone();
        let sni_off = tls.sni.as_deref() == Some("");
        let section_name = tls
            .check_host
            .clone()
            .or_else(|| tls.sni.clone().filter(|s| !s.is_empty()))
            .or_else(|| match &self.section.connect.first()?.host {
                Host::Name(n) => Some(n.clone()),
                Host::Ip(_) => None,
            });
        tls.check_host = match host {
            Host::Name(_) => None,
            Host::Ip(_) => section_name,
        };
        tls.sni = sni_off.then(String::new);
        tls
    }
}

/// The domain a cluster's nodes share with its configuration endpoint `host`: all but the
/// first label, when that leaves at least two (`clustercfg.c.abc.use1.cache.amazonaws.com` →
/// `c.abc.use1.cache.amazonaws.com`; `redis.example.com` → `example.com`; `localhost` → none).
fn cluster_domain(host: &str) -> Option<&str> {
    let (_, rest) = host.split_once('.')?;
    rest.contains('.')
        .then_some(rest)
        .filter(|r| !r.starts_with('.') && !r.ends_with('.'))
}

/// Whether `name` is a host under `domain` (not the domain itself).
fn in_domain(name: &str, domain: &str) -> bool {
    let (name, domain) = (name.to_ascii_lowercase(), domain.to_ascii_lowercase());
    name.strip_suffix(&domain)
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

/// Whether two addresses share a cloud network: the same IPv4 /16 (the largest AWS VPC) or
/// IPv6 /56 (an AWS VPC's IPv6 block).
fn same_network(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..2] == b.octets()[..2],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..7] == b.octets()[..7],
        _ => false,
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RedisSettings};

    /// A `protocol = redis` section on 127.0.0.1 (not started).
    fn redis_section() -> ServiceConfig {
        let text = "[c]\naccept = 127.0.0.1:7000\nconnect = db.example.com:6379\nprotocol = redis\n";
        let (mut config, _) = Config::parse(text, std::path::Path::new("t.conf")).unwrap();
        config.services.remove(0)
    }

    /// Opens a FIFO for writing as soon as a reader has it open (until then: ENXIO).
    fn wait_for_reader(path: &std::ffi::CStr) -> std::fs::File {
        use std::os::fd::FromRawFd;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
            if fd >= 0 {
                return unsafe { std::fs::File::from_raw_fd(fd) };
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nobody opened the FIFO for reading"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Loading a node's TLS settings can block (a CAfile on a slow disk; here a FIFO nobody
    /// writes yet): replies naming nodes that already have a listener must not wait for it.
    #[test]
    fn known_nodes_are_found_while_another_node_loads_its_ca() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let mut section = redis_section();
        section.tls.ca_file = Some(fifo.clone());
        let cluster = Cluster::for_section(
            &section,
            &ConnectTo::default(),
            &crate::metrics::Metrics::default().service("c"),
        )
        .unwrap();
        cluster.attach(
            &TaskTracker::new(),
            &CancellationToken::new(),
            crate::service::serve_node,
            &CancellationToken::new(),
        );
        cluster
            .nodes
            .lock()
            .unwrap()
            .by_node
            .insert(("known.example".into(), 6379), 17001);
        let loading = std::thread::spawn({
            let cluster = cluster.clone();
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _in_runtime = rt.enter();
                cluster.local_port("10.0.0.1", 6379, Seen::Topology)
            }
        });
        let writer = wait_for_reader(&c_path);
        let (tx, rx) = std::sync::mpsc::channel();
        let lookup = std::thread::spawn({
            let cluster = cluster.clone();
            move || {
                tx.send(cluster.local_port("KNOWN.example", 6379, Seen::Topology))
                    .unwrap()
            }
        });
        let found = rx.recv_timeout(std::time::Duration::from_secs(5));
        drop(writer); // the loader reads an empty CA file and goes on
        loading.join().unwrap();
        lookup.join().unwrap();
        assert_eq!(found, Ok(Some(17001)), "a known node waited for another node's CA file");
    }

    #[test]
    fn a_clusters_domain_is_its_endpoint_less_the_first_label() {
        let d = cluster_domain("clustercfg.c1.abc123.use1.cache.amazonaws.com").unwrap();
        assert_eq!(d, "c1.abc123.use1.cache.amazonaws.com");
        assert!(in_domain("C1-0001-001.c1.abc123.use1.cache.amazonaws.com", d));
        assert!(!in_domain("c1.abc123.use1.cache.amazonaws.com", d), "the domain itself");
        assert!(
            !in_domain("evilc1.abc123.use1.cache.amazonaws.com", d),
            "a longer label"
        );
        assert!(!in_domain("www.example.com", d));
        assert_eq!(cluster_domain("redis.example.com"), Some("example.com"));
        assert_eq!(cluster_domain("example.com"), None, "every .com host would do");
        assert_eq!(cluster_domain("localhost"), None);
        assert_eq!(cluster_domain("a..b"), None);
    }

    #[test]
    fn a_network_is_a_vpc_sized_block() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_network(ip("10.0.3.4"), ip("10.0.200.9")));
        assert!(!same_network(ip("10.0.3.4"), ip("10.1.3.4")));
        assert!(!same_network(ip("127.0.0.1"), ip("10.0.3.4")));
        assert!(same_network(ip("2600:1f18:1:2300::1"), ip("2600:1f18:1:23ff::9")));
        assert!(!same_network(ip("2600:1f18:1:2300::1"), ip("2600:1f18:1:2400::1")));
        assert!(!same_network(ip("10.0.0.1"), ip("::1")));
    }

    /// Issue 11 defect 2: a redirect names a node of the cluster or opens nothing.
    #[test]
    fn redirects_open_listeners_only_for_nodes_of_the_cluster() {
        let mut section = redis_section();
        section.connect = vec![crate::config::parse_target("clustercfg.c1.example.com:6379").unwrap()];
        let mut connect_to = ConnectTo::default();
        connect_to.add("mapped.elsewhere.net:6379:127.0.0.1:1").unwrap();
        let metrics = crate::metrics::Metrics::default().service("c");
        let cluster = Cluster::for_section(&section, &connect_to, &metrics).unwrap();
        let t = |s: &str| crate::config::parse_target(s).unwrap();
        cluster.reached("10.1.2.3".parse().unwrap());
        for node in [
            "n1.c1.example.com:6379",
            "10.1.200.7:6379",
            "mapped.elsewhere.net:6379",
            "clustercfg.c1.example.com:6379",
            "ClusterCfg.C1.example.com:6380",
        ] {
            assert!(cluster.belongs(&t(node)), "{node}");
        }
        for node in [
            "www.example.com:443",
            "c1.example.com:6379",
            "10.2.0.1:6379",
            "127.0.0.1:7000",
        ] {
            assert!(!cluster.belongs(&t(node)), "{node}");
        }
        // A name with no domain to share (`localhost`) still admits itself, on any port: an
        // outside tester's cluster announced its nodes as the `connect` host.
        let mut local = redis_section();
        local.connect = vec![t("localhost:7000")];
        let by_name = Cluster::for_section(&local, &ConnectTo::default(), &metrics).unwrap();
        assert!(by_name.belongs(&t("localhost:7001")));
        assert!(by_name.belongs(&t("LOCALHOST:7000")));
        assert!(!by_name.belongs(&t("otherhost:7001")));
        // Refused before anything is opened (no runtime is attached, so opening would warn).
        assert_eq!(cluster.local_port("www.example.com", 443, Seen::Redirect), None);
        assert!(cluster.lock().refused);
        assert!(cluster.lock().by_node.is_empty());
    }

    #[test]
    fn a_full_port_range_says_how_to_fix_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut section = redis_section();
        section.redis = Some(RedisSettings {
            cluster_ports: Some((port, port)),
            ..Default::default()
        });
        let cluster = Cluster::for_section(
            &section,
            &ConnectTo::default(),
            &crate::metrics::Metrics::default().service("c"),
        )
        .unwrap();
        let mut next = port;
        let e = cluster.bind(&mut next).unwrap_err();
        assert!(
            e.contains(&format!(
                "no free port left in clusterPorts = {port}-{port}; widen the range"
            )),
            "{e}"
        );
    }
}
