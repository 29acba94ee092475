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
