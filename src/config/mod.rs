//! The configuration: a stunnel-style INI file turned into typed, validated values.
//!
//! Two steps: [`lines`] reads the text into sections of entries with line numbers, then this
//! module checks every entry against the option table ([`options`]) and parses it into
//! [`Config`]. Nothing here binds, resolves or opens a connection; a `Config` that comes out is
//! ready to run. Every error names the file, the line, the section, the option and the fix.

mod include;
mod lines;
mod noeffect;
mod oneoff;
pub mod options;
mod selfloop;
mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::sockopt::SocketOption;
pub use oneoff::OneOff;
pub use values::{
    Group, Host, Listen, LogLevel, LogMode, Target, TlsVersion, User, accept_addr as parse_accept,
    target as parse_target,
};

use lines::{Entry, Section};
use options::{Scope, Support};

/// A whole configuration file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// Options of the process as a whole.
    pub global: Global,
    /// One entry per `[section]`, in file order.
    pub services: Vec<ServiceConfig>,
}

/// Options that apply to the whole process.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Where to write the pid once listening (`pid`); `None`: no pid file.
    pub pid: Option<PathBuf>,
    /// The log level (`debug`).
    pub log_level: LogLevel,
    /// Log file (`output`); `None`: standard error.
    pub output: Option<PathBuf>,
    /// Whether `output` starts empty or keeps its lines (`log`).
    pub log_mode: LogMode,
    /// Log to syslog too (`syslog`); `None`: yes when detached without `output`, as stunnel.
    pub syslog: Option<bool>,
    /// Stay attached to the terminal (`foreground`, default yes; `-d` detaches).
    pub foreground: bool,
    /// Switch to this user once listening (`setuid`).
    pub user: Option<User>,
    /// Switch to this group once listening (`setgid`); else the user's primary group.
    pub group: Option<Group>,
    /// Serve `/metrics`, `/health` and `/status` over HTTP here (`metrics`); `None`: no endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    /// Worker threads for the connections (`threads`); `None`: one per CPU.
    pub threads: Option<usize>,
}

impl Default for Global {
    /// No pid file, log to stderr at notice, stay in the foreground, keep the user.
    fn default() -> Global {
        Global {
            pid: None,
            log_level: LogLevel::default(),
            output: None,
            log_mode: LogMode::default(),
            syslog: None,
            foreground: true,
            user: None,
            group: None,
            metrics: None,
            threads: None,
        }
    }
}

/// One tunnel: a plain TCP listener relayed to a TLS server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The section name.
    pub name: String,
    /// Where to listen for clients (`accept`, repeatable): every address is a listener of
    /// this same service. Never empty.
    pub accept: Vec<Listen>,
    /// Where to connect, tried in order (`connect`, repeatable).
    pub connect: Vec<Target>,
    /// How to set up and check TLS towards `connect`.
    pub tls: TlsSettings,
    /// Connect within this (`TIMEOUTconnect`); the TLS handshake gets as long again.
    pub connect_timeout: Duration,
    /// On shutdown, give open connections this long to finish (`TIMEOUTclose`).
    pub close_timeout: Duration,
    /// Close a connection that moved no byte for this long (`TIMEOUTidle`); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// How to choose among several `connect` targets (`failover`).
    pub failover: Failover,
    /// Socket options for the accepting, client and upstream sockets (`socket`), in order.
    pub socket_options: Vec<SocketOption>,
    /// Refuse clients beyond this many open connections (`maxConnections`); `None`: no limit.
    pub max_connections: Option<usize>,
    /// Upstream connections kept ready for new clients (`prewarm`); 0: none.
    pub prewarm: usize,
    /// Server mode (`client = no`): clients speak TLS, answered with this `cert`/`key`.
    pub accept_tls: Option<CertKey>,
    /// Whether the upstream is reached with TLS: always in client mode; `connectTLS` in server mode.
    pub connect_tls: bool,
    /// `protocol = redis`: Redis-aware relaying (cluster redirects and topology); `None`: bytes only.
    pub redis: Option<RedisSettings>,
}

impl ServiceConfig {
    /// The `accept` addresses, for messages and reports: `127.0.0.1:6379, /run/r.sock`.
    pub fn accept_list(&self) -> String {
        let all: Vec<String> = self.accept.iter().map(Listen::to_string).collect();
        all.join(", ")
    }
}

