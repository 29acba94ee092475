//! TLS end to end: protocol version bounds, client certificates (mutual TLS) against a real
//! redis-server that demands them, and server mode (`client = no`, with and without
//! `connectTLS`) with real TLS clients: redis-cli --tls, openssl s_client, Python's redis.

mod support;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};

use openssl::pkey::PKey;
use openssl::symm::Cipher;
use support::*;

#[test]
fn tls12_only_server_is_refused_when_tls13_is_the_floor() {
    let up = TlsUpstream::start(&["--tls-protocols", "TLSv1.2"]);
    let (default, strict, exact) = (free_port(), free_port(), free_port());
    let conf = [
        up.section("default", default, ""),
        up.section("strict", strict, "sslVersionMin = TLSv1.3\n"),
        up.section("exact", exact, "sslVersion = TLSv1.2\n"),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 3);
    assert_eq!(redis_cli(default, &["ping"]), "PONG");
    assert_eq!(redis_cli(exact, &["ping"]), "PONG");
    assert_ne!(redis_cli(strict, &["ping"]), "PONG");
    let log = rt.log.wait_for("TLS handshake failed");
    assert!(
        log.contains("the server and this section share no TLS version"),
        "{log}"
    );
}

/// A client certificate signed by the CA redis-server trusts, in three shapes.
struct ClientCerts {
    /// RSA key in PKCS#1 form, separate file.
    rsa: Leaf,
    /// EC key in PKCS#8 form, in the same file as the certificate.
    combined: std::path::PathBuf,
}

fn client_certs(pki: &Pki, ca: &Ca) -> ClientCerts {
    let rsa = pki.rsa_leaf(ca, "client-rsa", &["client"]);
    let ec = pki.leaf(ca, "client-ec", &["client"], -1, 2);
    let combined = pki.path("client-both.pem");
    let mut both = std::fs::read(&ec.cert).unwrap();
    both.extend(std::fs::read(&ec.key).unwrap());
    std::fs::write(&combined, both).unwrap();
    ClientCerts { rsa, combined }
}

#[test]
fn client_certificates_reach_a_server_that_demands_them() {
    let up = TlsUpstream::start(&["--tls-auth-clients", "yes"]);
    let certs = client_certs(&up.pki, &up.ca);
    let (none, rsa, combined) = (free_port(), free_port(), free_port());
    let rsa_lines = format!(
        "cert = {}\nkey = {}\n",
        certs.rsa.cert.display(),
        certs.rsa.key.display()
    );
    let conf = [
        up.section("none", none, ""),
        up.section("rsa", rsa, &rsa_lines),
        up.section("combined", combined, &format!("cert = {}\n", certs.combined.display())),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 3);
    assert_eq!(redis_cli(rsa, &["set", "k", "mtls"]), "OK");
    assert_eq!(redis_cli(combined, &["get", "k"]), "mtls");
    assert_ne!(redis_cli(none, &["ping"]), "PONG");
    rt.log.wait_for("set `cert` and `key`");
}

fn refused_at_start(cert: &std::path::Path, key: &std::path::Path) -> String {
    let port = free_port();
    let conf = format!(
        "[c]\naccept = 127.0.0.1:{port}\nconnect = localhost:6379\ncert = {}\nkey = {}\n",
        cert.display(),
        key.display()
    );
    let (code, log) = run_to_exit(&conf, &[]);
    assert_ne!(code, Some(0), "{log}");
    assert!(!log.contains("listening"), "{log}");
    log
}

#[test]
fn bad_client_keys_are_refused_at_start_with_the_fix() {
    let pki = Pki::new();
    let (ca, _) = pki.standard(&[]);
    let a = pki.leaf(&ca, "a", &["client"], -1, 2);
    let b = pki.leaf(&ca, "b", &["client"], -1, 2);
    let log = refused_at_start(&a.cert, &b.key);
    assert!(log.contains("does not belong to the certificate in"), "{log}");

    let key = PKey::private_key_from_pem(&std::fs::read(&a.key).unwrap()).unwrap();
    let locked = pki.path("locked.key");
    let pem = key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"secret")
        .unwrap();
    std::fs::write(&locked, pem).unwrap();
    let log = refused_at_start(&a.cert, &locked);
    assert!(
        log.contains("is protected by a password") && log.contains("openssl pkey"),
        "{log}"
    );

    let log = refused_at_start(&a.cert, &pki.path("missing.key"));
    assert!(log.contains("key: cannot read") && log.contains("missing.key"), "{log}");
    let log = refused_at_start(&a.cert, &a.cert);
    assert!(log.contains("holds no PEM private key"), "{log}");
    let key_text = std::fs::read_to_string(&a.key).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();
    assert!(!log.contains(key_line), "key material in the log: {log}");
}

