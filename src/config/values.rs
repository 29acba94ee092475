//! Parsers for single option values: text in, a typed value or a message that says what is
//! expected out. The messages are completed with file, line and option by the caller.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::options::suggest_from;

/// The host part of a `connect` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal: connected to as is, no SNI sent.
    Ip(IpAddr),
    /// A DNS name, resolved anew for every connection.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A `connect` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: Host,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How much to log (`debug`), from stunnel's syslog levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Levels 0–3 (emerg … err).
    Error,
    /// Level 4 (warning).
    Warn,
    /// Levels 5–6 (notice, info): the default, one line per connection.
    #[default]
    Info,
    /// Level 7 (debug).
    Debug,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// How the `output` file is opened at start (`log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    /// Keep what is there (stunnel's default).
    #[default]
    Append,
    /// Start the file empty.
    Overwrite,
}

/// `log = append|overwrite`.
pub fn log_mode(v: &str) -> R<LogMode> {
    match v.to_ascii_lowercase().as_str() {
        "append" => Ok(LogMode::Append),
        "overwrite" => Ok(LogMode::Overwrite),
        _ => Err(format!("`{v}` is not `append` or `overwrite`")),
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0 (deprecated).
    Tls10,
    /// TLS 1.1 (deprecated).
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls10 => "TLSv1",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

type R<T> = Result<T, String>;

pub fn yes_no(v: &str) -> R<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("`{v}` is not `yes` or `no`")),
    }
}

pub fn path(v: &str) -> R<PathBuf> {
    if v.is_empty() {
        Err("needs a file path".into())
    } else {
        Ok(PathBuf::from(v))
    }
}

pub fn existing_file(v: &str) -> R<PathBuf> {
    let p = path(v)?;
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(_) => Err(format!("{v} is not a file; give the path of a PEM file")),
        Err(e) => Err(format!("cannot read {v}: {e}; check the path")),
    }
}

/// A file holding a PEM `label` block (`CERTIFICATE`, `X509 CRL`: a `noun`): checked when the line is
/// read, so a DER file or a key in the wrong option is named at its line; `what` says what
/// the option wants.
pub fn pem_file(v: &str, label: &str, noun: &str, what: &str) -> R<PathBuf> {
    let p = existing_file(v)?;
    let text = std::fs::read(&p).map_err(|e| format!("cannot read {v}: {e}; check the path"))?;
    let marker = format!("-----BEGIN {label}-----");
    let has = |m: &str| text.windows(m.len()).any(|w| w == m.as_bytes());
    match (has(&marker), has("PRIVATE KEY-----")) {
        (true, _) => Ok(p),
        (false, true) => Err(format!("{v} holds a private key, not a PEM {noun} ({marker}); {what}")),
        (false, false) => Err(format!("{v} holds no PEM {noun} ({marker}); {what}")),
    }
}

/// A directory (`CApath`, `CRLpath`); a file given instead is pointed at `file_option`, the
/// option that takes a single file (`CAfile`, `CRLfile`).
pub fn existing_dir(v: &str, file_option: &str) -> R<PathBuf> {
    let p = path(v)?;
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err(format!("{v} is not a directory; use {file_option} for a single file")),
        Err(e) => Err(format!("cannot read {v}: {e}; check the path")),
    }
}

