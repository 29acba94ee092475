//! `prewarm = N` with real TLS redis-servers: the warm connections are the ones clients get
//! (the server's CLIENT LIST shows them before any client), a warm connection the server
//! closed is never handed out, a name that moved makes its warm connections unusable, a down
//! upstream is retried with a growing back-off and logged once, and a reload keeps or
//! replaces them. Plain client mode, `protocol = redis` and server mode with `connectTLS`.

mod support;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// `redis-cli --tls` to `host`:`port` directly (not through retunnel).
fn direct(host: &str, port: u16, ca: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string(), "--tls", "--cacert"])
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The ids of the server's idle clients (everything but the CLIENT LIST asking).
fn idle_ids(host: &str, port: u16, ca: &Path) -> BTreeSet<String> {
    direct(host, port, ca, &["client", "list"])
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id=").map(str::to_string))
        .collect()
}

/// Waits until the server has exactly `n` idle clients that `ok` accepts; returns their ids.
fn wait_idle(host: &str, port: u16, ca: &Path, n: usize, ok: impl Fn(&BTreeSet<String>) -> bool) -> BTreeSet<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ids = idle_ids(host, port, ca);
        if ids.len() == n && ok(&ids) {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "wanted {n} idle clients, the server has {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn any(_: &BTreeSet<String>) -> bool {
    true
}

/// Waits until retunnel says it holds `n` warm connections (the server sees a connection
/// before retunnel's side of the handshake is done).
fn wait_warm(rt: &Retunnel, n: usize) {
    rt.log.wait_for(&format!("warm upstream connection ready ready={n}"));
}

/// Waits for `n` log lines containing `what` and checks that the first four announce the
/// doubling back-off (`retry_in_ms=` 200, 400, 800, 1600); returns the log.
fn wait_backoff(rt: &Retunnel, what: &str, n: usize) -> String {
    let log = rt.log.wait_for_n(what, n);
    let waits: Vec<u64> = log
        .lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| l.split("retry_in_ms=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(&waits[..4], [200, 400, 800, 1600], "{log}");
    log
}

/// The warm connections are open before any client, and a client is served on one of them.
#[test]
fn clients_get_the_warm_connections_in_plain_and_redis_mode() {
    for extra in ["", "protocol = redis\n"] {
        let up = TlsUpstream::start(&[]);
        let port = free_port();
        let conf = format!(
            "debug = 7\n{}",
            up.section("warm", port, &format!("prewarm = 2\n{extra}"))
        );
        let rt = Retunnel::start(&conf, 1);
        wait_warm(&rt, 2);
        let warm = wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 2, any);
        let id = redis_cli(port, &["client", "id"]);
        assert!(
            warm.contains(&id),
            "client id {id} is not one of the warm {warm:?} ({extra})"
        );
        // The one taken is replaced. In plain mode the client's connection is gone: two idle
        // again. In Redis mode it was reset and kept for reuse (tests/reuse.rs): three.
        match extra {
            "" => wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 2, |ids| !ids.contains(&id)),
            _ => wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 3, |ids| ids.contains(&id)),
        };
        drop(rt);
    }
}

/// Each warm connection takes in its session tickets while it waits, so the refill resumes
/// the sessions of the ones before instead of paying a full handshake for each (tickets left
/// unread in the kept sockets would leave the store empty for every refill).
#[test]
fn warm_connections_resume_the_sessions_of_the_ones_before() {
    let up = TlsUpstream::start(&[]);
    let (port, metrics) = (free_port(), free_port());
    let conf = format!(
        "metrics = 127.0.0.1:{metrics}\ndebug = 7\n{}",
        up.section("warm", port, "prewarm = 8\n")
    );
    let rt = Retunnel::start(&conf, 1);
    rt.log.wait_for("metrics listening");
    wait_warm(&rt, 8);
    let text = scrape(metrics);
    let (full, resumed) = (handshakes(&text, "warm", "full"), handshakes(&text, "warm", "resumed"));
    // The first is full; a ticket may arrive only after the next dial has begun.
    assert!(
        full.is_some_and(|f| f <= 3.0) && resumed.is_some_and(|r| r >= 5.0),
        "full {full:?}, resumed {resumed:?} of 8 warm connections:\n{text}"
    );
}

