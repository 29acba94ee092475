//! Everything about TLS, on rustls with the aws-lc-rs provider: towards the upstream server
//! (trust anchors, protocol versions, which name is verified and sent as SNI, a client
//! certificate, session resumption), towards clients in server mode (`client = no`: our
//! certificate, protocol versions, session tickets), the handshakes, and turning rustls's
//! typed errors into sentences that name the fix. The relay only sees an
//! `AsyncRead + AsyncWrite` stream. Private keys are read here and never logged.
//!
//! Unlike stunnel, the chain and the host name are verified by default, against the system
//! trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured) plus `CAfile`/`CApath`.

mod errors;
mod keys;
mod session;
mod stream;
pub mod suites;
mod trust;
mod verify;

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::{ClientConfig, HandshakeKind, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

pub use errors::{
    HandshakeError, SetupError, after_handshake, certificate as describe_certificate_error, check_ip_names,
};
pub use trust::reread as reread_trust_stores;
pub use verify::Seen;

use crate::config::{CertKey, Host, TlsSettings, TlsVersion};

/// A digest of the contents of every file a section's TLS is made of (`CAfile`, `CApath`,
/// `CRLfile`, `CRLpath`, `cert`/`key` of both sides): equal digests, same material. A reload
/// compares them to tell whether connections opened before it still are what the section
/// would open now.
pub fn material_digest(s: &TlsSettings, server: Option<&CertKey>) -> u64 {
    let pair = |p: &CertKey| [Some(p.cert.clone()), p.key.clone()];
    let paths: Vec<std::path::PathBuf> = [
        s.ca_file.clone(),
        s.ca_path.clone(),
        s.crl_file.clone(),
        s.crl_path.clone(),
    ]
    .into_iter()
    .chain(s.identity.iter().flat_map(pair))
    .chain(server.into_iter().flat_map(pair))
    .flatten()
    .collect();
    trust::contents_digest(paths.iter().map(std::path::PathBuf::as_path))
}

/// Both sides of a section's TLS as the daemon loads them at start: the client towards the
/// upstream and, in server mode, the acceptor with our `cert`/`key`. `check` loads them the
/// same way, so it refuses what the daemon would.
pub fn load(s: &TlsSettings, server: Option<&CertKey>) -> Result<(TlsClient, Option<TlsServer>), SetupError> {
    let client = TlsClient::new(s)?;
    let acceptor = match server {
        Some(pair) => Some(TlsServer::new(pair, s)?),
        None => None,
    };
    Ok((client, acceptor))
}

/// The engine, for `--version`.
pub const ENGINE: &str = "rustls 0.23, aws-lc-rs provider";

/// The TLS stream the relay gets from the upstream side.
pub type TlsStream = stream::Stream<tokio_rustls::client::TlsStream<crate::workers::Socket>>;

/// The TLS stream a server-mode client gets.
pub type ServerTlsStream = stream::Stream<tokio_rustls::server::TlsStream<TcpStream>>;

/// TLS 1.2 session ids a server-mode section keeps when `sessionCacheSize = 0` (no limit):
/// rustls's server cache needs a bound (tickets, which most clients use, need none).
const SERVER_IDS_UNLIMITED: usize = 10_000;

/// The crypto provider for `s`: aws-lc-rs, restricted to `ciphers`, `ciphersuites` and
/// `curves` when they are set (shared when they are not).
fn provider(s: &TlsSettings) -> Arc<CryptoProvider> {
    static DEFAULT: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    let fresh = aes128_first;
    if s.ciphers.is_none() && s.ciphersuites.is_none() && s.curves.is_none() {
        return DEFAULT.get_or_init(|| Arc::new(fresh())).clone();
    }
    Arc::new(suites::restrict(
        fresh(),
        s.ciphers.as_deref(),
        s.ciphersuites.as_deref(),
        s.curves.as_deref(),
    ))
}

/// aws-lc-rs's provider with `TLS_AES_128_GCM_SHA256` offered first among the TLS 1.3
/// suites (the rest keep their order). The server takes the client's order by default
/// (OpenSSL, so Redis and ElastiCache), and the suite's hash runs the key schedule of every
/// handshake: SHA-256 has hardware support on common x86 and ARM CPUs where SHA-384 may not,
/// which measured about 10% less CPU per new connection (`bench/profiling.md`). AES-128-GCM
/// is TLS 1.3's mandatory suite; `ciphersuites` still sets any order.
fn aes128_first() -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    let first = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    p.cipher_suites.sort_by_key(|s| s.suite() != first);
    p
}

/// The client side's resumption: a store of the section's own, or none (`sessionResume = no`).
fn resumption(s: &TlsSettings) -> (Resumption, Option<Arc<session::Store>>) {
    match s.session.resume {
        true => {
            let store = Arc::new(session::Store::new(s.session.cache_size, s.session.cache_timeout));
            (Resumption::store(store.clone()), Some(store))
        }
        false => (Resumption::disabled(), None),
    }
}