const LEVELS: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const FACILITIES: [&str; 20] = [
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp", "local0",
    "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// `debug = LEVEL` or `debug = FACILITY.LEVEL`, LEVEL a number 0–7 or a syslog level name.
pub fn log_level(v: &str) -> R<LogLevel> {
    let lower = v.to_ascii_lowercase();
    let level = match lower.split_once('.') {
        Some((facility, level)) => {
            if !FACILITIES.contains(&facility) {
                let hint = suggest_from(facility, FACILITIES.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(format!("unknown syslog facility `{facility}`{hint}"));
            }
            level
        }
        None => &lower,
    };
    let n = match level.parse::<u8>() {
        Ok(n) if n <= 7 => n,
        Ok(_) => {
            return Err(format!(
                "`{v}` is not a level 0-7; use 5 (notice, the default) or 7 (debug)"
            ));
        }
        Err(_) => match LEVELS.iter().position(|l| *l == level).or(match level {
            "warn" => Some(4),
            "error" => Some(3),
            _ => None,
        }) {
            Some(n) => n as u8,
            None => {
                return Err(format!("`{v}` is not a level; use 0-7 or one of {}", LEVELS.join(", ")));
            }
        },
    };
    Ok(match n {
        0..=3 => LogLevel::Error,
        4 => LogLevel::Warn,
        5 | 6 => LogLevel::Info,
        _ => LogLevel::Debug,
    })
}

/// Splits `host:port`, `[v6]:port`, `v6:port` (last colon) or a bare `port` (1-65535).
fn split_host_port(v: &str) -> R<(Option<&str>, u16)> {
    split_host_port_from(v, 1)
}

/// As [`split_host_port`], with ports from `lowest` (0 for an ephemeral port).
fn split_host_port_from(v: &str, lowest: u32) -> R<(Option<&str>, u16)> {
    let (host, port) = match v.rsplit_once(':') {
        None => (None, v),
        Some((h, p)) => {
            let h = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
            (Some(h), p)
        }
    };
    let port = port.trim();
    let n: u32 = port
        .parse()
        .map_err(|_| format!("`{v}` has no valid port; write `host:port` or a bare port, as in 127.0.0.1:6379"))?;
    if !(lowest..=65535).contains(&n) {
        let zero = if lowest == 0 {
            " (0: a free port the system picks)"
        } else {
            ""
        };
        return Err(format!(
            "port {n} is outside {lowest}-65535; give a port from 1 to 65535{zero}, as in 127.0.0.1:6379"
        ));
    }
    match host.map(str::trim) {
        Some("") => Err(format!("`{v}` has an empty host; write `host:port` or a bare port")),
        h => Ok((h, n as u16)),
    }
}

/// Where a section listens (`accept`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A TCP address; port 0: one the system picks (the "listening" line names it).
    Tcp(SocketAddr),
    /// A Unix socket path (`accept = /run/redis.sock`).
    Unix(PathBuf),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Listen {
    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Listen::Tcp(a) => Some(*a),
            Listen::Unix(_) => None,
        }
    }

    /// True when two sections cannot both listen here: the same path, or the same TCP
    /// address and port (port 0 never clashes: each gets its own).
    pub fn clashes(&self, other: &Listen) -> bool {
        match (self, other) {
            (Listen::Tcp(a), Listen::Tcp(b)) => a.port() != 0 && a == b,
            (a, b) => a == b,
        }
    }
}

/// The longest Unix socket path the kernel takes (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `accept`: a TCP address ([`accept_addr`]) or, starting with `/`, a Unix socket path.
pub fn listen(v: &str) -> R<Listen> {
    let pathlike = v.contains('/') || v.ends_with(".sock");
    if !v.starts_with('/') && pathlike && !v.starts_with('[') {
        return Err(format!(
            "`{v}` looks like a relative path: a Unix socket path in `accept` must be absolute (start with /), as in /run/retunnel/redis.sock"
        ));
    }
    if !v.starts_with('/') {
        return accept_addr(v).map(Listen::Tcp);
    }
    if v.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "`{v}` is {} bytes, longer than a Unix socket path can be ({MAX_SOCKET_PATH}); choose a shorter path",
            v.len()
        ));
    }
    if v.ends_with('/') {
        return Err(format!(
            "`{v}` is a directory; name the socket file, as in /run/retunnel/redis.sock"
        ));
    }
    Ok(Listen::Unix(PathBuf::from(v)))
}