#[test]
fn server_mode_with_connect_tls_uses_warm_connections() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let conf = format!(
        "debug = 7\n[server]\nclient = no\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{}\ncert = {}\nkey = {}\nconnectTLS = yes\nCAfile = {}\ncheckHost = localhost\nprewarm = 1\n",
        up.redis.port,
        up.leaf.cert.display(),
        up.leaf.key.display(),
        up.ca.pem.display()
    );
    let rt = Retunnel::start(&conf, 1);
    wait_warm(&rt, 1);
    let warm = wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 1, any);
    let id = redis_cli_tls(port, &up.ca.pem, &["client", "id"]);
    assert!(
        warm.contains(&id),
        "client id {id} is not the warm {warm:?}\n{}",
        rt.log.text()
    );
}

/// The server closes every warm connection (as an idle timeout or a restart would): the next
/// client is still served, on a new connection, and the log says the dead ones were noticed.
#[test]
fn a_warm_connection_the_server_closed_is_never_handed_out() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let rt = Retunnel::start(&format!("debug = 7\n{}", up.section("warm", port, "prewarm = 2\n")), 1);
    wait_warm(&rt, 2);
    let warm = wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 2, any);
    assert_eq!(
        direct(
            "127.0.0.1",
            up.redis.port,
            &up.ca.pem,
            &["client", "kill", "type", "normal"]
        ),
        "2"
    );
    let reply = redis_cli(port, &["client", "id"]);
    assert!(
        !reply.is_empty() && !warm.contains(&reply),
        "got {reply:?}; killed {warm:?}"
    );
    assert!(reply.parse::<u64>().is_ok(), "{reply}");
    rt.log.wait_for("a warm connection was closed by the server; dropped");
}

