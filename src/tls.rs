//! Everything about TLS: towards the upstream server (trust anchors, protocol versions, which
//! name is verified and sent as SNI, a client certificate), towards clients in server mode
//! (`client = no`: our certificate, protocol versions), the handshakes, and turning OpenSSL's
//! errors into sentences. The relay only sees an `AsyncRead + AsyncWrite` stream, so the TLS
//! library can change without touching it. Private keys are read here and never logged.
//!
//! Unlike stunnel, the chain and the host name are verified by default, against the system
//! trust store (OpenSSL's `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured) plus `CAfile`/`CApath`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use native_tls::{Certificate, Identity, Protocol};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslVersion};
use openssl::x509::X509;
use tokio::net::TcpStream;

use std::sync::{Arc, OnceLock};

use crate::config::{CertKey, Host, TlsSettings, TlsVersion};

/// The TLS stream the relay gets.
pub type TlsStream = tokio_native_tls::TlsStream<TcpStream>;

/// A TLS client set up for one service.
#[derive(Clone)]
pub struct TlsClient {
    /// Sends SNI.
    connector: tokio_native_tls::TlsConnector,
    /// The same settings without SNI (IP targets, `sni =`), built on first use: loading the
    /// trust store takes tens of milliseconds, and most sections need only one of the two.
    without_sni: Arc<OnceLock<tokio_native_tls::TlsConnector>>,
    /// What both are built from.
    settings: Arc<TlsSettings>,
    /// `sni` as configured.
    sni: Option<String>,
    /// `checkHost`, else a non-empty `sni`: the name verified (and sent) instead of the host.
    name_override: Option<String>,
    /// Whether certificates are checked at all.
    verifying: bool,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("name_override", &self.name_override)
            .field("verifying", &self.verifying)
            .finish_non_exhaustive()
    }
}