/// The settings of a `protocol = redis` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisSettings {
    /// Ports for the cluster node listeners (`clusterPorts = A-B`); `None`: any free port.
    pub cluster_ports: Option<(u16, u16)>,
    /// What a `-READONLY` reply from a primary that has moved away does (`onReadonly`).
    pub on_readonly: OnReadonly,
}

/// `onReadonly`: what a connection does when its node answers `-READONLY` and the `connect`
/// name no longer resolves to that node (the primary moved: a failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReadonly {
    /// `replay`: where the connection's state can be rebuilt, reconnect to the new primary and
    /// send the refused command there; otherwise as `close`.
    #[default]
    Replay,
    /// `close`: deliver the error, then close the client connection so that it reconnects.
    Close,
    /// `pass`: deliver the error and keep the connection (a tunnel that sees no replies).
    Pass,
}

/// `failover`: which `connect` target a new connection tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Failover {
    /// `prio`: always in the order written; the first that answers wins.
    #[default]
    Prio,
    /// `rr`: round robin, each connection starts one target further.
    RoundRobin,
}

/// A certificate chain and its private key (`cert`, `key`); no key file: the key is in `cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// PEM file: the certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8 or RSA); `None`: it is in `cert`.
    pub key: Option<PathBuf>,
}

/// The TLS settings of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// Verify the certificate chain against the trust anchors.
    pub verify_chain: bool,
    /// Extra trust anchors: a PEM bundle (`CAfile`).
    pub ca_file: Option<PathBuf>,
    /// Extra trust anchors: a directory of PEM files (`CApath`).
    pub ca_path: Option<PathBuf>,
    /// The name the certificate must carry (`checkHost`); `None`: the `connect` host.
    pub check_host: Option<String>,
    /// The SNI name to send (`sni`): `None` for the default, `Some("")` to send none.
    pub sni: Option<String>,
    /// Lowest protocol version accepted.
    pub min_version: TlsVersion,
    /// Highest protocol version offered; `None`: the newest the library has.
    pub max_version: Option<TlsVersion>,
    /// Client certificate for mutual TLS towards `connect` (`cert`/`key` in client mode).
    pub identity: Option<CertKey>,
    /// Session resumption (`sessionResume`, `sessionCacheSize`, `sessionCacheTimeout`).
    pub session: SessionSettings,
    /// `ciphers`: the TLS 1.2 suites (OpenSSL names), in order; `None`: rustls's defaults.
    pub ciphers: Option<Vec<String>>,
    /// `ciphersuites`: the TLS 1.3 suites, in order; `None`: rustls's defaults.
    pub ciphersuites: Option<Vec<String>>,
    /// `curves`/`ECDHcurve`: the key-exchange groups, in order; `None`: rustls's defaults.
    pub curves: Option<Vec<String>>,
    /// `verifyPeer`, `verify = 3|4`: the peer's certificate must be one of those in
    /// `CAfile`/`CApath` (pinning).
    pub verify_peer: bool,
    /// `checkIP`: addresses the certificate may carry instead of the host name (any one).
    pub check_ips: Vec<IpAddr>,
    /// `CRLfile`: a PEM file of CRLs checked along the chain.
    pub crl_file: Option<PathBuf>,
    /// `CRLpath`: a directory of PEM CRL files (hashed names or any other).
    pub crl_path: Option<PathBuf>,
    /// Server mode: clients are asked for a certificate, judged against `CAfile`/`CApath`
    /// only; `None`: none is asked for.
    pub client_auth: Option<ClientAuth>,
}

/// How a server-mode section treats its clients' certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Verified when a client shows one; a client without one gets in (`verify = 1`,
    /// `requireCert = no`).
    Optional,
    /// A client without a valid one is refused (`verify = 2`, `verifyChain = yes`, …).
    Required,
}

/// TLS session resumption, as stunnel's options set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// `sessionResume`: offer stored sessions (client side) and issue tickets (server mode).
    pub resume: bool,
    /// `sessionCacheSize`: most sessions kept per section; 0 = no limit.
    pub cache_size: usize,
    /// `sessionCacheTimeout`: a session older than this is not offered.
    pub cache_timeout: Duration,
}

