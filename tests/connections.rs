//! Connections end to end: several `connect` targets (`failover`), `maxConnections`, and
//! `socket` options read back from the kernel with `ss`.

mod support;
use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use support::*;

fn tls_port_through(port: u16) -> String {
    redis_cli(port, &["config", "get", "tls-port"])
}

#[test]
fn failover_prio_skips_a_dead_target_and_remembers_it_rr_alternates() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let a = Redis::start_tls(&leaf, &ca, &[]);
    let b = Redis::start_tls(&leaf, &ca, &[]);
    let dead = free_port();
    let conf = format!(
        "CAfile = {ca}\n\
         [prio]\naccept = 127.0.0.1:0\nconnect = 127.0.0.1:{dead}\nconnect = 127.0.0.1:{a}\nconnect = 127.0.0.1:{b}\n\
         [rr]\naccept = 127.0.0.1:0\nfailover = rr\nconnect = 127.0.0.1:{a}\nconnect = 127.0.0.1:{b}\n",
        ca = ca.pem.display(),
        a = a.port,
        b = b.port,
    );
    let rt = Retunnel::start(&conf, 2);
    let (prio, rr) = (rt.port("prio"), rt.port("rr"));

    // prio: the dead target is tried, fails, and the next one answers.
    assert_eq!(tls_port_through(prio), format!("tls-port\n{}", a.port));
    rt.log.wait_for(&format!("upstream=127.0.0.1:{dead}"));
    // The next client starts with the live target: no second failure is logged.
    assert_eq!(tls_port_through(prio), format!("tls-port\n{}", a.port));
    rt.log.wait_for_n("connection closed", 2);
    assert_eq!(rt.log.text().matches("upstream failed").count(), 1, "{}", rt.log.text());

    // rr: each connection starts one target further.
    let seen: Vec<String> = (0..4).map(|_| tls_port_through(rr)).collect();
    let (ta, tb) = (format!("tls-port\n{}", a.port), format!("tls-port\n{}", b.port));
    assert_eq!(seen, [ta.clone(), tb.clone(), ta, tb]);
}

/// Polls until a new client gets PONG; a refused attempt is closed at once, so each try is quick.
fn wait_until_admitted(port: u16) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if std::io::Write::write_all(&mut s, b"PING\r\n").is_ok() {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 7];
            if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "no connection admitted after one closed");
    }
}

#[test]
fn connection_limit_refuses_extra_clients_at_once() {
    let up = TlsUpstream::start(&[]);
    let conf = up.section(
        "limited",
        0,
        "maxConnections = 2
",
    );
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("limited");
    let mut one = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut one, b"PING\r\n", b"+PONG\r\n");
    let mut two = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut two, b"PING\r\n", b"+PONG\r\n");

    // The third is closed at once: EOF (or a reset), long before the read timeout.
    let mut three = TcpStream::connect(("127.0.0.1", port)).unwrap();
    three.set_read_timeout(Some(WAIT)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let got = three.read(&mut buf);
    assert!(matches!(got, Ok(0) | Err(_)), "third client got data: {got:?}");
    assert!(started.elapsed() < WAIT / 2, "third client was not closed at once");
    rt.log
        .wait_for("connection limit reached (maxConnections); closing the new client");

    // The two admitted ones keep working.
    exchange(&mut one, b"PING\r\n", b"+PONG\r\n");
    exchange(&mut two, b"ECHO still\r\n", b"still");

    // After one closes, a new client gets in.
    drop(one);
    rt.log.wait_for("connection closed");
    let mut four = wait_until_admitted(port);
    exchange(&mut four, b"PING\r\n", b"+PONG\r\n");
    exchange(&mut two, b"PING\r\n", b"+PONG\r\n");
}

/// The `ss -tmoni` line of the one established connection matching `filter`.
fn ss_line(filter: &str) -> String {
    let out = Command::new("ss")
        .args(["-H", "-tmoni", "state", "established", filter])
        .output()
        .expect("ss (iproute2) is needed");
    String::from_utf8_lossy(&out.stdout).replace('\n', " ")
}

