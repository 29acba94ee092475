//! `protocol = redis` without a cluster: a plain TLS redis-server still works, upstream
//! failures reach redis-cli as `ERR retunnel: …`, and a server that sends garbage gets its
//! connection closed with a log line while the tunnel keeps serving.

mod support;
use support::*;

use std::io::Write;

fn redis_section(accept: u16, connect: &str, ca: &Ca) -> String {
    format!(
        "[redis]\nclient = yes\nprotocol = redis\naccept = 127.0.0.1:{accept}\nconnect = {connect}\nCAfile = {}\n",
        ca.pem.display()
    )
}

#[test]
fn standalone_redis_and_failures_as_redis_errors() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let dead = free_port();
    let (ok, down, wrong_name) = (free_port(), free_port(), free_port());
    let conf = redis_section(ok, &format!("localhost:{}", redis.port), &ca)
        + &redis_section(down, &format!("127.0.0.1:{dead}"), &ca).replace("[redis]", "[down]")
        + &redis_section(wrong_name, &format!("127.0.0.1:{}", redis.port), &ca).replace("[redis]", "[wrong]")
        + "checkHost = db.example.com\n";
    let _rt = Retunnel::start(&conf, 3);
    assert_eq!(redis_cli(ok, &["set", "foo", "bar"]), "OK");
    assert_eq!(redis_cli(ok, &["get", "foo"]), "bar");
    let out = redis_cli(down, &["ping"]);
    assert!(
        out.starts_with("ERR retunnel: cannot reach upstream: 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("refused"), "{out}");
    let out = redis_cli(wrong_name, &["ping"]);
    assert!(
        out.starts_with("ERR retunnel: cannot reach upstream: 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("certificate of db.example.com rejected"), "{out}");
}

/// Redis answers a protocol error before the command is whole (here: a bulk length over
/// `proto-max-bulk-len`) and closes: the client gets Redis's error unchanged, and the log
/// says what happened at info level, not the warning about a reply nobody asked for.
#[test]
fn a_protocol_error_before_a_whole_command_is_passed_and_explained() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let conf = format!(
        "debug = 6\n{}",
        redis_section(port, &format!("localhost:{}", redis.port), &ca)
    );
    let rt = Retunnel::start(&conf, 1);
    let got = raw_exchange(port, b"*1\r\n$999999999999\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    let log = rt
        .log
        .wait_for("an error came before the client's command was complete");
    assert!(!log.contains("no command waiting"), "{log}");
    assert_eq!(redis_cli(port, &["ping"]), "PONG", "the tunnel keeps serving");
}

/// Issue 11 defect 1, in Redis mode: a first target with the wrong certificate falls through
/// to the real server, for every client (`prio` and `rr`).
#[test]
fn a_first_target_with_the_wrong_certificate_falls_through() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let wrong = TlsEcho::start(&pki.leaf(&ca, "other", &["other.example"], -1, 2));
    let (prio, rr) = (free_port(), free_port());
    let targets = format!("localhost:{}\nconnect = localhost:{}", wrong.addr.port(), redis.port);
    let conf = redis_section(prio, &targets, &ca)
        + &redis_section(rr, &targets, &ca).replace("[redis]", "[rr]")
        + "failover = rr\n";
    let _rt = Retunnel::start(&conf, 2);
    for port in [prio, rr] {
        for _ in 0..5 {
            assert_eq!(redis_cli(port, &["ping"]), "PONG");
        }
    }
}

#[test]
fn garbage_from_the_server_closes_that_connection_only() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let rt = Retunnel::start(&redis_section(port, &format!("localhost:{}", echo.addr.port()), &ca), 1);
    // The echo server "replies" with what it got: an inline command is no RESP reply.
    let got = raw_exchange(port, b"?garbage\r\n");
    assert_eq!(got, b"", "nothing of a non-RESP reply reaches the client");
    rt.log.wait_for("not RESP");
    // A reply that is RESP passes byte for byte, on a new connection to the same tunnel.
    assert_eq!(
        raw_exchange(port, b"+OK\r\n*1\r\n$4\r\nPING\r\n"),
        b"+OK\r\n*1\r\n$4\r\nPING\r\n"
    );
}

/// `n` pipelined `EVAL`s whose error replies read as redirects to `host`:`first + i`, then a
/// PING; returns the replies, one per line.
fn fake_redirects(port: u16, host: &str, first: u16, n: u16) -> Vec<String> {
    let mut commands = String::new();
    for i in 0..n {
        let text = format!("return redis.error_reply('MOVED 1 {host}:{}')", first + i);
        commands += &format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{text}\r\n$1\r\n0\r\n", text.len());
    }
    commands += "PING\r\n";
    let mut s = connect(port);
    s.write_all(commands.as_bytes()).unwrap();
    let got = read_until(&mut s, b"+PONG\r\n");
    let text = String::from_utf8(got).unwrap();
    text.lines()
        .filter(|l| l.starts_with('-'))
        .map(str::to_string)
        .collect()
}

#[test]
fn redirects_a_client_makes_up_open_a_bounded_number_of_listeners() {
    let (port, up) = (free_port(), TlsUpstream::start(&[]));
    let rt = Retunnel::start(&up.section("redis", port, "protocol = redis\n"), 1);
    let replies = fake_redirects(port, "127.0.0.1", 20000, 300);
    assert_eq!(replies.len(), 300);
    let untouched: Vec<_> = (0..300)
        .filter(|&i| replies[i] == format!("-MOVED 1 127.0.0.1:{}", 20000 + i))
        .collect();
    assert_eq!(
        untouched,
        (256..300).collect::<Vec<_>>(),
        "past the cap, replies pass unchanged"
    );
    rt.log.wait_for_n("cluster node listener opened", 256);
    let log = rt.log.wait_for("logged once");
    assert_eq!(lines_with(&log, &["cluster node listener opened"]).len(), 256);
    let warnings = lines_with(
        &log,
        &["max_nodes=256", "set clusterPorts to a range of more than 256 ports"],
    );
    assert_eq!(warnings.len(), 1, "{log}");
    // A reply that only looks like a redirect opens nothing.
    let text = "return redis.error_reply('MOVED 99999 127.0.0.1:1')";
    let cmd = format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{text}\r\n$1\r\n0\r\n", text.len());
    assert_eq!(raw_exchange(port, cmd.as_bytes()), b"-MOVED 99999 127.0.0.1:1\r\n");
}

/// A redirect naming the `connect` host itself (a cluster announcing its nodes by the
/// endpoint's name; here `localhost`, which has no domain to share) belongs to the cluster: it
/// opens a node listener, and that listener reaches the node it names.
#[test]
fn a_redirect_to_the_connect_host_itself_opens_a_node_listener() {
    let up = TlsUpstream::start(&[]);
    let other = Redis::start_tls(&up.leaf, &up.ca, &[]);
    assert_eq!(redis_cli_tls(other.port, &up.ca.pem, &["set", "who", "other"]), "OK");
    let port = free_port();
    let rt = Retunnel::start(&up.section("redis", port, "protocol = redis\n"), 1);
    let got = fake_redirects(port, "localhost", other.port, 1);
    let node = got[0]
        .strip_prefix("-MOVED 1 127.0.0.1:")
        .unwrap_or_else(|| panic!("not rewritten to a node listener: {got:?}\n{}", rt.log.text()));
    assert_eq!(redis_cli(node.parse().unwrap(), &["get", "who"]), "other");
    assert!(!rt.log.text().contains("outside the cluster"), "{}", rt.log.text());
}

/// Sequences where a wrong guess at which commands get a reply paired a user's value with
/// `CLUSTER NODES` and rewrote the address in it (each checked against redis-server 7.0).
#[test]
fn client_reply_and_reset_never_get_user_data_rewritten() {
    let (port, up) = (free_port(), TlsUpstream::start(&[]));
    let _rt = Retunnel::start(&up.section("redis", port, "protocol = redis\n"), 1);
    let value = "id 127.0.0.1:1@16379 master - 0 0 1 connected 0-16383";
    assert_eq!(redis_cli(port, &["set", "k", value]), "OK");
    for prefix in [
        "CLIENT REPLY bogus\r\n",
        "CLIENT REPLY\r\n",
        "CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\n",
        "CLIENT REPLY OFF\r\nRESET\r\n",
        "CLIENT REPLY OFF\r\nRESET\r\nCLIENT REPLY OFF\r\nCLIENT REPLY ON\r\n",
    ] {
        let mut s = connect(port);
        s.write_all(format!("{prefix}GET k\r\nCLUSTER NODES\r\nPING\r\n").as_bytes())
            .unwrap();
        let got = String::from_utf8(read_until(&mut s, b"+PONG\r\n")).unwrap();
        assert!(
            got.contains(&format!("${}\r\n{value}\r\n", value.len())),
            "{prefix:?}: {got:?}"
        );
    }
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: i32, field: &str) -> u64 {
    let status = proc_status(pid);
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An EXEC whose transaction asked for the topology is held for rewriting, however big the
/// other replies in it are; holding must stay cheap.
#[test]
fn a_huge_exec_reply_is_not_held_whole() {
    let (port, up) = (free_port(), TlsUpstream::start(&[]));
    let rt = Retunnel::start(&up.section("redis", port, "protocol = redis\n"), 1);
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
    let before = status_kb(rt.pid(), "VmRSS:");
    let script = "local t={} for i=1,2000000 do t[i]=1 end return t";
    let eval = format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n", script.len());
    let mut s = connect(port);
    s.write_all(format!("MULTI\r\nCLUSTER SLOTS\r\n{eval}EXEC\r\nPING\r\n").as_bytes())
        .unwrap();
    let got = read_until(&mut s, b"+PONG\r\n");
    assert!(got.len() > 8_000_000, "{}", got.len());
    let grown_mb = status_kb(rt.pid(), "VmHWM:").saturating_sub(before) / 1024;
    assert!(grown_mb < 32, "an 8 MB EXEC reply grew retunnel by {grown_mb} MB");
}

/// Nothing a client can repeat logs a warning per reply: a made-up address is no node, and
/// once `clusterPorts` has no free port left that is said once.
#[test]
fn made_up_and_unplaceable_nodes_warn_once_not_per_reply() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let (port, up) = (free_port(), TlsUpstream::start(&[]));
    let rt = Retunnel::start(
        &up.section("redis", port, &format!("protocol = redis\nclusterPorts = {p}-{p}\n")),
        1,
    );
    assert_eq!(fake_redirects(port, "a:b", 22, 5).len(), 5);
    assert_eq!(fake_redirects(port, "127.0.0.1", 1000, 5).len(), 5);
    let log = rt.log.wait_for("logged once");
    assert!(!log.contains("a:b"), "{log}");
    assert_eq!(
        lines_with(&log, &["no free port left in clusterPorts"]).len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &[&format!("widen clusterPorts = {p}-{p}"), "logged once"]).len(),
        1,
        "{log}"
    );
    assert_eq!(lines_with(&log, &["WARN"]).len(), 2, "{log}");
}

