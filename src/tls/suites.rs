//! `ciphers`, `ciphersuites` and `curves`/`ECDHcurve`, with stunnel's (OpenSSL's) names,
//! mapped onto what the aws-lc-rs provider has. A name it does not have is an error that names
//! it and lists what is available: a user who restricts the ciphers must never silently get
//! the defaults.

use rustls::SupportedCipherSuite;
use rustls::crypto::aws_lc_rs::{ALL_CIPHER_SUITES, ALL_KX_GROUPS, DEFAULT_KX_GROUPS, cipher_suite};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};

/// TLS 1.2 suites by their OpenSSL names.
const TLS12: &[(&str, SupportedCipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites by their (IANA and OpenSSL) names.
const TLS13: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_256_GCM_SHA384", cipher_suite::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", cipher_suite::TLS13_AES_128_GCM_SHA256),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// OpenSSL's keywords for "every strong suite": every suite rustls has qualifies.
const ALL_STRONG: &[&str] = &["HIGH", "DEFAULT", "ALL", "ECDHE", "EECDH", "kECDHE", "AESGCM", "FIPS"];

/// Classes OpenSSL can exclude that rustls never offers: excluding them changes nothing.
const NEVER_OFFERED: &[&str] = &[
    "aNULL", "eNULL", "NULL", "MD5", "RC4", "DES", "3DES", "EXPORT", "EXP", "LOW", "MEDIUM", "PSK", "SRP", "DSS",
    "aDSS", "ADH", "AECDH", "kRSA", "CAMELLIA", "SEED", "IDEA", "SHA1", "DH", "EDH", "DHE", "kDHE", "aECDH", "kECDH",
    "CBC", "SSLv3",
];

/// Key-exchange groups by every name stunnel configs use for them.
const GROUPS: &[(&[&str], &str)] = &[
    (&["X25519", "x25519"], "X25519"),
    (&["P-256", "prime256v1", "secp256r1"], "secp256r1"),
    (&["P-384", "secp384r1"], "secp384r1"),
    (&["X25519MLKEM768"], "X25519MLKEM768"),
];

fn available(list: &[(&str, SupportedCipherSuite)]) -> String {
    list.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// `ciphers`: an OpenSSL cipher list (`A:B`, `!x`/`-x` exclusions, `HIGH`…) → TLS 1.2 suite
/// names, in order.
pub fn tls12_names(list: &str) -> Result<Vec<&'static str>, String> {
    let mut chosen: Vec<&'static str> = Vec::new();
    for item in list.split([':', ',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        if item.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: ordering and levels; every suite here is strong.
        }
        if let Some(out) = item.strip_prefix(['!', '-']) {
            match TLS12.iter().find(|(n, _)| n.eq_ignore_ascii_case(out)) {
                Some((n, _)) => chosen.retain(|c| c != n),
                None if NEVER_OFFERED.iter().any(|c| c.eq_ignore_ascii_case(out)) => {}
                None => return Err(unknown_class(out)),
            }
            continue;
        }
        let item = item.trim_start_matches('+');
        if ALL_STRONG.iter().any(|k| k.eq_ignore_ascii_case(item)) {
            chosen.extend(
                TLS12
                    .iter()
                    .map(|(n, _)| *n)
                    .filter(|n| !chosen.contains(n))
                    .collect::<Vec<_>>(),
            );
            continue;
        }
        match TLS12.iter().find(|(n, _)| n.eq_ignore_ascii_case(item)) {
            Some((n, _)) if !chosen.contains(n) => chosen.push(n),
            Some(_) => {}
            None => {
                return Err(format!(
                    "`{item}` is not a TLS 1.2 cipher suite retunnel has; available: {} (or HIGH for all of them)",
                    available(TLS12)
                ));
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "no TLS 1.2 cipher suite is left; available: {}",
            available(TLS12)
        ));
    }
    Ok(chosen)
}

fn unknown_class(item: &str) -> String {
    format!(
        "`!{item}`: retunnel cannot tell what excluding this would leave; exclude suites by name ({})",
        available(TLS12)
    )
}

/// `ciphersuites`: TLS 1.3 suite names separated by `:`.
pub fn tls13_names(list: &str) -> Result<Vec<&'static str>, String> {
    let mut chosen = Vec::new();
    for item in list.split(':').map(str::trim).filter(|s| !s.is_empty()) {
        match TLS13.iter().find(|(n, _)| n.eq_ignore_ascii_case(item)) {
            Some((n, _)) => chosen.push(*n),
            None => {
                return Err(format!(
                    "`{item}` is not a TLS 1.3 cipher suite retunnel has; available: {}",
                    available(TLS13)
                ));
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("name at least one TLS 1.3 suite: {}", available(TLS13)));
    }
    Ok(chosen)
}

/// `curves`/`ECDHcurve`: group names separated by `:`, in preference order.
pub fn group_names(list: &str) -> Result<Vec<&'static str>, String> {
    let mut chosen = Vec::new();
    for item in list.split([':', ',']).map(str::trim).filter(|s| !s.is_empty()) {
        match GROUPS
            .iter()
            .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(item)))
        {
            Some((_, id)) => chosen.push(*id),
            None => {
                let names: Vec<&str> = GROUPS.iter().flat_map(|(n, _)| n.iter().copied()).collect();
                return Err(format!(
                    "`{item}` is not a key-exchange group retunnel has; available: {}",
                    names.join(", ")
                ));
            }
        }
    }
    if chosen.is_empty() {
        return Err("name at least one group, e.g. X25519:P-256".into());
    }
    Ok(chosen)
}

/// The provider restricted to the chosen suites and groups (`None`: the defaults).
pub fn restrict(
    mut provider: CryptoProvider,
    tls12: Option<&[String]>,
    tls13: Option<&[String]>,
    groups: Option<&[String]>,
) -> CryptoProvider {
    let pick = |table: &[(&str, SupportedCipherSuite)], names: &[String]| -> Vec<SupportedCipherSuite> {
        names
            .iter()
            .filter_map(|n| table.iter().find(|(t, _)| t == n).map(|(_, s)| *s))
            .collect()
    };
    let default_of = |tls13_suite: bool| -> Vec<SupportedCipherSuite> {
        provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)) == tls13_suite)
            .collect()
    };
    let mut suites = match tls13 {
        Some(names) => pick(TLS13, names),
        None => default_of(true),
    };
    suites.extend(match tls12 {
        Some(names) => pick(TLS12, names),
        None => default_of(false),
    });
    provider.cipher_suites = suites;
    if let Some(names) = groups {
        provider.kx_groups = names
            .iter()
            .filter_map(|n| ALL_KX_GROUPS.iter().find(|g| format!("{:?}", g.name()) == *n).copied())
            .collect::<Vec<&'static dyn SupportedKxGroup>>();
    }
    let _ = (ALL_CIPHER_SUITES, DEFAULT_KX_GROUPS);
    provider
}