/// ElastiCache moves the endpoint's name on failover: once `connect`'s host resolves to
/// another address, warm connections to the old one are not used. /etc/hosts is private to
/// retunnel (a mount namespace with a bind-mounted file; tests run as root, as CI does), so
/// the test moves the name.
#[test]
fn a_moved_name_makes_its_warm_connections_unusable() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&["cache.test", "127.0.0.2"]);
    let redis_port = free_port();
    let old = Redis::start_tls_on(redis_port, &leaf, &ca, &[]);
    // The new primary: the same port on another loopback address.
    let new_dir = tempfile::tempdir().unwrap();
    let new = Proc {
        child: Command::new("redis-server")
            .args(["--bind", "127.0.0.2", "--port", "0", "--save", "", "--appendonly", "no"])
            .args(["--tls-port", &redis_port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&leaf.cert)
            .arg("--tls-key-file")
            .arg(&leaf.key)
            .arg("--tls-ca-cert-file")
            .arg(&ca.pem)
            .arg("--dir")
            .arg(new_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "redis-server".into(),
    };
    let deadline = Instant::now() + WAIT;
    while direct("127.0.0.2", redis_port, &ca.pem, &["set", "who", "new"]) != "OK" {
        assert!(Instant::now() < deadline, "the second redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(direct("127.0.0.1", redis_port, &ca.pem, &["set", "who", "old"]), "OK");

    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 cache.test\n").unwrap();
    let port = free_port();
    let conf = write_conf(
        dir.path(),
        &format!(
            "debug = 7\n[moved]\naccept = 127.0.0.1:{port}\nconnect = cache.test:{redis_port}\nCAfile = {}\nprewarm = 2\n",
            ca.pem.display()
        ),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$1" -c "$2""#)
        .arg(&hosts)
        .arg(retunnel_bin())
        .arg(&conf);
    let rt = Retunnel::spawn_cmd(cmd, tempfile::tempdir().unwrap());
    rt.log.wait_for("listening");
    wait_warm(&rt, 2);
    assert_eq!(redis_cli(port, &["get", "who"]), "old");
    wait_idle("127.0.0.1", redis_port, &ca.pem, 2, any);
    // Failover: the name now points at the other server (written in place: the bind mount
    // shows this file's contents).
    std::fs::write(&hosts, "127.0.0.2 cache.test\n").unwrap();
    assert_eq!(redis_cli(port, &["get", "who"]), "new");
    rt.log.wait_for("the upstream name no longer resolves to this address");
    // The refill follows the name: the warm connections are on the new server now.
    wait_idle("127.0.0.2", redis_port, &ca.pem, 2, any);
    wait_idle("127.0.0.1", redis_port, &ca.pem, 0, any);
    drop((rt, new, old));
}

/// A down upstream (it accepts TCP and hangs up, so every handshake fails): attempts come
/// after a doubling back-off (the binary's own account of each wait), and the warning is
/// logged once, not per attempt.
#[test]
fn a_down_upstream_is_retried_with_back_off_and_logged_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let pki = Pki::new();
    let (ca, _) = pki.standard(&[]);
    let port = free_port();
    let rt = Retunnel::start(
        &format!("debug = 7\n{}prewarm = 4\n", section("down", port, upstream, &ca)),
        1,
    );
    let log = wait_backoff(&rt, "warm connection failed", 4);
    // Each logged failure is one attempt (one TCP connection), no more.
    let n = accepts.load(Ordering::SeqCst);
    assert!((4..=5).contains(&n), "{n} connects for 4 logged failures");
    let warned = log.matches("cannot open a warm upstream connection").count();
    assert_eq!(warned, 1, "{log}");
    // Every prewarm line names its section, as the accept loop's lines do.
    for line in log.lines().filter(|l| l.contains("warm connection failed")) {
        assert!(line.contains("prewarm{service=down}"), "{line}");
    }
}

/// SIGHUP: an unchanged section keeps its warm connections; a changed one drops them and
/// fills again.
/// A server that closes every connection right after the handshake (here: redis-server
/// asking for a client certificate the section does not have; TLS 1.3 finishes on the client
/// side first, then the server refuses and closes): every dial succeeds, and the refill
/// still waits a doubling back-off between rounds and warns once, instead of redialing at
/// handshake speed.
#[test]
fn a_server_that_closes_new_connections_gets_back_off_not_a_spin() {
    let up = TlsUpstream::start(&["--tls-auth-clients", "yes"]);
    let (port, metrics) = (free_port(), free_port());
    let conf = format!(
        "metrics = 127.0.0.1:{metrics}\ndebug = 7\n{}",
        up.section("refused", port, "prewarm = 16\n")
    );
    let started = Instant::now();
    let rt = Retunnel::start(&conf, 1);
    let log = wait_backoff(&rt, "warm connections the server closed meanwhile", 5);
    // The four waits before the fifth round were waited, not only logged.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(3000), "5 rounds in {took:?}:\n{log}");
    // Over those waits (3 s in all): a few handshakes a round, not thousands.
    let text = scrape(metrics);
    let dials: f64 = ["full", "resumed"]
        .iter()
        .filter_map(|k| handshakes(&text, "refused", k))
        .sum();
    assert!(dials <= 16.0 * 6.0, "{dials} handshakes in 5 rounds:\n{text}");
    // Warned once (at the third round in a row), not per round.
    assert_eq!(log.matches("keeps closing warm connections").count(), 1, "{log}");
}

#[test]
fn reload_keeps_warm_connections_of_an_unchanged_section_and_replaces_a_changed_ones() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let section = |n: usize| format!("debug = 7\n{}", up.section("warm", port, &format!("prewarm = {n}\n")));
    let rt = Retunnel::start(&section(2), 1);
    wait_warm(&rt, 2);
    let before = wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 2, any);
    let path = rt.config.clone().unwrap();
    std::fs::write(&path, section(2)).unwrap();
    rt.signal(libc::SIGHUP);
    rt.log.wait_for("reloaded");
    assert!(rt.log.text().contains("unchanged=1"), "{}", rt.log.text());
    assert_eq!(idle_ids("127.0.0.1", up.redis.port, &up.ca.pem), before);
    std::fs::write(&path, section(3)).unwrap();
    rt.signal(libc::SIGHUP);
    rt.log.wait_for_n("reloaded", 2);
    wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 3, |ids| {
        ids.is_disjoint(&before)
    });
    rt.log.wait_for("warm upstream connection ready ready=3");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
}

