//! The tunnel as a process, through the retunnel binary against a real TLS echo server: bulk
//! bytes both ways, half-close, idle timeout, an upstream that comes up late, a port in use,
//! SIGTERM with draining, and config errors refused before anything binds.

mod support;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use support::*;

/// Well below the 10 s default `TIMEOUTconnect`.
const PROMPT: Duration = Duration::from_secs(5);

fn conf(name: &str, port: u16, upstream_port: u16, ca: &Ca, extra: &str) -> String {
    format!(
        "[{name}]\naccept = 127.0.0.1:{port}\nconnect = localhost:{upstream_port}\nCAfile = {}\n{extra}\n",
        ca.pem.display()
    )
}

/// A tunnel to a fresh echo server; returns the accept port with everything that must live.
fn echo_tunnel(mode: EchoMode, extra: &str) -> (u16, Retunnel, TlsEcho, Pki) {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start_with(&leaf, "127.0.0.1:0".parse().unwrap(), mode);
    let rt = Retunnel::start(&conf("echo", 0, echo.addr.port(), &ca, extra), 1);
    (rt.port("echo"), rt, echo, pki)
}

/// Writes `data` on a thread while this one reads, then returns everything read until EOF.
fn send_and_receive(port: u16, data: Vec<u8>) -> Vec<u8> {
    let mut s = connect(port);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    got
}

#[test]
fn sixteen_mib_both_ways_byte_identical() {
    const N: usize = 16 << 20;
    let (port, rt, _echo, _pki) = echo_tunnel(EchoMode::Streaming, "");
    let data = random_bytes(N);
    let got = send_and_receive(port, data.clone());
    assert_eq!(got.len(), N);
    assert!(got == data, "the bytes came back changed");
    let log = rt.log.wait_for("connection closed");
    let line = lines_with(&log, &["connection closed"])[0];
    // One line a connection: service, peer, upstream, bytes each way, duration, reason.
    for field in [
        "INFO",
        "service=echo",
        "peer=127.0.0.1:",
        "upstream=127.0.0.1:",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(line.contains(&format!("bytes_up={N}")), "{line}");
    assert!(line.contains(&format!("bytes_down={N}")), "{line}");
    assert!(line.contains("reason=closed"), "{line}");
}

#[test]
fn half_close_still_delivers_the_whole_reply() {
    // The server sends nothing until it has seen the client's end of data.
    let (port, rt, _echo, _pki) = echo_tunnel(EchoMode::AfterEof, "");
    let data = random_bytes(1 << 20);
    assert!(send_and_receive(port, data.clone()) == data);
    // And a small request, as `PING` then shutdown would be.
    assert_eq!(raw_exchange(port, b"PING\r\n"), b"PING\r\n");
    let log = rt.log.wait_for_n("reason=closed", 2);
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn idle_connection_is_closed_after_timeout_idle() {
    let (port, rt, _echo, _pki) = echo_tunnel(EchoMode::Streaming, "TIMEOUTidle = 1");
    let mut s = connect(port);
    s.write_all(b"x").unwrap();
    assert_eq!(read_until(&mut s, b"x"), b"x");
    // When it closes is timed on paused time in `relay::tests`; here: that it closes, and why.
    expect_closed(&mut s);
    let log = rt.log.wait_for("connection closed");
    assert_eq!(
        lines_with(&log, &["connection closed", "idle for 1s (TIMEOUTidle)"]).len(),
        1,
        "{log}"
    );
}

#[test]
fn dead_upstream_then_live_upstream() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let upstream_port = free_port();
    let rt = Retunnel::start(&conf("late", 0, upstream_port, &ca, ""), 1);
    let port = rt.port("late");
    // Nothing listens upstream: the client is closed at once and the log says why.
    let mut s = connect(port);
    assert!(expect_closed(&mut s) < PROMPT);
    let log = rt.log.wait_for("cannot reach upstream");
    let line = lines_with(&log, &["cannot reach upstream"])[0];
    assert!(line.contains("WARN") && line.contains("service=late"), "{line}");
    assert!(
        line.contains(&format!("127.0.0.1:{upstream_port}: connection refused")),
        "{line}"
    );
    // The server comes up on that port; the same service now relays.
    let _echo = TlsEcho::start_with(
        &leaf,
        format!("127.0.0.1:{upstream_port}").parse().unwrap(),
        EchoMode::Streaming,
    );
    let mut s = connect(port);
    s.write_all(b"now it works\n").unwrap();
    assert_eq!(read_until(&mut s, b"\n"), b"now it works\n");
}

#[test]
fn every_connect_line_is_tried_in_order() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let dead = free_port();
    let extra = format!("connect = localhost:{}", echo.addr.port());
    let rt = Retunnel::start(&conf("failover", 0, dead, &ca, &extra), 1);
    let port = rt.port("failover");
    assert_eq!(raw_exchange(port, b"second target\n"), b"second target\n");
    let log = rt.log.wait_for("connection closed");
    let line = lines_with(&log, &["connection closed", "service=failover"])[0];
    assert!(
        line.contains(&format!("upstream=127.0.0.1:{}", echo.addr.port())),
        "{line}"
    );
}

