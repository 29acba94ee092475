//! Certificate checks through the retunnel binary against a real TLS server: every bad
//! certificate closes the client promptly and the log says why; the good ones relay.

mod support;
use std::io::Write;
use std::time::Duration;

use support::*;

/// "Promptly": far below `TIMEOUTconnect` (10 s by default), so a hang until it cannot pass.
const PROMPT: Duration = Duration::from_secs(5);

fn conf(name: &str, port: u16, connect: &str, extra: &str) -> String {
    format!("[{name}]\nclient = yes\naccept = 127.0.0.1:{port}\nconnect = {connect}\n{extra}\n")
}

/// Sends a line through the tunnel and expects it echoed.
fn echo_works(port: u16) {
    let mut s = connect(port);
    s.write_all(b"hello through TLS\n").unwrap();
    assert_eq!(read_until(&mut s, b"\n"), b"hello through TLS\n");
}

/// Runs one section against `leaf`, checks the client is closed promptly, and returns the
/// log line that says why.
fn refused(leaf: &Leaf, connect_host: &str, extra: &str) -> String {
    let echo = TlsEcho::start(leaf);
    let port = free_port();
    let target = format!("{connect_host}:{}", echo.addr.port());
    let rt = Retunnel::start(&conf("checked", port, &target, extra), 1);
    let mut s = connect(port);
    let took = expect_closed(&mut s);
    assert!(took < PROMPT, "client closed only after {took:?}");
    let log = rt.log.wait_for("closing client");
    let lines = lines_with(&log, &["WARN", "TLS handshake failed", "closing client", "checked"]);
    assert_eq!(lines.len(), 1, "{log}");
    // The service keeps serving: the next client is refused the same way, not left hanging.
    let mut s = connect(port);
    assert!(expect_closed(&mut s) < PROMPT);
    lines[0].to_string()
}

#[test]
fn wrong_host_is_refused() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "other", &["other.example"], -1, 2);
    let line = refused(&leaf, "localhost", &format!("CAfile = {}", ca.pem.display()));
    assert!(line.contains("certificate of localhost rejected"), "{line}");
    assert!(line.contains("mismatch"), "{line}");
    assert!(line.contains("set checkHost"), "{line}");
}

#[test]
fn check_host_names_the_host_to_verify() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "internal", &["redis.internal.example"], -1, 2);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let extra = format!("CAfile = {}\ncheckHost = redis.internal.example", ca.pem.display());
    let _rt = Retunnel::start(&conf("internal", port, &echo.addr.to_string(), &extra), 1);
    echo_works(port);
}

#[test]
fn untrusted_ca_is_refused() {
    let pki = Pki::new();
    let trusted = pki.ca("trusted-ca");
    let stranger = pki.ca("stranger-ca");
    let leaf = pki.leaf(&stranger, "server", &["localhost"], -1, 2);
    // With a CAfile that names another CA, and with only the system trust store.
    let line = refused(&leaf, "localhost", &format!("CAfile = {}", trusted.pem.display()));
    assert!(line.contains("certificate of localhost rejected"), "{line}");
    assert!(line.contains("point CAfile at that CA"), "{line}");
    let line = refused(&leaf, "localhost", "");
    assert!(line.contains("point CAfile at that CA"), "{line}");
}

#[test]
fn expired_certificate_is_refused() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "expired", &["localhost"], -3, -1);
    let line = refused(&leaf, "localhost", &format!("CAfile = {}", ca.pem.display()));
    assert!(line.contains("expired"), "{line}");
    assert!(line.contains("renew the server's certificate"), "{line}");
}

#[test]
fn ca_file_is_accepted() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let extra = format!("CAfile = {}", ca.pem.display());
    let rt = Retunnel::start(
        &conf("trusted", port, &format!("localhost:{}", echo.addr.port()), &extra),
        1,
    );
    echo_works(port);
    let log = rt.log.wait_for("connection closed");
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn verify_chain_no_is_accepted_with_a_warning_naming_the_section() {
    let pki = Pki::new();
    let stranger = pki.ca("stranger-ca");
    // Untrusted, expired and for another name: nothing about it would pass a check.
    let leaf = pki.leaf(&stranger, "bad", &["other.example"], -3, -1);
    let echo = TlsEcho::start(&leaf);
    let (a, b) = (free_port(), free_port());
    let target = format!("localhost:{}", echo.addr.port());
    let text = format!(
        "{}{}",
        conf("no-chain", a, &target, "verifyChain = no"),
        conf("verify-zero", b, &target, "verify = 0")
    );
    let rt = Retunnel::start(&text, 2);
    echo_works(a);
    echo_works(b);
    let log = rt.log.text();
    for section in ["no-chain", "verify-zero"] {
        let warned = lines_with(&log, &["WARN", "NOT verified", &format!("service={section}")]);
        assert_eq!(warned.len(), 1, "no warning naming [{section}]:\n{log}");
    }
}