/// Issue 11 defect 2: a redirect a client makes up (a script's error text) can neither turn
/// retunnel's listeners into a loop nor open a tunnel to a host outside the cluster; it
/// passes unchanged, and the refusal is logged once.
#[test]
fn made_up_redirects_cannot_loop_or_leave_the_cluster() {
    let up = TlsUpstream::start(&[]);
    let (port, first) = (free_port(), free_ports(2));
    let extra = format!("protocol = redis\nclusterPorts = {first}-{}\n", first + 1);
    let rt = Retunnel::start(&up.section("redis", port, &extra), 1);
    let fds_before = std::fs::read_dir(format!("/proc/{}/fd", rt.pid())).unwrap().count();
    for (host, p) in [
        // Outside the cluster: not under the domain of `localhost`, not in 127.0.0.0/16.
        ("www.example.com", 443),
        ("10.9.8.7", 6379),
        // Retunnel's own: the section's port, and the clusterPorts port a listener gets next.
        ("127.0.0.1", port),
        ("127.0.0.1", first),
        ("localhost", first + 1),
    ] {
        for _ in 0..3 {
            assert_eq!(fake_redirects(port, host, p, 1), [format!("-MOVED 1 {host}:{p}")]);
        }
    }
    // A node of the cluster's network still gets a listener: the first of the range.
    let got = fake_redirects(port, "127.0.0.1", 1, 1);
    assert_eq!(got, [format!("-MOVED 1 127.0.0.1:{first}")]);
    let log = rt.log.wait_for("cluster node listener opened");
    assert_eq!(lines_with(&log, &["cluster node listener opened"]).len(), 1, "{log}");
    assert_eq!(
        lines_with(&log, &["WARN", "outside the cluster", "logged once"]).len(),
        1,
        "{log}"
    );
    let fds_after = std::fs::read_dir(format!("/proc/{}/fd", rt.pid())).unwrap().count();
    // One node listener, and perhaps the last connections still closing; a loop would hold
    // thousands.
    assert!(fds_after <= fds_before + 10, "descriptors {fds_before} → {fds_after}");
}