impl Default for SessionSettings {
    /// stunnel's defaults: resume, 1000 sessions, 300 seconds.
    fn default() -> SessionSettings {
        SessionSettings {
            resume: true,
            cache_size: 1000,
            cache_timeout: Duration::from_secs(300),
        }
    }
}

impl Default for TlsSettings {
    /// Verify chain and host against the system store, TLS 1.2 or later.
    fn default() -> TlsSettings {
        TlsSettings {
            verify_chain: true,
            ca_file: None,
            ca_path: None,
            check_host: None,
            sni: None,
            min_version: TlsVersion::Tls12,
            max_version: None,
            identity: None,
            session: SessionSettings::default(),
            ciphers: None,
            ciphersuites: None,
            curves: None,
            verify_peer: false,
            check_ips: Vec::new(),
            crl_file: None,
            crl_path: None,
            client_auth: None,
        }
    }
}

/// A non-fatal remark about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything wrong with a configuration file, one problem a line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// Each problem, already worded for the user.
    pub problems: Vec<String>,
}

/// The section whose `accept` is `addr` (port 0 is never taken: each bind gets its own port),
/// for `metrics` given in the file or by `--metrics`.
pub fn accepting_on(services: &[ServiceConfig], addr: SocketAddr) -> Option<&ServiceConfig> {
    let metrics = Listen::Tcp(addr);
    services.iter().find(|s| s.accept.iter().any(|a| a.clashes(&metrics)))
}

/// The defaults, shared by the parser and the README test.
pub mod defaults {
    use std::time::Duration;
    /// `TIMEOUTconnect`, as stunnel.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// `TIMEOUTclose`, as stunnel.
    pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `TIMEOUTidle`, as stunnel (12 hours).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(43200);
}

impl Config {
    /// True for a tunnel given by flags (`--accept`/`--connect`): there is no file to reload.
    pub fn from_flags(&self) -> bool {
        self.path == Path::new(oneoff::COMMAND_LINE)
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let text = lines::read_file(path).map_err(|why| ConfigError {
            problems: vec![format!("config file {}: {why}", path.display())],
        })?;
        Config::parse(&text, path)
    }

    /// Validates the text of a file; `path` only names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let text = lines::normalize(text);
        let sections = lines::read(&text).map_err(|e| ConfigError {
            problems: vec![format!("{}:{}: {}", path.display(), e.line, e.message)],
        })?;
        let mut p = Parser {
            path,
            flags: false,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let sections = include::expand(sections, path, 0, &mut p.problems, &mut p.warnings);
        let config = p.config(&sections);
        if p.problems.is_empty() {
            Ok((config, p.warnings))
        } else {
            Err(ConfigError { problems: p.problems })
        }
    }
}

/// Collects every problem and warning while it builds the typed values.
struct Parser<'a> {
    /// The file being read (for messages).
    path: &'a Path,
    /// True when the entries come from command-line flags: messages name `--flag`s.
    flags: bool,
    /// Every problem found so far, worded for the user.
    problems: Vec<String>,
    /// Every warning found so far.
    warnings: Vec<Warning>,
}

/// A section being read: what its lines said so far, before the checks that need them all.
/// Starts from the defaults; the option table's setters fill it in.
#[derive(Debug)]
struct Draft {
    /// `accept`, every line in order.
    accept: Vec<Listen>,
    /// `connect`, every line in order.
    connect: Vec<Target>,
    /// The TLS settings towards `connect`.
    tls: TlsSettings,
    /// `client`.
    client: bool,
    /// `cert`.
    cert: Option<PathBuf>,
    /// `key`.
    key: Option<PathBuf>,
    /// `connectTLS`, if written.
    connect_tls: Option<bool>,
    /// A `verify`/`verifyChain`/`verifyPeer` line asked for verification (in server mode:
    /// of clients).
    verify_asked: bool,
    /// Whether a client must show a certificate (server mode), as the last of `verify`,
    /// `verifyChain`, `verifyPeer` and `requireCert` set it; `None`: none of them was written.
    require_cert: Option<bool>,
    /// `failover`.
    failover: Failover,
    /// `socket`, every line in order.
    socket_options: Vec<SocketOption>,
    /// `maxConnections`.
    max_connections: Option<usize>,
    /// `prewarm`.
    prewarm: usize,
    /// `TIMEOUTconnect`.
    connect_timeout: Duration,
    /// `TIMEOUTclose`.
    close_timeout: Duration,
    /// `TIMEOUTidle`; `None`: never.
    idle_timeout: Option<Duration>,
    /// The floor that `options = NO_…` lines raise the version to.
    options_min: Option<TlsVersion>,
    /// The ceiling `options = NO_TLSv1.3` lowers the version to.
    options_max: Option<TlsVersion>,
    /// `protocol = redis`.
    redis: Option<RedisSettings>,
    /// `clusterPorts`.
    cluster_ports: Option<(u16, u16)>,
    /// `onReadonly`.
    on_readonly: Option<OnReadonly>,
    /// Where `sni` was written, for the message when it disagrees with `checkHost`.
    sni_at: Option<String>,
    /// Where each option was written, for problems about options together.
    written_at: WrittenAt,
}