/// The plain-text side: a bare port means loopback only (unlike stunnel, which binds every
/// interface), so that unencrypted Redis traffic never reaches the network by accident.
/// Port 0 asks the system for a free port.
pub fn accept_addr(v: &str) -> R<SocketAddr> {
    let (host, port) = split_host_port_from(v, 0)?;
    let ip = match host {
        None | Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some("*") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(h) => h
            .parse::<IpAddr>()
            .map_err(|_| format!("`{h}` is not an IP address; write an address such as 127.0.0.1, [::1] or 0.0.0.0"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

pub fn target(v: &str) -> R<Target> {
    let (host, port) = split_host_port(v)?;
    let host = match host {
        None => Host::Name("localhost".into()),
        Some(h) => match h.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host_name(h)?),
        },
    };
    Ok(Target { host, port })
}

pub fn host_name(v: &str) -> R<String> {
    if v.len() > 253 {
        return Err(format!(
            "is {} bytes long; a host name has at most 253 (TLS carries at most 255), so give the server's real name",
            v.len()
        ));
    }
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "`{v}` is not a valid host name; use a DNS name (letters, digits, `-` and `.`) or an IP address"
        ))
    }
}

/// `verify`: stunnel's level, 0 to 4.
pub fn verify_level(v: &str) -> R<u8> {
    match v.trim().parse::<u8>() {
        Ok(n) if n <= 4 => Ok(n),
        _ => Err(format!(
            "`{v}` is not a verify level; use 0 (no checks), 1 or 2 (check the chain), 3 (chain and pin to CAfile) or 4 (pin to CAfile only)"
        )),
    }
}

/// `checkIP`: an IP address.
pub fn ip(v: &str) -> R<std::net::IpAddr> {
    v.trim()
        .parse()
        .map_err(|_| format!("`{v}` is not an IP address; write one address per `checkIP` line"))
}

/// An `options` value: either a protocol floor or another OpenSSL flag (ignored).
#[derive(Debug, PartialEq, Eq)]
pub enum SslOption {
    /// `NO_SSLv2`…`NO_TLSv1_2`: the lowest version still allowed.
    Min(TlsVersion),
    /// `NO_TLSv1_3`: the highest version still allowed.
    Max(TlsVersion),
    /// Any other flag stunnel knows.
    Other(String),
}

const OPENSSL_FLAGS: &[&str] = &[
    "MICROSOFT_SESS_ID_BUG",
    "NETSCAPE_CHALLENGE_BUG",
    "LEGACY_SERVER_CONNECT",
    "NETSCAPE_REUSE_CIPHER_CHANGE_BUG",
    "SSLREF2_REUSE_CERT_TYPE_BUG",
    "MICROSOFT_BIG_SSLV3_BUFFER",
    "SAFARI_ECDHE_ECDSA_BUG",
    "SSLEAY_080_CLIENT_DH_BUG",
    "TLS_D5_BUG",
    "TLS_BLOCK_PADDING_BUG",
    "TLS_ROLLBACK_BUG",
    "DONT_INSERT_EMPTY_FRAGMENTS",
    "ALL",
    "NO_QUERY_MTU",
    "COOKIE_EXCHANGE",
    "NO_TICKET",
    "CISCO_ANYCONNECT",
    "NO_SESSION_RESUMPTION_ON_RENEGOTIATION",
    "NO_COMPRESSION",
    "ALLOW_UNSAFE_LEGACY_RENEGOTIATION",
    "SINGLE_ECDH_USE",
    "SINGLE_DH_USE",
    "EPHEMERAL_RSA",
    "CIPHER_SERVER_PREFERENCE",
    "PKCS1_CHECK_1",
    "PKCS1_CHECK_2",
    "NETSCAPE_CA_DN_BUG",
    "NETSCAPE_DEMO_CIPHER_CHANGE_BUG",
    "CRYPTOPRO_TLSEXT_BUG",
    "NO_ENCRYPT_THEN_MAC",
    "NO_RENEGOTIATION",
    "ENABLE_MIDDLEBOX_COMPAT",
    "PRIORITIZE_CHACHA",
    "ALLOW_NO_DHE_KEX",
    "NO_ANTI_REPLAY",
    "IGNORE_UNEXPECTED_EOF",
    "NO_EXTENDED_MASTER_SECRET",
    "ENABLE_KTLS",
];

