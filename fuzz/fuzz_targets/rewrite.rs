//! The reply rewriter, fed as the relay feeds it: the scanner cuts the server's bytes into
//! frames, and each frame goes to `redirect`, `topology` (every kind) and `exec`.
//! - When no node has a local listener, every frame passes byte for byte.
//! - When every node has one, whatever comes out is exactly one well-formed frame of the
//!   same type (an element per queued command for `EXEC`).
//!
//! Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retunnel::redis::resp::{Scanner, Side};
use retunnel::redis::rewrite::{self, Addresses, Seen, Topo};

const TOPOS: [Option<Topo>; 5] = [
    None,
    Some(Topo::Slots),
    Some(Topo::Shards),
    Some(Topo::Nodes),
    Some(Topo::Replicas),
];

fn no_node(_: &str, _: u16, _: Seen) -> Option<u16> {
    None
}

fn every_node(host: &str, port: u16, _: Seen) -> Option<u16> {
    // Any answer will do; vary it so that ports of every width get written.
    Some(port.wrapping_add(host.len() as u16).max(1))
}

/// The complete frames `data` starts with, as the relay's scanner finds them.
fn frames(data: &[u8]) -> Vec<&[u8]> {
    let mut s = Scanner::new(Side::Server);
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < data.len() {
        let Ok((used, done)) = s.feed(&data[i..]) else { break };
        i += used;
        if done {
            out.push(&data[start..i]);
            start = i;
        }
    }
    out
}

/// Exactly one well-formed frame.
fn one_frame(bytes: &[u8]) -> bool {
    matches!(Scanner::new(Side::Server).feed(bytes), Ok((n, true)) if n == bytes.len())
}

/// The queued commands of an `EXEC` whose reply is `frame`: as many as its header says (so
/// that the elements get looked at), their kinds drawn from `seed`.
fn queued(frame: &[u8], seed: u32) -> Vec<Option<Topo>> {
    let header = frame.split(|&b| b == b'\r').next().unwrap_or_default();
    let n = std::str::from_utf8(header.get(1..).unwrap_or_default())
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(256);
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            TOPOS[(x >> 16) as usize % TOPOS.len()]
        })
        .collect()
}

fn check(frame: &[u8], seed: u32, a: &Addresses, passes: bool) {
    let q = queued(frame, seed);
    let outs = [
        rewrite::redirect(frame, a),
        rewrite::exec(frame, &q, a),
        rewrite::topology(frame, Topo::Slots, a),
        rewrite::topology(frame, Topo::Shards, a),
        rewrite::topology(frame, Topo::Nodes, a),
        rewrite::topology(frame, Topo::Replicas, a),
    ];
    for (which, out) in outs.into_iter().enumerate() {
        let Some(out) = out else { continue };
        if passes {
            assert_eq!(out, frame, "rewrite #{which} changed a frame that names no known node");
        } else {
            assert!(
                one_frame(&out),
                "rewrite #{which} made no single frame of {frame:?}: {out:?}"
            );
            assert_eq!(out[0], frame[0], "rewrite #{which} changed the frame's type");
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((seed, data)) = input.split_first_chunk::<4>() else {
        return;
    };
    let seed = u32::from_le_bytes(*seed);
    let none = Addresses {
        local_ip: "127.0.0.1".into(),
        base_host: "base.example",
        map: &no_node,
    };
    let every = Addresses {
        local_ip: "127.0.0.1".into(),
        base_host: "base.example",
        map: &every_node,
    };
    for frame in frames(data) {
        check(frame, seed, &none, true);
        check(frame, seed, &every, false);
    }
});