/// A plain-TCP server that answers every connection with a RESP error (a TLS port by
/// mistake pointed at a plain one); returns its port and how many connections it took.
fn plain_text_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        for mut s in plain.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(b"-ERR unknown command\r\n");
        }
    });
    (port, taken)
}

/// Issue 11 defect 1: a first `connect` target that fails at the TLS level (plain text, a
/// wrong certificate, or TCP accepted and the handshake never answered) is a failed target:
/// the healthy second one serves every client, and the bad one is moved to the back.
#[test]
fn a_first_target_failing_tls_falls_through_to_the_next() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let good = TlsEcho::start(&leaf);
    let wrong = TlsEcho::start(&pki.leaf(&ca, "other", &["other.example"], -1, 2));
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (plain, plain_taken) = plain_text_server();
    let second = format!("connect = localhost:{}", good.addr.port());
    let silent_port = silent.local_addr().unwrap().port();
    let sections = [
        ("plain", plain, second.clone()),
        ("wrong", wrong.addr.port(), second.clone()),
        // Half of TIMEOUTconnect for the silent one, then the second target in time.
        ("silent", silent_port, format!("{second}\nTIMEOUTconnect = 4")),
        ("rr", plain, format!("{second}\nfailover = rr")),
    ];
    let text: String = sections
        .iter()
        .map(|(name, first, extra)| conf(name, 0, *first, &ca, extra))
        .collect();
    let rt = Retunnel::start(&text, sections.len());
    let ports: Vec<u16> = sections.iter().map(|(name, ..)| rt.port(name)).collect();
    for ((name, ..), port) in sections.iter().zip(&ports) {
        for i in 0..3 {
            let msg = format!("{name} client {i}\n");
            assert_eq!(raw_exchange(*port, msg.as_bytes()), msg.as_bytes(), "section {name}");
        }
    }
    // Section `plain` tried the plain-text server once, then put it last; `rr` also once,
    // since its turn came while it was still marked as failed.
    assert_eq!(plain_taken.load(std::sync::atomic::Ordering::SeqCst), 2);
    let log = rt.log.wait_for_n("connection closed", 12);
    for (name, why) in [
        ("plain", "did not answer in TLS"),
        ("wrong", "certificate of localhost rejected"),
        ("silent", "TLS handshake timed out (TIMEOUTconnect)"),
    ] {
        let lines = lines_with(&log, &["trying the next target", &format!("service={name}")]);
        assert_eq!(lines.len(), 1, "{log}");
        assert!(lines[0].contains(why), "{}", lines[0]);
    }
    assert!(!log.contains("closing client"), "{log}");
}

#[test]
fn upstream_that_never_handshakes_is_cut_at_timeout_connect() {
    let pki = Pki::new();
    let (ca, _leaf) = pki.standard(&[]);
    // The kernel completes the TCP handshake from the backlog; nobody ever answers in TLS.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let text = conf(
        "silent",
        0,
        silent.local_addr().unwrap().port(),
        &ca,
        "TIMEOUTconnect = 1",
    );
    let rt = Retunnel::start(&text, 1);
    let port = rt.port("silent");
    let mut s = connect(port);
    // When is timed on paused time in `upstream::tests`; here: that the client is closed, and why.
    expect_closed(&mut s);
    let log = rt.log.wait_for("closing client");
    let timed_out = lines_with(&log, &["TLS handshake timed out (TIMEOUTconnect)", "service=silent"]);
    assert_eq!(timed_out.len(), 1, "{log}");
    assert!(timed_out[0].contains("is this a TLS port?"), "{}", timed_out[0]);
}