/// A problem with the TLS settings, found before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A trust-anchor file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A trust-anchor file holds no usable certificate.
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give a PEM file of CA certificates")]
    NoCertificates {
        /// The file or directory.
        path: PathBuf,
    },
    /// A certificate in a trust-anchor file is malformed.
    #[error("{path}: bad certificate: {source}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What OpenSSL said.
        source: native_tls::Error,
    },
    /// The private key file holds no PEM private key.
    #[error(
        "{path} holds no PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----); set `key` to the key file"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is protected by a password.
    #[error(
        "the private key in {path} is protected by a password, which retunnel cannot ask for; write an unprotected copy readable only by retunnel (`openssl pkey -in KEY -out KEY.plain`, then `chmod 600`) and point `key` at it"
    )]
    EncryptedKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key could not be parsed.
    #[error("{path}: cannot read the private key ({reason}); give a PEM key in PKCS#8 or RSA form")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What OpenSSL said (never the key itself).
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the private key in {key} does not belong to the certificate in {cert}; give the key the certificate was issued for"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The TLS library refused the settings.
    #[error("TLS setup failed: {0}")]
    Library(#[from] native_tls::Error),
    /// OpenSSL refused the settings (server side, key conversion).
    #[error("TLS setup failed: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

/// Why a handshake failed, worded for the log (and for the client, in Redis mode).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The certificate did not pass verification.
    #[error("certificate of {name} rejected: {reason}; {hint}")]
    Verify {
        /// The name that was verified.
        name: String,
        /// OpenSSL's reason.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// Any other failure (protocol mismatch, reset, not TLS at all…).
    #[error("TLS handshake with {name} failed: {reason}")]
    Other {
        /// The name that was verified.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A client's handshake failed (server mode).
    #[error("TLS handshake with the client failed: {0}")]
    Client(String),
}

fn protocol(v: TlsVersion) -> Protocol {
    match v {
        TlsVersion::Tls10 => Protocol::Tlsv10,
        TlsVersion::Tls11 => Protocol::Tlsv11,
        TlsVersion::Tls12 => Protocol::Tlsv12,
        TlsVersion::Tls13 => Protocol::Tlsv13,
    }
}

impl TlsClient {
    /// Builds the client: loads `CAfile`/`CApath` and applies the version bounds.
    pub fn new(s: &TlsSettings) -> Result<TlsClient, SetupError> {
        let name_override = s.check_host.clone().or_else(|| s.sni.clone().filter(|n| !n.is_empty()));
        Ok(TlsClient {
            connector: build_connector(s, true)?,
            without_sni: Arc::default(),
            settings: Arc::new(s.clone()),
            sni: s.sni.clone(),
            name_override,
            verifying: s.verify_chain,
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
        match (&self.name_override, self.verifying) {
            (_, false) => "NOT VERIFIED (verifyChain = no)".into(),
            (Some(n), true) => format!("verify chain + host {n}"),
            (None, true) => "verify chain + host".into(),
        }
    }

    /// Runs the handshake over an established TCP connection.
    pub async fn handshake(&self, host: &Host, tcp: TcpStream) -> Result<TlsStream, HandshakeError> {
        let name = self.verified_name(host);
        let connector = if self.sends_sni(host) {
            &self.connector
        } else {
            match self.without_sni.get() {
                Some(c) => c,
                None => {
                    // The same settings already built once, so this cannot fail in practice.
                    let built = build_connector(&self.settings, false).map_err(|e| HandshakeError::Other {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
                    self.without_sni.get_or_init(|| built)
                }
            }
        };
        connector.connect(&name, tcp).await.map_err(|e| classify(name, e))
    }
}

/// A connector for `s`, sending SNI or not.
fn build_connector(s: &TlsSettings, sni: bool) -> Result<tokio_native_tls::TlsConnector, SetupError> {
    let mut b = native_tls::TlsConnector::builder();
    b.min_protocol_version(Some(protocol(s.min_version)));
    b.max_protocol_version(s.max_version.map(protocol));
    if let Some(pair) = &s.identity {
        b.identity(load_identity(pair)?);
    }
    for cert in trust_anchors(s)? {
        b.add_root_certificate(cert);
    }
    if !s.verify_chain {
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.use_sni(sni);
    Ok(b.build()?.into())
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

/// The certificates `CAfile` and `CApath` add to the system's trust store (`check` builds its
/// inspecting handshake from the same list).
pub fn trust_anchors(s: &TlsSettings) -> Result<Vec<Certificate>, SetupError> {
    let mut certs = Vec::new();
    if let Some(path) = &s.ca_file {
        certs.extend(load_pem_file(path)?);
    }
    if let Some(dir) = &s.ca_path {
        certs.extend(load_pem_dir(dir)?);
    }
    Ok(certs)
}

/// The TLS stream a server-mode client gets (OpenSSL directly: native-tls's acceptor turns
/// TLS 1.3 off, and clients should get it).
pub type ServerTlsStream = tokio_openssl::SslStream<TcpStream>;

/// The accepting side of a server-mode service: our certificate, the version bounds.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: SslAcceptor,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

fn ssl_version(v: TlsVersion) -> SslVersion {
    match v {
        TlsVersion::Tls10 => SslVersion::TLS1,
        TlsVersion::Tls11 => SslVersion::TLS1_1,
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    }
}

impl TlsServer {
    /// Loads `cert`/`key` and applies the service's version bounds, on Mozilla's
    /// "intermediate" (v5) settings.
    pub fn new(pair: &CertKey, s: &TlsSettings) -> Result<TlsServer, SetupError> {
        let (chain, key) = load_pair(pair)?;
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        b.set_private_key(&key)?;
        let mut certs = chain.into_iter();
        if let Some(leaf) = certs.next() {
            b.set_certificate(&leaf)?;
        }
        for c in certs {
            b.add_extra_chain_cert(c)?;
        }
        b.set_min_proto_version(Some(ssl_version(s.min_version)))?;
        b.set_max_proto_version(s.max_version.map(ssl_version))?;
        Ok(TlsServer { acceptor: b.build() })
    }

    /// Runs the handshake with a client.
    pub async fn accept(&self, tcp: TcpStream) -> Result<ServerTlsStream, HandshakeError> {
        let setup = |e: openssl::error::ErrorStack| HandshakeError::Client(e.to_string());
        let ssl = Ssl::new(self.acceptor.context()).map_err(setup)?;
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(setup)?;
        match std::pin::Pin::new(&mut stream).accept().await {
            Ok(()) => Ok(stream),
            Err(e) => Err(HandshakeError::Client(client_reason(&e))),
        }
    }
}

fn client_reason(e: &openssl::ssl::Error) -> String {
    let text = match e.ssl_error() {
        Some(stack) => stack.to_string(),
        None => e.to_string(),
    };
    if text.contains("wrong version number") || text.contains("http request") {
        "the client did not speak TLS (use `redis-cli --tls`, `ssl=True`, …)".into()
    } else if text.contains("unsupported protocol") || text.contains("version too low") {
        "the client offers only TLS versions outside sslVersionMin/sslVersionMax; upgrade the client or lower sslVersionMin".into()
    } else if text.is_empty() || e.code() == openssl::ssl::ErrorCode::SYSCALL {
        "the client closed the connection during the handshake (does it trust our certificate?)".into()
    } else {
        text
    }
}

/// Reads a certificate chain and its private key (from `key`, else from the certificate
/// file) and checks that they belong together.
fn load_pair(pair: &CertKey) -> Result<(Vec<X509>, PKey<Private>), SetupError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| SetupError::Read {
            path: path.into(),
            source,
        })
    };
    let cert_pem = read(&pair.cert)?;
    let no_certs = || SetupError::NoCertificates {
        path: pair.cert.clone(),
    };
    let chain = X509::stack_from_pem(&cert_pem).map_err(|_| no_certs())?;
    let leaf = chain.first().ok_or_else(no_certs)?;
    let key_path = pair.key.as_ref().unwrap_or(&pair.cert);
    let key = private_key(&read(key_path)?, key_path)?;
    if !leaf.public_key().is_ok_and(|p| p.public_eq(&key)) {
        return Err(SetupError::KeyMismatch {
            cert: pair.cert.clone(),
            key: key_path.clone(),
        });
    }
    Ok((chain, key))
}

/// The client certificate for native-tls, which wants PKCS#8: RSA and EC keys are
/// converted in memory.
fn load_identity(pair: &CertKey) -> Result<Identity, SetupError> {
    let (chain, key) = load_pair(pair)?;
    let mut chain_pem = Vec::new();
    for c in &chain {
        chain_pem.extend(c.to_pem()?);
    }
    Ok(Identity::from_pkcs8(&chain_pem, &key.private_key_to_pem_pkcs8()?)?)
}

/// The private key in a PEM file (PKCS#8, RSA or EC form); refuses encrypted keys up front,
/// since OpenSSL would otherwise ask for a password on the terminal.
fn private_key(pem: &[u8], path: &Path) -> Result<PKey<Private>, SetupError> {
    if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(pem, b"Proc-Type: 4,ENCRYPTED") {
        return Err(SetupError::EncryptedKey { path: path.into() });
    }
    if !contains(pem, b"PRIVATE KEY-----") {
        return Err(SetupError::NoKey { path: path.into() });
    }
    PKey::private_key_from_pem(pem).map_err(|e| SetupError::BadKey {
        path: path.into(),
        reason: e
            .errors()
            .first()
            .and_then(|e| e.reason())
            .unwrap_or("not a key")
            .to_string(),
    })
}

fn classify(name: String, e: native_tls::Error) -> HandshakeError {
    let text = e.to_string();
    if !text.contains("certificate verify failed") {
        let reason = if text.contains("wrong version number") || text.contains("packet length too long") {
            "the server did not answer in TLS (is it a plain-TCP port?)".to_string()
        } else if text.contains("protocol version") || text.contains("unsupported protocol") {
            "the server and this section share no TLS version; check sslVersion, sslVersionMin/sslVersionMax and `options = NO_TLSv1_x`"
                .to_string()
        } else if text.contains("unexpected eof") || text.contains("Connection reset") {
            "the server closed the connection during the handshake (does it speak TLS, and accept this TLS version?)"
                .to_string()
        } else {
            text
        };
        return HandshakeError::Other { name, reason };
    }
    // native-tls appends OpenSSL's verify result in parentheses; keep that part.
    let reason = text
        .rsplit_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or("verification failed")
        .to_string();
    // OpenSSL's wording changes case between versions (3.x: "hostname mismatch").
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
        "connect by the name the certificate carries, or set checkHost to it"
    } else if lower.contains("expired") {
        "renew the server's certificate, or check this host's clock"
    } else if lower.contains("self-signed") || lower.contains("local issuer") || lower.contains("unable to get") {
        "if the server uses a private CA, point CAfile at that CA's PEM file"
    } else {
        "check the server's certificate and CAfile"
    };
    HandshakeError::Verify { name, reason, hint }
}

fn load_pem_file(path: &Path) -> Result<Vec<Certificate>, SetupError> {
    let pem = std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.into(),
        source,
    })?;
    if !contains(&pem, b"-----BEGIN CERTIFICATE-----") {
        return Err(SetupError::NoCertificates { path: path.into() });
    }
    let certs = Certificate::stack_from_pem(&pem).map_err(|source| SetupError::BadCertificate {
        path: path.into(),
        source,
    })?;
    if certs.is_empty() {
        return Err(SetupError::NoCertificates { path: path.into() });
    }
    Ok(certs)
}

/// Every PEM certificate in the files of a directory (OpenSSL's hashed links included).
fn load_pem_dir(dir: &Path) -> Result<Vec<Certificate>, SetupError> {
    let read_err = |source| SetupError::Read {
        path: dir.into(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut certs = Vec::new();
    for entry in entries {
        let path = entry.path();
        if path.is_file()
            && let Ok(found) = load_pem_file(&path)
        {
            certs.extend(found);
        }
    }
    if certs.is_empty() {
        return Err(SetupError::NoCertificates { path: dir.into() });
    }
    Ok(certs)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
