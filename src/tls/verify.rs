//! How the upstream's certificate is judged: by webpki against the section's trust store
//! (chain and name), not at all (`verifyChain = no`), or — for `check` — by a verifier that
//! records what webpki would refuse and lets the handshake finish, so that the certificate
//! can be shown and every reason named.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};

use super::{SetupError, trust};
use crate::config::{ClientAuth, TlsSettings};

/// The handshake-signature half of a `ServerCertVerifier`, by the algorithms in field
/// `$algs`: every verifier here checks signatures the same way, whatever it thinks of the
/// certificate.
macro_rules! signatures_by {
    ($algs:tt) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(message, cert, dss, &self.$algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &self.$algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.$algs.supported_schemes()
        }
    };
}

/// The verifier a section's connections use: webpki on the chain (with the CRLs), a pin to
/// the certificates of `CAfile`/`CApath`, and `checkIP` names, as the section asks.
pub fn for_section(s: &TlsSettings, provider: &Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, SetupError> {
    let (ca_file, ca_path) = (s.ca_file.as_deref(), s.ca_path.as_deref());
    let chain = match s.verify_chain {
        true => Some(webpki(trust::roots(ca_file, ca_path)?, crls(s)?, provider)?),
        false => None,
    };
    let pins = match s.verify_peer {
        true => trust::anchors(ca_file, ca_path)?,
        false => Vec::new(),
    };
    let subjects = subjects(s);
    let algs = provider.signature_verification_algorithms;
    Ok(match (chain, pins.is_empty() && subjects.is_empty()) {
        (Some(chain), true) => chain,
        (None, true) => Arc::new(Unverified(algs)),
        (chain, false) => Arc::new(Checked {
            chain,
            pins,
            subjects,
            algs,
        }),
    })
}

/// The section's CRLs (`CRLfile`, `CRLpath`).
pub fn crls(s: &TlsSettings) -> Result<Vec<CertificateRevocationListDer<'static>>, SetupError> {
    trust::crls(s.crl_file.as_deref(), s.crl_path.as_deref())
}

/// webpki's verifier on `roots`, refusing certificates the CRLs revoke (with CRLs, a chain
/// whose issuer has none is refused too, as OpenSSL's CRL check does).
pub fn webpki(
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, SetupError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| SetupError::Library(e.to_string()))?;
    Ok(verifier)
}

/// The names a certificate may carry when `checkIP` is written (any one passes): the
/// addresses and `checkHost`. Empty: the name rustls is given (`checkHost` or the host).
pub fn subjects(s: &TlsSettings) -> Vec<ServerName<'static>> {
    if s.check_ips.is_empty() {
        return Vec::new();
    }
    let ips = s.check_ips.iter().map(|ip| ServerName::IpAddress((*ip).into()));
    let host = s.check_host.iter().filter_map(|h| ServerName::try_from(h.clone()).ok());
    ips.chain(host).collect()
}

/// The reason a pinning section refuses a certificate that is not among its pins.
#[derive(Debug)]
pub struct NotPinned;

impl std::fmt::Display for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("certificate not among the pinned ones in CAfile/CApath")
    }
}

impl std::error::Error for NotPinned {}

/// Pinning (`verifyPeer`, `verify = 3|4`) and `checkIP`, around webpki's chain check (or
/// none, for `verify = 4`): stunnel's checks as rustls verifier steps.
#[derive(Debug)]
struct Checked {
    /// webpki on the chain, with the CRLs; `None`: the chain is not checked.
    chain: Option<Arc<dyn ServerCertVerifier>>,
    /// The certificates the peer's must be one of; empty: no pinning.
    pins: Vec<CertificateDer<'static>>,
    /// Names any one of which the certificate must carry; empty: the one rustls passes.
    subjects: Vec<ServerName<'static>>,
    /// Signature algorithms.
    algs: WebPkiSupportedAlgorithms,
}

impl Checked {
    /// The chain (if checked) and one name, or the name alone.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        match &self.chain {
            Some(chain) => chain
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
                .map(drop),
            None => verify_server_name(&ParsedCertificate::try_from(end_entity)?, name),
        }
    }
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        pinned(&self.pins, end_entity)?;
        if self.chain.is_none() && self.subjects.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let names: Vec<&ServerName<'_>> = match self.subjects.is_empty() {
            true => vec![name],
            false => self.subjects.iter().collect(),
        };
        let mut first = None;
        for n in names {
            match self.check(end_entity, intermediates, n, ocsp, now) {
                Ok(()) => return Ok(ServerCertVerified::assertion()),
                Err(e) => first = first.or(Some(e)),
            }
        }
        Err(first.expect("at least one name was checked"))
    }

    signatures_by!(algs);
}

/// Server mode: how clients' certificates are judged: against `CAfile`/`CApath` only (never
/// the system store, which would let in anyone with a public CA's certificate), with the
/// CRLs, and pinned to those files with `verifyPeer`/`verify = 3|4`.
pub fn for_clients(
    s: &TlsSettings,
    auth: ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, SetupError> {
    let anchors = trust::anchors(s.ca_file.as_deref(), s.ca_path.as_deref())?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(anchors.iter().cloned());
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).with_crls(crls(s)?);
    if auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    let webpki = builder.build().map_err(|e| SetupError::Library(e.to_string()))?;
    if s.verify_chain && !s.verify_peer {
        return Ok(webpki);
    }
    Ok(Arc::new(CheckedClients {
        webpki,
        chain: s.verify_chain,
        pins: if s.verify_peer { anchors } else { Vec::new() },
        algs: provider.signature_verification_algorithms,
    }))
}