/// Where each option of a section was last written (as messages start: `file:line: [section]
/// option: `) and in what order, so that a problem about options together points at the line
/// to change rather than at the `[section]` line.
#[derive(Debug, Default)]
struct WrittenAt {
    /// Option name in lower case → (order written, where).
    lines: std::collections::HashMap<String, (usize, String)>,
    /// How many lines were noted (a repeated option is noted again, as the later one).
    noted: usize,
}

impl WrittenAt {
    fn note(&mut self, key: &str, at: String) {
        self.noted += 1;
        self.lines.insert(key.to_ascii_lowercase(), (self.noted, at));
    }

    /// Where the last written of `keys` is, else `fallback: ` (the section's header).
    fn last_of(&self, keys: &[&str], fallback: &str) -> String {
        keys.iter()
            .filter_map(|k| self.lines.get(&k.to_ascii_lowercase()))
            .max_by_key(|(order, _)| *order)
            .map_or_else(|| format!("{fallback}: "), |(_, at)| at.clone())
    }
}

impl Default for Draft {
    /// What a section without lines means: client mode, verifying, stunnel's timeouts.
    fn default() -> Draft {
        Draft {
            accept: Vec::new(),
            connect: Vec::new(),
            tls: TlsSettings::default(),
            client: true,
            cert: None,
            key: None,
            connect_tls: None,
            verify_asked: false,
            require_cert: None,
            failover: Failover::default(),
            socket_options: Vec::new(),
            max_connections: None,
            prewarm: 0,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            close_timeout: defaults::CLOSE_TIMEOUT,
            idle_timeout: Some(defaults::IDLE_TIMEOUT),
            options_min: None,
            options_max: None,
            redis: None,
            cluster_ports: None,
            on_readonly: None,
            sni_at: None,
            written_at: WrittenAt::default(),
        }
    }
}

/// What a section's verification lines asked of clients (server mode).
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// A `verify` (1-4), `verifyChain = yes` or `verifyPeer = yes` line.
    verify: bool,
    /// Whether a certificate is required, as the last line setting it said.
    require: Option<bool>,
}

/// A section's lines and the defaults of the global part it inherits: section values override
/// the defaults, except `options`, which add up. A default is reported where it is written
/// (the global part), once for all sections.
fn lines_of<'e>(section: &'e Section, defaults: &[&'e Entry]) -> selfloop::Lines<'e> {
    let name = section.name.as_deref().unwrap_or_default();
    let own = |key: &str| section.entries.iter().any(|e| e.key.eq_ignore_ascii_case(key));
    let inherited = defaults
        .iter()
        .copied()
        .filter(|d| d.key.eq_ignore_ascii_case("options") || !own(&d.key));
    let entries = inherited
        .map(|e| (None, e))
        .chain(section.entries.iter().map(|e| (Some(name), e)))
        .collect();
    selfloop::Lines { name, entries }
}

/// Where an entry came from, for messages.
struct At<'e> {
    section: Option<&'e str>,
    entry: &'e Entry,
}