/// Issue 11 defect 2: a node listener never tunnels into retunnel, even when the address it
/// tunnels to becomes one of retunnel's listeners after it opened (here a section added by a
/// reload): the client gets an error instead of a chain through retunnel.
#[test]
fn a_node_listener_never_connects_to_retunnel_itself() {
    let up = TlsUpstream::start(&[]);
    let (port, node_port, later) = (free_port(), free_port(), free_port());
    let section = up.section(
        "redis",
        port,
        &format!("protocol = redis\nclusterPorts = {node_port}-{node_port}\n"),
    );
    let mut rt = Retunnel::start(&section, 1);
    let got = fake_redirects(port, "127.0.0.1", later, 1);
    assert_eq!(got, [format!("-MOVED 1 127.0.0.1:{node_port}")]);
    rt.write_config(&format!("{section}{}", up.section("later", later, "")));
    rt.signal(libc::SIGHUP);
    rt.log.wait_for("reloaded");
    assert_eq!(redis_cli(later, &["ping"]), "PONG", "the new section works");
    let out = redis_cli(node_port, &["ping"]);
    assert!(
        out.starts_with(&format!(
            "ERR retunnel: cannot reach upstream: 127.0.0.1:{later}: this address is one of retunnel's own listeners"
        )),
        "{out}"
    );
    rt.signal(libc::SIGTERM);
    rt.wait_exit();
}

