//! The table of every option retunnel knows: its own and all of stunnel's.
//!
//! One row per option, as stunnel's `options.c` keeps them: the name, where it may be written,
//! what retunnel does with it, the default and a one-line doc, and for an honoured option the
//! setter that parses its value into the configuration being built. The parser only walks this
//! table, so a new option is one row (plus the field it sets). The same table gives the "did
//! you mean …?" suggestions and keeps the README's reference complete (`tests/readme.rs`).

use super::{At, Draft, Parser, RedisSettings, TlsVersion, values};

/// Where an option may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only before the first `[section]`.
    Global,
    /// In a section; written before the first section it is the default for every section.
    Service,
}

/// What retunnel does with an option.
#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// Parsed and honoured: the setter turns the value into the configuration.
    Honoured(Setter),
    /// Known to stunnel, harmless to skip: a warning (this text, or a general one) names it.
    Ignored(Option<&'static str>),
    /// Known to stunnel, but skipping it would weaken security or change what the tunnel does:
    /// an error that says why.
    Refused(&'static str),
}

/// Parses one line of an honoured option into the configuration being built. A setter records
/// any problem with [`Parser::problem`]/[`Parser::value`] and never panics.
#[derive(Clone, Copy)]
pub struct Setter(pub(super) Sets);

impl std::fmt::Debug for Setter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Sets::Process(_) => "Setter(process)",
            Sets::Section(_) => "Setter(section)",
        })
    }
}

/// What a setter sets.
#[derive(Clone, Copy)]
pub(super) enum Sets {
    /// An option of the whole process: written in a section it only gets a warning.
    Process(fn(&mut Parser<'_>, &At<'_>, &mut super::Global)),
    /// An option of one section (written above the first section: of every section).
    Section(fn(&mut Parser<'_>, &At<'_>, &mut Draft)),
}

/// One known option.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The canonical spelling (matching is case-insensitive).
    pub name: &'static str,
    /// Where it may be written.
    pub scope: Scope,
    /// What retunnel does with it.
    pub support: Support,
    /// The default, exactly as the README's reference table shows it (empty when not honoured).
    pub default: &'static str,
    /// What it does, in one line (empty when not honoured).
    pub doc: &'static str,
}

impl OptionSpec {
    /// True when retunnel parses and honours the option.
    pub fn is_honoured(&self) -> bool {
        matches!(self.support, Support::Honoured(_))
    }
}

/// A process-wide option (only above the first section).
const fn process(
    name: &'static str,
    default: &'static str,
    doc: &'static str,
    set: fn(&mut Parser<'_>, &At<'_>, &mut super::Global),
) -> OptionSpec {
    OptionSpec {
        name,
        scope: Global,
        support: Support::Honoured(Setter(Sets::Process(set))),
        default,
        doc,
    }
}

/// A per-section option (above the first section: the default of every section).
/// `curves` and its older name `ECDHcurve`: one setter, so the two spellings cannot drift.
fn set_curves(p: &mut Parser<'_>, at: &At<'_>, s: &mut Draft) {
    s.tls.curves = p
        .value(at, |v| owned(crate::tls::suites::group_names(v)))
        .or(s.tls.curves.take());
}

const fn section(
    name: &'static str,
    default: &'static str,
    doc: &'static str,
    set: fn(&mut Parser<'_>, &At<'_>, &mut Draft),
) -> OptionSpec {
    OptionSpec {
        name,
        scope: Service,
        support: Support::Honoured(Setter(Sets::Section(set))),
        default,
        doc,
    }
}

const fn ignored(name: &'static str, scope: Scope) -> OptionSpec {
    ignored_as(name, scope, None)
}

const fn ignored_because(name: &'static str, scope: Scope, warning: &'static str) -> OptionSpec {
    ignored_as(name, scope, Some(warning))
}

const fn ignored_as(name: &'static str, scope: Scope, warning: Option<&'static str>) -> OptionSpec {
    OptionSpec {
        name,
        scope,
        support: Support::Ignored(warning),
        default: "",
        doc: "",
    }
}

const fn refused(name: &'static str, scope: Scope, why: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        scope,
        support: Support::Refused(why),
        default: "",
        doc: "",
    }
}

use Scope::{Global, Service};

