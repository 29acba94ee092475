//! `accept` as stunnel reads it, through the retunnel binary against a real TLS redis-server:
//! indented files, port 0 (the "listening" line names the port bound), several `accept` lines
//! in one section (also across a reload), and Unix sockets reached with `redis-cli -s`.

mod support;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use support::*;

/// A client-mode section connecting to `up`, with the given `accept` lines.
fn section(up: &TlsUpstream, name: &str, accepts: &[&str]) -> String {
    let accepts: String = accepts.iter().map(|a| format!("accept = {a}\n")).collect();
    format!(
        "[{name}]\n{accepts}connect = localhost:{}\nCAfile = {}\n",
        up.redis.port,
        up.ca.pem.display()
    )
}

/// The shape of stunnel's own test client configs and of files from YAML ConfigMaps and
/// heredocs: blanks before comments, options and headers; an ephemeral port.
#[test]
fn an_indented_file_with_an_ephemeral_port_tunnels() {
    let up = TlsUpstream::start(&[]);
    let conf = format!(
        "    ; global part, indented\n    debug = notice\n\n  [redis]\n    client = yes\n    # an indented hash comment\n    ;cert = /nowhere/client.pem\n\taccept = 127.0.0.1:0\n    connect = localhost:{}\n    CAfile = {}\n",
        up.redis.port,
        up.ca.pem.display()
    );
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("redis");
    assert_ne!(port, 0);
    assert_eq!(redis_cli(port, &["set", "k", "indented"]), "OK");
    assert_eq!(redis_cli(port, &["get", "k"]), "indented");
}

/// Every `accept` line is a listener of the same section; a reload keeps the listeners of the
/// lines that stay (a port 0 keeps its port), opens new ones and closes dropped ones.
#[test]
fn several_accepts_serve_one_section_and_follow_a_reload() {
    let up = TlsUpstream::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let sock_s = sock.to_str().unwrap();
    let rt = Retunnel::start(&section(&up, "multi", &["127.0.0.1:0", "[::1]:0", sock_s]), 3);
    let at = rt.log.listening("multi");
    assert_eq!(at.len(), 3, "{at:?}");
    assert!(at[0].starts_with("127.0.0.1:") && at[1].starts_with("[::1]:"), "{at:?}");
    assert_eq!(at[2], sock_s);
    let v4 = rt.port("multi");
    assert_eq!(redis_cli(v4, &["set", "k", "v"]), "OK");
    let v6: u16 = at[1].rsplit_once(':').unwrap().1.parse().unwrap();
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.args(["-h", "::1", "-p", &v6.to_string(), "get", "k"]);
    assert_eq!(
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap(),
        "v"
    );
    assert_eq!(redis_cli_unix(&sock, &["get", "k"]), "v");

    // Drop [::1]:0 and the socket, add a second 127.0.0.1:0: the first keeps its port.
    let conf = rt.config.clone().unwrap();
    std::fs::write(&conf, section(&up, "multi", &["127.0.0.1:0", "127.0.0.1:0"])).unwrap();
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(log.contains("changed=1"), "{log}");
    let at = rt.log.listening("multi");
    assert_eq!(at.len(), 5, "two more listening lines after the reload: {at:?}");
    assert_eq!(
        at[3],
        format!("127.0.0.1:{v4}"),
        "the kept listener keeps its port: {at:?}"
    );
    let added: u16 = at[4].rsplit_once(':').unwrap().1.parse().unwrap();
    assert_ne!(added, v4);
    assert_eq!(redis_cli(v4, &["get", "k"]), "v");
    assert_eq!(redis_cli(added, &["get", "k"]), "v");
    assert!(!sock.exists(), "the dropped Unix socket's file is removed");
    assert!(
        std::net::TcpStream::connect(("::1", v6)).is_err(),
        "the dropped [::1] listener still accepts"
    );
}

/// `accept = /path`: created at start, reached with `redis-cli -s`, removed at exit; a stale
/// socket from a dead process is replaced.
#[test]
fn a_unix_socket_accept_is_reached_with_redis_cli_and_removed_at_exit() {
    let up = TlsUpstream::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("redis.sock");
    // What a killed retunnel leaves behind: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let mut rt = Retunnel::start(&section(&up, "local", &[sock.to_str().unwrap()]), 1);
    assert_eq!(rt.log.listening("local"), [sock.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    assert_eq!(redis_cli_unix(&sock, &["set", "over", "unix"]), "OK");
    assert_eq!(redis_cli_unix(&sock, &["get", "over"]), "unix");
    // The connection line names the client as a Unix socket client.
    rt.log.wait_for("peer=unix");
    rt.signal(libc::SIGTERM);
    assert_eq!(rt.wait_exit(), Some(0));
    assert!(!sock.exists(), "the socket file outlived retunnel");
}

/// A file that is not a socket is never replaced: retunnel refuses to start and says what to do.
#[test]
fn a_file_in_the_way_of_a_unix_socket_stops_the_start_with_the_fix() {
    let up = TlsUpstream::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.rdb");
    std::fs::write(&file, "keep me").unwrap();
    let also = dir.path().join("never.sock");
    let conf = format!(
        "{}{}",
        section(&up, "a", &[also.to_str().unwrap()]),
        section(&up, "b", &[file.to_str().unwrap()])
    );
    let mut rt = Retunnel::spawn(&conf, &[]);
    let code = rt.wait_exit();
    let log = rt.log.wait_closed();
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains(&format!("[b] cannot listen on {}", file.display())),
        "{log}"
    );
    assert!(
        log.contains("not a socket") && log.contains("remove that file"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    assert!(
        !Path::new(&also).exists(),
        "all or nothing: [a]'s socket must be gone too"
    );
}
