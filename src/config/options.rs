//! The table of every option retunnel knows: its own and all of stunnel's.
//!
//! This one table drives the parser (is the name known, where may it appear, is it honoured,
//! ignored with a warning, or refused), the "did you mean …?" suggestions, and a test that
//! keeps the README's reference complete. It holds no parsing logic.

/// Where an option may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only before the first `[section]`.
    Global,
    /// In a section; written before the first section it is the default for every section.
    Service,
}

/// What retunnel does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Parsed and honoured.
    Honoured,
    /// Known to stunnel, harmless to skip: a warning names it.
    Ignored,
    /// Known to stunnel, but skipping it would weaken security or change what the tunnel does:
    /// an error that says why.
    Refused(&'static str),
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
}

const fn honoured(name: &'static str, scope: Scope) -> OptionSpec {
    OptionSpec {
        name,
        scope,
        support: Support::Honoured,
    }
}

const fn ignored(name: &'static str, scope: Scope) -> OptionSpec {
    OptionSpec {
        name,
        scope,
        support: Support::Ignored,
    }
}

const fn refused(name: &'static str, scope: Scope, why: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        scope,
        support: Support::Refused(why),
    }
}

use Scope::{Global, Service};

const NO_REVOCATION: &str = "retunnel cannot check certificate revocation yet, and ignoring the option would accept a revoked certificate; remove it only if you accept that";
const NO_PEER_PINNING: &str =
    "retunnel cannot pin peer certificates yet, and ignoring the option would accept any valid certificate";

const NO_ENGINES: &str = "OpenSSL engines are not supported";
const NO_PROGRAMS: &str = "retunnel tunnels to network services only, not to programs";
const NO_STARTTLS: &str = "STARTTLS protocols are not supported";

/// Every option stunnel 5 knows, plus retunnel's own.
pub const OPTIONS: &[OptionSpec] = &[
    // Honoured, global.
    honoured("fips", Global),
    honoured("foreground", Global),
    honoured("output", Global),
    honoured("pid", Global),
    honoured("setuid", Global),
    honoured("setgid", Global),
    // stunnel allows `debug` per service too; retunnel has one log level (see config::service).
    honoured("debug", Service),
    honoured("log", Global),
    honoured("syslog", Global),
    honoured("include", Global),
    // Honoured, per service.
    honoured("client", Service),
    honoured("accept", Service),
    honoured("connect", Service),
    honoured("CAfile", Service),
    honoured("CApath", Service),
    honoured("verify", Service),
    honoured("verifyChain", Service),
    honoured("verifyPeer", Service),
    honoured("checkHost", Service),
    honoured("sni", Service),
    honoured("delay", Service),
    honoured("options", Service),
    honoured("sslVersion", Service),
    honoured("sslVersionMin", Service),
    honoured("sslVersionMax", Service),
    honoured("TIMEOUTconnect", Service),
    honoured("TIMEOUTclose", Service),
    honoured("TIMEOUTidle", Service),
    honoured("cert", Service),
    honoured("key", Service),
    honoured("failover", Service),
    honoured("socket", Service),
    // retunnel's own.
    honoured("connectTLS", Service),
    honoured("maxConnections", Service),
    // `protocol = redis` (retunnel's own value; stunnel's STARTTLS values are refused when parsed).
    honoured("protocol", Service),
    honoured("clusterPorts", Service),
    // Ignored with a warning: skipping them changes neither security nor what is tunnelled.
    ignored("ciphers", Service),
    ignored("ciphersuites", Service),
    ignored("curves", Service),
    ignored("ECDHcurve", Service),
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
    ignored("libwrap", Service),
    ignored("logId", Service),
    ignored("sessionCacheSize", Service),
    ignored("sessionCacheTimeout", Service),
    ignored("sessionResume", Service),
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
    refused("CRLfile", Service, NO_REVOCATION),
    refused("CRLpath", Service, NO_REVOCATION),
    refused("OCSP", Service, NO_REVOCATION),
    refused("OCSPaia", Service, NO_REVOCATION),
    refused("OCSPflag", Service, NO_REVOCATION),
    refused("OCSPnonce", Service, NO_REVOCATION),
    refused("OCSPrequire", Service, NO_REVOCATION),
    refused(
        "requireCert",
        Service,
        "retunnel cannot check client certificates in server mode yet, and ignoring it would let any client in",
    ),
    refused("checkEmail", Service, NO_PEER_PINNING),
    refused("checkIP", Service, NO_PEER_PINNING),
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
        "retunnel does not verify client certificates, so it has no failed clients to redirect",
    ),
    refused("transparent", Service, "transparent proxying is not supported"),
];

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
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&word, &c.to_ascii_lowercase()), c))
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
}