#[test]
fn upstream_that_is_not_tls_is_named() {
    let pki = Pki::new();
    let (ca, _leaf) = pki.standard(&[]);
    // A plain-TCP Redis port by mistake: it answers the ClientHello with a RESP error.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in plain.incoming().flatten() {
            let _ = s.write_all(b"-ERR unknown command\r\n");
        }
    });
    let rt = Retunnel::start(&conf("plain", 0, plain_port, &ca, ""), 1);
    let port = rt.port("plain");
    let mut s = connect(port);
    assert!(expect_closed(&mut s) < PROMPT);
    let log = rt.log.wait_for("closing client");
    let line = lines_with(&log, &["TLS handshake failed", "service=plain"]);
    assert_eq!(line.len(), 1, "{log}");
    assert!(line[0].contains("did not answer in TLS"), "{}", line[0]);
}

#[test]
fn port_in_use_exits_non_zero_and_leaves_nothing_listening() {
    let pki = Pki::new();
    let (ca, _leaf) = pki.standard(&[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let free = free_port();
    // The first section binds fine; the second cannot.
    let text = format!(
        "{}{}",
        conf("first", free, 1, &ca, ""),
        conf("second", taken_port, 1, &ca, "")
    );
    let (code, log) = run_to_exit(&text, &[]);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}; log:\n{log}");
    let named = lines_with(
        &log,
        &[
            "[second]",
            &format!("127.0.0.1:{taken_port}"),
            "another program listens there",
        ],
    );
    assert!(!named.is_empty(), "{log}");
    assert!(!log.contains("listening"), "{log}");
    assert_refused(free);
}

#[test]
fn sigterm_drains_open_connections_and_removes_the_pid_file() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let pid = pki.path("retunnel.pid");
    let text = format!(
        "pid = {}\n{}",
        pid.display(),
        conf("drain", 0, echo.addr.port(), &ca, "")
    );
    let mut rt = Retunnel::start(&text, 1);
    let port = rt.port("drain");
    assert_eq!(std::fs::read_to_string(&pid).unwrap().trim(), rt.pid().to_string());
    let mut open = connect(port);
    open.write_all(b"before\n").unwrap();
    read_until(&mut open, b"before\n");

    rt.signal(libc::SIGTERM);
    rt.log.wait_for("waiting for open connections (TIMEOUTclose)");
    // New connections are refused while the open one finishes.
    assert_refused(port);
    open.write_all(b"after\n").unwrap();
    read_until(&mut open, b"after\n");
    assert!(
        rt.proc.child.try_wait().unwrap().is_none(),
        "exited before the connection ended"
    );
    open.shutdown(Shutdown::Write).unwrap();
    assert!(expect_closed(&mut open) < PROMPT);
    assert_eq!(rt.wait_exit(), Some(0), "log:\n{}", rt.log.text());
    assert!(!pid.exists(), "pid file left behind");
    let log = rt.log.wait_closed();
    assert!(log.contains("stopped cut=0"), "{log}");
}

#[test]
fn timeout_close_cuts_connections_that_do_not_finish() {
    let (port, mut rt, _echo, _pki) = echo_tunnel(EchoMode::Streaming, "TIMEOUTclose = 1");
    let mut open: Vec<_> = (0..3).map(|_| connect(port)).collect();
    for (i, s) in open.iter_mut().enumerate() {
        let data = vec![b'x'; i + 1];
        s.write_all(&data).unwrap();
        read_until(s, &data);
    }
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    // The grace period itself is timed in `tunnel::tests` on paused time.
    for s in &mut open {
        expect_closed(s);
    }
    let log = rt.log.wait_closed();
    assert!(log.contains("still open after TIMEOUTclose"), "{log}");
    assert!(log.contains("stopped cut=3"), "{log}");
    // Each cut connection has its own line, with what it moved.
    let cut = lines_with(&log, &["connection closed", "reason=shutdown", "duration_ms="]);
    assert_eq!(cut.len(), 3, "{log}");
    for n in 1..=3 {
        let moved = format!("bytes_up={n} bytes_down={n} ");
        assert!(cut.iter().any(|l| l.contains(&moved)), "no line with {moved}: {log}");
    }
}

