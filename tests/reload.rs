//! SIGHUP through the retunnel binary: sections added start, removed ones stop accepting,
//! changed ones restart; open connections are not cut; a broken file changes nothing; and a
//! reload under redis-benchmark load loses no request.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use support::*;

/// A client connection that stays open across a reload: PING over raw RESP.
struct Client(BufReader<TcpStream>);

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        Client(BufReader::new(s))
    }

    fn ping(&mut self) -> String {
        self.0.get_mut().write_all(b"PING\r\n").unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn reload_adds_removes_and_changes_sections_without_cutting_connections() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let dead = free_port(); // nothing listens there
    let [keep, gone, fixed, moved_from, moved_to, added] = [(); 6].map(|()| free_port());
    let before = [
        section("keep", keep, redis.port, &ca),
        section("gone", gone, redis.port, &ca),
        section("fixed", fixed, dead, &ca),
        section("moved", moved_from, redis.port, &ca),
    ]
    .concat();
    let rt = Retunnel::start(&before, 4);
    let mut through_gone = Client::connect(gone);
    assert_eq!(through_gone.ping(), "+PONG");
    let mut through_moved = Client::connect(moved_from);
    assert_eq!(through_moved.ping(), "+PONG");
    assert!(
        redis_cli(fixed, &["ping"]).contains("exit"),
        "the upstream of [fixed] is dead yet"
    );

    let after = [
        section("keep", keep, redis.port, &ca),
        section("fixed", fixed, redis.port, &ca),
        section("moved", moved_to, redis.port, &ca),
        section("added", added, redis.port, &ca),
    ]
    .concat();
    rt.write_config(&after);
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(
        log.contains("added=1 removed=1 changed=2 unchanged=1 failed=0"),
        "{log}"
    );
    assert!(log.contains("rebound=false"), "[fixed] keeps its listener:\n{log}");
    assert!(log.contains("rebound=true"), "[moved] binds its new port:\n{log}");

    assert!(refused(gone), "a removed section stops accepting");
    assert!(refused(moved_from), "a moved section leaves its old port");
    assert_eq!(
        through_gone.ping(),
        "+PONG",
        "open connections of a removed section go on"
    );
    assert_eq!(
        through_moved.ping(),
        "+PONG",
        "open connections of a moved section go on"
    );
    for port in [keep, fixed, moved_to, added] {
        assert_eq!(redis_cli(port, &["ping"]), "PONG", "port {port}");
    }
}

#[test]
fn an_invalid_reload_keeps_the_running_config_and_fixed_options_are_named() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let conf = section("redis", 0, redis.port, &ca);
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("redis");

    rt.write_config(&format!("{conf}conect = typo:1\n"));
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reload failed");
    assert!(log.contains("did you mean `connect`?"), "{log}");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");

    let pid = rt.dir().join("new.pid");
    rt.write_config(&format!("pid = {}\n{conf}", pid.display()));
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(log.contains("options=pid"), "{log}");
    assert!(!pid.exists(), "the pid file only changes at restart");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
}

#[test]
fn a_section_whose_new_settings_fail_keeps_running_and_the_others_apply() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let [a, b, taken, c] = [(); 4].map(|()| free_port());
    let rt = Retunnel::start(
        &[section("a", a, redis.port, &ca), section("b", b, redis.port, &ca)].concat(),
        2,
    );
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    rt.write_config(
        &[
            section("a", taken, redis.port, &ca), // cannot move: the port is in use
            section("b", b, redis.port, &ca),
            section("c", c, redis.port, &ca),
        ]
        .concat(),
    );
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(log.contains("failed=1"), "{log}");
    assert!(
        log.contains(&format!("[a] cannot listen on 127.0.0.1:{taken}"))
            && log.contains("keeps running with its previous settings"),
        "{log}"
    );
    for port in [a, b, c] {
        assert_eq!(redis_cli(port, &["ping"]), "PONG", "port {port}");
    }
}

#[test]
fn a_reload_reads_renewed_tls_files_of_an_unchanged_section() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let other = pki.ca("other-ca");
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    // The CAfile first holds the wrong CA, as before a certificate rotation reaches this host.
    let bundle = pki.path("bundle.pem");
    std::fs::copy(&other.pem, &bundle).unwrap();
    let conf = format!(
        "[redis]\naccept = 127.0.0.1:0\nconnect = localhost:{}\nCAfile = {}\n",
        redis.port,
        bundle.display()
    );
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("redis");
    assert!(redis_cli(port, &["ping"]).contains("exit"), "the wrong CA is refused");
    std::fs::copy(&ca.pem, &bundle).unwrap();
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(log.contains("changed=0 unchanged=1 failed=0"), "{log}");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
    assert_eq!(rt.log.text().matches("listening").count(), 1, "not announced twice");
}

