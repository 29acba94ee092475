//! Session resumption on both sides, counted by the other end: an OpenSSL server that counts
//! the handshakes that resumed (client mode), and an OpenSSL client that offers the session
//! it was given last (server mode).

mod support;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use openssl::ssl::{SslAcceptor, SslConnector, SslFiletype, SslMethod, SslVersion};
use support::*;

/// Sequential connections per test; at least 90% of them after the first must resume.
const CONNECTIONS: usize = 20;

/// A TLS server that answers each line with `+PONG` and counts handshakes that resumed.
struct CountingServer {
    port: u16,
    full: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
}

impl CountingServer {
    fn start(leaf: &Leaf, max: SslVersion) -> CountingServer {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_private_key_file(&leaf.key, SslFiletype::PEM).unwrap();
        b.set_certificate_chain_file(&leaf.cert).unwrap();
        b.set_max_proto_version(Some(max)).unwrap();
        let acceptor = b.build();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (full, resumed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (f, r) = (full.clone(), resumed.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let Ok(mut tls) = acceptor.accept(tcp) else { continue };
                let counter = if tls.ssl().session_reused() { &r } else { &f };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut line = [0u8; 64];
                while let Ok(n) = tls.read(&mut line) {
                    if n == 0 || tls.write_all(b"+PONG\r\n").is_err() {
                        break;
                    }
                }
                let _ = tls.shutdown();
            }
        });
        CountingServer { port, full, resumed }
    }
}

/// One request through the tunnel on a new connection.
fn ping_once(port: u16) {
    let mut s = connect(port);
    exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
}

fn client_side_resumes(max: SslVersion) {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let server = CountingServer::start(&leaf, max);
    let port = free_port();
    let conf = format!("debug = 7\n{}", section("cache", port, server.port, &ca));
    let rt = Retunnel::start(&conf, 1);
    for _ in 0..CONNECTIONS {
        ping_once(port);
    }
    rt.log.wait_for_n("connection closed", CONNECTIONS);
    let resumed = server.resumed.load(Ordering::SeqCst);
    let full = server.full.load(Ordering::SeqCst);
    assert_eq!(resumed + full, CONNECTIONS);
    assert!(
        resumed * 10 >= (CONNECTIONS - 1) * 9,
        "{resumed} of {CONNECTIONS} resumed ({max:?})"
    );
    let log = rt.log.text();
    assert!(log.contains("resumed=true") && log.contains("resumed=false"), "{log}");
}

#[test]
fn client_mode_resumes_tls13_sessions() {
    client_side_resumes(SslVersion::TLS1_3);
}

#[test]
fn client_mode_resumes_tls12_sessions() {
    client_side_resumes(SslVersion::TLS1_2);
}

#[test]
fn session_resume_no_turns_resumption_off() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let server = CountingServer::start(&leaf, SslVersion::TLS1_3);
    let port = free_port();
    let conf = format!("{}sessionResume = no\n", section("cache", port, server.port, &ca));
    let rt = Retunnel::start(&conf, 1);
    for _ in 0..5 {
        ping_once(port);
    }
    rt.log.wait_for_n("connection closed", 5);
    assert_eq!(server.resumed.load(Ordering::SeqCst), 0);
    assert_eq!(server.full.load(Ordering::SeqCst), 5);
}

#[test]
fn server_mode_issues_tickets_its_clients_resume_with() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_plain(&[]);
    let port = free_port();
    let conf = format!(
        "[front]\nclient = no\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{}\ncert = {}\nkey = {}\n",
        redis.port,
        leaf.cert.display(),
        leaf.key.display()
    );
    let _rt = Retunnel::start(&conf, 1);
    for max in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_ca_file(&ca.pem).unwrap();
        b.set_max_proto_version(Some(max)).unwrap();
        let connector = b.build();
        let mut session: Option<openssl::ssl::SslSession> = None;
        let mut resumed = 0;
        for _ in 0..CONNECTIONS {
            let mut ssl = connector.configure().unwrap().into_ssl("localhost").unwrap();
            if let Some(s) = &session {
                unsafe { ssl.set_session(s).unwrap() };
            }
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut tls = ssl.connect(tcp).unwrap();
            tls.write_all(b"PING\r\n").unwrap();
            let mut reply = [0u8; 7];
            tls.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"+PONG\r\n");
            resumed += usize::from(tls.ssl().session_reused());
            // TLS 1.3 tickets arrive after the handshake; the reply has been read, so they are in.
            session = tls.ssl().session().map(openssl::ssl::SslSessionRef::to_owned);
            let _ = tls.shutdown();
        }
        assert!(
            resumed * 10 >= (CONNECTIONS - 1) * 9,
            "{resumed} of {CONNECTIONS} resumed ({max:?})"
        );
    }
}

/// A burst of new clients after a first one (a reconnect storm, a pool filling at once): the
/// store holds the first connection's two tickets, and each further handshake waits briefly
/// for a ticket from the handshakes under way instead of going full, so the burst resumes in
/// doubling generations. Counted by retunnel's metrics against a real TLS redis-server.
#[test]
fn a_burst_of_new_clients_resumes_instead_of_full_handshakes() {
    const BURST: usize = 24;
    let up = TlsUpstream::start(&[]);
    let (port, metrics) = (free_port(), free_port());
    let conf = format!("metrics = 127.0.0.1:{metrics}\n{}", up.section("burst", port, ""));
    let rt = Retunnel::start(&conf, 1);
    rt.log.wait_for("metrics listening");
    ping_once(port); // the server issues tickets, and retunnel knows it does
    let start = Arc::new(std::sync::Barrier::new(BURST));
    let clients: Vec<_> = (0..BURST)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut s = connect(port);
                exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
                s // held open until every client was answered
            })
        })
        .collect();
    let held: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let text = scrape(metrics);
    let count = |kind: &str| handshakes(&text, "burst", kind).unwrap_or(0.0);
    let (full, resumed) = (count("full"), count("resumed"));
    assert_eq!(full + resumed, (BURST + 1) as f64, "{text}");
    // Without the wait, all but the two the first connection's tickets cover are full.
    assert!(
        full <= 6.0,
        "{full} full handshakes, {resumed} resumed, of {} connections",
        BURST + 1
    );
    drop((held, rt));
}