const SECLEVEL: &str = "`@SECLEVEL` has no effect: rustls has no OpenSSL security levels and keeps its own rules (SHA-1 signatures and RSA keys under 2048 bits are always refused; nothing stricter is added); remove it";
const NO_REVOCATION: &str = "retunnel has no OCSP (rustls does not fetch OCSP responses), and ignoring the option would accept a revoked certificate; use CRLfile/CRLpath instead";
const NO_EMAIL_CHECK: &str = "retunnel cannot check e-mail addresses in certificates, and ignoring the option would accept any valid certificate";

const NO_ENGINES: &str = "OpenSSL engines are not supported";
const NO_PROGRAMS: &str = "retunnel tunnels to network services only, not to programs";
const NO_STARTTLS: &str = "STARTTLS protocols are not supported";

/// Every option stunnel 5 knows, plus retunnel's own.
pub const OPTIONS: &[OptionSpec] = &[
    // Honoured, for the whole process.
    process("fips", "`no`", "No FIPS mode: only `no` is accepted.", |p, at, _| {
        only_no(p, at, "retunnel has no FIPS mode; set `fips = no` or remove the line")
    }),
    process(
        "foreground",
        "`yes`",
        "Stay attached (`yes`, `quiet`) or detach once listening (`no`).",
        |p, at, g| match at.entry.value.to_ascii_lowercase().as_str() {
            "yes" | "quiet" => g.foreground = true,
            "no" => g.foreground = false,
            _ => p.problem(at, "must be `yes`, `quiet` or `no`"),
        },
    ),
    process(
        "output",
        "stderr",
        "Log to this file instead of standard error.",
        |p, at, g| g.output = p.value(at, values::path),
    ),
    process(
        "log",
        "`append`",
        "Whether `output` keeps its lines at start (`append`) or starts empty (`overwrite`).",
        |p, at, g| g.log_mode = p.value(at, values::log_mode).unwrap_or_default(),
    ),
    process(
        "pid",
        "none",
        "Write the process id to this file once listening.",
        |_, at, g| g.pid = (!at.entry.value.is_empty()).then(|| at.entry.value.clone().into()),
    ),
    process("setuid", "none", "Drop to this user once listening.", |p, at, g| {
        g.user = p.value(at, values::user)
    }),
    process(
        "setgid",
        "the `setuid` user's group",
        "Drop to this group once listening.",
        |p, at, g| g.group = p.value(at, values::group),
    ),
    // stunnel allows `debug` per service too; retunnel has one log level, so a section's
    // `debug` is a warning (it is a process setter in a section-scoped row).
    OptionSpec {
        scope: Service,
        ..process(
            "debug",
            "`5` (notice)",
            "Log level: 0-7 or a syslog level name.",
            |p, at, g| g.log_level = p.value(at, values::log_level).unwrap_or_default(),
        )
    },
    process(
        "syslog",
        "`yes` when detached without `output`, else `no`",
        "Send log lines to syslog too.",
        |p, at, g| g.syslog = p.value(at, values::yes_no),
    ),
    // Read in before parsing by `include::expand`.
    process(
        "include",
        "none",
        "Read every `*.conf` file of this directory here.",
        |_, _, _| {},
    ),
    // retunnel's own. A bare port means loopback, as for `accept`: the endpoint is for this host.
    process(
        "metrics",
        "none",
        "Serve /metrics (Prometheus), /health and /status over HTTP here: `port` (loopback), `host:port`.",
        |p, at, g| g.metrics = p.value(at, values::accept_addr),
    ),
    process(
        "threads",
        "`auto`",
        "Worker threads that run the connections, each with its own event loop: `auto` (one per CPU) or a number.",
        |p, at, g| {
            g.threads = p.value(at, values::threads).unwrap_or(g.threads);
            let cpus = crate::workers::auto();
            if let Some(n) = g.threads.filter(|&n| n > cpus) {
                p.warn(
                    at,
                    format!("{n} threads on {cpus} CPUs: the extra threads only take turns on them; `auto` starts one per CPU"),
                );
            }
        },
    ),
    // Honoured, per section.
    section(
        "client",
        "`yes`",
        "`yes`: plain TCP in, TLS out; `no`: server mode, TLS in.",
        |p, at, s| s.client = p.value(at, values::yes_no).unwrap_or(s.client),
    ),
    section(
        "accept",
        "required",
        "Where clients connect: `port` (loopback), `host:port` (port 0: any free port), or a Unix socket path; repeatable.",
        |p, at, s| {
            // stunnel listens on every `accept` line of a section: each is a listener of the
            // same service.
            let Some(listen) = p.value(at, values::listen) else {
                return;
            };
            if s.accept.iter().any(|a| a.clashes(&listen)) {
                p.problem(
                    at,
                    format!("{listen} is already an `accept` of this section; remove the repeated line"),
                );
            } else {
                s.accept.push(listen);
            }
        },
    ),
    section(
        "connect",
        "required",
        "The TLS server, `host:port`; repeat for fallbacks.",
        |p, at, s| s.connect.extend(p.value(at, values::target)),
    ),
    section(
        "CAfile",
        "none",
        "A PEM bundle of CA certificates trusted in addition to the system store.",
        |p, at, s| {
            let what = "give a PEM file of CA certificates (`openssl x509 -inform DER -in FILE -out FILE.pem` converts a DER one)";
            s.tls.ca_file = p.value(at, |v| values::pem_file(v, "CERTIFICATE", "certificate", what));
        },
    ),
    section(
        "CApath",
        "none",
        "A directory of PEM CA certificates trusted in addition.",
        |p, at, s| s.tls.ca_path = p.value(at, |v| values::existing_dir(v, "CAfile")),
    ),
    section(
        "verify",
        "`2`",
        "stunnel's older switch: 0 = no checks, 1/2 = verify the chain, 3 = chain and pin, 4 = pin only.",
        |p, at, s| {
            let Some(n) = p.value(at, values::verify_level) else {
                return;
            };
            s.tls.verify_chain = (1..=3).contains(&n);
            s.tls.verify_peer = n >= 3;
            s.verify_asked = n >= 1;
            s.require_cert = Some(n >= 2);
        },
    ),
    section(
        "verifyChain",
        "`yes`",
        "Verify the certificate chain and host name.",
        |p, at, s| verify_switch(p, at, s, |t| &mut t.verify_chain),
    ),
    section(
        "verifyPeer",
        "`no`",
        "Pinning: the peer's certificate must be one of those in `CAfile`/`CApath`.",
        |p, at, s| verify_switch(p, at, s, |t| &mut t.verify_peer),
    ),
    section(
        "checkIP",
        "none, repeatable",
        "An IP address the certificate must carry (any one of the lines), instead of the host name.",
        |p, at, s| s.tls.check_ips.extend(p.value(at, values::ip)),
    ),
    section(
        "requireCert",
        "`yes` with `verify` ≥ 2, `verifyChain` or `verifyPeer`",
        "Server mode: refuse a client without a certificate (`no`: verify one when shown).",
        |p, at, s| s.require_cert = p.value(at, values::yes_no).or(s.require_cert),
    ),
    section(
        "CRLfile",
        "none",
        "A PEM file of CRLs: a revoked certificate in the chain is refused.",
        |p, at, s| {
            let what =
                "give the CRL your CA publishes (`openssl crl -inform DER -in CRL -out CRL.pem` converts a DER one)";
            s.tls.crl_file = p.value(at, |v| values::pem_file(v, "X509 CRL", "CRL", what));
        },
    ),
    section(
        "CRLpath",
        "none",
        "A directory of PEM CRLs (`HASH.r0` or any name), checked as `CRLfile`.",
        |p, at, s| s.tls.crl_path = p.value(at, |v| values::existing_dir(v, "CRLfile")),
    ),
    section(
        "checkHost",
        "the `connect` host",
        "The name the certificate must carry.",
        |p, at, s| {
            if s.tls.check_host.is_some() && at.section.is_some() {
                p.problem(
                    at,
                    "retunnel checks one host name per section; keep one `checkHost` line",
                );
            }
            s.tls.check_host = p.value(at, values::host_name);
        },
    ),
    section(
        "sni",
        "`checkHost`, else the `connect` host; none for an IP address",
        "The server name sent; empty sends none.",
        |p, at, s| {
            // Empty sends none; anything else goes on the wire and must be a valid name
            // (rustls refuses one over 253 bytes, which would fail every connection).
            let sni = at.entry.value.clone();
            if sni.is_empty() || p.value(at, values::host_name).is_some() {
                s.tls.sni = Some(sni);
                s.sni_at = Some(p.locate(at));
            }
        },
    ),
    section(
        "delay",
        "`yes`",
        "Accepted for compatibility: retunnel always resolves per connection.",
        |p, at, _| {
            p.value(at, values::yes_no);
        },
    ),
    section(
        "options",
        "—",
        "OpenSSL flags: `NO_TLSv1`… raise the protocol floor, `NO_TLSv1.3` caps it at 1.2, others are ignored.",
        |p, at, s| match p.value(at, values::ssl_option) {
            Some(values::SslOption::Min(m)) => s.options_min = s.options_min.max(Some(m)),
            Some(values::SslOption::Max(m)) => s.options_max = Some(s.options_max.map_or(m, |o| o.min(m))),
            Some(values::SslOption::Other(flag)) => p.warn(at, format!("OpenSSL option {flag} is ignored")),
            None => {}
        },
    ),
    section("sslVersion", "—", "Exactly one TLS version, or `all`.", |p, at, s| {
        if let Some((min, max)) = p.value(at, values::ssl_version_range)
            && spoken(p, at, Some(min))
        {
            s.tls.min_version = min;
            s.tls.max_version = max;
        }
    }),
    section("sslVersionMin", "`TLSv1.2`", "The lowest TLS version.", |p, at, s| {
        if let Some(v) = p.value(at, values::tls_version_or_all)
            && spoken(p, at, v)
        {
            s.tls.min_version = v.unwrap_or(TlsVersion::Tls12);
        }
    }),
    section("sslVersionMax", "newest", "The highest TLS version.", |p, at, s| {
        if let Some(v) = p.value(at, values::tls_version_or_all)
            && spoken(p, at, v)
        {
            s.tls.max_version = v;
        }
    }),
    section(
        "TIMEOUTconnect",
        "`10`",
        "Seconds to connect, and again for each TLS handshake.",
        |p, at, s| s.connect_timeout = p.value(at, values::seconds_nonzero).unwrap_or(s.connect_timeout),
    ),
    section(
        "TIMEOUTclose",
        "`60`",
        "Seconds open connections get to finish at shutdown.",
        |p, at, s| s.close_timeout = p.value(at, values::seconds).unwrap_or(s.close_timeout),
    ),
    section(
        "TIMEOUTidle",
        "`43200`",
        "Close a connection idle this many seconds; 0 = never.",
        |p, at, s| {
            if let Some(d) = p.value(at, values::seconds) {
                s.idle_timeout = (!d.is_zero()).then_some(d);
            }
        },
    ),
    section(
        "cert",
        "none",
        "PEM certificate chain: the client certificate, or in server mode the server's.",
        |p, at, s| {
            let what = "point `cert` at the PEM certificate chain, leaf first (a private key goes in `key`)";
            s.cert = p.value(at, |v| values::pem_file(v, "CERTIFICATE", "certificate", what));
        },
    ),
    section("key", "the `cert` file", "PEM private key of `cert`.", |p, at, s| {
        s.key = p.value(at, values::existing_file)
    }),
    section(
        "failover",
        "`prio`",
        "How several `connect` targets are chosen: `prio` or `rr`.",
        |p, at, s| s.failover = p.value(at, values::failover).unwrap_or(s.failover),
    ),
    section(
        "socket",
        "none, repeatable",
        "`a|l|r:OPTION=VALUE`: a socket option.",
        |p, at, s| s.socket_options.extend(p.value(at, crate::sockopt::parse)),
    ),
    // retunnel's own.
    section(
        "connectTLS",
        "`no`",
        "Server mode: connect to the upstream with TLS too.",
        |p, at, s| s.connect_tls = p.value(at, values::yes_no),
    ),
    section(
        "maxConnections",
        "no limit",
        "At most this many open connections in the section.",
        |p, at, s| s.max_connections = p.value(at, values::count).or(s.max_connections),
    ),
    section(
        "prewarm",
        "`0`",
        "Keep this many upstream connections connected and handshaken for new clients.",
        |p, at, s| s.prewarm = p.value(at, values::prewarm).unwrap_or(s.prewarm),
    ),
    // `protocol = redis` (retunnel's own value; stunnel's STARTTLS values are refused when parsed).
    section(
        "protocol",
        "none (bytes relayed as they are)",
        "`redis`: Redis Cluster aware relaying.",
        |p, at, s| {
            if p.value(at, values::protocol).is_some() {
                s.redis = Some(RedisSettings::default());
            }
        },
    ),
    section(
        "clusterPorts",
        "any free port, at most 256 listeners",
        "`A-B`: the ports cluster node listeners take.",
        |p, at, s| s.cluster_ports = p.value(at, values::port_range),
    ),
    section(
        "onReadonly",
        "`replay`",
        "What a READONLY from a primary that moved away does: `replay`, `close` or `pass`.",
        |p, at, s| s.on_readonly = p.value(at, values::on_readonly),
    ),
    section(
        "sessionResume",
        "`yes`",
        "Resume TLS sessions: towards the upstream, and (server mode) for clients.",
        |p, at, s| s.tls.session.resume = p.value(at, values::yes_no).unwrap_or(s.tls.session.resume),
    ),
    section(
        "sessionCacheSize",
        "`1000`",
        "Most TLS sessions kept per section; 0 = no limit.",
        |p, at, s| s.tls.session.cache_size = p.value(at, values::count_or_zero).unwrap_or(s.tls.session.cache_size),
    ),
    section(
        "sessionCacheTimeout",
        "`300`",
        "Seconds a stored TLS session may be resumed.",
        |p, at, s| s.tls.session.cache_timeout = p.value(at, values::seconds).unwrap_or(s.tls.session.cache_timeout),
    ),
    section(
        "ciphers",
        "rustls's TLS 1.2 suites",
        "TLS 1.2 cipher suites, OpenSSL names separated by `:`.",
        |p, at, s| {
            if at.entry.value.to_ascii_uppercase().contains("@SECLEVEL") {
                p.warn(at, SECLEVEL);
            }
            s.tls.ciphers = p
                .value(at, |v| owned(crate::tls::suites::tls12_names(v)))
                .or(s.tls.ciphers.take())
        },
    ),
    section(
        "ciphersuites",
        "rustls's TLS 1.3 suites",
        "TLS 1.3 cipher suites separated by `:`.",
        |p, at, s| {
            s.tls.ciphersuites = p
                .value(at, |v| owned(crate::tls::suites::tls13_names(v)))
                .or(s.tls.ciphersuites.take())
        },
    ),
    section(
        "curves",
        "rustls's groups: X25519, P-256, P-384, X25519MLKEM768",
        "Key-exchange groups, in order, separated by `:`.",
        set_curves,
    ),
    section(
        "ECDHcurve",
        "as `curves`",
        "stunnel's older name for `curves`.",
        set_curves,
    ),
    // Ignored with a warning: skipping them changes neither security nor what is tunnelled.
    ignored("compression", Global),
    ignored("EGD", Global),
    ignored("RNDbytes", Global),
    ignored("RNDfile", Global),
    ignored("RNDoverwrite", Global),
    ignored("service", Service),
    ignored("taskbar", Global),
    ignored("iconActive", Global),
    ignored("iconError", Global),
    ignored("iconIdle", Global),
    ignored_because(
        "libwrap",
        Service,
        "is ignored: retunnel does not consult /etc/hosts.allow or /etc/hosts.deny; limit who can connect with `accept` on 127.0.0.1 or a firewall",
    ),
    ignored("logId", Service),
    ignored("sessiond", Service),
    ignored("ticketKeySecret", Service),
    ignored("ticketMacSecret", Service),
    ignored("renegotiation", Service),
    ignored("reset", Service),
    ignored("retry", Service),
    ignored("stack", Service),
    ignored("securityLevel", Service),
    ignored("TIMEOUTbusy", Service),
    ignored("TIMEOUTocsp", Service),
    ignored("local", Service),
    // Refused: ignoring them would weaken security or silently change the tunnel.
    refused("OCSP", Service, NO_REVOCATION),
    refused("OCSPaia", Service, NO_REVOCATION),
    refused("OCSPflag", Service, NO_REVOCATION),
    refused("OCSPnonce", Service, NO_REVOCATION),
    refused("OCSPrequire", Service, NO_REVOCATION),
    refused("checkEmail", Service, NO_EMAIL_CHECK),
    refused(
        "ident",
        Service,
        "retunnel cannot check clients' ident (RFC 1413) user names, and ignoring it would let any client in",
    ),
    refused("PSKidentity", Service, "pre-shared keys are not supported"),
    refused("PSKsecrets", Service, "pre-shared keys are not supported"),
    refused("engine", Global, NO_ENGINES),
    refused("engineCtrl", Global, NO_ENGINES),
    refused("engineDefault", Global, NO_ENGINES),
    refused("engineId", Service, NO_ENGINES),
    refused("engineNum", Service, NO_ENGINES),
    refused("CAengine", Service, NO_ENGINES),
    refused(
        "chroot",
        Global,
        "retunnel cannot chroot yet, and ignoring it would run with more of the file system than you asked for",
    ),
    refused("exec", Service, NO_PROGRAMS),
    refused("execArgs", Service, NO_PROGRAMS),
    refused("pty", Service, NO_PROGRAMS),
    refused("protocolAuthentication", Service, NO_STARTTLS),
    refused("protocolDomain", Service, NO_STARTTLS),
    refused("protocolHost", Service, NO_STARTTLS),
    refused("protocolPassword", Service, NO_STARTTLS),
    refused("protocolUsername", Service, NO_STARTTLS),
    refused(
        "redirect",
        Service,
        "retunnel refuses a client whose certificate fails, it does not redirect it elsewhere",
    ),
    refused("transparent", Service, "transparent proxying is not supported"),
];

