//! How the upstream's certificate is judged: by webpki against the section's trust store
//! (chain and name), not at all (`verifyChain = no`), or — for `check` — by a verifier that
//! records what webpki would refuse and lets the handshake finish, so that the certificate
//! can be shown and every reason named.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::SetupError;

/// The verifier a section's connections use.
pub fn for_section(
    roots: Option<Arc<RootCertStore>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, SetupError> {
    let Some(roots) = roots else {
        return Ok(Arc::new(Unverified(provider.signature_verification_algorithms)));
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| SetupError::Library(e.to_string()))?;
    Ok(webpki)
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
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
    /// Signature algorithms.
    algs: WebPkiSupportedAlgorithms,
    /// What was seen.
    pub seen: Mutex<Seen>,
}

impl Recording {
    /// Records what `inner` (built on `roots`) would decide.
    pub fn new(inner: Arc<dyn ServerCertVerifier>, roots: Arc<RootCertStore>, provider: &CryptoProvider) -> Recording {
        Recording {
            inner,
            roots,
            algs: provider.signature_verification_algorithms,
            seen: Mutex::default(),
        }
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
        note(verify_server_name(&parsed, name));
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
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
