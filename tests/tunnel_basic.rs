//! End to end through the retunnel binary: a real TLS redis-server, real redis-cli.

mod support;
use support::*;

#[test]
fn set_get_through_tunnel() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let conf = format!(
        "[redis]\nclient = yes\naccept = 127.0.0.1:{port}\nconnect = localhost:{}\nCAfile = {}\n",
        redis.port,
        ca.pem.display()
    );
    let _rt = Retunnel::start(&conf, 1);
    assert_eq!(redis_cli(port, &["set", "foo", "bar"]), "OK");
    assert_eq!(redis_cli(port, &["get", "foo"]), "bar");
}
