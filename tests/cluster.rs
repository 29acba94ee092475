//! Redis Cluster through one `protocol = redis` section: a real TLS cluster on loopback
//! (3 primaries, 3 replicas), redis-cli in cluster mode, Python's redis-py cluster client, slot
//! migration (ASK), failover (MOVED to a promoted replica) and READONLY reads from replicas.

mod support;
use support::cluster::*;
use support::*;

use std::io::BufRead;

/// Debian's python3 (the one `apt-get install python3-redis` serves).
const PYTHON: &str = "/usr/bin/python3";

/// redis-py's cluster client: discovers the topology through retunnel (no address mapping of
/// its own; the real nodes speak only TLS), writes and reads `n` keys, prints the nodes it used.
const PY_CLIENT: &str = r#"
import sys, redis
rc = redis.RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    k = "py:%d" % i
    assert rc.set(k, str(i))
for i in range(int(sys.argv[2])):
    assert rc.get("py:%d" % i) == str(i).encode(), i
print(" ".join(sorted("%s:%s" % (n.host, n.port) for n in rc.get_nodes())))
"#;

/// Writes `{mig}w0, w1, …` until the file `argv[2]` exists (at least 50 writes), then checks
/// every acknowledged write reads back, and prints how many there were.
const PY_WRITER: &str = r#"
import os, sys, redis
rc = redis.RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
i = 0
while i < 50 or not os.path.exists(sys.argv[2]):
    assert rc.set("{mig}w%d" % i, str(i))
    if i == 0:
        print("writing", flush=True)
    i += 1
for j in range(i):
    assert rc.get("{mig}w%d" % j) == str(j).encode(), j
print("acked", i, flush=True)
"#;

fn section(accept: u16, connect: &str, ca: &Ca) -> String {
    format!(
        "[cluster]\nclient = yes\nprotocol = redis\naccept = 127.0.0.1:{accept}\nconnect = {connect}\nCAfile = {}\n",
        ca.pem.display()
    )
}

fn python(script: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(PYTHON);
    cmd.args(["-c", script]).args(args);
    cmd
}

/// Real node ports → local listener ports, by node id (retunnel's CLUSTER NODES against the cluster's).
fn local_ports(c: &RedisCluster, port: u16) -> std::collections::HashMap<u16, u16> {
    let local = parse_nodes(&redis_cli(port, &["cluster", "nodes"]));
    c.topology(c.nodes[0].port)
        .into_iter()
        .map(|real| {
            let l = local
                .iter()
                .find(|l| l.id == real.id)
                .expect("every node listed through retunnel");
            (real.port, l.port)
        })
        .collect()
}

/// Keys spread over every primary: sets them with redis-cli -c and checks they read back.
fn write_every_shard(port: u16, c: &RedisCluster) {
    for i in 0..30 {
        let k = format!("key:{i}");
        // WAIT: the replica has the write too, so a later failover must keep it.
        let out = redis_cli_input(port, &["-c"], &format!("SET {k} v{i}\nWAIT 1 5000\n"));
        let (redirects, replies): (Vec<&str>, Vec<&str>) = out.lines().partition(|l| l.starts_with("-> Redirected"));
        assert_eq!(replies, ["OK", "1"], "{k}: {out}");
        assert!(redirects.iter().all(|r| r.contains("located at 127.0.0.1:")), "{out}");
        assert_eq!(redis_cli(port, &["-c", "GET", &k]), format!("v{i}"));
    }
    for n in c.topology(c.nodes[0].port).iter().filter(|n| n.primary) {
        let size: u32 = c.cli(n.port, &["dbsize"]).parse().unwrap();
        assert!(
            size > 0,
            "primary {} got no key: the keys did not reach every shard",
            n.port
        );
    }
}