/// `total_commands_processed` of the redis-server, asked through the tunnel.
fn commands_processed(port: u16) -> u64 {
    let info = redis_cli(port, &["info", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_commands_processed in {info}"))
}

#[test]
fn reload_under_load_cuts_no_connection_and_loses_no_request() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let [bench, gone, added] = [(); 3].map(|()| free_port());
    let rt = Retunnel::start(
        &[
            section("bench", bench, redis.port, &ca),
            section("gone", gone, redis.port, &ca),
        ]
        .concat(),
        2,
    );
    let start_count = commands_processed(bench);
    let requests = 50_000u64;
    let mut bench_proc = start_benchmark(bench, requests);
    // Reload once the benchmark is under way, not before it started.
    let deadline = Instant::now() + WAIT;
    while commands_processed(bench) < start_count + 2_000 {
        assert!(Instant::now() < deadline, "redis-benchmark made no progress");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rt.write_config(
        &[
            section("bench", bench, redis.port, &ca),
            section("added", added, redis.port, &ca),
        ]
        .concat(),
    );
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(
        log.contains("added=1 removed=1 changed=0 unchanged=1 failed=0"),
        "{log}"
    );
    assert!(
        bench_proc.child.try_wait().unwrap().is_none(),
        "the benchmark ended before the reload; the test proves nothing"
    );
    assert_eq!(redis_cli(added, &["ping"]), "PONG");

    let stdout = finish_benchmark(&mut bench_proc, requests);
    // Every request reached the server (plus the INFO calls made here).
    assert!(commands_processed(bench) >= start_count + 2 * requests);
    let log = rt.log.text();
    assert!(!log.contains("error:"), "no connection ended in an error:\n{log}");
    for line in stdout
        .lines()
        .filter(|l| l.contains("requests completed") || l.contains("throughput"))
    {
        eprintln!("redis-benchmark: {}", line.trim());
    }
}

#[test]
fn sighup_to_a_tunnel_given_by_flags_changes_nothing_and_says_why() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let mut cmd = Command::new(retunnel_bin());
    cmd.args(["--accept", "127.0.0.1:0"])
        .args(["--connect", &format!("localhost:{}", echo.addr.port())])
        .arg("--cafile")
        .arg(&ca.pem);
    let rt = Retunnel::spawn_cmd(cmd, tempfile::tempdir().unwrap());
    rt.log.wait_for("listening");
    let port = rt.port("tunnel");
    rt.signal(libc::SIGHUP);
    rt.log.wait_for("given on the command line; there is no file to reload");
    assert_eq!(raw_exchange(port, b"still"), b"still");
}

#[test]
fn an_unchanged_reload_keeps_node_listeners_and_the_connection_limit() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let conf = [
        format!("{}maxConnections = 1\n", section("limited", 0, redis.port, &ca)),
        format!("{}protocol = redis\n", section("cluster", 0, redis.port, &ca)),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 2);
    let (limited, cluster) = (rt.port("limited"), rt.port("cluster"));
    // A redirect naming the server itself: retunnel opens a node listener for it.
    let script = format!("return redis.error_reply('MOVED 1 127.0.0.1:{}')", redis.port);
    let moved = redis_cli(cluster, &["eval", &script, "0"]);
    let node_port: u16 = moved
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no node listener in {moved:?}"));
    assert_ne!(node_port, redis.port, "{moved}");
    let mut held = Client::connect(limited);
    assert_eq!(held.ping(), "+PONG");

    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(log.contains("unchanged=2"), "{log}");
    // Cluster clients keep the ports they were told about.
    assert_eq!(redis_cli(node_port, &["ping"]), "PONG", "{}", rt.log.text());
    // The connection opened before the reload still counts against maxConnections.
    assert_ne!(redis_cli(limited, &["ping"]), "PONG", "a second client got in");
    assert_eq!(held.ping(), "+PONG");
}

/// Issue 11 defect 8: two sections that swap ports in one reload are told that they hold each
/// other's port (not "another program"), and both keep serving as they were.
#[test]
fn a_reload_that_swaps_two_sections_ports_says_it_needs_a_restart() {
    let up = TlsUpstream::start(&[]);
    let (p1, p2) = (free_port(), free_port());
    let rt = Retunnel::start(&[up.section("a", p1, ""), up.section("b", p2, "")].concat(), 2);
    rt.write_config(&[up.section("a", p2, ""), up.section("b", p1, "")].concat());
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(log.contains("failed=2"), "{log}");
    assert!(!log.contains("another program"), "{log}");
    for (section, holder) in [("a", "b"), ("b", "a")] {
        let lines = lines_with(&log, &[&format!("[{section}] cannot listen on")]);
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains(&format!("section [{holder}] of this retunnel still listens there"))
                && lines[0].contains("restart retunnel"),
            "{}",
            lines[0]
        );
    }
    // Nothing changed: each port still reaches its section.
    for port in [p1, p2] {
        let mut s = connect(port);
        exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
    }
}
