//! The metrics endpoint of a running retunnel, scraped with curl: counters move as connections
//! open, fail (dead upstream, bad certificate) and close; `/health` turns 503 while the upstream
//! is down and 200 when it is back; `retunnel status` prints one row per section; and systemd's
//! notify protocol, against a datagram socket standing in for systemd.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use support::*;

fn ping(port: u16) {
    let mut s = connect(port);
    exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
}

/// A connection the tunnel closes without relaying (its upstream is unreachable).
fn refused_by_tunnel(port: u16) {
    let mut s = connect(port);
    expect_closed(&mut s);
}

#[test]
fn counters_follow_connections_through_open_failure_and_close() {
    let up = TlsUpstream::start(&[]);
    let other_ca = up.pki.ca("someone-else");
    let (good, dead, bad_cert, metrics) = (free_port(), free_port(), free_port(), free_port());
    let (dead_upstream, dead_redis) = (free_port(), free_port());
    let conf = format!(
        "metrics = 127.0.0.1:{metrics}\n{}[dead]\naccept = 127.0.0.1:{dead}\nconnect = 127.0.0.1:{dead_upstream}\n\
         [badcert]\naccept = 127.0.0.1:{bad_cert}\nconnect = localhost:{}\nCAfile = {}\n\
         [deadredis]\naccept = 127.0.0.1:{dead_redis}\nconnect = 127.0.0.1:{dead_upstream}\nprotocol = redis\n",
        up.section("good", good, ""),
        up.redis.port,
        other_ca.pem.display()
    );
    let rt = Retunnel::start(&conf, 4);
    rt.log.wait_for("metrics listening");
    let text = scrape(metrics);
    assert_samples(
        &text,
        &[
            (r#"retunnel_connections_accepted_total{service="good"}"#, 0.0),
            (r#"retunnel_section_listening{service="badcert"}"#, 1.0),
            ("retunnel_config_generation", 1.0),
        ],
    );
    assert!(text.contains("retunnel_build_info{version=\""), "{text}");

    // Open: while a client is connected it counts as open, with its bytes.
    let mut client = connect(good);
    exchange(&mut client, b"PING\r\n", b"+PONG\r\n");
    let text = wait_sample(metrics, r#"retunnel_connections_open{service="good"}"#, 1.0);
    assert_samples(
        &text,
        &[
            (r#"retunnel_connections_accepted_total{service="good"}"#, 1.0),
            (r#"retunnel_bytes_total{service="good",direction="up"}"#, 6.0),
            (r#"retunnel_bytes_total{service="good",direction="down"}"#, 7.0),
            (r#"retunnel_upstream_handshake_seconds_count{service="good"}"#, 1.0),
            (r#"retunnel_upstream_connect_seconds_count{service="good"}"#, 1.0),
        ],
    );

    // Close.
    drop(client);
    let text = wait_sample(
        metrics,
        r#"retunnel_connections_closed_total{service="good",reason="closed"}"#,
        1.0,
    );
    assert_samples(&text, &[(r#"retunnel_connections_open{service="good"}"#, 0.0)]);

    // A dead upstream: a refused connect, and the client closed.
    refused_by_tunnel(dead);
    let text = wait_sample(
        metrics,
        r#"retunnel_connections_closed_total{service="dead",reason="upstream_failed"}"#,
        1.0,
    );
    let refused = r#"retunnel_upstream_failures_total{service="dead",stage="connect",reason="refused"}"#;
    assert_samples(&text, &[(refused, 1.0)]);

    // A certificate from a CA the section does not trust.
    refused_by_tunnel(bad_cert);
    let verify = r#"retunnel_upstream_failures_total{service="badcert",stage="handshake",reason="tls_verify"}"#;
    let text = wait_sample(metrics, verify, 1.0);
    assert_eq!(
        sample(&text, r#"retunnel_upstream_handshake_seconds_count{service="badcert"}"#),
        Some(0.0),
        "a failed handshake is not a handshake duration"
    );
    // A `protocol = redis` section tells its client why, and counts that reply.
    let mut s = connect(dead_redis);
    let reply = read_until(&mut s, b"\r\n");
    assert!(reply.starts_with(b"-ERR retunnel: cannot reach upstream"), "{reply:?}");
    let text = wait_sample(
        metrics,
        r#"retunnel_redis_error_replies_total{service="deadredis"}"#,
        1.0,
    );
    assert_samples(
        &text,
        &[(r#"retunnel_cluster_node_listeners{service="deadredis"}"#, 0.0)],
    );
    assert_eq!(
        sample(&text, r#"retunnel_redis_error_replies_total{service="good"}"#),
        None,
        "Redis metrics only for protocol = redis sections"
    );
    // Nothing else moved: the good section saw one connection in all.
    assert_samples(
        &text,
        &[(r#"retunnel_connections_accepted_total{service="good"}"#, 1.0)],
    );
    let (code, _) = get(metrics, "/nothing");
    assert_eq!(code, 404);
}

#[test]
fn health_turns_unhealthy_while_the_upstream_is_down_and_back_when_it_returns() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let (accept, upstream, metrics) = (free_port(), free_port(), free_port());
    let conf = section("db", accept, upstream, &ca);
    // The flag, rather than the option, this time.
    let rt = Retunnel::spawn(&conf, &["--metrics", &metrics.to_string()]);
    rt.log.wait_for("listening service=db");
    rt.log.wait_for("metrics listening");
    // No attempt yet: healthy.
    let (code, body) = get(metrics, "/health");
    assert_eq!((code, body.as_str()), (200, "{\"status\":\"ok\",\"sections\":1}\n"));

    refused_by_tunnel(accept);
    let (code, body) = get(metrics, "/health");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["failing"][0]["section"], "db");
    let why = health["failing"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("every upstream attempt failed") && why.contains("refused"),
        "{why}"
    );

    let _redis = Redis::start_tls_on(upstream, &leaf, &ca, &[]);
    ping(accept);
    let (code, body) = get(metrics, "/health");
    assert_eq!((code, body.as_str()), (200, "{\"status\":\"ok\",\"sections\":1}\n"));
}

#[test]
fn status_prints_a_row_per_section_and_exits_by_health() {
    let up = TlsUpstream::start(&[]);
    let (good, dead, metrics) = (free_port(), free_port(), free_port());
    let dead_upstream = free_port();
    let conf = format!(
        "metrics = {metrics}\n{}[dead]\naccept = 127.0.0.1:{dead}\nconnect = 127.0.0.1:{dead_upstream}\n",
        up.section("good", good, "")
    );
    let rt = Retunnel::start(&conf, 2);
    rt.log.wait_for("metrics listening");
    let config = rt.config.clone().unwrap();
    let mut client = connect(good);
    exchange(&mut client, b"PING\r\n", b"+PONG\r\n");

    let ok = run_retunnel(&["status".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);
    let lines: Vec<&str> = ok.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", ok.stdout);
    assert!(lines[0].starts_with("SECTION"), "{}", ok.stdout);
    let row = |name: &str| lines.iter().find(|l| l.starts_with(name)).copied().unwrap();
    let good_row: Vec<&str> = row("good").split_whitespace().collect();
    assert_eq!(
        good_row[..5],
        [
            "good",
            &format!("127.0.0.1:{good}"),
            &format!("localhost:{}", up.redis.port),
            "1",
            "1"
        ]
    );
    assert!(row("good").ends_with(" ok"), "{}", ok.stdout);
    assert!(
        row("good").contains("6 B") && row("good").contains("7 B"),
        "{}",
        ok.stdout
    );

    refused_by_tunnel(dead);
    let json = run_retunnel(&["status", "--metrics", &format!("127.0.0.1:{metrics}"), "--json"]);
    assert_eq!(json.code, Some(1), "unhealthy: {}{}", json.stdout, json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let dead_s = &v["sections"][0];
    assert_eq!(dead_s["name"], "dead");
    assert_eq!(dead_s["upstream_failures"], 1);
    assert_eq!(dead_s["last_failure"], "refused");
    assert!(
        dead_s["failing"]
            .as_str()
            .unwrap()
            .contains("every upstream attempt failed")
    );
    assert_eq!(v["sections"][1]["open"], 1);

    drop(client);
    drop(rt);
    let none = run_retunnel(&["status", "--metrics", &metrics.to_string()]);
    assert_eq!(none.code, Some(2));
    assert!(none.stderr.contains("nothing answers on 127.0.0.1:"), "{}", none.stderr);
}

#[test]
fn status_explains_a_config_without_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_conf(dir.path(), "[a]\naccept = 1\nconnect = localhost:2\n");
    let r = run_retunnel(&["status".as_ref(), "-c".as_ref(), conf.as_os_str()]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("sets no `metrics = ADDR:PORT`"), "{}", r.stderr);
}

#[test]
fn metrics_on_the_network_is_warned_about() {
    let (accept, metrics) = (free_port(), free_port());
    let conf = format!("metrics = 0.0.0.0:{metrics}\n[a]\naccept = {accept}\nconnect = localhost:1\n");
    let rt = Retunnel::start(&conf, 1);
    rt.log
        .wait_for("the metrics, health and status endpoints are reachable from the network");
}

/// Reads notify messages until one contains `want`; returns it.
fn wait_message(sock: &UnixDatagram, want: &str) -> String {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {want:?} from retunnel on NOTIFY_SOCKET: {e}"));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains(want) {
            return msg;
        }
    }
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let (a, b) = (free_port(), free_port());
    let conf = format!("[a]\naccept = {a}\nconnect = localhost:1\n[b]\naccept = {b}\nconnect = localhost:1\n");
    let env: [(&str, &Path); 2] = [("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", Path::new("200000"))];
    let mut rt = Retunnel::spawn_env(&conf, &[], &env);

    let ready = wait_message(&sock, "READY=1");
    // Ready means listening: both ports accept already.
    connect(a);
    connect(b);
    assert!(ready.contains("STATUS=2 of 2 sections listening"), "{ready:?}");
    wait_message(&sock, "WATCHDOG=1");

    rt.signal(libc::SIGHUP);
    let reloading = wait_message(&sock, "RELOADING=1");
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC with RELOADING=1: {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    wait_message(&sock, "READY=1");
    rt.log.wait_for("reloaded");

    rt.signal(libc::SIGTERM);
    wait_message(&sock, "STOPPING=1");
    assert_eq!(rt.wait_exit(), Some(0));
}

#[test]
fn a_notify_socket_nobody_listens_on_is_logged_once_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = free_port();
    let conf = format!("[a]\naccept = {a}\nconnect = localhost:1\n");
    let gone = dir.path().join("no-such.sock");
    let mut rt = Retunnel::spawn_env(&conf, &[], &[("NOTIFY_SOCKET", &gone)]);
    rt.log.wait_for("listening");
    rt.signal(libc::SIGHUP);
    rt.log.wait_for("reloaded");
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    let log = rt.log.text();
    assert_eq!(log.matches("cannot notify systemd").count(), 1, "{log}");
}

#[test]
fn refusals_by_max_connections_and_idle_closes_are_counted() {
    let up = TlsUpstream::start(&[]);
    let (port, metrics) = (free_port(), free_port());
    let conf = format!(
        "metrics = {metrics}\n{}",
        up.section("small", port, "maxConnections = 1\nTIMEOUTidle = 1\n")
    );
    let rt = Retunnel::start(&conf, 1);
    rt.log.wait_for("metrics listening");
    let mut first = connect(port);
    exchange(&mut first, b"PING\r\n", b"+PONG\r\n");
    refused_by_tunnel(port);
    let text = wait_sample(metrics, r#"retunnel_connections_refused_total{service="small"}"#, 1.0);
    // A refused client was never accepted.
    assert_samples(
        &text,
        &[(r#"retunnel_connections_accepted_total{service="small"}"#, 1.0)],
    );
    // The first client goes quiet: TIMEOUTidle closes it.
    expect_closed(&mut first);
    let text = wait_sample(
        metrics,
        r#"retunnel_connections_closed_total{service="small",reason="idle_timeout"}"#,
        1.0,
    );
    assert_samples(&text, &[(r#"retunnel_connections_open{service="small"}"#, 0.0)]);
}

#[test]
fn warm_connections_are_counted_while_ready_and_not_once_gone() {
    let up = TlsUpstream::start(&[]);
    let (warm, cold, metrics) = (free_port(), free_port(), free_port());
    let conf = format!(
        "metrics = {metrics}\n{}{}",
        up.section("warm", warm, "prewarm = 2\n"),
        up.section("cold", cold, "")
    );
    let rt = Retunnel::start(&conf, 2);
    rt.log.wait_for("metrics listening");
    let gauge = r#"retunnel_upstream_warm_connections{service="warm"}"#;
    let text = wait_sample(metrics, gauge, 2.0);
    assert_eq!(
        sample(&text, r#"retunnel_upstream_warm_connections{service="cold"}"#),
        None,
        "only sections with prewarm have the gauge"
    );
    // A client takes one; the pool fills up again.
    ping(warm);
    wait_sample(metrics, gauge, 2.0);
    // The upstream goes away: the next client finds both warm connections closed by the
    // server, drops them, and none can be opened again.
    drop(up);
    refused_by_tunnel(warm);
    wait_sample(metrics, gauge, 0.0);
}

/// The endpoint on a section's port: `check --offline` names both lines, `--metrics` is refused
/// before anything starts, and a port another program holds is blamed on `metrics`, not
/// `accept`.
#[test]
fn metrics_on_a_port_in_use_names_metrics_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (accept, metrics) = (free_port(), free_port());
    let conf = format!("metrics = {accept}\n[a]\naccept = {accept}\nconnect = localhost:1\n");
    let path = write_conf(dir.path(), &conf);
    let check = run_retunnel(&["check".as_ref(), "--offline".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_ne!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
    let all = format!("{}{}", check.stdout, check.stderr);
    let want = format!(
        "{}:1: metrics 127.0.0.1:{accept} is also where [a] accepts clients (`accept` on {}:3)",
        path.display(),
        path.display()
    );
    assert!(
        all.contains(&want) && all.contains("give `metrics` a port of its own"),
        "{all}"
    );

    let conf = format!("[a]\naccept = {accept}\nconnect = localhost:1\n");
    let (code, out) = run_to_exit(&conf, &["--metrics", &accept.to_string()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("choose another port for --metrics"), "{out}");

    let _taken = std::net::TcpListener::bind(("127.0.0.1", metrics)).unwrap();
    let conf = format!("metrics = {metrics}\n[a]\naccept = {accept}\nconnect = localhost:1\n");
    let (code, out) = run_to_exit(&conf, &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("metrics: cannot listen on 127.0.0.1:{metrics}"))
            && out.contains("choose another port in `metrics`")
            && !out.contains("`accept`"),
        "{out}"
    );
}

/// `metrics = 127.0.0.1:0` picks a free port: with `pid` set, retunnel notes it in
/// PID.metrics and `status -c` finds it there; the note goes at exit; without `pid`, `status`
/// says why it cannot know the port and what to do.
#[test]
fn status_finds_a_metrics_port_chosen_at_start_through_the_pid_file() {
    let up = TlsUpstream::start(&[]);
    let run = tempfile::tempdir().unwrap();
    let pid = run.path().join("retunnel.pid");
    let port = free_port();
    let conf = format!(
        "pid = {}\nmetrics = 127.0.0.1:0\n{}",
        pid.display(),
        up.section("good", port, "")
    );
    let mut rt = Retunnel::start(&conf, 1);
    rt.log.wait_for("metrics listening");
    let note = run.path().join("retunnel.pid.metrics");
    // Written after the endpoint listens, beside the pid file.
    let text = wait_file_for(&note, "\n");
    let logged = rt.log.text();
    assert!(
        logged.contains(&format!("metrics={}", text.trim())),
        "{text:?} not in:\n{logged}"
    );
    ping(port);
    let config = rt.config.clone().unwrap();
    let ok = run_retunnel(&["status".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.lines().any(|l| l.starts_with("good ")), "{}", ok.stdout);
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    assert!(!note.exists() && !pid.exists(), "left behind at exit");
    let gone = run_retunnel(&["status".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(gone.code, Some(2));
    assert!(
        gone.stderr.contains("does not exist: is retunnel running"),
        "{}",
        gone.stderr
    );
    // Tester finding 17: a file left by a retunnel killed with -9 names a port nobody
    // answers on; status says where it read it from.
    let stale = format!("127.0.0.1:{}\n", free_port());
    std::fs::write(&note, &stale).unwrap();
    let killed = run_retunnel(&["status".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(killed.code, Some(2));
    let read_from = format!("{} was read from {}", stale.trim(), note.display());
    assert!(killed.stderr.contains(&read_from), "{}", killed.stderr);
    assert!(killed.stderr.contains("kill -9"), "{}", killed.stderr);

    let no_pid = write_conf(
        run.path(),
        "metrics = 127.0.0.1:0\n[a]\naccept = 1\nconnect = localhost:2\n",
    );
    let r = run_retunnel(&["status".as_ref(), "-c".as_ref(), no_pid.as_os_str()]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("chose a free port at start") && r.stderr.contains("set `pid = PATH`"),
        "{}",
        r.stderr
    );
}

/// Tester finding 4: 16 idle TCP connections to the endpoint used to queue every other client
/// behind their 10 s header timeout (probes failed). With 32 idle connections open, `/health`
/// still answers, well within that.
#[test]
fn idle_connections_do_not_delay_health() {
    use std::io::{Read, Write};
    let (accept, metrics) = (free_port(), free_port());
    let conf = format!("metrics = 127.0.0.1:{metrics}\n[a]\naccept = {accept}\nconnect = localhost:1\n");
    let _rt = Retunnel::start(&conf, 1);
    assert_eq!(get(metrics, "/health").0, 200);
    let idle: Vec<_> = (0..32).map(|_| connect(metrics)).collect();
    let mut s = connect(metrics);
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: retunnel\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let read = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(read.is_ok() && text.starts_with("HTTP/1.1 200"), "{read:?} {text:?}");
    drop(idle);
}