/// A yes/no option of which retunnel can only honour `no`: `yes` is the problem `why`.
/// A list of names, owned.
fn owned(r: Result<Vec<&'static str>, String>) -> Result<Vec<String>, String> {
    r.map(|v| v.into_iter().map(str::to_string).collect())
}

/// `verifyChain`/`verifyPeer`: sets the flag `field` picks; `yes`, as in stunnel, also makes
/// a server-mode section ask clients for certificates and require one.
fn verify_switch(p: &mut Parser<'_>, at: &At<'_>, s: &mut Draft, field: fn(&mut super::TlsSettings) -> &mut bool) {
    let Some(v) = p.value(at, values::yes_no) else {
        return;
    };
    *field(&mut s.tls) = v;
    s.verify_asked |= v;
    if v {
        s.require_cert = Some(true);
    }
}

/// Whether retunnel speaks `v` (`None`: no bound); TLS 1.0/1.1 are a problem at this line,
/// naming the option as written and the fix.
fn spoken(p: &mut Parser<'_>, at: &At<'_>, v: Option<TlsVersion>) -> bool {
    let Some(old) = v.filter(|v| *v < TlsVersion::Tls12) else {
        return true;
    };
    p.problem(
        at,
        format!(
            "{old} is not supported: retunnel speaks TLS 1.2 and 1.3 only (TLS 1.0 and 1.1 are deprecated by RFC 8996; ElastiCache and MemoryDB need 1.2 or later); set `{} = TLSv1.2`",
            at.entry.key
        ),
    );
    false
}