/// A server-mode section (TLS from clients, `cert`/`key`) in front of `connect_port`.
fn server_section(port: u16, connect_port: u16, leaf: &Leaf, extra: &str) -> String {
    format!(
        "[server]\nclient = no\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{connect_port}\ncert = {}\nkey = {}\n{extra}",
        leaf.cert.display(),
        leaf.key.display()
    )
}

fn openssl_ping(port: u16, ca: &Ca) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
        ])
        .arg(&ca.pem)
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl must be installed");
    // QUIT makes redis-server close, so s_client (which -quiet keeps open past stdin's end)
    // exits on its own.
    child.stdin.take().unwrap().write_all(b"PING\r\nQUIT\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python_ping(port: u16, ca: &Ca) -> String {
    let script = format!(
        "import redis\nr = redis.Redis(host='127.0.0.1', port={port}, ssl=True, ssl_ca_certs='{}', socket_timeout=20)\nr.set('py', 'ok')\nprint(r.ping(), r.get('py').decode())\n",
        ca.pem.display()
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3 with the redis package (Debian: python3-redis) must be installed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// A server-mode section with `extra` lines in front of a plain redis-server, running.
struct ServerMode {
    _pki: Pki,
    ca: Ca,
    redis: Redis,
    port: u16,
    rt: Retunnel,
}

fn server_mode(extra: &str) -> ServerMode {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_plain(&[]);
    let port = free_port();
    let rt = Retunnel::start(&server_section(port, redis.port, &leaf, extra), 1);
    ServerMode {
        _pki: pki,
        ca,
        redis,
        port,
        rt,
    }
}

#[test]
fn server_mode_serves_real_tls_clients_in_front_of_plain_redis() {
    // Kept whole: dropping the Pki part would delete the CA file the clients read.
    let sm = server_mode("");
    let (ca, port, rt, redis_port) = (&sm.ca, sm.port, &sm.rt, sm.redis.port);
    assert!(
        rt.log.text().contains("clients: TLS; upstream: plain TCP"),
        "{}",
        rt.log.text()
    );

    assert_eq!(redis_cli_tls(port, &ca.pem, &["set", "k", "server-mode"]), "OK");
    assert_eq!(redis_cli(redis_port, &["get", "k"]), "server-mode");
    assert_eq!(openssl_ping(port, ca), "+PONG\r\n+OK\r\n");
    assert_eq!(python_ping(port, ca), "True ok");

    // A plain-text client is closed with a reason; the section keeps serving.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    rt.log.wait_for("the client did not speak TLS");
    assert_eq!(redis_cli_tls(port, &ca.pem, &["ping"]), "PONG");
}

/// Whether `openssl s_client` limited to one version by `flag` completes a handshake.
fn s_client_gets_in(port: u16, ca: &Ca, flag: &str) -> bool {
    let out = Command::new("openssl")
        .args(["s_client", flag, "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
        .arg(&ca.pem)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn server_mode_refuses_clients_below_the_version_floor() {
    let sm = server_mode("sslVersionMin = TLSv1.3\n");
    let (ca, port, rt) = (&sm.ca, sm.port, &sm.rt);
    assert!(!s_client_gets_in(port, ca, "-tls1_2"), "a TLS 1.2 client got in");
    let log = rt.log.wait_for("the client offers only TLS 1.2");
    assert!(log.contains("set sslVersionMin = TLSv1.2 here"), "{log}");
    assert_eq!(redis_cli_tls(port, &ca.pem, &["ping"]), "PONG");
}

/// Capped at TLS 1.2 (`options = NO_TLSv1.3`, `sslVersionMax = TLSv1.2`), a client offering
/// only TLS 1.3 is refused with the fix on this side: allow TLS 1.3 here (the client is not
/// too old; "upgrade the client" would be the wrong way round).
#[test]
fn server_mode_capped_below_tls13_says_to_allow_it_for_a_tls13_only_client() {
    for cap in ["options = NO_TLSv1.3\n", "sslVersionMax = TLSv1.2\n"] {
        let sm = server_mode(cap);
        let (ca, port, rt) = (&sm.ca, sm.port, &sm.rt);
        assert!(!s_client_gets_in(port, ca, "-tls1_3"), "{cap}: a TLS 1.3 client got in");
        let log = rt.log.wait_for("the client offers only TLS 1.3");
        assert!(
            log.contains("allow TLS 1.3 here") && !log.contains("upgrade the client"),
            "{cap}: {log}"
        );
        assert!(s_client_gets_in(port, ca, "-tls1_2"), "{cap}: TLS 1.2 is still served");
    }
}

#[test]
fn tls_on_both_sides_with_connect_tls() {
    let up = TlsUpstream::start(&[]);
    let (ca, redis) = (&up.ca, &up.redis);
    let port = free_port();
    let extra = format!(
        "connectTLS = yes\nCAfile = {}\ncheckHost = localhost\n",
        ca.pem.display()
    );
    let rt = Retunnel::start(&server_section(port, redis.port, &up.leaf, &extra), 1);
    assert!(
        rt.log
            .text()
            .contains("clients: TLS; upstream: verify chain + host localhost"),
        "{}",
        rt.log.text()
    );
    assert_eq!(redis_cli_tls(port, &ca.pem, &["set", "both", "sides"]), "OK");
    assert_eq!(redis_cli_tls(port, &ca.pem, &["get", "both"]), "sides");
    assert_eq!(openssl_ping(port, ca), "+PONG\r\n+OK\r\n");
}

#[test]
fn server_mode_bounds_a_silent_client_handshake_without_stalling_others() {
    let sm = server_mode("TIMEOUTconnect = 3\n");
    let silent = TcpStream::connect(("127.0.0.1", sm.port)).unwrap();
    // The silent client's handshake runs in its own task: others are served meanwhile, long
    // before its timeout.
    assert_eq!(redis_cli_tls(sm.port, &sm.ca.pem, &["ping"]), "PONG");
    assert!(!sm.rt.log.text().contains("timed out"), "{}", sm.rt.log.text());
    sm.rt.log.wait_for("client TLS handshake timed out (TIMEOUTconnect)");
    drop(silent);
}

#[test]
fn ciphers_and_ciphersuites_restrict_what_is_offered() {
    let tls12 = TlsUpstream::start(&[
        "--tls-protocols",
        "TLSv1.2",
        "--tls-ciphers",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ]);
    let tls13 = TlsUpstream::start(&[
        "--tls-protocols",
        "TLSv1.3",
        "--tls-ciphersuites",
        "TLS_AES_128_GCM_SHA256",
    ]);
    let (ok12, bad12, ok13, bad13) = (free_port(), free_port(), free_port(), free_port());
    let conf = [
        tls12.section("ok12", ok12, "ciphers = ECDHE-ECDSA-AES128-GCM-SHA256\n"),
        tls12.section("bad12", bad12, "ciphers = ECDHE-ECDSA-AES256-GCM-SHA384\n"),
        tls13.section("ok13", ok13, "ciphersuites = TLS_AES_128_GCM_SHA256\n"),
        tls13.section("bad13", bad13, "ciphersuites = TLS_AES_256_GCM_SHA384\n"),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 4);
    assert_eq!(redis_cli(ok12, &["ping"]), "PONG");
    assert_eq!(redis_cli(ok13, &["ping"]), "PONG");
    assert_ne!(redis_cli(bad12, &["ping"]), "PONG");
    assert_ne!(redis_cli(bad13, &["ping"]), "PONG");
    let log = rt.log.wait_for_n("TLS handshake failed", 2);
    assert!(log.contains("share no cipher suite"), "{log}");
}
