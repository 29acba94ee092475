//! A real TLS Redis Cluster on loopback: 3 primaries with one replica each, cluster bus and
//! replication over TLS, optionally announcing host names (`nodeN.cluster.test`). Waiting is
//! for events: every node reports `cluster_state:ok`, knows all six nodes (and their host
//! names) and every replica's link is up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// One node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    /// The port in the address field (the TLS port, or a local listener through retunnel).
    pub port: u16,
    pub primary: bool,
    /// For a replica, its primary's id.
    pub primary_id: String,
    /// Slot ranges served (primaries).
    pub slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES` text.
pub fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let addr = f[1].split('@').next().unwrap();
            let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (s.parse().unwrap(), s.parse().unwrap()),
                })
                .collect();
            NodeInfo {
                id: f[0].to_string(),
                port,
                primary: f[2].contains("master"),
                primary_id: f[3].to_string(),
                slots,
            }
        })
        .collect()
}

/// Six TLS redis-servers joined into one cluster.
pub struct RedisCluster {
    pub pki: Pki,
    pub ca: Ca,
    pub nodes: Vec<Redis>,
    /// Whether nodes announce `nodeN.cluster.test` and prefer it as their endpoint.
    pub hostnames: bool,
}

impl RedisCluster {
    pub fn start(hostnames: bool) -> RedisCluster {
        let pki = Pki::new();
        let names: Vec<String> = (1..=6).map(|i| format!("node{i}.cluster.test")).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (ca, leaf) = pki.standard(&name_refs);
        let nodes: Vec<Redis> = (0..6)
            .map(|i| {
                let bus = free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "3000",
                ];
                if hostnames {
                    args.extend([
                        "--cluster-announce-hostname",
                        &names[i],
                        "--cluster-preferred-endpoint-type",
                        "hostname",
                    ]);
                }
                Redis::start_tls(&leaf, &ca, &args)
            })
            .collect();
        let c = RedisCluster {
            pki,
            ca,
            nodes,
            hostnames,
        };
        let addrs: Vec<String> = c.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&c.ca.pem)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        c.wait_healthy();
        c
    }

    /// Runs redis-cli over TLS straight at a node (administration, bypassing retunnel).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&self.ca.pem)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until every node is ok, knows all six nodes (and their host names) and every
    /// replica's link to its primary is up.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.healthy() {
            assert!(
                Instant::now() < deadline,
                "cluster never became healthy:\n{}",
                self.cli(self.nodes[0].port, &["cluster", "nodes"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
        self.nodes.iter().all(|n| {
            let info = self.cli(n.port, &["cluster", "info"]);
            let nodes = self.cli(n.port, &["cluster", "nodes"]);
            let lines: Vec<&str> = nodes.lines().collect();
            let ok = info.contains("cluster_state:ok")
                && lines.len() == 6
                && lines
                    .iter()
                    .all(|l| !l.contains("fail") && !l.contains("handshake") && !l.contains("noaddr"))
                && (!self.hostnames || lines.iter().all(|l| l.contains(".cluster.test")));
            let me = lines.iter().find(|l| l.contains("myself"));
            let replica = me.is_some_and(|l| l.contains("slave"));
            ok && (!replica
                || self
                    .cli(n.port, &["info", "replication"])
                    .contains("master_link_status:up"))
        })
    }

    /// The topology as node 0 (or `port`) sees it.
    pub fn topology(&self, port: u16) -> Vec<NodeInfo> {
        parse_nodes(&self.cli(port, &["cluster", "nodes"]))
    }

    /// `--connect-to` arguments that send every node host name to its loopback port.
    pub fn connect_to_args(&self) -> Vec<String> {
        self.nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                [
                    "--connect-to".to_string(),
                    format!("node{}.cluster.test:{p}:127.0.0.1:{p}", i + 1, p = n.port),
                ]
            })
            .collect()
    }
}

/// Runs `redis-cli ARGS` (plain TCP) at 127.0.0.1:`port` with `input` as its stdin: one
/// command a line, all on one connection.
pub fn redis_cli_input(port: u16, args: &[&str], input: &str) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
