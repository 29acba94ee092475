//! Ports for the programs that need a number up front (below the ephemeral range), and waiting for one to accept.
#![allow(dead_code)]

use super::*;

/// A port that was free a moment ago on 127.0.0.1 (for programs that need a number up front).
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux), taken in turn
/// from a per-process start, each checked free by binding it. A port the kernel handed out
/// by `bind(:0)` could be handed out again — to another test's socket or to an outgoing
/// connection's local end — in the moment before the program it was meant for binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports, free a moment ago and taken out of [`free_port`]'s
/// turn, so that no other test of this process is handed one of them (for `clusterPorts`).
pub fn free_ports(n: u32) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // 10000..32000, below the kernel's ephemeral range
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 997) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let first = NEXT.fetch_add(n, Ordering::Relaxed) % SPAN;
        if first + n > SPAN {
            continue; // a block never wraps around the end of the range
        }
        let all_free = (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", (LOW + p) as u16)).is_ok());
        if all_free {
            return (LOW + first) as u16;
        }
    }
    panic!("no {n} free ports in 127.0.0.1:{LOW}-{}", LOW + SPAN);
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
