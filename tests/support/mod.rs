//! Shared test support: a private PKI, TLS redis-servers, a TLS echo server, and the retunnel
//! binary run as a user runs it, one file per concern (`ports`, `pki`, `servers`, `clients`,
//! `retunnel`, `cluster`), all re-exported here for `use support::*`. Everything listens on
//! 127.0.0.1, and every process started here is killed when its handle drops. Waiting is
//! always for an event (a port accepting, a log line), never a fixed sleep.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod cluster;
// Every test crate uses a different subset of these.
mod ports;
#[allow(unused_imports)]
pub use ports::*;
mod pki;
#[allow(unused_imports)]
pub use pki::*;
mod servers;
#[allow(unused_imports)]
pub use servers::*;
mod clients;
#[allow(unused_imports)]
pub use clients::*;
mod retunnel;
#[allow(unused_imports)]
pub use retunnel::*;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

/// How long any wait in a test may take before the test fails with a message.
pub const WAIT: Duration = Duration::from_secs(20);

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

/// Polls `f` until it returns `Some`, for state that another process reaches in its own time
/// (replication, a file appearing); fails the test with `what` after [`WAIT`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {WAIT:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log lines that contain every one of `parts`.
pub fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).collect()
}