pub fn ssl_option(v: &str) -> R<SslOption> {
    let flag = v
        .trim()
        .trim_start_matches('-')
        .to_ascii_uppercase()
        .replace("TLSV", "TLSv")
        .replace("SSLV", "SSLv");
    let min = match flag.as_str() {
        "NO_SSLV2" | "NO_SSLv2" | "NO_SSLv3" => Some(TlsVersion::Tls10),
        "NO_TLSv1" => Some(TlsVersion::Tls11),
        "NO_TLSv1_1" | "NO_TLSv1.1" => Some(TlsVersion::Tls12),
        "NO_TLSv1_2" | "NO_TLSv1.2" => Some(TlsVersion::Tls13),
        _ => None,
    };
    if v.trim().starts_with('-') {
        // Clearing a flag can only lower the floor, which retunnel never does implicitly.
        return Ok(SslOption::Other(v.trim().to_string()));
    }
    if let Some(m) = min {
        return Ok(SslOption::Min(m));
    }
    if matches!(flag.as_str(), "NO_TLSv1_3" | "NO_TLSv1.3") {
        return Ok(SslOption::Max(TlsVersion::Tls12));
    }
    if OPENSSL_FLAGS.iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
        return Ok(SslOption::Other(flag));
    }
    let all = OPENSSL_FLAGS.iter().copied().chain([
        "NO_SSLv2",
        "NO_SSLv3",
        "NO_TLSv1",
        "NO_TLSv1_1",
        "NO_TLSv1_2",
        "NO_TLSv1_3",
    ]);
    let hint = suggest_from(&flag, all)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    Err(format!("`{v}` is not an OpenSSL option stunnel knows{hint}"))
}

fn tls_version(v: &str) -> Option<TlsVersion> {
    match v.to_ascii_lowercase().as_str() {
        "tlsv1" | "tlsv1.0" => Some(TlsVersion::Tls10),
        "tlsv1.1" => Some(TlsVersion::Tls11),
        "tlsv1.2" => Some(TlsVersion::Tls12),
        "tlsv1.3" => Some(TlsVersion::Tls13),
        _ => None,
    }
}

/// `sslVersionMin`/`sslVersionMax`: a version, or `all` (no bound: `None`).
pub fn tls_version_or_all(v: &str) -> R<Option<TlsVersion>> {
    if v.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    tls_version(v).map(Some).ok_or_else(|| unknown_version(v))
}

/// `sslVersion`: exactly one version, or `all` (every version retunnel speaks: 1.2 and 1.3).
pub fn ssl_version_range(v: &str) -> R<(TlsVersion, Option<TlsVersion>)> {
    if v.eq_ignore_ascii_case("all") {
        return Ok((TlsVersion::Tls12, None));
    }
    let ver = tls_version(v).ok_or_else(|| unknown_version(v))?;
    Ok((ver, Some(ver)))
}

fn unknown_version(v: &str) -> String {
    if v.to_ascii_lowercase().starts_with("ssl") {
        format!("`{v}`: SSL 2 and 3 are broken and not supported; use TLSv1.2 or TLSv1.3")
    } else {
        format!("`{v}` is not a TLS version; use TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 or all")
    }
}

/// `protocol`: only `redis` (retunnel's own value); stunnel's STARTTLS protocols are refused.
pub fn protocol(v: &str) -> R<()> {
    if v.eq_ignore_ascii_case("redis") {
        return Ok(());
    }
    Err(format!(
        "`{v}`: stunnel's STARTTLS protocols are not supported (Redis speaks TLS from the first byte); the only value is `redis`, for Redis Cluster support"
    ))
}

/// `clusterPorts = A-B`: an inclusive range of TCP ports, A <= B, A > 0.
pub fn port_range(v: &str) -> R<(u16, u16)> {
    let bad = || format!("`{v}` is not a port range like 17000-17099");
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(format!(
            "{}: the first port must be above 0 and not above the last",
            bad()
        ));
    }
    Ok((a, b))
}