/// Sends `SET qk v`, `QUIT` and `pings` PINGs in one pipeline, as fast as the socket takes
/// them, and returns what came back before the close.
fn quit_in_a_pipeline(port: u16, pings: usize) -> Vec<u8> {
    let mut s = connect(port);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut data = b"SET qk v\r\nQUIT\r\n".to_vec();
        data.extend(b"PING\r\n".repeat(pings));
        let _ = w.write_all(&data); // fails once retunnel closes: expected
    });
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut got); // a reset after the replies is fine
    writer.join().unwrap();
    got
}

/// Issue 11 defect 3: when Redis closes while the client is still sending (a pipeline with
/// `QUIT` in it), the replies Redis already sent reach the client, in plain and Redis mode.
#[test]
fn replies_sent_before_redis_closed_reach_a_client_still_sending() {
    let up = TlsUpstream::start(&[]);
    let (plain, redis) = (free_port(), free_port());
    let conf = up.section("plain", plain, "") + &up.section("redis", redis, "protocol = redis\n");
    let _rt = Retunnel::start(&conf, 2);
    for port in [plain, redis] {
        for round in 0..10 {
            let got = quit_in_a_pipeline(port, 100_000);
            assert!(
                got.starts_with(b"+OK\r\n+OK\r\n"),
                "port {port}, round {round}: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
}

/// Issue 11 defect 4: a valid reply nested deeper than 64 levels (a script's nested tables)
/// passes a redis section as it passes a direct connection, instead of closing it.
#[test]
fn replies_nested_65_levels_deep_pass() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let _rt = Retunnel::start(&up.section("redis", port, "protocol = redis\n"), 1);
    let script = "local t = 1; for i=1,65 do t = {t} end; return t";
    let out = redis_cli(port, &["eval", script, "0"]);
    assert_eq!(out, "1", "{out}");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
}

/// Tester finding 16: the metrics endpoint is one of retunnel's own listeners too: a redirect
/// naming its port gets no node listener (which would tunnel TLS into retunnel's HTTP port).
#[test]
fn a_redirect_to_the_metrics_port_gets_no_node_listener() {
    let up = TlsUpstream::start(&[]);
    let (port, m) = (free_port(), free_port());
    let conf = format!(
        "metrics = 127.0.0.1:{m}\n{}",
        up.section("redis", port, "protocol = redis\n")
    );
    let rt = Retunnel::start(&conf, 1);
    // Answering means its accept loop runs, and it registered its address before that.
    assert_eq!(get(m, "/health").0, 200);
    for _ in 0..2 {
        assert_eq!(
            fake_redirects(port, "127.0.0.1", m, 1),
            [format!("-MOVED 1 127.0.0.1:{m}")]
        );
    }
    assert!(
        !rt.log.text().contains("cluster node listener opened"),
        "{}",
        rt.log.text()
    );
}
