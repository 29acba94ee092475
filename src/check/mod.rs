//! `retunnel check`: answers "will this tunnel work, and if not, why?" in one command, instead
//! of `dig`, `nc` and `openssl s_client` by hand.
//!
//! For every section, concurrently: can `accept` be bound, does each `connect` host resolve,
//! does each address take a TCP connection (timed), does the TLS handshake pass with the
//! section's own settings (the daemon's [`crate::tls::TlsClient`], so the verdict is the
//! daemon's), what certificate the server shows and precisely why it is rejected if it is, and
//! does Redis answer `PING` through that connection. [`probe`] runs the steps, [`cert`] inspects
//! the certificate, [`redis`] speaks the few commands needed, [`report`] prints the outcome.
//!
//! It sends no AUTH and prints no secret: a config holds none besides key file paths, and only
//! the version and role are taken from the server's INFO.

mod cert;
mod probe;
mod redis;
mod report;

use serde::Serialize;

pub use probe::run;

use crate::config::Config;

/// What the daemon would refuse at start beyond the file's syntax, without any network: every
/// section's TLS settings are loaded as the daemon loads them, both sides (a `CAfile` without
/// a PEM certificate, a server-mode `key` that does not belong to `cert`, …).
pub fn offline_problems(config: &Config) -> Vec<String> {
    config
        .services
        .iter()
        .filter_map(|s| {
            let loaded = crate::tls::load(&s.tls, s.accept_tls.as_ref());
            loaded.err().map(|e| format!("[{}] {e}", s.name))
        })
        .collect()
}
pub use report::{Style, render_json, render_offline, render_text};

/// The outcome of one step, as a mark in the table. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// Passed.
    Ok,
    /// Not tried, because an earlier step failed.
    Skip,
    /// Works, but needs attention (certificate expiring soon, verification off…).
    Warn,
    /// Will not work.
    Fail,
}

/// Everything `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The config file (or "(command line)").
    pub config: String,
    /// No section failed.
    pub ok: bool,
    /// The config's warnings, as the daemon would log them.
    pub warnings: Vec<String>,
    /// One entry per section, in file order.
    pub sections: Vec<SectionReport>,
}

/// One section's results.
#[derive(Debug, Clone, Serialize)]
pub struct SectionReport {
    /// The section name.
    pub name: String,
    /// Its `accept` address.
    pub accept: String,
    /// It will work: `accept` can be bound and at least one `connect` target passed every step.
    pub ok: bool,
    /// Whether `accept` can be bound.
    pub bind: Step,
    /// One entry per `connect` line, in order.
    pub targets: Vec<TargetReport>,
}

/// A step's mark and its one-line explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The verdict.
    pub mark: Mark,
    /// What was found, or what went wrong and what to do.
    pub message: String,
}

/// One `connect` target's results.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target as configured.
    pub target: String,
    /// Where `--connect-to` sent it instead, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_to: Option<String>,
    /// Name resolution.
    pub dns: Step,
    /// Every address found.
    pub addresses: Vec<String>,
    /// TCP connect, summarised.
    pub tcp: Step,
    /// TCP connect to each address.
    pub connects: Vec<Connect>,
    /// The TLS handshake.
    pub tls: Step,
    /// Protocol, cipher and timing of the handshake, when it got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// Certificate verification.
    pub certificate: Step,
    /// The server's certificate, when one was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertInfo>,
    /// Each reason verification fails (empty when it passes).
    pub verify_problems: Vec<String>,
    /// The Redis round trip.
    pub redis: Step,
    /// What Redis said about itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<RedisInfo>,
}

/// One TCP connection attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Connect {
    /// The address.
    pub address: String,
    /// Milliseconds until connected or refused.
    pub ms: f64,
    /// Why it failed; `None` when it connected.
    pub error: Option<String>,
}

/// The negotiated TLS session.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// For example `TLSv1.3`.
    pub version: String,
    /// For example `TLS_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    /// Milliseconds the section's own handshake took.
    pub ms: f64,
    /// Whether a second connection resumed the session (None: not tried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
}

/// The parts of the server certificate a person checks.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject, as `CN=…, O=…`.
    pub subject: String,
    /// Subject alternative names (`DNS:…`, `IP:…`).
    pub sans: Vec<String>,
    /// Issuer, as `CN=…, O=…`.
    pub issuer: String,
    /// Not valid after (as OpenSSL prints it, GMT).
    pub not_after: String,
    /// Whole days until then (negative: expired).
    pub days_left: i64,
    /// The name retunnel verifies (the host, or `checkHost`).
    pub verified_name: String,
}

/// What a Redis server said about itself.
#[derive(Debug, Clone, Serialize)]
pub struct RedisInfo {
    /// Milliseconds for the PING round trip.
    pub ms: f64,
    /// The reply to PING (`PONG`, or the error).
    pub reply: String,
    /// The server wants AUTH before anything else (NOAUTH).
    pub auth_required: bool,
    /// `primary` or `replica` (or what ROLE said), when the server told.
    pub role: Option<String>,
    /// `redis_version`, when the server told.
    pub version: Option<String>,
    /// A replica's primary and link state, as `host:port (link up)`.
    pub primary: Option<String>,
}

impl TargetReport {
    /// The steps in table order.
    pub fn steps(&self) -> [(&'static str, &Step); 5] {
        [
            ("DNS", &self.dns),
            ("TCP", &self.tcp),
            ("TLS", &self.tls),
            ("CERT", &self.certificate),
            ("REDIS", &self.redis),
        ]
    }

    /// No step failed.
    pub fn ok(&self) -> bool {
        self.steps().iter().all(|(_, s)| s.mark != Mark::Fail)
    }
}

impl SectionReport {
    /// The target the table row shows: the first that works, else the first.
    pub fn shown(&self) -> Option<&TargetReport> {
        self.targets.iter().find(|t| t.ok()).or(self.targets.first())
    }
}