/// `onReadonly = replay|close|pass`.
pub fn on_readonly(v: &str) -> R<super::OnReadonly> {
    use super::OnReadonly::*;
    match v.to_ascii_lowercase().as_str() {
        "replay" => Ok(Replay),
        "close" => Ok(Close),
        "pass" => Ok(Pass),
        _ => Err(format!("`{v}` is not replay, close or pass")),
    }
}

/// `failover = prio|rr`.
pub fn failover(v: &str) -> R<super::Failover> {
    match v.to_ascii_lowercase().as_str() {
        "prio" => Ok(super::Failover::Prio),
        "rr" => Ok(super::Failover::RoundRobin),
        _ => Err(format!(
            "`{v}` is not `prio` (first that answers) or `rr` (round robin)"
        )),
    }
}

/// A limit: a whole number of at least 1.
/// The most connections a section may be limited to: far above what one process can hold
/// (two descriptors each), and small enough for every counter that uses it.
const MAX_COUNT: usize = 1_000_000;

/// A count where 0 means no limit (`sessionCacheSize`).
pub fn count_or_zero(v: &str) -> R<usize> {
    match v {
        "0" => Ok(0),
        _ => count(v).map_err(|e| e.replace("at least 1; remove the line for no limit", "at least 0 (0: no limit)")),
    }
}

pub fn count(v: &str) -> R<usize> {
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        Ok(n) if n > MAX_COUNT => Err(format!("`{v}` is more than {MAX_COUNT}; remove the line for no limit")),
        _ => Err(format!(
            "`{v}` is not a whole number of at least 1; remove the line for no limit"
        )),
    }
}

/// The most warm connections a section may keep: each is a socket and a TLS session held
/// open on the server.
pub const MAX_PREWARM: usize = 1024;

/// `prewarm`: 0 (none) up to [`MAX_PREWARM`].
pub fn prewarm(v: &str) -> R<usize> {
    match v.parse::<usize>() {
        Ok(n) if n <= MAX_PREWARM => Ok(n),
        Ok(_) => Err(format!(
            "`{v}` is more than {MAX_PREWARM}; keep a few per expected new client per second (0 turns it off)"
        )),
        _ => Err(format!(
            "`{v}` is not a whole number; write 0 to keep no warm connections"
        )),
    }
}

/// The most worker threads `threads` starts.
pub const MAX_THREADS: usize = 1024;

/// `threads`: `auto` (`None`: one per CPU) or 1 up to [`MAX_THREADS`].
pub fn threads(v: &str) -> R<Option<usize>> {
    if v.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if v.is_empty() {
        return Err("is empty; write `auto` for one per CPU, or a number".into());
    }
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        Ok(0) => Err(format!(
            "`{v}`: at least one thread runs the connections; write `auto` for one per CPU"
        )),
        _ => Err(format!(
            "`{v}` is not `auto` or a whole number from 1 to {MAX_THREADS}; write `auto` for one per CPU"
        )),
    }
}

/// The longest timeout accepted: a year. Longer values would overflow the clock arithmetic
/// and mean "never" in practice (`TIMEOUTidle = 0` says that).
const MAX_SECONDS: u64 = 365 * 24 * 3600;

pub fn seconds(v: &str) -> R<Duration> {
    match v.parse::<u64>() {
        Ok(n) if n <= MAX_SECONDS => Ok(Duration::from_secs(n)),
        Ok(_) => Err(format!("`{v}` is more than a year ({MAX_SECONDS} seconds)")),
        Err(_) => Err(format!("`{v}` is not a whole number of seconds")),
    }
}

pub fn seconds_nonzero(v: &str) -> R<Duration> {
    match seconds(v)? {
        d if d.is_zero() => Err("must be at least 1 second".into()),
        d => Ok(d),
    }
}

/// The account `setuid` names, resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// As written, or the passwd name of a number.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// Its primary group from the passwd entry; `None` for a number with no entry.
    pub gid: Option<u32>,
}

/// The group `setgid` names, resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// As written, or the group name of a number.
    pub name: String,
    /// The group id.
    pub gid: u32,
}