/// A server speaking only `protocol` answers a section without `options`, and refuses the
/// one with `options = {flag}`: the handshake failure names the version mismatch.
fn options_flag_refuses_a_server_speaking_only(protocol: &str, flag: &str) {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &["--tls-protocols", protocol]);
    let (ok_port, flagged_port) = (free_port(), free_port());
    let target = format!("localhost:{}", redis.port);
    let ca_line = format!("CAfile = {}", ca.pem.display());
    let flagged = format!("{ca_line}\noptions = {flag}");
    let text = [
        conf("plain", ok_port, &target, &ca_line),
        conf("flagged", flagged_port, &target, &flagged),
    ]
    .concat();
    let rt = Retunnel::start(&text, 2);
    assert_eq!(redis_cli(ok_port, &["ping"]), "PONG");
    let mut s = connect(flagged_port);
    assert!(expect_closed(&mut s) < PROMPT);
    let log = rt.log.wait_for("closing client");
    let lines = lines_with(&log, &["TLS handshake failed", "service=flagged"]);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("share no TLS version; check sslVersion"),
        "{}",
        lines[0]
    );
    assert!(!log.contains("is ignored"), "{log}");
}

#[test]
fn protocol_floor_from_options_is_applied() {
    // `options = NO_TLSv1_2` raises the floor to 1.3.
    options_flag_refuses_a_server_speaking_only("TLSv1.2", "NO_TLSv1_2");
}

#[test]
fn no_tls13_in_options_caps_the_version_at_tls12() {
    // `options = NO_TLSv1.3` caps the version at 1.2 (it used to be ignored with a warning).
    options_flag_refuses_a_server_speaking_only("TLSv1.3", "NO_TLSv1.3");
}

#[test]
fn sni_is_the_connect_host_none_for_ip_literals_or_the_sni_option() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&["alias.example"]);
    let server = SniEcho::start(&leaf);
    let p = server.addr.port();
    let ca_line = format!("CAfile = {}", ca.pem.display());
    let cases = [
        ("by-name", format!("localhost:{p}"), ca_line.clone(), "sni=localhost\n"),
        ("by-ip", format!("127.0.0.1:{p}"), ca_line.clone(), "sni=-\n"),
        (
            "sni-off",
            format!("localhost:{p}"),
            format!("{ca_line}\nsni ="),
            "sni=-\n",
        ),
        (
            "sni-set",
            format!("localhost:{p}"),
            format!("{ca_line}\nsni = alias.example"),
            "sni=alias.example\n",
        ),
        // checkHost names what the certificate must carry; an IP target still sends no SNI.
        (
            "ip-checkhost",
            format!("127.0.0.1:{p}"),
            format!("{ca_line}\ncheckHost = alias.example"),
            "sni=-\n",
        ),
        (
            "name-checkhost",
            format!("localhost:{p}"),
            format!("{ca_line}\ncheckHost = alias.example"),
            "sni=alias.example\n",
        ),
    ];
    let ports: Vec<u16> = cases.iter().map(|_| free_port()).collect();
    let text: String = cases
        .iter()
        .zip(&ports)
        .map(|((name, target, extra, _), port)| conf(name, *port, target, extra))
        .collect();
    let _rt = Retunnel::start(&text, cases.len());
    for ((name, _, _, want), port) in cases.iter().zip(&ports) {
        let got = raw_exchange(*port, b"");
        assert_eq!(String::from_utf8_lossy(&got), *want, "[{name}]");
    }
}

#[test]
fn ca_path_is_accepted() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&ca.pem, dir.path().join("private-ca.pem")).unwrap();
    std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let extra = format!("CApath = {}", dir.path().display());
    let _rt = Retunnel::start(
        &conf("capath", port, &format!("localhost:{}", echo.addr.port()), &extra),
        1,
    );
    echo_works(port);
}
