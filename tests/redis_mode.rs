//! `protocol = redis` without a cluster: a plain TLS redis-server still works, upstream
//! failures reach redis-cli as `ERR retunnel: …`, and a server that sends garbage gets its
//! connection closed with a log line while the tunnel keeps serving.

mod support;
use support::*;

fn redis_section(accept: u16, connect: &str, ca: &Ca) -> String {
    format!(
        "[redis]\nclient = yes\nprotocol = redis\naccept = 127.0.0.1:{accept}\nconnect = {connect}\nCAfile = {}\n",
        ca.pem.display()
    )
}

#[test]
fn standalone_redis_and_failures_as_redis_errors() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let dead = free_port();
    let (ok, down, wrong_name) = (free_port(), free_port(), free_port());
    let conf = redis_section(ok, &format!("localhost:{}", redis.port), &ca)
        + &redis_section(down, &format!("127.0.0.1:{dead}"), &ca).replace("[redis]", "[down]")
        + &redis_section(wrong_name, &format!("127.0.0.1:{}", redis.port), &ca).replace("[redis]", "[wrong]")
        + "checkHost = db.example.com\n";
    let _rt = Retunnel::start(&conf, 3);
    assert_eq!(redis_cli(ok, &["set", "foo", "bar"]), "OK");
    assert_eq!(redis_cli(ok, &["get", "foo"]), "bar");
    let out = redis_cli(down, &["ping"]);
    assert!(
        out.starts_with("ERR retunnel: cannot reach upstream: 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("refused"), "{out}");
    let out = redis_cli(wrong_name, &["ping"]);
    assert!(
        out.starts_with("ERR retunnel: certificate of db.example.com rejected"),
        "{out}"
    );
}

#[test]
fn garbage_from_the_server_closes_that_connection_only() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let rt = Retunnel::start(&redis_section(port, &format!("localhost:{}", echo.addr.port()), &ca), 1);
    // The echo server "replies" with what it got: an inline command is no RESP reply.
    let got = raw_exchange(port, b"?garbage\r\n");
    assert_eq!(got, b"", "nothing of a non-RESP reply reaches the client");
    rt.log.wait_for("not RESP");
    // A reply that is RESP passes byte for byte, on a new connection to the same tunnel.
    assert_eq!(
        raw_exchange(port, b"+OK\r\n*1\r\n$4\r\nPING\r\n"),
        b"+OK\r\n*1\r\n$4\r\nPING\r\n"
    );
}
