//! What can go wrong with TLS, as sentences that say what happened and what to do. Handshake
//! failures are told apart by rustls's typed errors (`CertificateError::Expired`,
//! `NotValidForName`, `UnknownIssuer`, alerts, …), never by matching message text.

use std::io;
use std::path::PathBuf;

use rustls::{
    AlertDescription, CertRevocationListError, CertificateError, Error, ExtendedKeyPurpose, PeerIncompatible,
};

use crate::config::TlsVersion;

/// A problem with the TLS settings, found before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file or directory could not be read.
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
    /// The `cert` file holds no certificate.
    #[error(
        "`cert`: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); point `cert` at the certificate chain, leaf first"
    )]
    NoChain {
        /// The file.
        path: PathBuf,
    },
    /// A `CRLfile` (or every file of `CRLpath`) holds no CRL.
    #[error(
        "`CRLfile`/`CRLpath`: {path} holds no PEM CRL (-----BEGIN X509 CRL-----); give the CRL your CA publishes (`openssl crl -inform DER -in CRL -out CRL.pem` converts a DER one)"
    )]
    NoCrls {
        /// The file or directory.
        path: PathBuf,
    },
    /// A CRL is malformed or of a kind webpki cannot use.
    #[error(
        "`CRLfile`/`CRLpath`: {path}: bad CRL ({reason}); give a version 2 CRL in PEM form, as `openssl ca -gencrl` writes"
    )]
    BadCrl {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A certificate is malformed.
    #[error("{path}: bad certificate: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
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
    #[error("{path}: cannot read the private key ({reason}); give a PEM key in PKCS#8, RSA or EC form")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What was wrong (never the key itself).
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
    /// A protocol version rustls does not speak.
    #[error(
        "{0} is not supported: retunnel speaks TLS 1.2 and 1.3 only (TLS 1.0 and 1.1 are deprecated by RFC 8996; ElastiCache and MemoryDB need 1.2 or later); set sslVersionMin = TLSv1.2"
    )]
    OldVersion(TlsVersion),
    /// The TLS library refused the settings.
    #[error("TLS setup failed: {0}")]
    Library(String),
}

/// Why a handshake failed, worded for the log (and for the client, in Redis mode).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The certificate did not pass verification.
    #[error("certificate of {name} rejected: {reason}; {hint}")]
    Verify {
        /// The name that was verified.
        name: String,
        /// What is wrong with it.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The name to verify is not a valid DNS name or IP address.
    #[error(
        "`{0}` is not a valid TLS server name (a DNS name of at most 253 characters, or an IP address); check checkHost, sni and connect"
    )]
    BadName(String),
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

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
fn rustls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref()?.downcast_ref::<Error>()
}

/// A failed handshake with the upstream, explained. `by_ip`: with `checkIP`, the names the
/// certificate was checked for instead (as [`check_ip_names`] words them).
pub fn upstream(name: String, e: &io::Error, by_ip: Option<&str>) -> HandshakeError {
    let reason = match rustls_error(e) {
        Some(Error::InvalidCertificate(c)) if by_ip.is_some() && name_mismatch(c) => {
            let carries = match c {
                CertificateError::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                    format!(" (it is for {})", presented_names(presented))
                }
                _ => String::new(),
            };
            return HandshakeError::Verify {
                name,
                reason: format!("it carries none of {}{carries}", by_ip.unwrap_or_default()),
                hint: "set checkIP to an address the certificate carries (or leave checkIP out to verify the host name)",
            };
        }
        Some(Error::InvalidCertificate(c)) => {
            return HandshakeError::Verify {
                name,
                reason: certificate(c),
                hint: hint(c),
            };
        }
        Some(err) if version_mismatch(err) => {
            "the server and this section share no TLS version; check sslVersion, sslVersionMin/sslVersionMax and `options = NO_TLSv1_x`".to_string()
        }
        Some(Error::AlertReceived(AlertDescription::CertificateRequired)) => {
            "the server requires a client certificate; set `cert` and `key`".to_string()
        }
        // A TLS 1.2 server says the same for both: no common suite, no client certificate.
        Some(Error::AlertReceived(AlertDescription::HandshakeFailure)) => {
            "the server refused the handshake: either it and this section share no cipher suite or key-exchange group (check ciphers, ciphersuites and curves), or it requires a client certificate (set `cert` and `key`)".to_string()
        }
        Some(Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon | PeerIncompatible::NoKxGroupsInCommon)) => {
            "the server and this section share no cipher suite or key-exchange group; check ciphers, ciphersuites and curves".to_string()
        }
        Some(Error::InvalidMessage(_)) => "the server did not answer in TLS (is it a plain-TCP port?)".to_string(),
        Some(Error::InvalidCertRevocationList(e)) => crl(e),
        Some(other) => after_handshake(e).map_or_else(|| other.to_string(), str::to_string),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                "the server closed the connection during the handshake (does it speak TLS, and accept this TLS version?)".to_string()
            }
            _ => crate::upstream::describe_io(e),
        },
    };
    HandshakeError::Other { name, reason }
}