#[test]
fn sigint_stops_like_sigterm() {
    let (port, mut rt, _echo, _pki) = echo_tunnel(EchoMode::Streaming, "");
    rt.signal(libc::SIGINT);
    assert_eq!(rt.wait_exit(), Some(0));
    assert!(rt.log.wait_closed().contains("signal=Interrupt"));
    assert_refused(port);
}

#[test]
fn config_error_exits_2_before_binding() {
    let pki = Pki::new();
    let (ca, _leaf) = pki.standard(&[]);
    // The section's port is held: had retunnel bound before checking, it would say so instead.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let text = conf("typo", port, 6379, &ca, "TIMEOUTconect = 5");
    let mut rt = Retunnel::spawn(&text, &[]);
    assert_eq!(rt.wait_exit(), Some(2));
    let log = rt.log.wait_closed();
    let file = rt.config.as_ref().unwrap().display().to_string();
    assert!(log.contains("nothing was started"), "{log}");
    assert!(
        log.contains(&format!(
            "{file}:5: [typo] TIMEOUTconect: unknown option; did you mean `TIMEOUTconnect`?"
        )),
        "{log}"
    );
    assert!(!log.contains("cannot listen") && !log.contains("listening"), "{log}");
}

#[test]
fn missing_config_file_exits_2() {
    let (code, log) = {
        let mut cmd = std::process::Command::new(retunnel_bin());
        cmd.args(["-c", "/nonexistent/retunnel.conf"]);
        let mut rt = Retunnel::spawn_cmd(cmd, tempfile::tempdir().unwrap());
        (rt.wait_exit(), rt.log.wait_closed())
    };
    assert_eq!(code, Some(2));
    assert!(
        log.contains("config file /nonexistent/retunnel.conf: cannot read it"),
        "{log}"
    );
}

#[test]
fn output_sends_the_log_to_a_file() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let file = pki.path("retunnel.log");
    let text = format!(
        "output = {}\n{}",
        file.display(),
        conf("logged", port, echo.addr.port(), &ca, "")
    );
    let mut rt = Retunnel::spawn(&text, &[]);
    wait_until("the log file to say listening", || {
        std::fs::read_to_string(&file).ok().filter(|t| t.contains("listening"))
    });
    assert_eq!(raw_exchange(port, b"to the file\n"), b"to the file\n");
    wait_until("the connection in the log file", || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("connection closed"))
    });
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    assert_eq!(rt.log.wait_closed(), "", "stderr should stay empty with `output`");
}

#[test]
fn debug_sets_the_level_and_rust_log_overrides_it() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    // debug = 4 (warning): no info lines, so no "listening"; wait for the port instead.
    let port = free_port();
    let text = format!("debug = 4\n{}", conf("quiet", port, echo.addr.port(), &ca, ""));
    let mut rt = Retunnel::spawn(&text, &[]);
    wait_port(port);
    assert_eq!(raw_exchange(port, b"x"), b"x");
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    let log = rt.log.wait_closed();
    assert!(!log.contains("INFO"), "{log}");
    // RUST_LOG=debug wins over the file's `debug = 4`.
    let port = free_port();
    let text = format!("debug = 4\n{}", conf("loud", port, echo.addr.port(), &ca, ""));
    let rt = Retunnel::spawn_env(&text, &[], &[("RUST_LOG", std::path::Path::new("debug"))]);
    rt.log.wait_for("listening");
    assert_eq!(raw_exchange(port, b"x"), b"x");
    rt.log.wait_for("upstream ready");
}

