//! A second, inspecting handshake with the openssl crate (the library native-tls runs on here):
//! same trust anchors, versions, SNI and name as the section, but verification errors are
//! collected instead of aborting, so `check` can show the certificate, the negotiated protocol
//! and cipher, and every precise reason verification fails — which native-tls does not expose.
//! It runs on a blocking thread; the caller bounds it with a timeout.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::{X509, X509NameRef, X509Ref};

use super::{CertInfo, Session};
use crate::config::{TlsSettings, TlsVersion};

/// What the inspecting handshake saw.
#[derive(Debug)]
pub struct Inspection {
    /// Protocol and cipher (timing left at zero; the caller fills it in).
    pub session: Session,
    /// The server's certificate.
    pub cert: Option<CertInfo>,
    /// Every reason verification fails, worded with the fix; empty when it passes.
    pub problems: Vec<String>,
}

/// One verification error as OpenSSL reported it.
#[derive(Debug)]
struct Issue {
    code: i32,
    text: String,
    cert: Option<X509>,
}

// OpenSSL's X509_V_ERR_* codes (x509_vfy.h); openssl-sys is not a direct dependency.
const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
const CERT_NOT_YET_VALID: i32 = 9;
const CERT_HAS_EXPIRED: i32 = 10;
const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
const HOSTNAME_MISMATCH: i32 = 62;
const IP_ADDRESS_MISMATCH: i32 = 64;

/// Connects to `addr` and handshakes as the section would, verifying `name` (and sending it
/// as SNI when `sni`).
pub fn inspect(
    addr: SocketAddr,
    s: &TlsSettings,
    name: &str,
    sni: bool,
    timeout: Duration,
) -> Result<Inspection, String> {
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let connector = connector(s)?;
    let mut conf = connector.configure().map_err(|e| e.to_string())?;
    conf.set_use_server_name_indication(sni);
    conf.set_verify_hostname(true);
    let issues = Arc::new(Mutex::new(Vec::new()));
    let sink = issues.clone();
    conf.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
        if !ok {
            sink.lock().unwrap().push(Issue {
                code: ctx.error().as_raw(),
                text: ctx.error().error_string().to_string(),
                cert: ctx.current_cert().map(X509Ref::to_owned),
            });
        }
        true // keep going: collect every reason, and see the certificate
    });
    let tls = conf.connect(name, tcp).map_err(|e| e.to_string())?;
    let ssl = tls.ssl();
    let cert = ssl.peer_certificate();
    let issues = std::mem::take(&mut *issues.lock().unwrap());
    Ok(Inspection {
        session: Session {
            version: ssl.version_str().to_string(),
            cipher: ssl.current_cipher().map(|c| c.name().to_string()),
            ms: 0.0,
        },
        problems: explain(&issues, cert.as_deref(), name),
        cert: cert.as_deref().map(|c| describe(c, name)),
    })
}

fn connector(s: &TlsSettings) -> Result<SslConnector, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_min_proto_version(Some(version(s.min_version)))
        .map_err(|e| e.to_string())?;
    b.set_max_proto_version(s.max_version.map(version))
        .map_err(|e| e.to_string())?;
    for anchor in crate::tls::trust_anchors(s).map_err(|e| e.to_string())? {
        let der = anchor.to_der().map_err(|e| e.to_string())?;
        let x509 = X509::from_der(&der).map_err(|e| e.to_string())?;
        // A duplicate of a system anchor is refused by the store; that is harmless.
        let _ = b.cert_store_mut().add_cert(x509);
    }
    Ok(b.build())
}

fn version(v: TlsVersion) -> SslVersion {
    match v {
        TlsVersion::Tls10 => SslVersion::TLS1,
        TlsVersion::Tls11 => SslVersion::TLS1_1,
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    }
}

/// Turns OpenSSL's verification errors into one sentence per distinct reason.
fn explain(issues: &[Issue], leaf: Option<&X509Ref>, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for issue in issues {
        let cert = issue.cert.as_deref().or(leaf);
        let line = reason(issue, cert, leaf, name);
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

fn reason(issue: &Issue, cert: Option<&X509Ref>, leaf: Option<&X509Ref>, name: &str) -> String {
    let subject = cert.map(|c| name_text(c.subject_name())).unwrap_or_default();
    let issuer = cert.map(|c| name_text(c.issuer_name())).unwrap_or_default();
    match issue.code {
        HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => {
            let covers = leaf.map(covered_names).unwrap_or_default().join(", ");
            format!(
                "host name mismatch: the certificate covers {covers}, not {name}; connect by one of those names, or set checkHost to one of them"
            )
        }
        CERT_HAS_EXPIRED => {
            let when = cert.map(|c| c.not_after().to_string()).unwrap_or_default();
            format!("expired: {subject} was valid until {when}; the server's certificate must be renewed")
        }
        CERT_NOT_YET_VALID => {
            let when = cert.map(|c| c.not_before().to_string()).unwrap_or_default();
            format!("not yet valid: {subject} is valid from {when}; check this host's clock")
        }
        DEPTH_ZERO_SELF_SIGNED_CERT => {
            format!("unknown CA: {subject} is self-signed; if you trust it, point CAfile at it")
        }
        UNABLE_TO_GET_ISSUER_CERT
        | UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | SELF_SIGNED_CERT_IN_CHAIN => {
            format!("unknown CA: the issuer {issuer} is not in the trust store; point CAfile at that CA's PEM file")
        }
        _ => format!("{} ({subject})", issue.text),
    }
}

/// The certificate, as the report shows it.
pub fn describe(c: &X509Ref, verified_name: &str) -> CertInfo {
    CertInfo {
        subject: name_text(c.subject_name()),
        sans: sans(c),
        issuer: name_text(c.issuer_name()),
        not_after: c.not_after().to_string(),
        days_left: days_left(c.not_after()),
        verified_name: verified_name.to_string(),
    }
}

fn days_left(t: &Asn1TimeRef) -> i64 {
    Asn1Time::days_from_now(0)
        .and_then(|now| now.diff(t))
        .map(|d| i64::from(d.days))
        .unwrap_or(0)
}

fn sans(c: &X509Ref) -> Vec<String> {
    let Some(names) = c.subject_alt_names() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            if let Some(d) = n.dnsname() {
                return Some(format!("DNS:{d}"));
            }
            ip(n.ipaddress()?).map(|a| format!("IP:{a}"))
        })
        .collect()
}

/// The names a certificate is valid for: its SANs, or its CN when it has none (as OpenSSL checks).
fn covered_names(c: &X509Ref) -> Vec<String> {
    let from_sans: Vec<String> = sans(c)
        .into_iter()
        .map(|s| s.split_once(':').map(|(_, v)| v.to_string()).unwrap_or(s))
        .collect();
    if !from_sans.is_empty() {
        return from_sans;
    }
    c.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok())
        .collect()
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn name_text(n: &X509NameRef) -> String {
    let parts: Vec<String> = n
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect();
    parts.join(", ")
}