/// A password set on the server after a connection was warmed (`CONFIG SET requirepass`;
/// Redis keeps connections it already let in logged in) is asked of the client that gets that
/// connection: in `protocol = redis` a warm connection is logged in afresh (`RESET`, sent
/// with the client's first command) before the client's command runs. The client with the
/// password is still served, on a warm connection too.
#[test]
fn a_password_set_after_warming_is_asked_for() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let conf = format!(
        "debug = 7\n{}",
        up.section("warm", port, "prewarm = 1\nprotocol = redis\n")
    );
    let rt = Retunnel::start(&conf, 1);
    wait_warm(&rt, 1);
    let warm = wait_idle("127.0.0.1", up.redis.port, &up.ca.pem, 1, any);
    let set = direct(
        "127.0.0.1",
        up.redis.port,
        &up.ca.pem,
        &["config", "set", "requirepass", "s3cret"],
    );
    assert_eq!(set, "OK");
    // Still logged in, as Redis leaves it: what a client would inherit without the RESET.
    let auth = ["--no-auth-warning", "-a", "s3cret"];
    let list = direct(
        "127.0.0.1",
        up.redis.port,
        &up.ca.pem,
        &[&auth[..], &["client", "list"]].concat(),
    );
    let id = warm.first().unwrap();
    assert!(
        list.contains(&format!("id={id} ")),
        "the warm connection must survive the password change: {list}"
    );
    let reply = redis_cli(port, &["set", "k", "v"]);
    assert!(reply.starts_with("NOAUTH"), "got {reply:?}");
    rt.log.wait_for_n("using a warm upstream connection (prewarm)", 1);
    // The next one (refilled after the change, or warm again) with the password works.
    wait_warm(&rt, 1);
    let reply = redis_cli(port, &[&auth[..], &["set", "k", "v"]].concat());
    assert_eq!(reply, "OK");
    assert!(!rt.log.text().contains("refused RESET"), "{}", rt.log.text());
}

/// SIGHUP after the CA revoked the server's certificate (a new CRL in the same `CRLfile`):
/// the section's settings are unchanged, but its warm connections were verified against the
/// old CRL, so they are closed, and the next client is refused rather than served by the
/// revoked server.
#[test]
fn a_reload_that_finds_a_new_crl_closes_the_warm_connections() {
    let up = TlsUpstream::start(&[]);
    let crl = up.pki.crl(&up.ca, "live", &[]);
    let port = free_port();
    let extra = format!("prewarm = 2\nCRLfile = {}\n", crl.display());
    let conf = format!("debug = 7\n{}", up.section("later", port, &extra));
    let rt = Retunnel::start(&conf, 1);
    wait_warm(&rt, 2);
    assert_eq!(redis_cli(port, &["ping"]), "PONG", "served before the revocation");
    rt.log.wait_for_n("warm upstream connection ready ready=2", 2);
    assert_eq!(
        up.pki.crl(&up.ca, "live", &[&up.leaf]),
        crl,
        "the same CRLfile, revoking now"
    );
    rt.signal(libc::SIGHUP);
    rt.log.wait_for("reloaded");
    for _ in 0..3 {
        assert_ne!(redis_cli(port, &["ping"]), "PONG", "{}", rt.log.text());
    }
    let log = rt.log.wait_for("certificate revoked");
    assert!(log.contains("unchanged=1"), "{log}");
    assert!(log.contains("warm connections closed"), "{log}");
}