/// The versions `s` allows; rustls speaks TLS 1.2 and 1.3 only.
fn versions(s: &TlsSettings) -> Result<&'static [&'static SupportedProtocolVersion], SetupError> {
    static BOTH: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static ONLY_12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    let max = s.max_version.unwrap_or(TlsVersion::Tls13);
    for v in [s.min_version, max] {
        if v < TlsVersion::Tls12 {
            return Err(SetupError::OldVersion(v));
        }
    }
    Ok(match (s.min_version, max) {
        (TlsVersion::Tls13, _) => &ONLY_13,
        (_, TlsVersion::Tls12) => &ONLY_12,
        _ => &BOTH,
    })
}

/// A TLS client set up for one service.
#[derive(Clone)]
pub struct TlsClient {
    /// Sends SNI.
    with_sni: Arc<ClientConfig>,
    /// The same without SNI (IP targets, `sni =`): shares the verifier and the session store.
    without_sni: Arc<ClientConfig>,
    /// `sni` as configured.
    sni: Option<String>,
    /// `checkHost`, else a non-empty `sni`: the name verified (and sent) instead of the host.
    name_override: Option<String>,
    /// Whether the chain is checked.
    verifying: bool,
    /// Whether the certificate must be one of `CAfile`/`CApath` (`verifyPeer`).
    pinned: bool,
    /// With `checkIP`: the names the certificate is checked for, for messages.
    by_ip: Option<String>,
    /// The session store both configurations share (`None`: `sessionResume = no`).
    sessions: Option<Arc<session::Store>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("name_override", &self.name_override)
            .field("verifying", &self.verifying)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Builds the client: the (shared) trust store, the version bounds, a client certificate,
    /// a session store of its own.
    pub fn new(s: &TlsSettings) -> Result<TlsClient, SetupError> {
        let name_override = s.check_host.clone().or_else(|| s.sni.clone().filter(|n| !n.is_empty()));
        let provider = provider(s);
        let verifier = verify::for_section(s, &provider)?;
        let mut config = client_config(s, &provider, verifier)?;
        let (resumption, sessions) = resumption(s);
        config.resumption = resumption;
        let mut without_sni = config.clone();
        without_sni.enable_sni = false;
        Ok(TlsClient {
            with_sni: Arc::new(config),
            without_sni: Arc::new(without_sni),
            sni: s.sni.clone(),
            name_override,
            verifying: s.verify_chain,
            pinned: s.verify_peer,
            by_ip: errors::check_ip_names(s),
            sessions,
        })
    }

    /// Whether the handshake with `host` sends SNI (see [`sends_sni`]).
    pub fn sends_sni(&self, host: &Host) -> bool {
        sends_sni(self.sni.as_deref(), host)
    }

    /// The name verified for a connection to `host` (also sent as SNI unless it is an IP or
    /// `sni` is empty).
    pub fn verified_name(&self, host: &Host) -> String {
        match (&self.name_override, host) {
            (Some(n), _) => n.clone(),
            (None, Host::Name(n)) => n.clone(),
            (None, Host::Ip(ip)) => ip.to_string(),
        }
    }

    /// A short description for the start-up line.
    pub fn describe(&self) -> String {
        let pin = match self.pinned {
            true => " + pinned to CAfile/CApath",
            false => "",
        };
        match (&self.name_override, self.verifying, self.pinned) {
            (_, false, false) => "NOT VERIFIED (verifyChain = no)".into(),
            (_, false, true) => "pinned to CAfile/CApath (chain not checked)".into(),
            (Some(n), true, _) => format!("verify chain + host {n}{pin}"),
            (None, true, _) => format!("verify chain + host{pin}"),
        }
    }

    /// Runs the handshake over an established TCP connection.
    pub async fn handshake(&self, host: &Host, tcp: TcpStream) -> Result<TlsStream, HandshakeError> {
        let config = match self.sends_sni(host) {
            true => &self.with_sni,
            false => &self.without_sni,
        };
        let sessions = self.sessions.as_deref();
        connect(
            config.clone(),
            self.verified_name(host),
            self.by_ip.as_deref(),
            sessions,
            tcp,
        )
        .await
    }
}

/// A handshake with `config`, verifying `name` (or, with `checkIP`, the names `by_ip` says).
/// With `sessions`, the section's store, a handshake in a burst may first wait for a ticket
/// (see [`session::Store::ticket_or_wait`]).
async fn connect(
    config: Arc<ClientConfig>,
    name: String,
    by_ip: Option<&str>,
    sessions: Option<&session::Store>,
    tcp: TcpStream,
) -> Result<TlsStream, HandshakeError> {
    let server_name = ServerName::try_from(name.clone()).map_err(|_| HandshakeError::BadName(name.clone()))?;
    if let Some(store) = sessions {
        store.ticket_or_wait(&server_name).await;
    }
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name, crate::workers::Socket::new(tcp))
        .await
        .map(stream::Stream)
        .map_err(|e| errors::upstream(name, &e, by_ip))
}

