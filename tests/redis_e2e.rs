//! Redis through the retunnel binary: real TLS redis-servers, real redis-cli, a raw socket
//! typing inline commands as telnet would, a replica section, and the AWS guide's file run
//! unchanged.

mod support;
use std::io::{Read, Write};
use std::net::TcpListener;

use support::*;

fn section(name: &str, accept: u16, redis_port: u16, ca: &Ca) -> String {
    format!(
        "[{name}]\nclient = yes\naccept = 127.0.0.1:{accept}\nconnect = localhost:{redis_port}\nCAfile = {}\n",
        ca.pem.display()
    )
}

#[test]
fn auth_works_and_the_password_is_never_logged() {
    const PASSWORD: &str = "Zq8-not-in-any-log-7Yx";
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &["--requirepass", PASSWORD]);
    let port = free_port();
    // debug = 7: the most the log ever says.
    let rt = Retunnel::start(&format!("debug = 7\n{}", section("redis", port, redis.port, &ca)), 1);
    let auth = ["--no-auth-warning", "-a", PASSWORD];
    assert!(redis_cli(port, &["set", "k", "v"]).contains("NOAUTH"));
    assert_eq!(redis_cli(port, &[&auth[..], &["set", "k", "v"]].concat()), "OK");
    assert_eq!(redis_cli(port, &[&auth[..], &["get", "k"]].concat()), "v");
    // AUTH typed as a command, inline and in RESP, also with a wrong password.
    let mut s = connect(port);
    s.write_all(format!("AUTH {PASSWORD}\r\n").as_bytes()).unwrap();
    read_until(&mut s, b"+OK\r\n");
    let resp = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{PASSWORD}\r\n", PASSWORD.len());
    s.write_all(resp.as_bytes()).unwrap();
    read_until(&mut s, b"+OK\r\n");
    s.write_all(b"AUTH wrong-Zq8-password\r\n").unwrap();
    read_until(&mut s, b"\r\n");
    drop(s);
    // Four connections were logged as closed: the log is complete up to here.
    let log = rt.log.wait_for_n("connection closed", 4);
    assert!(log.contains("DEBUG"), "debug = 7 should log at debug level:\n{log}");
    assert!(!log.contains(PASSWORD), "the password is in the log:\n{log}");
    assert!(!log.contains("wrong-Zq8-password"), "a password is in the log:\n{log}");
}

#[test]
fn inline_commands_over_a_raw_socket() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let _rt = Retunnel::start(&section("redis", port, redis.port, &ca), 1);
    // What a user types in telnet: one command a line, the connection kept open.
    let mut s = connect(port);
    s.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_until(&mut s, b"\r\n"), b"+PONG\r\n");
    s.write_all(b"set foo bar\r\n").unwrap();
    assert_eq!(read_until(&mut s, b"\r\n"), b"+OK\r\n");
    s.write_all(b"get foo\r\n").unwrap();
    assert_eq!(read_until(&mut s, b"bar\r\n"), b"$3\r\nbar\r\n");
    // Several commands in one write, as a paste would send them.
    s.write_all(b"PING\r\nget foo\r\nget nothing\r\n").unwrap();
    assert_eq!(read_until(&mut s, b"$-1\r\n"), b"+PONG\r\n$3\r\nbar\r\n$-1\r\n");
    // QUIT: the server closes; the client gets the reply, then the end of the stream.
    s.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"+OK\r\n");
}

#[test]
fn replica_section_reads_what_the_primary_wrote() {
    // A real replica: a second redis-server replicating from the first over TLS.
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    // Without the delay the primary waits 5 s for more replicas before its first sync.
    let primary = Redis::start_tls(&leaf, &ca, &["--repl-diskless-sync-delay", "0"]);
    let replica = Redis::start_tls(
        &leaf,
        &ca,
        &[
            "--replicaof",
            "127.0.0.1",
            &primary.port.to_string(),
            "--tls-replication",
            "yes",
        ],
    );
    let (p, r) = (free_port(), free_port());
    let conf = format!(
        "{}{}",
        section("redis-cli", p, primary.port, &ca),
        section("redis-cli-replica", r, replica.port, &ca)
    );
    let _rt = Retunnel::start(&conf, 2);
    wait_until("the replica's link to the primary", || {
        redis_cli(r, &["info", "replication"])
            .contains("master_link_status:up")
            .then_some(())
    });
    assert_eq!(redis_cli(p, &["set", "foo", "from-primary"]), "OK");
    wait_until("the write to reach the replica", || {
        (redis_cli(r, &["get", "foo"]) == "from-primary").then_some(())
    });
    assert!(redis_cli(r, &["info", "replication"]).contains("role:slave"));
    assert!(redis_cli(r, &["set", "foo", "x"]).contains("READONLY"));
}

