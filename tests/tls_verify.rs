//! How the upstream's certificate is judged beyond chain and host name, against real TLS
//! redis-servers: revocation (`CRLfile`, `CRLpath`, a CRL made with `openssl ca`), pinning
//! (`verifyPeer = yes`, `verify = 3|4`) and `checkIP`.

mod support;
use support::*;

/// A section named `name` accepting on a port of the system's choosing, towards `redis`.
fn sect(name: &str, redis: &Redis, lines: &str) -> String {
    format!(
        "[{name}]\naccept = 127.0.0.1:0\nconnect = localhost:{}\n{lines}\n",
        redis.port
    )
}

/// Asserts section `name` answers PING.
fn passes(rt: &Retunnel, name: &str) {
    assert_eq!(
        redis_cli(rt.port(name), &["ping"]),
        "PONG",
        "[{name}]\n{}",
        rt.log.text()
    );
}

/// Asserts section `name` is refused, its handshake-failure line containing `why`.
fn refused(rt: &Retunnel, name: &str, why: &str) {
    assert_ne!(redis_cli(rt.port(name), &["ping"]), "PONG", "[{name}]");
    let parts = ["TLS handshake failed", &format!("service={name}")];
    let log = wait_until(&format!("[{name}] refused"), || {
        let text = rt.log.text();
        (!lines_with(&text, &parts).is_empty()).then_some(text)
    });
    let line = lines_with(&log, &parts)[0];
    assert!(line.contains(why), "[{name}] refused without saying {why:?}: {line}");
}

#[test]
fn a_revoked_server_certificate_is_refused_and_an_unrevoked_one_passes() {
    let pki = Pki::new();
    let ca = pki.ca("crl-ca");
    let revoked = pki.leaf(&ca, "revoked", &["localhost"], -1, 2);
    let good = pki.leaf(&ca, "good", &["localhost"], -1, 2);
    let crl = pki.crl(&ca, "crl", &[&revoked]);
    // CRLpath: the CRL under OpenSSL's hashed name, next to a note that is no CRL.
    let dir = pki.path("crls");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&crl, dir.join(format!("{}.r0", crl_hash(&crl)))).unwrap();
    std::fs::write(dir.join("README"), "CRLs of crl-ca\n").unwrap();
    let (bad_up, good_up) = (Redis::start_tls(&revoked, &ca, &[]), Redis::start_tls(&good, &ca, &[]));
    let ca_line = format!("CAfile = {}", ca.pem.display());
    let by_file = format!("{ca_line}\nCRLfile = {}", crl.display());
    let by_path = format!("{ca_line}\nCRLpath = {}", dir.display());
    let conf = [
        sect("revoked-file", &bad_up, &by_file),
        sect("revoked-path", &bad_up, &by_path),
        sect("good-file", &good_up, &by_file),
        sect("good-path", &good_up, &by_path),
        sect("no-crl", &bad_up, &ca_line),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 5);
    passes(&rt, "good-file");
    passes(&rt, "good-path");
    passes(&rt, "no-crl");
    refused(&rt, "revoked-file", "revoked");
    refused(&rt, "revoked-path", "revoked");
}

#[test]
fn a_crl_file_without_a_crl_is_refused_before_anything_listens() {
    let pki = Pki::new();
    let (ca, _) = pki.standard(&[]);
    let conf = format!(
        "[s]\naccept = 127.0.0.1:0\nconnect = localhost:1\nCAfile = {0}\nCRLfile = {0}\n",
        ca.pem.display()
    );
    let (code, log) = run_to_exit(&conf, &[]);
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("CRLfile") && log.contains("no PEM CRL"), "{log}");
    assert!(log.contains(&ca.pem.display().to_string()), "{log}");
}

#[test]
fn verify_peer_pins_the_certificates_in_cafile() {
    let pki = Pki::new();
    let ca = pki.ca("pin-ca");
    let pinned = pki.leaf(&ca, "pinned", &["localhost"], -1, 2);
    let other = pki.leaf(&ca, "other", &["localhost"], -1, 2);
    let (pinned_up, other_up) = (Redis::start_tls(&pinned, &ca, &[]), Redis::start_tls(&other, &ca, &[]));
    // CA and the pinned certificate: verify = 3 and verifyPeer check chain and pin.
    let both = pki.path("ca-and-pin.pem");
    let mut text = std::fs::read(&ca.pem).unwrap();
    text.extend(std::fs::read(&pinned.cert).unwrap());
    std::fs::write(&both, text).unwrap();
    let with_ca = format!("CAfile = {}", both.display());
    // The pinned certificate alone: verify = 4 ignores the chain; verify = 3 needs it.
    let alone = format!("CAfile = {}", pinned.cert.display());
    let conf = [
        sect("peer-pinned", &pinned_up, &format!("{with_ca}\nverifyPeer = yes")),
        sect("peer-other", &other_up, &format!("{with_ca}\nverifyPeer = yes")),
        sect("v3-pinned", &pinned_up, &format!("{with_ca}\nverify = 3")),
        sect("v3-other", &other_up, &format!("{with_ca}\nverify = 3")),
        sect("v3-no-ca", &pinned_up, &format!("{alone}\nverify = 3")),
        sect("v4-pinned", &pinned_up, &format!("{alone}\nverify = 4")),
        sect("v4-other", &other_up, &format!("{alone}\nverify = 4")),
        sect("unpinned", &other_up, &with_ca),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 8);
    for ok in ["peer-pinned", "v3-pinned", "v4-pinned", "unpinned"] {
        passes(&rt, ok);
    }
    for pin in ["peer-other", "v3-other", "v4-other"] {
        refused(&rt, pin, "not one of the certificates in CAfile/CApath");
    }
    refused(&rt, "v3-no-ca", "unknown issuer");
}

#[test]
fn check_ip_accepts_a_certificate_carrying_that_address() {
    let pki = Pki::new();
    let ca = pki.ca("ip-ca");
    // Carries 127.0.0.2 but not the `connect` host's name.
    let leaf = pki.leaf(&ca, "by-ip", &["db.internal", "127.0.0.2"], -1, 2);
    let up = Redis::start_tls(&leaf, &ca, &[]);
    let ca_line = format!("CAfile = {}", ca.pem.display());
    let conf = [
        sect(
            "ip",
            &up,
            &format!("{ca_line}\ncheckIP = 127.0.0.9\ncheckIP = 127.0.0.2"),
        ),
        sect("wrong-ip", &up, &format!("{ca_line}\ncheckIP = 127.0.0.3")),
        sect("host-only", &up, &ca_line),
    ]
    .concat();
    let rt = Retunnel::start(&conf, 3);
    passes(&rt, "ip");
    // The addresses checked are named, and the fix is checkIP's, not checkHost's.
    refused(
        &rt,
        "wrong-ip",
        "carries none of checkIP 127.0.0.3 (it is for db.internal, 127.0.0.2)",
    );
    refused(&rt, "wrong-ip", "set checkIP to an address the certificate carries");
    refused(&rt, "host-only", "mismatch");
}