#[test]
fn plaintext_on_every_interface_is_warned_about() {
    let pki = Pki::new();
    let (ca, _leaf) = pki.standard(&[]);
    // Listens on every interface for a moment; only 127.0.0.1 is ever connected to.
    let text = conf("open", 0, 1, &ca, "").replace("127.0.0.1:", "0.0.0.0:");
    let mut rt = Retunnel::start(&text, 1);
    let port = rt.port("open");
    let log = rt.log.wait_for("accepted from the network");
    assert_eq!(
        lines_with(&log, &["WARN", "service=open", &format!("0.0.0.0:{port}")]).len(),
        1,
        "{log}"
    );
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    // A loopback listener gets no such warning.
    let (port, rt, _echo, _pki) = echo_tunnel(EchoMode::Streaming, "");
    assert_eq!(raw_exchange(port, b"x"), b"x");
    let log = rt.log.wait_for("connection closed");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn second_signal_exits_at_once_and_still_removes_the_pid_file() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let pid = pki.path("retunnel.pid");
    let text = format!(
        "pid = {}\n{}",
        pid.display(),
        conf("impatient", 0, echo.addr.port(), &ca, "")
    );
    let mut rt = Retunnel::start(&text, 1);
    let port = rt.port("impatient");
    let mut open = connect(port);
    open.write_all(b"x").unwrap();
    read_until(&mut open, b"x");
    rt.signal(libc::SIGTERM);
    rt.log.wait_for("waiting for open connections (TIMEOUTclose)");
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(130));
    assert!(rt.log.wait_closed().contains("second signal: exiting now"));
    assert!(!pid.exists(), "pid file left behind by the second signal");
}

#[test]
fn unwritable_pid_or_log_file_is_named_and_nothing_stays_listening() {
    let pki = Pki::new();
    let (ca, _leaf) = pki.standard(&[]);
    let port = free_port();
    let section = conf("r", port, 1, &ca, "");
    let (code, log) = run_to_exit(&format!("pid = /nonexistent-dir/retunnel.pid\n{section}"), &[]);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}; log:\n{log}");
    assert!(
        log.contains("cannot write pid file /nonexistent-dir/retunnel.pid"),
        "{log}"
    );
    assert_refused(port);
    let (code, log) = run_to_exit(&format!("output = /nonexistent-dir/retunnel.log\n{section}"), &[]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("cannot open log file /nonexistent-dir/retunnel.log"),
        "{log}"
    );
}

#[test]
fn pid_and_log_files_are_never_written_through_a_symbolic_link() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let pid = dir.path().join("retunnel.pid");
    std::os::unix::fs::symlink(&victim, &pid).unwrap();
    let port = free_port();
    let section = conf("r", port, echo.addr.port(), &ca, "");
    let mut rt = Retunnel::spawn(&format!("pid = {}\n{section}", pid.display()), &[]);
    rt.log.wait_for("listening");
    // The link was replaced by a real file; its target is untouched.
    assert!(!std::fs::symlink_metadata(&pid).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&pid).unwrap().trim(), rt.pid().to_string());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));

    let log = dir.path().join("retunnel.log");
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let (code, out) = run_to_exit(&format!("output = {}\nlog = overwrite\n{section}", log.display()), &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("symbolic link is not followed"), "{out}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn a_client_speaking_tls_to_the_plain_port_is_told_and_closed() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let rt = Retunnel::start(&conf("plain", 0, echo.addr.port(), &ca, ""), 1);
    let port = rt.port("plain");
    // The start of a ClientHello, as `redis-cli --tls` sends it to the wrong port.
    let mut s = connect(port);
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").unwrap();
    let took = expect_closed(&mut s);
    assert!(took < PROMPT, "closed only after {took:?}");
    let log = rt.log.wait_for("connection closed");
    let line = lines_with(
        &log,
        &[
            "connection closed",
            "the client speaks TLS, but this port takes plain TCP",
        ],
    );
    assert_eq!(line.len(), 1, "{log}");
    // The refused ClientHello was not relayed.
    assert!(line[0].contains("bytes_up=0 "), "{}", line[0]);
    // Plain clients are not affected.
    assert_eq!(raw_exchange(port, b"PING\r\n"), b"PING\r\n");
}

#[test]
fn config_path_may_be_given_bare_as_stunnel_takes_it() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis-cli.conf");
    std::fs::write(&path, conf("bare", 0, echo.addr.port(), &ca, "")).unwrap();
    let mut cmd = std::process::Command::new(retunnel_bin());
    cmd.arg(&path);
    let rt = Retunnel::spawn_cmd(cmd, dir);
    rt.log.wait_for("listening");
    let port = rt.port("bare");
    assert_eq!(raw_exchange(port, b"bare\n"), b"bare\n");
    // And none at all is a usage error that says what to do.
    let mut rt = Retunnel::spawn_cmd(std::process::Command::new(retunnel_bin()), tempfile::tempdir().unwrap());
    assert_eq!(rt.wait_exit(), Some(2));
    assert!(rt.log.wait_closed().contains("`-c FILE`"));
}