fn client_config(
    s: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<ClientConfig, SetupError> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(s)?)
        .map_err(|e| SetupError::Library(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match &s.identity {
        None => Ok(builder.with_no_client_auth()),
        Some(pair) => {
            let keys::Pair { chain, key } = keys::load(pair, provider)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SetupError::Library(e.to_string()))
        }
    }
}

/// Whether a handshake with `host` sends SNI: `sni =` (empty) sends none; a non-empty `sni`
/// is always sent; by default a host name is sent and an IP address is not (even with
/// `checkHost`, which only names what the certificate must carry).
pub fn sends_sni(sni: Option<&str>, host: &Host) -> bool {
    match sni {
        Some(s) => !s.is_empty(),
        None => matches!(host, Host::Name(_)),
    }
}

/// Whether the handshake on `stream` resumed an earlier session.
pub fn resumed(conn: &rustls::CommonState) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// The negotiated protocol and cipher suite, as `TLSv1.3` and `TLS_AES_256_GCM_SHA384`.
pub fn negotiated(conn: &rustls::CommonState) -> (String, Option<String>) {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    };
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1));
    (version, suite)
}

/// For `check`: a handshake as the section's, but recording what verification finds instead
/// of failing (the trust store is loaded even with `verifyChain = no`, to say what it would
/// find). Returns the stream and what the verifier saw.
pub async fn inspect(
    s: &TlsSettings,
    host_name: String,
    sni: bool,
    tcp: TcpStream,
) -> Result<(TlsStream, Seen), HandshakeError> {
    let provider = provider(s);
    let setup = |e: SetupError| HandshakeError::Other {
        name: host_name.clone(),
        reason: e.to_string(),
    };
    let roots = trust::roots(s.ca_file.as_deref(), s.ca_path.as_deref()).map_err(setup)?;
    // What the section's verifier finds with the chain checked (and `checkIP`'s names), pin
    // aside: the pin is the section's own handshake's to judge.
    let judged = TlsSettings {
        verify_chain: true,
        verify_peer: false,
        ..s.clone()
    };
    let inner = verify::for_section(&judged, &provider).map_err(setup)?;
    let recording = Arc::new(verify::Recording::new(inner, roots, verify::subjects(s), &provider));
    let mut config = client_config(s, &provider, recording.clone()).map_err(setup)?;
    config.enable_sni = sni;
    config.resumption = Resumption::disabled();
    let by_ip = errors::check_ip_names(s);
    let stream = connect(Arc::new(config), host_name, by_ip.as_deref(), None, tcp).await?;
    let seen = recording.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((stream, seen))
}

/// The accepting side of a server-mode service: our certificate, the version bounds, tickets.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    /// The versions clients may use, to explain a mismatch.
    allowed: errors::Allowed,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Loads `cert`/`key`, applies the service's version bounds and asks clients for
    /// certificates when the section says so (`verifyChain`, …). Clients get session
    /// tickets (TLS 1.3 and 1.2) and TLS 1.2 session ids, so they resume too.
    pub fn new(pair: &CertKey, s: &TlsSettings) -> Result<TlsServer, SetupError> {
        let provider = provider(s);
        let keys::Pair { chain, key } = keys::load(pair, &provider)?;
        let lib = |e: rustls::Error| SetupError::Library(e.to_string());
        let versions = versions(s)?;
        let allowed = errors::Allowed {
            tls12: versions.contains(&&rustls::version::TLS12),
            tls13: versions.contains(&&rustls::version::TLS13),
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(lib)?;
        let builder = match s.client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => builder.with_client_cert_verifier(verify::for_clients(s, auth, &provider)?),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(lib)?;
        if s.session.resume {
            config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(lib)?;
            let ids = match s.session.cache_size {
                0 => SERVER_IDS_UNLIMITED,
                n => n,
            };
            config.session_storage = ServerSessionMemoryCache::new(ids);
        } else {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(TlsServer {
            acceptor: Arc::new(config).into(),
            allowed,
        })
    }

    /// Runs the handshake with a client.
    pub async fn accept(&self, tcp: TcpStream) -> Result<ServerTlsStream, HandshakeError> {
        self.acceptor
            .accept(tcp)
            .await
            .map(stream::Stream)
            .map_err(|e| errors::client(&e, self.allowed))
    }
}

#[cfg(test)]
mod tests {
    use rustls::CipherSuite;

    #[test]
    fn aes128_is_offered_first_and_no_suite_is_lost() {
        let ours = super::aes128_first().cipher_suites;
        let stock = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        assert_eq!(ours[0].suite(), CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(ours.len(), stock.len());
        assert!(stock.iter().all(|s| ours.iter().any(|o| o.suite() == s.suite())));
    }
}
