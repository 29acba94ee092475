//! A second, inspecting handshake: the section's trust anchors, versions, SNI and name, but
//! with a verifier that records what is wrong instead of failing (see `tls::inspect`), so that
//! `check` can show the certificate, the negotiated protocol and cipher, and every reason
//! verification fails. Certificates are read with x509-parser.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::CertificateError;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::time::timeout;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::{CertInfo, Session};
use crate::config::TlsSettings;
use crate::tls;

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

/// Connects to `addr` and handshakes as the section would, verifying `name` (and sending it
/// as SNI when `sni`), within `limit`.
pub async fn inspect(
    addr: SocketAddr,
    s: &TlsSettings,
    name: &str,
    sni: bool,
    limit: Duration,
) -> Result<Inspection, String> {
    let steps = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tls::inspect(s, name.to_string(), sni, tcp)
            .await
            .map_err(|e| e.to_string())
    };
    let (stream, seen) = timeout(limit, steps)
        .await
        .map_err(|_| format!("no complete TLS handshake within {}s (TIMEOUTconnect)", limit.as_secs()))??;
    let (version, cipher) = tls::negotiated(stream.session());
    let leaf = seen.chain.first().and_then(parse);
    Ok(Inspection {
        session: Session {
            version,
            cipher,
            ms: 0.0,
            resumed: None,
        },
        problems: explain(&seen.problems, leaf.as_ref(), &checked_for(s, name)),
        cert: leaf.as_ref().map(|c| describe(c, name)),
    })
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c)
}

/// What the certificate's names were checked against: the name, or with `checkIP` its
/// values (which the section judges by then).
fn checked_for(s: &TlsSettings, name: &str) -> Checked {
    match tls::check_ip_names(s) {
        Some(names) => Checked::ByIp(names),
        None => Checked::Name(name.to_string()),
    }
}

/// The names a certificate must carry one of.
enum Checked {
    /// The host (or `checkHost`, `sni`).
    Name(String),
    /// `checkIP` (and `checkHost`), as [`tls::check_ip_names`] words them.
    ByIp(String),
}

/// One sentence per distinct reason.
fn explain(problems: &[CertificateError], leaf: Option<&X509Certificate<'_>>, name: &Checked) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in problems {
        let line = reason(p, leaf, name);
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

fn reason(p: &CertificateError, leaf: Option<&X509Certificate<'_>>, name: &Checked) -> String {
    let subject = leaf.map(|c| c.subject().to_string()).unwrap_or_default();
    let issuer = leaf.map(|c| c.issuer().to_string()).unwrap_or_default();
    match p {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let covers = leaf.map(covered_names).unwrap_or_default().join(", ");
            match name {
                Checked::Name(name) => format!(
                    "host name mismatch: the certificate covers {covers}, not {name}; connect by one of those names, or set checkHost to one of them"
                ),
                Checked::ByIp(names) => format!(
                    "name mismatch: the certificate covers {covers}, none of {names}; set checkIP to an address it carries (or leave checkIP out to verify the host name)"
                ),
            }
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let when = leaf.map(|c| when(&c.validity().not_after)).unwrap_or_default();
            format!("expired: {subject} was valid until {when}; the server's certificate must be renewed")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let when = leaf.map(|c| when(&c.validity().not_before)).unwrap_or_default();
            format!("not yet valid: {subject} is valid from {when}; check this host's clock")
        }
        CertificateError::UnknownIssuer if leaf.is_some_and(|c| c.subject() == c.issuer()) => {
            format!("unknown CA: {subject} is self-signed; if you trust it, point CAfile at it")
        }
        CertificateError::UnknownIssuer => {
            format!("unknown CA: the issuer {issuer} is not in the trust store; point CAfile at that CA's PEM file")
        }
        CertificateError::Revoked => {
            format!(
                "revoked: {subject} is on the certificate revocation list (CRLfile/CRLpath); the server needs a new certificate"
            )
        }
        other => format!("{} ({subject})", tls::describe_certificate_error(other)),
    }
}

/// The certificate, as the report shows it.
fn describe(c: &X509Certificate<'_>, verified_name: &str) -> CertInfo {
    let not_after = &c.validity().not_after;
    CertInfo {
        subject: c.subject().to_string(),
        sans: sans(c),
        issuer: c.issuer().to_string(),
        not_after: when(not_after),
        days_left: days_left(not_after),
        verified_name: verified_name.to_string(),
    }
}

/// As OpenSSL prints it: `Dec 26 23:02:19 2027 GMT`.
fn when(t: &ASN1Time) -> String {
    let d = t.to_datetime();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][usize::from(u8::from(d.month())) - 1];
    format!(
        "{month} {:>2} {:02}:{:02}:{:02} {} GMT",
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.year()
    )
}

fn days_left(t: &ASN1Time) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (t.timestamp() - now).div_euclid(86_400)
}

fn sans(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
            GeneralName::IPAddress(bytes) => ip(bytes).map(|a| format!("IP:{a}")),
            _ => None,
        })
        .collect()
}

/// The names a certificate is valid for: its SANs, or its CN when it has none.
fn covered_names(c: &X509Certificate<'_>) -> Vec<String> {
    let from_sans: Vec<String> = sans(c)
        .into_iter()
        .map(|s| s.split_once(':').map(|(_, v)| v.to_string()).unwrap_or(s))
        .collect();
    if !from_sans.is_empty() {
        return from_sans;
    }
    c.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect()
}

fn ip(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => Some(<[u8; 4]>::try_from(bytes).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(bytes).ok()?.into()),
        _ => None,
    }
}