/// `setuid = NAME|UID`: the user must exist now, so that a typo fails at start, not after bind.
pub fn user(v: &str) -> R<User> {
    if let Ok(uid) = v.parse::<u32>() {
        return Ok(match passwd_by_uid(uid) {
            Some((name, gid)) => User {
                name,
                uid,
                gid: Some(gid),
            },
            None => User {
                name: v.to_string(),
                uid,
                gid: None,
            },
        });
    }
    let (uid, gid) = passwd_by_name(v).ok_or_else(|| {
        format!("there is no user `{v}` on this system; create it (e.g. `useradd --system {v}`) or name an existing one such as `nobody`")
    })?;
    Ok(User {
        name: v.to_string(),
        uid,
        gid: Some(gid),
    })
}

/// `setgid = NAME|GID`: the group must exist now.
pub fn group(v: &str) -> R<Group> {
    if let Ok(gid) = v.parse::<u32>() {
        let name = group_name(gid).unwrap_or_else(|| v.to_string());
        return Ok(Group { name, gid });
    }
    let gid = group_by_name(v).ok_or_else(|| {
        format!("there is no group `{v}` on this system; create it (`groupadd --system {v}`) or name an existing one such as `nogroup`")
    })?;
    Ok(Group {
        name: v.to_string(),
        gid,
    })
}

/// A buffer size that fits any passwd or group entry a sane system has.
const PW_BUF: usize = 16 * 1024;

fn passwd_by_name(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; PW_BUF];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out = std::ptr::null_mut();
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    (rc == 0 && !out.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

fn passwd_by_uid(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0 as libc::c_char; PW_BUF];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some((name, pwd.pw_gid))
}