#[test]
fn socket_options_reach_the_kernel() {
    let up = TlsUpstream::start(&[]);
    let redis = &up.redis;
    let opts = "socket = a:SO_REUSEADDR=1\nsocket = a:SO_RCVBUF=70000\n\
         socket = l:TCP_NODELAY=1\nsocket = l:SO_KEEPALIVE=1\nsocket = l:TCP_KEEPIDLE=777\n\
         socket = l:TCP_KEEPINTVL=5\nsocket = l:TCP_KEEPCNT=3\nsocket = l:SO_SNDBUF=50000\n\
         socket = r:SO_RCVBUF=60000\nsocket = r:TCP_KEEPIDLE=888\n";
    let conf = up.section("opts", 0, opts);
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("opts");
    assert_eq!(redis_cli(port, &["set", "k", "v"]), "OK");
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut held, b"PING\r\n", b"+PONG\r\n");

    // retunnel's side of the client connection: inherits rb from `a:`, keepalive from `l:`.
    let local = ss_line(&format!("( sport = :{port} )"));
    assert!(local.contains("rb140000"), "a:SO_RCVBUF not inherited: {local}");
    assert!(local.contains("tb100000"), "l:SO_SNDBUF not set: {local}");
    assert!(local.contains("timer:(keepalive,"), "l:SO_KEEPALIVE not set: {local}");
    // retunnel's socket towards redis-server (redis-server's own side has sport = its port).
    let remote = ss_line(&format!("( dport = :{} )", redis.port));
    assert!(remote.contains("rb120000"), "r:SO_RCVBUF not set: {remote}");
    assert!(
        remote.contains("timer:(keepalive,"),
        "r:TCP_KEEPIDLE did not turn keepalive on: {remote}"
    );
}

#[test]
fn unknown_socket_option_is_refused_with_a_suggestion() {
    let conf = "[s]\naccept = 127.0.0.1:0\nconnect = localhost:6379\nsocket = l:TCP_NODLAY=1\n";
    let (code, log) = run_to_exit(conf, &[]);
    assert_ne!(code, Some(0));
    assert!(
        log.contains("unknown socket option `TCP_NODLAY`; did you mean `TCP_NODELAY`?"),
        "{log}"
    );
}

#[test]
fn timeout_connect_bounds_a_silent_upstream_handshake() {
    // Accepts TCP (the kernel does it for the backlog) but never answers the TLS hello.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let conf = format!("[s]\naccept = 127.0.0.1:0\nconnect = localhost:{silent_port}\nTIMEOUTconnect = 1\n");
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("s");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let started = Instant::now();
    let got = c.read(&mut [0u8; 16]);
    assert!(matches!(got, Ok(0) | Err(_)) && started.elapsed() < WAIT / 2, "{got:?}");
    rt.log.wait_for("TLS handshake timed out (TIMEOUTconnect)");
}

#[test]
fn timeout_close_bounds_the_drain_on_shutdown() {
    let up = TlsUpstream::start(&[]);
    let conf = up.section(
        "s",
        0,
        "TIMEOUTclose = 3
",
    );
    let mut rt = Retunnel::start(&conf, 1);
    let port = rt.port("s");
    let mut open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut open, b"PING\r\n", b"+PONG\r\n");
    rt.signal(libc::SIGTERM);
    rt.log.wait_for("waiting for open connections (TIMEOUTclose)");
    // Still relaying during the grace period…
    exchange(&mut open, b"PING\r\n", b"+PONG\r\n");
    // …then cut, and retunnel exits.
    rt.log
        .wait_for("connections still open after TIMEOUTclose; closing them");
    assert_eq!(rt.wait_exit(), Some(0));
    let got = open.read(&mut [0u8; 16]);
    assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
}

/// Tester finding 3: an upstream address that is one of retunnel's own listeners (here by a
/// `--connect-to` mapping, which the config check cannot see) is refused before connecting,
/// with one log line per client, instead of chaining connections through retunnel until no
/// descriptor is left. The section, and the process, keep serving.
#[test]
fn an_upstream_that_is_retunnel_itself_is_refused_not_chained() {
    let port = free_port();
    let conf = format!("[loop]\naccept = 127.0.0.1:{port}\nconnect = loop.example:6379\n");
    let map = format!("loop.example:6379:127.0.0.1:{port}");
    let rt = Retunnel::spawn(&conf, &["--connect-to", &map]);
    rt.log.wait_for("listening");
    let fds_before = std::fs::read_dir(format!("/proc/{}/fd", rt.pid())).unwrap().count();
    for n in 1..=2 {
        let mut c = connect(port);
        expect_closed(&mut c);
        rt.log.wait_for_n("one of retunnel's own listeners", n);
    }
    let log = rt.log.text();
    let refused = lines_with(
        &log,
        &[
            "WARN",
            "cannot reach upstream",
            &format!("127.0.0.1:{port}: this address is one of retunnel's own listeners"),
        ],
    );
    assert_eq!(refused.len(), 2, "one line per client, no chain:\n{log}");
    let fds_after = std::fs::read_dir(format!("/proc/{}/fd", rt.pid())).unwrap().count();
    assert!(fds_after <= fds_before + 2, "descriptors {fds_before} → {fds_after}");
}
