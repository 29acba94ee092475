//! retunnel: plain TCP in, verified TLS out, for reaching TLS-only Redis (ElastiCache,
//! MemoryDB, any TLS Redis) from tools that speak plain TCP. Runs stunnel's client
//! configuration files unchanged.
//!
//! The modules, from the file to the bytes:
//! - [`config`]: the INI file → typed, validated [`config::Config`]; the option table.
//! - [`tls`]: all TLS setup and handshakes, both sides (rustls with the aws-lc-rs provider).
//! - [`tunnel`]: binds every service (all or nothing), serves, drains on shutdown.
//! - [`listener`]: one `accept` address bound: TCP (port 0 too) or a Unix socket.
//! - [`service`]: one service's accept loop; it only accepts.
//! - [`workers`]: the threads connections run on, one event loop each.
//! - [`connection`]: the relay core, a leaf: one client from open to log line, given its two
//!   ends and its protocol from outside ([`connection::Section`]).
//! - [`section`]: what a section gives the core: its ends and the plain or Redis relay.
//! - [`open`]: opening a client side and an upstream (warm, or resolve + connect + handshake).
//! - [`prewarm`]: `prewarm = N`: upstream connections kept ready, refilled in the background.
//! - [`upstream`]: DNS at connect time, failover order and TCP connect with a deadline.
//! - [`own`]: the addresses retunnel listens on, so that nothing tunnels back into it.
//! - [`sockopt`]: `socket = a|l|r:OPTION=VALUE`, parsed and set on the sockets.
//! - [`relay`]: bytes both ways with half-close, counters and the idle timeout.
//! - [`memory`]: what closed connections freed, given back to the system.
//! - [`redis`]: `protocol = redis`: cluster redirects and topology rewritten to node listeners.
//! - [`process`]: pid file and signals; [`privileges`]: `setuid`/`setgid`;
//!   [`daemon`]: detaching; [`logging`]: tracing to stderr, a file or syslog.
//! - [`run`]: the daemon's life, from a validated config to exit; [`reload`]: SIGHUP;
//!   [`notify`]: systemd's `Type=notify` messages.
//! - [`metrics`]: per-section counters, `/metrics`, `/health` and `/status` over HTTP.
//! - [`status`]: `retunnel status`, a running retunnel's sections as a table.
//! - [`check`]: `retunnel check`, every step of every section tested and explained.
//! - [`cli`]: the command line (also the source of the completions and the man page).

pub mod check;
pub mod cli;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod listener;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod open;
pub mod own;
pub mod prewarm;
pub mod privileges;
pub mod process;
pub mod redis;
pub mod relay;
pub mod reload;
pub mod run;
pub mod section;
pub mod service;
pub mod sockopt;
pub mod status;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod workers;
