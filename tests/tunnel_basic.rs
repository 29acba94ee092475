//! End to end through the retunnel binary: a real TLS redis-server, real redis-cli.

mod support;
use support::*;

#[test]
fn set_get_through_tunnel() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    // retunnel binds a port the system picks and names it in its "listening" line.
    let conf = format!(
        "[redis]\nclient = yes\naccept = 127.0.0.1:0\nconnect = localhost:{}\nCAfile = {}\n",
        redis.port,
        ca.pem.display()
    );
    let rt = Retunnel::start(&conf, 1);
    let port = rt.port("redis");
    assert_eq!(redis_cli(port, &["set", "foo", "bar"]), "OK");
    assert_eq!(redis_cli(port, &["get", "foo"]), "bar");
}

/// A client that resets its connection before any reply is logged as the client's doing, in
/// plain and Redis mode: not as the server closing before answering, with a client
/// certificate hint that would send the operator after a problem that is not there.
#[test]
fn a_client_reset_is_not_blamed_on_the_server() {
    let up = TlsUpstream::start(&[]);
    let (plain, redis) = (free_port(), free_port());
    let conf = format!(
        "{}{}",
        up.section("plain", plain, ""),
        up.section("redis", redis, "protocol = redis\n")
    );
    let rt = Retunnel::start(&conf, 2);
    for port in [plain, redis] {
        let mut s = connect(port);
        // A command without its end: no reply comes before the reset.
        std::io::Write::write_all(&mut s, b"*2\r\n$3\r\nGET\r\n").unwrap();
        let sock = socket2::SockRef::from(&s);
        sock.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(s);
    }
    let log = rt.log.wait_for_n("connection closed", 2);
    let closed = lines_with(&log, &["connection closed"]);
    for line in &closed {
        assert!(line.contains("the client's side"), "{line}");
        assert!(!line.contains("set `cert` and `key`"), "{line}");
    }
}
