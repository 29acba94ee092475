//! `protocol = redis`: Redis Cluster through the tunnel. Replies that name cluster nodes
//! (`-MOVED`/`-ASK` redirects and the `CLUSTER SLOTS|SHARDS|NODES|REPLICAS` replies) are rewritten
//! to point at local listeners, one per node, opened on demand; everything else passes
//! byte for byte. Plain sections never come here.
//!
//! - [`resp`]: the streaming RESP scanner (frame bounds and command words, bounded memory).
//! - [`rewrite`]: swapping node addresses inside whole replies.
//! - [`nodes`]: the per-section registry of node listeners.
//! - [`relay`]: pairing replies with commands and rewriting on the way.

pub mod nodes;
pub mod relay;
pub mod resp;
pub mod rewrite;

pub use nodes::Cluster;

use tokio::io::AsyncWriteExt;

/// Tells a Redis client why its tunnel failed, as a Redis error it prints
/// (`(error) ERR retunnel: …`) instead of a bare disconnect.
pub async fn send_error(client: &mut tokio::net::TcpStream, why: &str) {
    let line: String = why
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let _ = client.write_all(format!("-ERR retunnel: {line}\r\n").as_bytes()).await;
    let _ = client.shutdown().await;
}