#[test]
fn ip_cluster_through_one_section() {
    let c = RedisCluster::start(false);
    let port = free_port();
    // Nodes are announced by IP: retunnel verifies them against the section's host, localhost.
    let conf = section(port, &format!("localhost:{}", c.nodes[0].port), &c.ca);
    let rt = Retunnel::start(&conf, 1);

    write_every_shard(port, &c);
    let real: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let slots = redis_cli(port, &["cluster", "slots"]);
    for p in &real {
        assert!(
            !slots.lines().any(|l| l == p.to_string()),
            "real port {p} leaked:\n{slots}"
        );
    }
    let map = local_ports(&c, port);
    assert_eq!(map.len(), 6);
    rt.log.wait_for_n("cluster node listener opened", 6);

    // A redirect names the local listener of the node that owns the key.
    let moved = (0..30)
        .map(|i| redis_cli(port, &["GET", &format!("key:{i}")]))
        .find(|r| r.starts_with("MOVED"))
        .expect("some key lives on another shard");
    let addr = moved.rsplit(' ').next().unwrap();
    let (ip, lport) = addr.rsplit_once(':').unwrap();
    assert_eq!(ip, "127.0.0.1");
    assert!(
        map.values().any(|l| l.to_string() == lport),
        "{moved} is no node listener: {map:?}"
    );

    // A library cluster client with no address mapping of its own.
    let out = python(PY_CLIENT, &[&port.to_string(), "100"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let used = String::from_utf8_lossy(&out.stdout);
    for n in used.split_whitespace() {
        let p: u16 = n.rsplit_once(':').unwrap().1.parse().unwrap();
        assert!(!real.contains(&p), "the client was given a real node address {n}");
    }

    resp3_pubsub_keeps_pairing(&c, port, &map);
    readonly_from_replicas(&c, port, &map);
    migrate_slot_during_traffic(&c, port, &map);
    failover_keeps_writes(&c, port, &map);
}

/// RESP3: a sharded subscription's confirmation is a push frame, so the CLUSTER NODES after
/// it is still recognised and rewritten.
fn resp3_pubsub_keeps_pairing(c: &RedisCluster, port: u16, map: &std::collections::HashMap<u16, u16>) {
    let seed = &c
        .topology(c.nodes[0].port)
        .into_iter()
        .find(|n| n.port == c.nodes[0].port)
        .unwrap();
    let channel = (0..1000)
        .map(|i| format!("ch{i}"))
        .find(|ch| {
            let slot: u16 = c.cli(seed.port, &["cluster", "keyslot", ch]).parse().unwrap();
            seed.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
        })
        .unwrap();
    let input = format!("HELLO 3\r\nSSUBSCRIBE {channel}\r\nCLUSTER NODES\r\n");
    let out = String::from_utf8(raw_exchange(port, input.as_bytes())).unwrap();
    assert!(
        out.contains(&format!(
            ">3\r\n$10\r\nssubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
            channel.len()
        )),
        "{out}"
    );
    for (real, local) in map {
        assert!(!out.contains(&format!(":{real}@")), "real port {real} in:\n{out}");
        assert!(out.contains(&format!("127.0.0.1:{local}@")), "{out}");
    }
}

/// Through a replica's listener, READONLY then GET serves the keys of its primary.
fn readonly_from_replicas(c: &RedisCluster, port: u16, map: &std::collections::HashMap<u16, u16>) {
    let topo = c.topology(c.nodes[0].port);
    for replica in topo.iter().filter(|n| !n.primary) {
        let input: String = (0..30).map(|i| format!("GET key:{i}\n")).collect();
        let out = redis_cli_input(map[&replica.port], &[], &format!("READONLY\n{input}"));
        let served = out.lines().filter(|l| l.starts_with('v')).count();
        assert!(out.starts_with("OK"), "{out}");
        assert!(served > 0, "replica {} served nothing:\n{out}", replica.port);
        assert!(
            out.lines()
                .all(|l| l.is_empty() || l == "OK" || l.starts_with('v') || l.starts_with("MOVED ")),
            "{out}"
        );
    }
    let _ = port;
}

/// Moves the slot of `{mig}` to another primary while redis-py keeps writing to it.
fn migrate_slot_during_traffic(c: &RedisCluster, port: u16, map: &std::collections::HashMap<u16, u16>) {
    let slot: u16 = c
        .cli(c.nodes[0].port, &["cluster", "keyslot", "{mig}"])
        .parse()
        .unwrap();
    let topo = c.topology(c.nodes[0].port);
    let src = topo
        .iter()
        .find(|n| n.primary && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
        .unwrap();
    let dst = topo.iter().find(|n| n.primary && n.id != src.id).unwrap();
    for i in 0..10 {
        assert_eq!(redis_cli(port, &["-c", "SET", &format!("{{mig}}{i}"), "x"]), "OK");
    }
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let mut writer = Proc {
        child: python(PY_WRITER, &[&port.to_string(), stop.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        name: "redis-py writer".into(),
    };
    let mut lines = std::io::BufReader::new(writer.child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "writing");
    let slot_s = slot.to_string();
    assert_eq!(
        c.cli(dst.port, &["cluster", "setslot", &slot_s, "importing", &src.id]),
        "OK"
    );
    assert_eq!(
        c.cli(src.port, &["cluster", "setslot", &slot_s, "migrating", &dst.id]),
        "OK"
    );
    // Half the old keys move now; asking the source for one of them gets ASK, rewritten.
    let moved: Vec<String> = (0..5).map(|i| format!("{{mig}}{i}")).collect();
    let dst_port = dst.port.to_string();
    let mut args = vec!["migrate", "127.0.0.1", &dst_port, "", "0", "5000", "keys"];
    args.extend(moved.iter().map(String::as_str));
    assert_eq!(c.cli(src.port, &args), "OK");
    let ask = redis_cli(map[&src.port], &["GET", "{mig}0"]);
    assert_eq!(ask, format!("ASK {slot} 127.0.0.1:{}", map[&dst.port]));
    assert_eq!(
        redis_cli(port, &["-c", "GET", "{mig}0"]),
        "x",
        "ASK followed through the listeners"
    );
    assert_eq!(redis_cli(port, &["-c", "SET", "{mig}new", "y"]), "OK");
    // Move the rest and hand the slot over.
    loop {
        let keys = c.cli(src.port, &["cluster", "getkeysinslot", &slot_s, "100"]);
        if keys.is_empty() {
            break;
        }
        let mut args: Vec<&str> = vec!["migrate", "127.0.0.1", &dst_port, "", "0", "5000", "keys"];
        args.extend(keys.lines());
        assert_eq!(c.cli(src.port, &args), "OK");
    }
    for n in &c.nodes {
        c.cli(n.port, &["cluster", "setslot", &slot_s, "node", &dst.id]);
    }
    std::fs::write(&stop, "").unwrap();
    let done = lines.next().unwrap().unwrap();
    assert!(
        writer.child.wait().unwrap().success(),
        "the writer lost a write or failed: {done}"
    );
    assert!(done.starts_with("acked"), "{done}");
    assert_eq!(redis_cli(port, &["-c", "GET", "{mig}new"]), "y");
    assert_eq!(redis_cli(port, &["-c", "GET", "{mig}9"]), "x");
    c.wait_healthy();
}

/// A replica promoted by CLUSTER FAILOVER: its old listener now serves a primary, and every
/// acknowledged write is still there.
fn failover_keeps_writes(c: &RedisCluster, port: u16, map: &std::collections::HashMap<u16, u16>) {
    let topo = c.topology(c.nodes[0].port);
    let replica = topo.iter().find(|n| !n.primary).unwrap();
    let old = topo.iter().find(|n| n.id == replica.primary_id).unwrap();
    assert_eq!(c.cli(replica.port, &["cluster", "failover"]), "OK");
    let deadline = std::time::Instant::now() + WAIT;
    while !c.cli(replica.port, &["role"]).starts_with("master") || !c.cli(old.port, &["role"]).starts_with("slave") {
        assert!(std::time::Instant::now() < deadline, "failover never completed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    c.wait_healthy();
    // The old primary's listener now redirects to the promoted replica's listener.
    let moved = (0..30)
        .map(|i| redis_cli(map[&old.port], &["SET", &format!("key:{i}"), "new"]))
        .find(|r| r.starts_with("MOVED") && r.ends_with(&format!(":{}", map[&replica.port])));
    assert!(
        moved.is_some(),
        "no MOVED to the promoted replica's listener {}",
        map[&replica.port]
    );
    for i in 0..30 {
        let v = redis_cli(port, &["-c", "GET", &format!("key:{i}")]);
        assert!(v == format!("v{i}"), "key:{i} lost after failover: {v}");
    }
}

/// A free stretch of 40 ports for `clusterPorts` (node listeners skip any taken meanwhile).
fn port_range() -> (u16, u16) {
    let first = free_ports(40);
    (first, first + 39)
}

#[test]
fn hostname_cluster_through_one_section() {
    let c = RedisCluster::start(true);
    let port = free_port();
    let (first, last) = port_range();
    let conf = section(port, &format!("node1.cluster.test:{}", c.nodes[0].port), &c.ca)
        + &format!("clusterPorts = {first}-{last}\n");
    let args = c.connect_to_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rt = Retunnel::spawn(&conf, &args);
    rt.log.wait_for("listening");

    write_every_shard(port, &c);
    let real: Vec<String> = c.nodes.iter().map(|n| n.port.to_string()).collect();
    let in_range = |p: &str| p.parse::<u16>().is_ok_and(|p| (first..=last).contains(&p));
    // Every topology reply, in RESP2 and RESP3, names only local listeners by IP.
    for (proto, cmd) in [
        ("-2", "slots"),
        ("-3", "slots"),
        ("-2", "shards"),
        ("-3", "shards"),
        ("-2", "nodes"),
    ] {
        let out = redis_cli(port, &[proto, "cluster", cmd]);
        assert!(
            !out.contains(".cluster.test"),
            "{proto} cluster {cmd} leaked a host name:\n{out}"
        );
        for p in &real {
            assert!(
                !out.contains(p.as_str()),
                "{proto} cluster {cmd} leaked real port {p}:\n{out}"
            );
        }
        assert!(out.contains("127.0.0.1"), "{out}");
    }
    let nodes = parse_nodes(&redis_cli(port, &["cluster", "nodes"]));
    assert_eq!(nodes.len(), 6);
    assert!(
        nodes.iter().all(|n| in_range(&n.port.to_string())),
        "not in clusterPorts: {nodes:?}"
    );
    let log = rt.log.wait_for_n("cluster node listener opened", 6);
    assert!(log.contains("node=node2.cluster.test:"), "{log}");

    let out = python(PY_CLIENT, &[&port.to_string(), "100"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let used = String::from_utf8_lossy(&out.stdout);
    assert!(
        used.split_whitespace().all(|n| in_range(n.rsplit_once(':').unwrap().1)),
        "{used}"
    );
}
