//! Parsing of the connection and TLS-role options: failover, socket, maxConnections,
//! cert/key, client = no, connectTLS.

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("t.conf"))
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

/// Two files standing in for a certificate and a key (only a certificate's PEM header is
/// checked here; the contents are checked when TLS is set up).
fn files() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(&key, "").unwrap();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    (dir, c, k)
}

const BASE: &str = "[s]\naccept = 127.0.0.1:7000\nconnect = a.example:6379\n";

#[test]
fn connection_options_become_typed_values() {
    let c = parse(&format!(
        "{BASE}connect = b.example:6379\nfailover = rr\nsocket = l:TCP_NODELAY=1\nsocket = r:SO_KEEPALIVE=yes\nmaxConnections = 2\n"
    ))
    .unwrap();
    let s = &c.services[0];
    assert_eq!(s.failover, Failover::RoundRobin);
    assert_eq!(s.socket_options.len(), 2);
    assert_eq!(s.max_connections, Some(2));
    assert!(s.connect_tls && s.accept_tls.is_none());
    let d = &parse(BASE).unwrap().services[0];
    assert_eq!((d.failover, d.max_connections), (Failover::Prio, None));
}

#[test]
fn bad_connection_options_are_named() {
    let e = parse(&format!("{BASE}failover = random\n")).unwrap_err();
    assert!(e.contains("t.conf:4: [s] failover: `random` is not `prio`"), "{e}");
    let e = parse(&format!("{BASE}socket = l:TCP_NODELY=1\n")).unwrap_err();
    assert!(
        e.contains("socket: unknown socket option `TCP_NODELY`; did you mean `TCP_NODELAY`?"),
        "{e}"
    );
    let e = parse(&format!("{BASE}maxConnections = 0\n")).unwrap_err();
    assert!(
        e.contains("maxConnections: `0` is not a whole number of at least 1"),
        "{e}"
    );
}

#[test]
fn client_certificate_in_client_mode() {
    let (_d, cert, key) = files();
    let c = parse(&format!("{BASE}cert = {cert}\nkey = {key}\n")).unwrap();
    let id = c.services[0].tls.identity.clone().unwrap();
    assert_eq!(id.cert, PathBuf::from(&cert));
    assert_eq!(id.key, Some(PathBuf::from(&key)));
    let c = parse(&format!("{BASE}cert = {cert}\n")).unwrap();
    assert_eq!(c.services[0].tls.identity.clone().unwrap().key, None);
    let e = parse(&format!("{BASE}key = {key}\n")).unwrap_err();
    assert!(e.contains("`key` without `cert`"), "{e}");
    let e = parse(&format!("{BASE}cert = /nonexistent/c.pem\n")).unwrap_err();
    assert!(e.contains("cert: cannot read /nonexistent/c.pem"), "{e}");
}

#[test]
fn server_mode_needs_a_certificate_and_connects_plain_by_default() {
    let (_d, cert, key) = files();
    let e = parse(&format!("{BASE}client = no\n")).unwrap_err();
    assert!(e.contains("server mode (`client = no`) needs `cert`"), "{e}");
    let c = parse(&format!("{BASE}client = no\ncert = {cert}\nkey = {key}\n")).unwrap();
    let s = &c.services[0];
    assert!(s.accept_tls.is_some() && s.tls.identity.is_none() && !s.connect_tls);
    let c = parse(&format!(
        "{BASE}client = no\ncert = {cert}\nkey = {key}\nconnectTLS = yes\n"
    ))
    .unwrap();
    assert!(c.services[0].connect_tls);
}