/// A TLS error met after the handshake (while relaying), explained when it has a known cause:
/// a TLS 1.3 server says it wants a client certificate only after the handshake.
pub fn after_handshake(e: &io::Error) -> Option<&'static str> {
    match rustls_error(e)? {
        Error::AlertReceived(AlertDescription::CertificateRequired) => {
            Some("the server requires a client certificate; set `cert` and `key`")
        }
        Error::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::CertificateUnknown,
        ) => Some("the server refused our client certificate (`cert`); it must be issued by a CA the server trusts"),
        _ => None,
    }
}

/// The TLS versions a server-mode section accepts, for explaining a version mismatch.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// TLS 1.2 is allowed.
    pub tls12: bool,
    /// TLS 1.3 is allowed.
    pub tls13: bool,
}

/// A failed handshake with a server-mode client, explained; `allowed`: the section's versions.
pub fn client(e: &io::Error, allowed: Allowed) -> HandshakeError {
    let reason = match rustls_error(e) {
        Some(Error::InvalidMessage(_)) => {
            "the client did not speak TLS (use `redis-cli --tls`, `ssl=True`, …)".to_string()
        }
        Some(Error::PeerIncompatible(p)) if client_version(p, allowed).is_some() => {
            client_version(p, allowed).unwrap_or_default().to_string()
        }
        Some(err) if version_mismatch(err) => {
            "the client offers only TLS versions outside sslVersionMin/sslVersionMax; upgrade the client or lower sslVersionMin".to_string()
        }
        Some(Error::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::CertificateUnknown,
        )) => "the client does not trust our certificate; give it the CA that issued `cert` (redis-cli --cacert)".to_string(),
        Some(Error::NoCertificatesPresented) => {
            "the client sent no certificate, and this section requires one (verifyChain/verifyPeer/requireCert); give the client one issued by a CA in CAfile/CApath (redis-cli --cert/--key)".to_string()
        }
        Some(Error::InvalidCertificate(c)) => format!("client certificate rejected: {}", client_certificate(c)),
        Some(Error::InvalidCertRevocationList(e)) => crl(e),
        Some(other) => other.to_string(),
        None => "the client closed the connection during the handshake (does it trust our certificate?)".to_string(),
    };
    HandshakeError::Client(reason)
}

/// Which side's TLS version is the problem, by what rustls found in the client's hello, and
/// the fix on that side.
fn client_version(p: &PeerIncompatible, allowed: Allowed) -> Option<&'static str> {
    match p {
        PeerIncompatible::Tls12NotOfferedOrEnabled if !allowed.tls13 => Some(
            "the client offers only TLS 1.3, which this section does not allow (sslVersionMax = TLSv1.2 or `options = NO_TLSv1.3`); allow TLS 1.3 here: remove NO_TLSv1.3 and set sslVersionMax = TLSv1.3 (or leave it out)",
        ),
        PeerIncompatible::Tls12NotOfferedOrEnabled | PeerIncompatible::SupportedVersionsExtensionRequired
            if !allowed.tls12 =>
        {
            Some(
                "the client offers only TLS 1.2, and this section requires TLS 1.3 (sslVersionMin = TLSv1.3 or `options = NO_TLSv1.2`); set sslVersionMin = TLSv1.2 here, or use a client that speaks TLS 1.3",
            )
        }
        PeerIncompatible::Tls12NotOffered | PeerIncompatible::SignatureAlgorithmsExtensionRequired => Some(
            "the client speaks only TLS 1.1 or older, which retunnel does not (RFC 8996 deprecates them); upgrade the client to TLS 1.2 or 1.3",
        ),
        _ => None,
    }
}

/// What is wrong with a client's certificate, and what to do: as for a server's, but only
/// `CAfile`/`CApath` are trusted for clients.
fn client_certificate(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => {
            "unknown CA: no CA in CAfile/CApath issued it; give the client a certificate from that CA, or add its CA to CAfile".to_string()
        }
        CertificateError::Revoked => {
            "certificate revoked: its serial is on the CRL (CRLfile/CRLpath); the client needs a new certificate".to_string()
        }
        e if not_pinned(e) => {
            "not one of the certificates in CAfile/CApath (verifyPeer = yes / verify = 3|4 pin to them)".to_string()
        }
        other => format!("{}; give the client a valid certificate", certificate(other)),
    }
}

/// Whether the two sides found no protocol version in common.
fn version_mismatch(e: &Error) -> bool {
    match e {
        Error::AlertReceived(AlertDescription::ProtocolVersion) => true,
        Error::PeerIncompatible(p) => matches!(
            p,
            PeerIncompatible::ServerDoesNotSupportTls12Or13
                | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
                | PeerIncompatible::SupportedVersionsExtensionRequired
                | PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
        ),
        _ => false,
    }
}