impl Parser<'_> {
    /// The file a section was written in: the main one or an included one.
    fn file_of<'s>(&'s self, section: &'s Section) -> &'s Path {
        section.file.as_deref().unwrap_or(self.path)
    }

    /// What a message about an entry starts with: `file:line: [section] option: `, or for a
    /// flag `--flag ` (as a command-line tool words it).
    fn locate(&self, at: &At) -> String {
        if self.flags {
            return format!("{} ", oneoff::flag_of(&at.entry.key));
        }
        let section = at.section.map(|s| format!(" [{s}]")).unwrap_or_default();
        let file = at.entry.file.as_deref().unwrap_or(self.path);
        let key = lines::shown(&at.entry.key);
        format!("{}:{}:{section} {key}: ", file.display(), at.entry.line)
    }

    fn problem(&mut self, at: &At, msg: impl fmt::Display) {
        let text = format!("{}{msg}", self.locate(at));
        if !self.problems.contains(&text) {
            self.problems.push(text);
        }
    }

    fn warn(&mut self, at: &At, msg: impl fmt::Display) {
        let text = Warning(format!("{}{msg}", self.locate(at)));
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    /// Parses a value, recording the problem when it fails.
    fn value<T>(&mut self, at: &At, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match parse(&at.entry.value) {
            Ok(v) => Some(v),
            Err(msg) => {
                // A huge value (a file pasted by mistake) is quoted short.
                let v = &at.entry.value;
                let msg = match lines::shown(v) {
                    std::borrow::Cow::Owned(short) => msg.replace(v.as_str(), &short),
                    std::borrow::Cow::Borrowed(_) => msg,
                };
                // stunnel has no inline comments either, but a user who wrote one deserves
                // to be told why `6379 ; primary` is not a port.
                let inline = [" ;", "\t;", " #", "\t#"].iter().any(|c| v.contains(c));
                match inline {
                    true => self.problem(
                        at,
                        format!("{msg} (comments go on their own line: `;` or `#` inside a value is part of it)"),
                    ),
                    false => self.problem(at, msg),
                }
                None
            }
        }
    }

    /// Checks an entry's name against the table; returns its setter if it is honoured.
    fn known(&mut self, at: &At) -> Option<options::Sets> {
        let Some(spec) = options::lookup(&at.entry.key) else {
            let hint = match options::suggest(&at.entry.key) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "see the option reference in README.md".into(),
            };
            self.problem(at, format!("unknown option; {hint}"));
            return None;
        };
        if spec.scope == Scope::Global && at.section.is_some() {
            self.problem(at, "is a global option; move it above the first [section]");
            return None;
        }
        match spec.support {
            Support::Honoured(setter) => Some(setter.0),
            Support::Ignored(Some(why)) => {
                self.warn(at, why);
                None
            }
            Support::Ignored(None) => {
                self.warn(at, "is a stunnel option retunnel does not use; it is ignored");
                None
            }
            Support::Refused(why) => {
                self.problem(at, format!("is not supported: {why}"));
                None
            }
        }
    }

    fn config(&mut self, sections: &[Section]) -> Config {
        let (global_part, services) = sections
            .split_first()
            .expect("lines::read yields the global part first");
        let mut global = Global::default();
        let mut defaults = Vec::new();
        for entry in &global_part.entries {
            let at = At { section: None, entry };
            match self.known(&at) {
                Some(options::Sets::Process(set)) => set(self, &at, &mut global),
                Some(options::Sets::Section(_)) => defaults.push(entry),
                None => {}
            }
        }
        let global_lines: Vec<(Option<&str>, &Entry)> = global_part.entries.iter().map(|e| (None, e)).collect();
        self.repeated(&global_lines);
        if let Some(u) = &global.user
            && u.gid.is_none()
            && global.group.is_none()
        {
            self.problems.push(format!(
                "{}: setuid = {}: this uid has no passwd entry, so it has no group to switch to; add `setgid = GROUP`",
                self.path.display(),
                u.uid
            ));
        }
        if services.is_empty() {
            self.problems.push(format!(
                "{}: no [section] defines a tunnel; add one with `accept` and `connect` (see tunnel.conf.example)",
                self.path.display()
            ));
        }
        for (i, section) in services.iter().enumerate() {
            if let Some(first) = services[..i].iter().find(|s| s.name == section.name) {
                self.problems.push(format!(
                    "{}:{}: [{}] is defined twice (first on line {}); rename one of the sections",
                    self.file_of(section).display(),
                    section.line,
                    section.name.as_deref().unwrap_or_default(),
                    first.line
                ));
            }
        }
        let mut out: Vec<ServiceConfig> = Vec::new();
        for section in services {
            let Some(svc) = self.service(section, &defaults) else {
                continue;
            };
            if out.iter().any(|o| o.name == svc.name) {
                continue; // reported above
            }
            let clash = out.iter().find_map(|o| {
                let mine = svc.accept.iter().find(|a| o.accept.iter().any(|b| a.clashes(b)))?;
                Some((mine, &o.name))
            });
            if let Some((addr, other)) = clash {
                self.problems.push(format!(
                    "{}:{}: [{}] accept {addr} is already used by [{other}]; give each section its own port",
                    self.file_of(section).display(),
                    section.line,
                    svc.name,
                ));
            } else {
                out.push(svc);
            }
        }
        if let Some(addr) = global.metrics {
            self.metrics_clash(addr, global_part, services, &out);
        }
        let lines: Vec<_> = services.iter().map(|s| lines_of(s, &defaults)).collect();
        self.self_loops(&lines);
        self.cluster_port_clashes(services, &out, global.metrics);
        Config {
            path: self.path.to_path_buf(),
            global,
            services: out,
        }
    }

    /// `metrics` on the port of a section's `accept`: both lines, and the fix.
    fn metrics_clash(&mut self, addr: SocketAddr, global: &Section, sections: &[Section], out: &[ServiceConfig]) {
        let Some(svc) = accepting_on(out, addr) else {
            return;
        };
        let key = |e: &&Entry, k: &str| e.key.eq_ignore_ascii_case(k);
        let Some(metrics) = global.entries.iter().rfind(|e| key(e, "metrics")) else {
            return;
        };
        let section = sections.iter().find(|s| s.name.as_deref() == Some(&svc.name));
        let accept_line = section.and_then(|s| {
            let clashes = |e: &&Entry| values::listen(&e.value).is_ok_and(|l| l.clashes(&Listen::Tcp(addr)));
            let line = s.entries.iter().find(|e| key(e, "accept") && clashes(e))?;
            Some(format!(
                "{}:{}",
                line.file.as_deref().unwrap_or(self.path).display(),
                line.line
            ))
        });
        let file = metrics.file.as_deref().unwrap_or(self.path);
        self.problems.push(format!(
            "{}:{}: metrics {addr} is also where [{}] accepts clients ({}); two listeners cannot share a port: give `metrics` a port of its own (for example `metrics = 127.0.0.1:9187`)",
            file.display(),
            metrics.line,
            svc.name,
            accept_line.map_or_else(|| "its `accept`".into(), |l| format!("`accept` on {l}")),
        ));
    }

    fn service(&mut self, section: &Section, defaults: &[&Entry]) -> Option<ServiceConfig> {
        let name = section.name.clone().expect("only the global part has no name");
        let problems_before = self.problems.len();
        let mut draft = Draft::default();
        let lines = lines_of(section, defaults);
        self.repeated(&lines.entries);
        for (written_in, entry) in lines.entries {
            let at = At {
                section: written_in,
                entry,
            };
            draft.written_at.note(&entry.key, self.locate(&at));
            match self.known(&at) {
                Some(options::Sets::Section(set)) => set(self, &at, &mut draft),
                Some(options::Sets::Process(_)) => self.warn(
                    &at,
                    format!(
                        "`{}` applies to the whole process in retunnel; set it once above the first [section]",
                        at.entry.key
                    ),
                ),
                None => {}
            }
        }
        let header = match self.flags {
            true => oneoff::COMMAND_LINE.to_string(),
            false => format!("{}:{}: [{name}]", self.file_of(section).display(), section.line),
        };
        let written = |key: &str| {
            section
                .entries
                .iter()
                .chain(defaults.iter().copied())
                .any(|e| e.key.eq_ignore_ascii_case(key))
        };
        self.finish(name, draft, &header, written, problems_before)
    }

    /// Checks what a section's lines say together and builds its configuration; `written`
    /// says whether an option was written at all (a line that failed has its own message).
    fn finish(
        &mut self,
        name: String,
        draft: Draft,
        header: &str,
        written: impl Fn(&str) -> bool,
        problems_before: usize,
    ) -> Option<ServiceConfig> {
        let Draft {
            accept,
            connect,
            mut tls,
            client,
            cert,
            key,
            connect_tls,
            verify_asked,
            require_cert,
            failover,
            socket_options,
            max_connections,
            prewarm,
            connect_timeout,
            close_timeout,
            idle_timeout,
            options_min,
            options_max,
            mut redis,
            cluster_ports,
            on_readonly,
            sni_at,
            written_at,
        } = draft;
        let versions_at = written_at.last_of(&["sslVersion", "sslVersionMin", "sslVersionMax", "options"], header);
        self.version_bounds(&versions_at, &mut tls, options_min, options_max);
        if let (Some(sni), Some(host)) = (&tls.sni, &tls.check_host)
            && !sni.is_empty()
            && !sni.eq_ignore_ascii_case(host)
        {
            let at = sni_at.unwrap_or_else(|| format!("{header}: "));
            self.problems.push(format!(
                "{at}`sni = {sni}` differs from `checkHost = {host}`; retunnel verifies the name it sends, so remove `sni` or make them equal"
            ));
        }
        self.verification(header, &tls, &written_at);
        match (&mut redis, cluster_ports) {
            (Some(r), ports) => r.cluster_ports = ports,
            (None, Some(_)) => self.problems.push(format!(
                "{header}: `clusterPorts` only applies to Redis Cluster tunnels; add `protocol = redis` or remove it"
            )),
            (None, None) => {}
        }
        match (&mut redis, on_readonly) {
            (Some(r), Some(policy)) => r.on_readonly = policy,
            (None, Some(_)) => self.problems.push(format!(
                "{header}: `onReadonly` only applies to Redis tunnels, which see replies; add `protocol = redis` or remove it"
            )),
            _ => {}
        }
        // A line that failed to parse has its own message already.
        if connect.is_empty() && !written("connect") {
            self.problems.push(format!(
                "{header}: no `connect`; add `connect = host:port` (the TLS server)"
            ));
        }
        if accept.is_empty() {
            if !written("accept") {
                self.problems.push(format!(
                    "{header}: no `accept`; add `accept = 127.0.0.1:PORT` (where clients connect)"
                ));
            }
            return None;
        }
        let unix = accept.iter().find(|a| matches!(a, Listen::Unix(_)));
        if let Some(path) = unix {
            if !client {
                self.problems.push(format!(
                    "{header}: accept {path}: server mode (`client = no`) takes TLS clients on TCP only; accept on a TCP address, or use `client = yes` for plain clients on the socket"
                ));
            }
            if redis.is_some() {
                self.problems.push(format!(
                    "{header}: accept {path}: `protocol = redis` points cluster clients at node listeners by IP address, which a Unix socket has none of; accept on a TCP address (127.0.0.1:PORT) for Redis Cluster"
                ));
            }
        }
        let asked = Asked {
            verify: verify_asked,
            require: require_cert,
        };
        tls.client_auth = self.client_auth(header, client, connect_tls, asked, &tls, &written_at);
        if !client && connect_tls != Some(true) {
            let asks_clients = tls.client_auth.is_some();
            self.server_mode_lines(&noeffect::ServerMode { header, asks_clients }, &written);
        }
        let ends = self.ends(header, client, cert, key, connect_tls);
        if self.problems.len() > problems_before {
            return None;
        }
        let (accept_tls, identity, connect_tls) = ends?;
        tls.identity = identity;
        Some(ServiceConfig {
            name,
            accept,
            connect,
            tls,
            connect_timeout,
            close_timeout,
            idle_timeout,
            failover,
            socket_options,
            max_connections,
            prewarm,
            accept_tls,
            connect_tls,
            redis,
        })
    }

    /// Server mode without `connectTLS`: whether clients are asked for certificates (a
    /// `verify`/`verifyChain`/`verifyPeer` line) and must show one (`requireCert`, else
    /// stunnel's rule: what the last of those lines implied). With `connectTLS = yes` those
    /// lines are about the upstream, as before.
    fn client_auth(
        &mut self,
        header: &str,
        client: bool,
        connect_tls: Option<bool>,
        asked: Asked,
        tls: &TlsSettings,
        written_at: &WrittenAt,
    ) -> Option<ClientAuth> {
        if client || connect_tls == Some(true) {
            return None;
        }
        if !asked.verify {
            if asked.require == Some(true) {
                let at = written_at.last_of(&["requireCert"], header);
                self.problems.push(format!(
                    "{at}`requireCert = yes` alone would let in a client with any certificate; add `verifyChain = yes` and `CAfile` with the CA that issues client certificates"
                ));
            }
            return None;
        }
        if tls.ca_file.is_none() && tls.ca_path.is_none() {
            let at = written_at.last_of(&["verify", "verifyChain", "verifyPeer"], header);
            self.problems.push(format!(
                "{at}with `client = no`, `verify`/`verifyChain`/`verifyPeer` check clients' certificates against CAfile/CApath only (never the system store); add `CAfile` with the CA that issues them"
            ));
        }
        Some(match asked.require {
            Some(false) => ClientAuth::Optional,
            _ => ClientAuth::Required,
        })
    }

    /// What the verification options say together: names to check need a certificate that
    /// is checked, pins need the files they pin to, CRLs need the chain.
    fn verification(&mut self, header: &str, tls: &TlsSettings, written_at: &WrittenAt) {
        let at = |keys: &[&str]| written_at.last_of(keys, header);
        let checked = tls.verify_chain || tls.verify_peer;
        if !checked && (tls.check_host.is_some() || !tls.check_ips.is_empty()) {
            self.problems.push(format!(
                "{}`checkHost`/`checkIP` need the certificate verified to mean anything; remove `verifyChain = no`/`verify = 0` or remove them",
                at(&["checkHost", "checkIP"])
            ));
        }
        if tls.verify_peer && tls.ca_file.is_none() && tls.ca_path.is_none() {
            self.problems.push(format!(
                "{}`verifyPeer = yes`/`verify = 3|4` accept only the certificates in CAfile/CApath; add `CAfile = FILE` holding the peer's certificate",
                at(&["verifyPeer", "verify"])
            ));
        }
        if !tls.verify_chain && (tls.crl_file.is_some() || tls.crl_path.is_some()) {
            self.problems.push(format!(
                "{}`CRLfile`/`CRLpath` are checked along the certificate chain, which this section does not verify; remove `verifyChain = no`/`verify = 0|4` or remove them",
                at(&["CRLfile", "CRLpath"])
            ));
        }
    }

    /// Applies `options = NO_…` to the version bounds: they only ever narrow them. Bounds
    /// that leave no version are a problem naming what left none.
    fn version_bounds(
        &mut self,
        at: &str,
        tls: &mut TlsSettings,
        options_min: Option<TlsVersion>,
        options_max: Option<TlsVersion>,
    ) {
        if let Some(m) = options_min {
            tls.min_version = tls.min_version.max(m);
        }
        if let Some(m) = options_max {
            tls.max_version = Some(tls.max_version.map_or(m, |v| v.min(m)));
        }
        let Some(max) = tls.max_version.filter(|max| *max < tls.min_version) else {
            return;
        };
        let why = match (options_min, options_max) {
            (Some(TlsVersion::Tls13), Some(_)) => {
                "`options = NO_TLSv1.2` and `options = NO_TLSv1.3` leave no TLS version retunnel speaks (it has 1.2 and 1.3 only); remove one of them".to_string()
            }
            _ => format!(
                "no TLS version is left: the highest allowed ({max}) is below the lowest ({}); check sslVersionMin, sslVersionMax, sslVersion and options",
                tls.min_version
            ),
        };
        self.problems.push(format!("{at}{why}"));
    }

    /// What each end speaks, from `client`, `cert`/`key` and `connectTLS`: the accepting
    /// side's certificate (server mode), the client certificate towards `connect` (client
    /// mode), and whether `connect` gets TLS.
    fn ends(
        &mut self,
        header: &str,
        client: bool,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        connect_tls: Option<bool>,
    ) -> Option<(Option<CertKey>, Option<CertKey>, bool)> {
        if cert.is_none() && key.is_some() {
            self.problems.push(format!(
                "{header}: `key` without `cert`; add `cert = FILE` with the certificate that key belongs to"
            ));
            return None;
        }
        let pair = cert.map(|cert| CertKey { cert, key });
        if client {
            if connect_tls == Some(false) {
                self.problems.push(format!(
                    "{header}: `connectTLS = no` with `client = yes` would relay plain text both ways; remove it (client mode always connects with TLS) or set `client = no`"
                ));
            }
            return Some((None, pair, true));
        }
        let connect_tls = connect_tls.unwrap_or(false);
        if pair.is_none() {
            self.problems.push(format!(
                "{header}: server mode (`client = no`) needs `cert` (and `key`, unless the key is in the same file): the certificate clients see"
            ));
        }
        Some((pair, None, connect_tls))
    }
}

#[cfg(test)]
mod conn_tests;
#[cfg(test)]
mod tests;