#[test]
fn server_mode_verification_lines_ask_clients_for_certificates() {
    use crate::config::ClientAuth::{Optional, Required};
    let (_d, cert, key) = files();
    let server = format!("{BASE}client = no\ncert = {cert}\nkey = {key}\n");
    let auth = |extra: &str| {
        parse(&format!("{server}CAfile = {cert}\n{extra}")).unwrap().services[0]
            .tls
            .client_auth
    };
    assert_eq!(auth(""), None);
    assert_eq!(auth("verify = 2\n"), Some(Required));
    assert_eq!(auth("verifyChain = yes\n"), Some(Required));
    assert_eq!(auth("verify = 1\n"), Some(Optional));
    assert_eq!(auth("verify = 2\nrequireCert = no\n"), Some(Optional));
    assert_eq!(auth("requireCert = no\nverifyPeer = yes\n"), Some(Required));
    // Clients are judged against CAfile/CApath only: without them there is nothing to trust.
    let e = parse(&format!("{server}verify = 2\n")).unwrap_err();
    assert!(
        e.contains("against CAfile/CApath only") && e.contains("add `CAfile`"),
        "{e}"
    );
    let e = parse(&format!("{server}CAfile = {cert}\nrequireCert = yes\n")).unwrap_err();
    assert!(
        e.contains("`requireCert = yes` alone") && e.contains("verifyChain = yes"),
        "{e}"
    );
    // With connectTLS = yes the lines are about the upstream, as before.
    let c = parse(&format!("{server}verify = 2\nconnectTLS = yes\n")).unwrap();
    assert_eq!(c.services[0].tls.client_auth, None);
    let e = parse(&format!("{BASE}connectTLS = no\n")).unwrap_err();
    assert!(e.contains("`connectTLS = no` with `client = yes`"), "{e}");
}

#[test]
fn prewarm_defaults_to_none_and_takes_zero_to_the_cap() {
    assert_eq!(parse(BASE).unwrap().services[0].prewarm, 0);
    assert_eq!(parse(&format!("{BASE}prewarm = 8\n")).unwrap().services[0].prewarm, 8);
    assert_eq!(parse(&format!("{BASE}prewarm = 0\n")).unwrap().services[0].prewarm, 0);
    let e = parse(&format!("{BASE}prewarm = many\n")).unwrap_err();
    assert!(e.contains("[s] prewarm: `many` is not a whole number; write 0"), "{e}");
    let e = parse(&format!("{BASE}prewarm = 5000\n")).unwrap_err();
    assert!(e.contains("prewarm: `5000` is more than 1024"), "{e}");
}

/// The warnings of a valid file, as text.
fn warnings(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("t.conf")) {
        Ok((_, w)) => w.into_iter().map(|w| w.0).collect(),
        Err(e) => panic!("refused: {e}"),
    }
}

/// Tester finding 15: lines that are valid but change nothing are warned about, naming the
/// line or the section and the fix; lines that do something are not.
#[test]
fn lines_without_effect_are_warned_about() {
    let w = warnings(&format!("{BASE}TIMEOUTidle = 10\nTIMEOUTidle = 20\n"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "t.conf:5: [s] TIMEOUTidle: is written again (first at t.conf:4); only the last `TIMEOUTidle` line counts"
        ),
        "{w:?}"
    );
    let repeatable = "connect = b.example:6379\ncheckIP = 127.0.0.1\ncheckIP = 127.0.0.2\noptions = NO_TLSv1.2\noptions = NO_TLSv1.2\n";
    let w = warnings(&format!("{BASE}{repeatable}"));
    assert!(!w.iter().any(|w| w.contains("written again")), "{w:?}");

    let (_d, cert, key) = files();
    let server = format!("{BASE}client = no\ncert = {cert}\nkey = {key}\n");
    let w = warnings(&format!("{server}checkHost = db.example\nCAfile = {cert}\n"));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("t.conf:1: [s]: `checkHost` has no effect"), "{w:?}");
    assert!(
        w[1].contains("`CAfile` has no effect") && w[1].contains("verifyChain = yes"),
        "{w:?}"
    );
    // Asking clients for certificates, or TLS to the upstream, gives them their effect.
    assert!(warnings(&format!("{server}CAfile = {cert}\nverifyChain = yes\n")).is_empty());
    assert!(
        warnings(&format!(
            "{server}connectTLS = yes\ncheckHost = a.example\nCAfile = {cert}\n"
        ))
        .is_empty()
    );

    let w = warnings(&format!("{BASE}ciphers = DEFAULT:@SECLEVEL=1\n"));
    assert!(
        w.len() == 1 && w[0].contains("ciphers: `@SECLEVEL` has no effect"),
        "{w:?}"
    );

    let cluster =
        "[c]\naccept = 127.0.0.1:7100\nconnect = a.example:6379\nprotocol = redis\nclusterPorts = 7100-7110\n";
    let w = warnings(&format!("metrics = 7105\n{BASE}{cluster}"));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .all(|w| w.starts_with("t.conf:5: [c]: clusterPorts = 7100-7110 includes")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.contains("includes 7100, where [c] accepts clients")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("includes 7105, where the metrics endpoint listens")),
        "{w:?}"
    );
}