fn group_by_name(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; PW_BUF];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out = std::ptr::null_mut();
    let rc = unsafe { libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; PW_BUF];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out = std::ptr::null_mut();
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    Some(
        unsafe { std::ffi::CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_forms() {
        assert_eq!(accept_addr("6379").unwrap(), "127.0.0.1:6379".parse().unwrap());
        assert_eq!(accept_addr("0.0.0.0:1").unwrap(), "0.0.0.0:1".parse().unwrap());
        assert_eq!(accept_addr("[::1]:6380").unwrap(), "[::1]:6380".parse().unwrap());
        assert_eq!(accept_addr(":::6380").unwrap(), "[::]:6380".parse().unwrap());
        assert_eq!(accept_addr("localhost:7").unwrap(), "127.0.0.1:7".parse().unwrap());
        assert_eq!(accept_addr("0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(accept_addr("127.0.0.1:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert!(accept_addr("65536").unwrap_err().contains("outside 0-65535"));
        assert_eq!(listen("/run/r.sock").unwrap(), Listen::Unix("/run/r.sock".into()));
        // A relative path is named as one (it read as a host without a port before).
        for relative in ["run/r.sock", "r.sock", "./r.sock"] {
            let e = listen(relative).unwrap_err();
            assert!(e.contains("relative path") && e.contains("must be absolute"), "{e}");
        }
        let e = accept_addr("70000").unwrap_err();
        assert!(e.contains("outside 0-65535; give a port from 1 to 65535"), "{e}");
        assert_eq!(listen("6379").unwrap(), Listen::Tcp("127.0.0.1:6379".parse().unwrap()));
        assert!(listen("/run/").unwrap_err().contains("directory"));
        assert!(
            listen(&format!("/{}", "x".repeat(120)))
                .unwrap_err()
                .contains("shorter path")
        );
        assert!(accept_addr("host.example:1").is_err());
        assert!(accept_addr(":6379").is_err());
        assert!(accept_addr("abc").is_err());
    }

    #[test]
    fn target_forms() {
        let t = target("master.example.com:6379").unwrap();
        assert_eq!((t.host, t.port), (Host::Name("master.example.com".into()), 6379));
        assert_eq!(target("6379").unwrap().host, Host::Name("localhost".into()));
        assert_eq!(target("[::1]:1").unwrap().host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(target("::1:1").unwrap().host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(target("[::1]:1").unwrap().to_string(), "[::1]:1");
        assert!(target("bad host:1").is_err());
        assert!(target("h:99999").unwrap_err().contains("outside 1-65535"));
    }

    #[test]
    fn debug_levels() {
        assert_eq!(log_level("7").unwrap(), LogLevel::Debug);
        assert_eq!(log_level("5").unwrap(), LogLevel::Info);
        assert_eq!(log_level("3").unwrap(), LogLevel::Error);
        assert_eq!(log_level("daemon.debug").unwrap(), LogLevel::Debug);
        assert_eq!(log_level("LOCAL0.4").unwrap(), LogLevel::Warn);
        assert_eq!(log_level("warning").unwrap(), LogLevel::Warn);
        assert!(log_level("8").is_err());
        assert!(log_level("deamon.7").unwrap_err().contains("daemon"));
    }

    #[test]
    fn ssl_options() {
        assert_eq!(ssl_option("NO_SSLv2").unwrap(), SslOption::Min(TlsVersion::Tls10));
        assert_eq!(ssl_option("no_tlsv1.1").unwrap(), SslOption::Min(TlsVersion::Tls12));
        assert_eq!(ssl_option("NO_TLSv1_2").unwrap(), SslOption::Min(TlsVersion::Tls13));
        assert_eq!(ssl_option("no_tlsv1.3").unwrap(), SslOption::Max(TlsVersion::Tls12));
        assert!(matches!(ssl_option("NO_COMPRESSION").unwrap(), SslOption::Other(_)));
        assert!(ssl_option("NO_SSLv4").unwrap_err().contains("did you mean"));
    }

    #[test]
    fn huge_numbers_are_refused_not_overflowed() {
        assert!(
            seconds("18446744073709551615")
                .unwrap_err()
                .contains("more than a year")
        );
        assert_eq!(seconds("31536000").unwrap(), Duration::from_secs(31_536_000));
        assert!(count("2305843009213693952").unwrap_err().contains("more than"));
        assert_eq!(count("1000000").unwrap(), 1_000_000);
        assert!(count("0").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(tls_version_or_all("TLSv1.3").unwrap(), Some(TlsVersion::Tls13));
        assert_eq!(tls_version_or_all("all").unwrap(), None);
        assert!(tls_version_or_all("SSLv3").unwrap_err().contains("broken"));
        assert_eq!(
            ssl_version_range("TLSv1.2").unwrap(),
            (TlsVersion::Tls12, Some(TlsVersion::Tls12))
        );
    }

    #[test]
    fn users_and_groups_are_resolved_or_named_in_the_error() {
        let root = user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, Some(0)));
        assert_eq!(user("0").unwrap().name, "root");
        assert_eq!(user("4000000").unwrap().gid, None);
        assert!(
            user("no-such-user-xyz")
                .unwrap_err()
                .contains("no user `no-such-user-xyz`")
        );
        assert_eq!(group("root").unwrap().gid, 0);
        assert_eq!(group("0").unwrap().name, "root");
        assert!(
            group("no-such-group-xyz")
                .unwrap_err()
                .contains("no group `no-such-group-xyz`")
        );
    }

    /// A file given to `CApath`/`CRLpath` is pointed at the option for one file.
    #[test]
    fn a_file_given_as_a_directory_names_the_file_option() {
        let file = tempfile::NamedTempFile::new().unwrap();
        for (dir_option, file_option) in [("CApath", "CAfile"), ("CRLpath", "CRLfile")] {
            let conf = format!(
                "[a]\naccept = 1\nconnect = localhost:2\n{dir_option} = {}\n",
                file.path().display()
            );
            let e = crate::config::Config::parse(&conf, std::path::Path::new("t.conf")).unwrap_err();
            let said = e
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                said.contains(&format!("is not a directory; use {file_option} for a single file")),
                "{said}"
            );
        }
    }

    #[test]
    fn log_modes() {
        assert_eq!(log_mode("APPEND").unwrap(), LogMode::Append);
        assert_eq!(log_mode("overwrite").unwrap(), LogMode::Overwrite);
        assert!(log_mode("truncate").unwrap_err().contains("append"));
    }
}