/// The stunnel file of the AWS ElastiCache guide ("redis-cli via stunnel"), as printed there.
const AWS: &str = include_str!("fixtures/aws-redis-cli.conf");
const PRIMARY: &str = "master.ssltest.wif01h.use1.cache.amazonaws.com";
const REPLICA: &str = "ssltest-02.ssltest.wif01h.use1.cache.amazonaws.com";

/// The AWS file says `setuid = root`, which only root may run unchanged.
#[test]
#[ignore = "needs root"]
fn aws_file_runs_unchanged() {
    for port in [6379, 6380] {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            panic!(
                "the AWS file listens on 127.0.0.1:{port}, but that port is taken ({e}); \
                 stop what listens there (`ss -ltnp | grep {port}`) and run the test again"
            );
        }
    }
    let mut conf = AWS.to_string();
    let pid_path = std::path::Path::new("/var/run/stunnel.pid");
    let check_pid = unsafe { libc::access(c"/var/run".as_ptr(), libc::W_OK) } == 0;
    let pki = Pki::new();
    let pid_path = if check_pid {
        remove_stale_pid_file(pid_path);
        pid_path.to_path_buf()
    } else {
        eprintln!("/var/run is not writable: the pid file goes to the test's directory instead");
        let p = pki.path("stunnel.pid");
        conf = conf.replace("/var/run/stunnel.pid", &p.display().to_string());
        p
    };
    // One server certificate for both endpoint names, from a CA that only SSL_CERT_FILE names:
    // the file has no CAfile, so verification must go through the system trust store.
    let (ca, leaf) = pki.standard(&[PRIMARY, REPLICA]);
    let primary = Redis::start_tls(&leaf, &ca, &[]);
    let replica = Redis::start_tls(&leaf, &ca, &[]);
    let map_primary = format!("{PRIMARY}:6379:127.0.0.1:{}", primary.port);
    let map_replica = format!("{REPLICA}:6379:127.0.0.1:{}", replica.port);
    let mut rt = Retunnel::spawn_env(
        &conf,
        &["--connect-to", &map_primary, "--connect-to", &map_replica],
        &[("SSL_CERT_FILE", &ca.pem)],
    );
    let log = rt.log.wait_for_n("listening", 2);
    // `setuid = root` as root drops nothing, and the log does not claim it did.
    assert!(
        log.contains("privileges unchanged") && !log.contains("dropped privileges"),
        "{log}"
    );
    // One line a service: name, accept address, connect target, how the certificate is checked.
    for (name, accept, host) in [("redis-cli", "6379", PRIMARY), ("redis-cli-replica", "6380", REPLICA)] {
        let accept = format!("accept=127.0.0.1:{accept}");
        let parts = [
            "listening",
            &format!("service={name} "),
            &accept,
            host,
            "tls=verify chain + host",
        ];
        assert_eq!(lines_with(&log, &parts).len(), 1, "{log}");
    }
    let pid = std::fs::read_to_string(&pid_path).unwrap();
    assert_eq!(pid.trim(), rt.pid().to_string());

    assert_eq!(redis_cli(6379, &["set", "foo", "primary"]), "OK");
    assert_eq!(redis_cli(6379, &["get", "foo"]), "primary");
    assert_eq!(redis_cli(6380, &["set", "foo", "replica"]), "OK");
    assert_eq!(redis_cli(6380, &["get", "foo"]), "replica");
    // Two servers really: each section reached its own.
    assert_eq!(redis_cli(6379, &["get", "foo"]), "primary");

    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0), "log:\n{}", rt.log.text());
    assert!(!pid_path.exists(), "pid file left behind after SIGTERM");
}

/// A pid file left by an earlier run that was killed is removed; one whose process still runs
/// (a real stunnel, say) fails the test rather than being overwritten.
fn remove_stale_pid_file(path: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    if let Ok(pid) = text.trim().parse::<i32>() {
        assert!(
            unsafe { libc::kill(pid, 0) } != 0,
            "{} names running process {pid} (a real stunnel?); stop it before this test",
            path.display()
        );
    }
    std::fs::remove_file(path).unwrap();
}
