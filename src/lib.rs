//! retunnel: plain TCP in, verified TLS out, for reaching TLS-only Redis (ElastiCache,
//! MemoryDB, any TLS Redis) from tools that speak plain TCP. Runs stunnel's client
//! configuration files unchanged.
//!
//! The modules, from the file to the bytes:
//! - [`config`]: the INI file → typed, validated [`config::Config`]; the option table.
//! - [`tls`]: all TLS setup and handshakes, both sides (native-tls, the system's OpenSSL).
//! - [`tunnel`]: binds every service (all or nothing), serves, drains on shutdown.
//! - [`service`]: one service's accept loop; it only accepts.
//! - [`connection`]: one client: resolve, connect, handshake, relay, log.
//! - [`upstream`]: DNS at connect time, failover order and TCP connect with a deadline.
//! - [`sockopt`]: `socket = a|l|r:OPTION=VALUE`, parsed and set on the sockets.
//! - [`relay`]: bytes both ways with half-close, counters and the idle timeout.
//! - [`process`]: pid file and signals; [`logging`]: tracing set-up.
//! - [`run`]: the daemon's life, from a validated config to exit.

pub mod config;
pub mod connection;
pub mod logging;
pub mod process;
pub mod relay;
pub mod run;
pub mod service;
pub mod sockopt;
pub mod tls;
pub mod tunnel;
pub mod upstream;
