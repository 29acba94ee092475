//! `protocol = redis`: Redis Cluster through the tunnel. Replies that name cluster nodes
//! (`-MOVED`/`-ASK` redirects and the `CLUSTER SLOTS|SHARDS|NODES|REPLICAS` replies) are rewritten
//! to point at local listeners, one per node, opened on demand; everything else passes
//! byte for byte. Plain sections never come here.
//!
//! - [`resp`]: the streaming RESP scanner (frame bounds and command words, bounded memory).
//! - [`rewrite`]: swapping node addresses inside whole replies.
//! - [`nodes`]: the per-section registry of node listeners.
//! - [`relay`]: pairing replies with commands and rewriting on the way.
//! - [`failover`]: moving a connection to a new primary after `-READONLY` (`onReadonly`).
//! - [`reuse`]: which commands bar reusing an upstream connection, and the `RESET` exchange.
//! - [`names`]: the command names those look at; every other command takes a short path.

pub mod failover;
pub mod names;
pub mod nodes;
pub mod relay;
pub mod resp;
pub mod reuse;
pub mod rewrite;

pub use nodes::Cluster;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Tells a Redis client why its tunnel failed, as a Redis error it prints
/// (`(error) ERR retunnel: …`) instead of a bare disconnect.
pub async fn send_error<C: AsyncRead + AsyncWrite + Unpin>(client: &mut C, why: &str) {
    let line: String = why
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let _ = client.write_all(format!("-ERR retunnel: {line}\r\n").as_bytes()).await;
    let _ = client.shutdown().await;
    // Closing with the client's command still unread would send a reset, which can destroy
    // the error before the client reads it: read what it sends until it closes (bounded).
    failover::drain(client).await;
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, OnReadonly, RedisSettings};
    use std::path::Path;

    fn parse(extra: &str) -> Result<Config, String> {
        let text = format!("[c]\naccept = 127.0.0.1:7000\nconnect = db.example.com:6379\n{extra}");
        Config::parse(&text, Path::new("t.conf"))
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn protocol_redis_and_cluster_ports_are_parsed_and_checked() {
        assert_eq!(parse("").unwrap().services[0].redis, None);
        let c = parse("protocol = Redis\nclusterPorts = 17000-17099\n").unwrap();
        let want = RedisSettings {
            cluster_ports: Some((17000, 17099)),
            ..Default::default()
        };
        assert_eq!(c.services[0].redis, Some(want));
        let c = parse("protocol = redis\nonReadonly = Close\n").unwrap();
        assert_eq!(c.services[0].redis.as_ref().unwrap().on_readonly, OnReadonly::Close);
        let e = parse("onReadonly = close\n").unwrap_err();
        assert!(e.contains("`onReadonly` only applies to Redis tunnels"), "{e}");
        let e = parse("protocol = redis\nonReadonly = reconnect\n").unwrap_err();
        assert!(e.contains("`reconnect` is not replay, close or pass"), "{e}");
        let e = parse("protocol = smtp\n").unwrap_err();
        assert!(
            e.contains("t.conf:4: [c] protocol: `smtp`: stunnel's STARTTLS protocols are not supported"),
            "{e}"
        );
        let e = parse("clusterPorts = 17000-17099\n").unwrap_err();
        assert!(e.contains("add `protocol = redis`"), "{e}");
        for bad in ["17099-17000", "0-5", "17000", "a-b"] {
            let e = parse(&format!("protocol = redis\nclusterPorts = {bad}\n")).unwrap_err();
            assert!(e.contains("is not a port range like 17000-17099"), "{bad}: {e}");
        }
    }
}