/// Refuses `end_entity` unless it is one of `pins` (no pins: no pinning).
fn pinned(pins: &[CertificateDer<'static>], end_entity: &CertificateDer<'_>) -> Result<(), Error> {
    if pins.is_empty() || pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
        return Ok(());
    }
    Err(Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
        Arc::new(NotPinned),
    ))))
}

/// Server mode with pinning: webpki's client verifier decides what to ask for, and judges
/// the chain unless `verify = 4` says not to.
#[derive(Debug)]
struct CheckedClients {
    /// webpki on `CAfile`/`CApath`, with the CRLs.
    webpki: Arc<dyn ClientCertVerifier>,
    /// Whether the chain is checked.
    chain: bool,
    /// The certificates a client's must be one of; empty: no pinning.
    pins: Vec<CertificateDer<'static>>,
    /// Signature algorithms.
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for CheckedClients {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        pinned(&self.pins, end_entity)?;
        match self.chain {
            true => self.webpki.verify_client_cert(end_entity, intermediates, now),
            false => Ok(ClientCertVerified::assertion()),
        }
    }

    signatures_by!(algs);
}

/// `verifyChain = no`: any certificate, any name (the handshake's signatures are still
/// checked, so the session is at least with the holder of the key it showed).
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures_by!(0);
}

/// What the recording verifier saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The server's certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Every distinct reason verification fails (empty: it passes).
    pub problems: Vec<CertificateError>,
}

/// For `check`: judges as the section would, plus the chain and the name separately (webpki
/// stops at the first problem; a certificate can be both expired and for another name), and
/// the chain again at a moment the leaf was valid (expired *and* from an unknown CA). Records
/// instead of failing.
#[derive(Debug)]
pub struct Recording {
    /// The section's own verifier.
    inner: Arc<dyn ServerCertVerifier>,
    /// Its trust store.
    roots: Arc<RootCertStore>,
    /// The names any one of which the certificate must carry (`checkIP`, see [`subjects`]);
    /// empty: the name the handshake verifies.
    subjects: Vec<ServerName<'static>>,
    /// Signature algorithms.
    algs: WebPkiSupportedAlgorithms,
    /// What was seen.
    pub seen: Mutex<Seen>,
}

impl Recording {
    /// Records what `inner` (built on `roots`, judging by `subjects`) would decide.
    pub fn new(
        inner: Arc<dyn ServerCertVerifier>,
        roots: Arc<RootCertStore>,
        subjects: Vec<ServerName<'static>>,
        provider: &CryptoProvider,
    ) -> Recording {
        Recording {
            inner,
            roots,
            subjects,
            algs: provider.signature_verification_algorithms,
            seen: Mutex::default(),
        }
    }

    /// Whether the certificate carries the name (or, with `checkIP`, one of the subjects).
    fn name_check(&self, parsed: &ParsedCertificate<'_>, name: &ServerName<'_>) -> Result<(), Error> {
        if self.subjects.is_empty() {
            return verify_server_name(parsed, name);
        }
        let mut first = None;
        for n in &self.subjects {
            match verify_server_name(parsed, n) {
                Ok(()) => return Ok(()),
                Err(e) => first = first.or(Some(e)),
            }
        }
        Err(first.expect("subjects is not empty"))
    }

    fn problems(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Vec<CertificateError> {
        let mut found = Vec::new();
        let mut note = |r: Result<(), Error>| {
            if let Err(Error::InvalidCertificate(e)) = r
                && !found.iter().any(|f: &CertificateError| same_kind(f, &e))
            {
                found.push(e);
            }
        };
        note(
            self.inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
                .map(drop),
        );
        let Ok(parsed) = ParsedCertificate::try_from(end_entity) else {
            return found;
        };
        note(self.name_check(&parsed, name));
        let chain =
            |at| verify_server_cert_signed_by_trust_anchor(&parsed, &self.roots, intermediates, at, self.algs.all);
        note(chain(now));
        if let Some(at) = valid_moment(end_entity) {
            note(chain(at));
        }
        found
    }
}

/// Whether two reasons are the same kind (the same reason found twice is named once).
fn same_kind(a: &CertificateError, b: &CertificateError) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
        || matches!(
            (a, b),
            (
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ) | (
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ) | (
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            )
        )
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let problems = self.problems(end_entity, intermediates, name, ocsp, now);
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Seen { chain, problems };
        Ok(ServerCertVerified::assertion())
    }

    signatures_by!(algs);
}

/// A moment the certificate was valid (the middle of its validity period), to see what else
/// is wrong with an expired or not-yet-valid certificate.
fn valid_moment(der: &CertificateDer<'_>) -> Option<UnixTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    let middle = v.not_before.timestamp() / 2 + v.not_after.timestamp() / 2;
    Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(middle).ok()?,
    )))
}