fn only_no(p: &mut Parser<'_>, at: &At<'_>, why: &str) {
    if p.value(at, values::yes_no) == Some(true) {
        p.problem(at, why);
    }
}

/// Finds an option by name, ignoring case as stunnel does.
pub fn lookup(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// The known option closest to a misspelt one, if any is close enough to be a likely typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    suggest_from(name, OPTIONS.iter().map(|o| o.name))
}

/// The candidate closest to `word` (ignoring case), if it is close enough to be a likely typo.
pub fn suggest_from<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    closest(word, candidates, strsim::damerau_levenshtein)
}

/// [`suggest_from`] with the distance given. The edit distance costs length × length: a word
/// far longer than any candidate is no typo of one (and a megabyte-long one took seconds), so
/// it is not measured at all.
fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
    mut distance: impl FnMut(&str, &str) -> usize,
) -> Option<&'a str> {
    const MARGIN: usize = 8;
    let candidates: Vec<&str> = candidates.collect();
    let longest = candidates.iter().map(|c| c.len()).max().unwrap_or(0);
    if word.len() > longest + MARGIN {
        return None;
    }
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 1.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_ignoring_case() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert!(!a.name.eq_ignore_ascii_case(b.name), "{} twice", a.name);
            }
        }
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("conect"), Some("connect"));
        assert_eq!(suggest("cafiel"), Some("CAfile"));
        assert_eq!(suggest("TIMEOUTconect"), Some("TIMEOUTconnect"));
        assert_eq!(suggest("banana"), None);
        assert_eq!(suggest("foo"), None);
    }

    /// Issue 11 defect 8: a 1,000,000-character name took 4.3 s (quadratic edit distance).
    /// Counted in work, not time: a name longer than any option plus the margin is measured
    /// against no option; a typo still is.
    #[test]
    fn a_huge_name_is_not_measured() {
        let mut measured = 0;
        let names = || OPTIONS.iter().map(|o| o.name);
        let count = |a: &str, b: &str| {
            measured += 1;
            strsim::damerau_levenshtein(a, b)
        };
        assert_eq!(closest(&"x".repeat(1_000_000), names(), count), None);
        assert_eq!(measured, 0);
        assert_eq!(closest("conect", names(), strsim::damerau_levenshtein), Some("connect"));
    }
}
