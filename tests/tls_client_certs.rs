//! Server mode (`client = no`) asking clients for certificates (`verifyChain`, `verify`,
//! `requireCert`, `CRLfile`), with the real `redis-cli --tls --cert --key` in front of a plain
//! redis-server: a trusted certificate gets in; none, one from another CA, an expired or a
//! revoked one is refused with a log line that says which.

mod support;
use std::process::Command;

use support::*;

/// A server-mode section named `name` in front of plain redis on `redis_port`, serving
/// `leaf`, trusting client certificates from `ca`, plus `extra` lines.
fn server_section(name: &str, redis_port: u16, leaf: &Leaf, ca: &Ca, extra: &str) -> String {
    format!(
        "[{name}]\nclient = no\naccept = 127.0.0.1:0\nconnect = 127.0.0.1:{redis_port}\ncert = {}\nkey = {}\nCAfile = {}\n{extra}\n",
        leaf.cert.display(),
        leaf.key.display(),
        ca.pem.display()
    )
}

/// `redis-cli --tls PING` against `port`, trusting `ca`, showing `client` if given.
fn ping_as(port: u16, ca: &Ca, client: Option<&Leaf>) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert"])
        .arg(&ca.pem);
    if let Some(c) = client {
        cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
    }
    cmd.arg("ping");
    run_cli(cmd)
}

/// Asserts that `client` is refused by section `name` and that the log says `why` on the
/// section's handshake-failure line.
fn refused(rt: &Retunnel, ca: &Ca, name: &str, client: Option<&Leaf>, why: &str) {
    assert_ne!(ping_as(rt.port(name), ca, client), "PONG", "[{name}] let it in");
    let parts = ["TLS handshake with the client failed", &format!("service={name}"), why];
    wait_until(&format!("[{name}] saying {why:?}"), || {
        (!lines_with(&rt.log.text(), &parts).is_empty()).then_some(())
    });
}

#[test]
fn server_mode_verifies_client_certificates_and_says_why_it_refuses_one() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let trusted = pki.leaf(&ca, "client", &["client"], -1, 2);
    let expired = pki.leaf(&ca, "client-expired", &["client"], -30, -2);
    let revoked = pki.leaf(&ca, "client-revoked", &["client"], -1, 2);
    let stranger_ca = pki.ca("stranger-ca");
    let stranger = pki.leaf(&stranger_ca, "stranger", &["client"], -1, 2);
    let crl = pki.crl(&ca, "clients", &[&revoked]);
    let redis = Redis::start_plain(&[]);
    let conf = [
        server_section("required", redis.port, &leaf, &ca, "verifyChain = yes"),
        server_section("optional", redis.port, &leaf, &ca, "verify = 1"),
        server_section("by-level", redis.port, &leaf, &ca, "verify = 2\nrequireCert = no"),
        server_section(
            "crl",
            redis.port,
            &leaf,
            &ca,
            &format!("verifyChain = yes\nCRLfile = {}", crl.display()),
        ),
        server_section("open", redis.port, &leaf, &ca, ""),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 5);

    assert_eq!(ping_as(rt.port("required"), &ca, Some(&trusted)), "PONG");
    refused(&rt, &ca, "required", None, "sent no certificate");
    refused(&rt, &ca, "required", Some(&stranger), "unknown CA");
    refused(&rt, &ca, "required", Some(&expired), "expired");
    // Revocation counts only where a CRL is given.
    assert_eq!(ping_as(rt.port("required"), &ca, Some(&revoked)), "PONG");
    assert_eq!(ping_as(rt.port("crl"), &ca, Some(&trusted)), "PONG");
    refused(&rt, &ca, "crl", Some(&revoked), "revoked");

    // verify = 1, and requireCert = no after verify = 2: a client without one gets in, a
    // certificate shown is still verified.
    for optional in ["optional", "by-level"] {
        assert_eq!(ping_as(rt.port(optional), &ca, None), "PONG");
        assert_eq!(ping_as(rt.port(optional), &ca, Some(&trusted)), "PONG");
        refused(&rt, &ca, optional, Some(&stranger), "unknown CA");
    }
    // Without verification lines nobody is asked.
    assert_eq!(ping_as(rt.port("open"), &ca, None), "PONG");
}