/// Whether the certificate was refused for the name it carries.
fn name_mismatch(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

/// With `checkIP`, the names a certificate is checked for, as the messages say them:
/// `checkIP 10.0.0.1, 10.0.0.2 or checkHost db.example`.
pub fn check_ip_names(s: &crate::config::TlsSettings) -> Option<String> {
    if s.check_ips.is_empty() {
        return None;
    }
    let ips: Vec<String> = s.check_ips.iter().map(ToString::to_string).collect();
    let host = s
        .check_host
        .as_ref()
        .map(|h| format!(" or checkHost {h}"))
        .unwrap_or_default();
    Some(format!("checkIP {}{host}", ips.join(", ")))
}

/// What is wrong with a certificate, in a few words.
pub fn certificate(e: &CertificateError) -> String {
    match e {
        CertificateError::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
            format!("host name mismatch (the certificate is for {})", presented_names(presented))
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "host name mismatch".to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate has expired".to_string(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet".to_string()
        }
        CertificateError::UnknownIssuer => {
            "unknown issuer: no CA in the system store, CAfile or CApath issued it".to_string()
        }
        CertificateError::Revoked => "certificate revoked: its serial is on the CRL (CRLfile/CRLpath)".to_string(),
        CertificateError::UnknownRevocationStatus => {
            "revocation status unknown: no CRL in CRLfile/CRLpath is from the CA that issued it".to_string()
        }
        e if not_pinned(e) => {
            "not one of the certificates in CAfile/CApath (verifyPeer = yes / verify = 3|4 pin to them)".to_string()
        }
        e if ca_as_server(e) => {
            "the server presents a CA certificate (basicConstraints CA:TRUE) as its own, as `openssl req -x509` makes by default".to_string()
        }
        CertificateError::BadSignature => {
            "bad signature: the certificate's signature does not verify with the key of the CA it names (forged or corrupted, or another CA of the same name is in the trust store)".to_string()
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "signed with an algorithm retunnel does not accept (such as SHA-1 or MD5)".to_string()
        }
        CertificateError::InvalidPurposeContext { required, presented } => format!(
            "its extendedKeyUsage does not allow {} (it allows {})",
            purpose(required),
            presented.iter().map(purpose).collect::<Vec<_>>().join(", ")
        ),
        CertificateError::InvalidPurpose => "its extendedKeyUsage does not allow this use".to_string(),
        CertificateError::ExpiredRevocationList | CertificateError::ExpiredRevocationListContext { .. } => {
            "the CRL in CRLfile/CRLpath is out of date (past its nextUpdate)".to_string()
        }
        CertificateError::BadEncoding => "the certificate is malformed (bad DER)".to_string(),
        CertificateError::UnhandledCriticalExtension => {
            "the certificate has a critical extension retunnel does not understand".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// An extended key usage as `openssl x509 -text` names it.
fn purpose(p: &ExtendedKeyPurpose) -> String {
    match p {
        ExtendedKeyPurpose::ServerAuth => "serverAuth (TLS server)".to_string(),
        ExtendedKeyPurpose::ClientAuth => "clientAuth (TLS client)".to_string(),
        ExtendedKeyPurpose::Other(oid) => oid.iter().map(ToString::to_string).collect::<Vec<_>>().join("."),
    }
}

/// webpki's names of what a certificate carries (`DnsName("a.example")`, `IpAddress(10.0.0.1)`)
/// as a person writes them.
fn presented_names(presented: &[String]) -> String {
    let plain = |n: &String| {
        let inner = n
            .strip_prefix("DnsName(")
            .or_else(|| n.strip_prefix("IpAddress("))
            .and_then(|r| r.strip_suffix(')'));
        inner.map_or_else(|| n.clone(), |i| i.trim_matches('"').to_string())
    };
    presented.iter().map(plain).collect::<Vec<_>>().join(", ")
}

/// What is wrong with a CRL, in a few words, with the fix.
fn crl(e: &CertRevocationListError) -> String {
    let what = match e {
        CertRevocationListError::BadSignature => {
            "its signature does not verify with the key of the CA that issued the certificate (a forged CRL, or one from another CA of the same name)".to_string()
        }
        CertRevocationListError::IssuerInvalidForCrl => {
            "its issuer may not sign CRLs (the CA certificate's keyUsage lacks cRLSign)".to_string()
        }
        CertRevocationListError::UnsupportedSignatureAlgorithmContext { .. }
        | CertRevocationListError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is signed with an algorithm retunnel does not accept".to_string()
        }
        other => format!("{other:?}"),
    };
    format!("a CRL in CRLfile/CRLpath cannot be used: {what}; give the current CRL the issuing CA publishes")
}

/// webpki's typed reason for a self-signed certificate that is also a CA (what `openssl req
/// -x509` makes): rustls carries it as an opaque `Other` error.
fn ca_as_server(e: &CertificateError) -> bool {
    matches!(e, CertificateError::Other(o)
        if o.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity))
}

/// The pinning verifier's reason: the certificate is not one of those pinned.
fn not_pinned(e: &CertificateError) -> bool {
    matches!(e, CertificateError::Other(o) if o.0.downcast_ref::<super::verify::NotPinned>().is_some())
}

fn hint(e: &CertificateError) -> &'static str {
    match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "connect by the name the certificate carries, or set checkHost to it"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "renew the server's certificate, or check this host's clock"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "check this host's clock",
        CertificateError::UnknownIssuer => "if the server uses a private CA, point CAfile at that CA's PEM file",
        CertificateError::Revoked => "the server needs a new certificate; do not trust this one",
        CertificateError::UnknownRevocationStatus => "add the CRL of every CA in the chain to CRLfile/CRLpath",
        e if not_pinned(e) => "add the server's certificate to CAfile (or CApath) if it is the right one",
        e if ca_as_server(e) => {
            "give the server a certificate with CA:FALSE (e.g. -addext basicConstraints=critical,CA:FALSE) signed by a CA, and point CAfile at that CA"
        }
        CertificateError::BadSignature => "point CAfile at the CA that really issued the server's certificate",
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "the server needs a certificate signed with SHA-256 or stronger"
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "give the server a certificate for TLS servers (extendedKeyUsage = serverAuth)"
        }
        CertificateError::ExpiredRevocationList | CertificateError::ExpiredRevocationListContext { .. } => {
            "fetch the CA's current CRL into CRLfile/CRLpath"
        }
        _ => "check the server's certificate and CAfile",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Allowed, client};
    use rustls::{Error, PeerIncompatible};

    /// rustls values that used to reach the log as they are (`BadSignature`,
    /// `InvalidPurposeContext { … }`, a CRL's `BadSignature`, `DnsName("…")`) are sentences.
    #[test]
    fn certificate_and_crl_problems_are_sentences_with_the_fix() {
        use rustls::{CertRevocationListError, CertificateError, ExtendedKeyPurpose};
        let purpose = CertificateError::InvalidPurposeContext {
            required: ExtendedKeyPurpose::ServerAuth,
            presented: vec![ExtendedKeyPurpose::ClientAuth],
        };
        assert_eq!(
            super::certificate(&purpose),
            "its extendedKeyUsage does not allow serverAuth (TLS server) (it allows clientAuth (TLS client))"
        );
        assert!(super::hint(&purpose).contains("extendedKeyUsage = serverAuth"));
        let forged = super::certificate(&CertificateError::BadSignature);
        assert!(
            forged.starts_with("bad signature: ") && !forged.contains("BadSignature"),
            "{forged}"
        );
        assert!(super::hint(&CertificateError::BadSignature).contains("CAfile"));
        let crl = super::crl(&CertRevocationListError::BadSignature);
        assert!(
            crl.contains("CRLfile/CRLpath") && crl.contains("forged CRL") && !crl.contains("BadSignature"),
            "{crl}"
        );
        let names = vec![
            "DnsName(\"db.internal\")".to_string(),
            "IpAddress(10.0.0.2)".to_string(),
        ];
        assert_eq!(super::presented_names(&names), "db.internal, 10.0.0.2");
    }

    /// A client speaking TLS 1.1 or older (no signature_algorithms, or an old version in its
    /// hello) is told to upgrade, whatever the section allows; not a raw rustls value.
    #[test]
    fn an_old_client_is_told_to_upgrade_in_a_sentence() {
        let both = Allowed {
            tls12: true,
            tls13: true,
        };
        for p in [
            PeerIncompatible::SignatureAlgorithmsExtensionRequired,
            PeerIncompatible::Tls12NotOffered,
        ] {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidData, Error::PeerIncompatible(p));
            let said = client(&e, both).to_string();
            assert!(
                said.contains("TLS 1.1 or older") && said.contains("upgrade the client"),
                "{said}"
            );
            assert!(!said.contains("Required") && !said.contains("NotOffered"), "{said}");
        }
    }

    use rustls::{CertificateError, OtherError};

    #[test]
    fn a_ca_certificate_used_by_a_server_is_named_with_the_fix() {
        let e = CertificateError::Other(OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity)));
        assert!(super::certificate(&e).contains("CA:TRUE"), "{}", super::certificate(&e));
        assert!(super::hint(&e).contains("CA:FALSE"));
        let other = CertificateError::Other(OtherError(Arc::new(webpki::Error::BadDer)));
        assert!(!super::certificate(&other).contains("CA:TRUE"));
    }
}
