//! The configuration rules of issue 2, one test per rule: what a valid file turns into, and
//! what each mistake is told (file, line, section, option and the fix).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

const FILE: &str = "/etc/retunnel/test.conf";

/// The stunnel file from the AWS ElastiCache guide ("redis-cli via stunnel"), as printed there.
const AWS: &str = include_str!("../../tests/fixtures/aws-redis-cli.conf");

fn parse(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
    Config::parse(text, Path::new(FILE))
}

/// Parses a file that must be valid; returns it and its warnings as text.
fn ok(text: &str) -> (Config, Vec<String>) {
    match parse(text) {
        Ok((c, w)) => (c, w.into_iter().map(|w| w.0).collect()),
        Err(e) => panic!("config refused:\n{e}\n--- text:\n{text}"),
    }
}

/// Parses a file that must be refused; returns its problems.
fn err(text: &str) -> Vec<String> {
    match parse(text) {
        Ok((c, _)) => panic!("config accepted but must not be:\n{text}\n--- parsed: {c:#?}"),
        Err(e) => {
            assert!(!e.problems.is_empty());
            e.problems
        }
    }
}

/// The one problem of a file that has exactly one.
fn one_err(text: &str) -> String {
    let p = err(text);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    p.into_iter().next().unwrap()
}

/// A file that passes for PEM `label` where only the header is checked.
fn pem(label: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), format!("-----BEGIN {label}-----\n")).unwrap();
    f
}

/// A minimal valid section, with `extra` lines added to it.
fn section(extra: &str) -> String {
    format!("[redis]\naccept = 16379\nconnect = redis.example.com:6379\n{extra}\n")
}

/// The service of a one-section file.
fn svc(text: &str) -> ServiceConfig {
    let (c, _) = ok(text);
    assert_eq!(c.services.len(), 1);
    c.services.into_iter().next().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A section's `accept` list of one TCP address.
fn tcp(s: &str) -> Vec<Listen> {
    vec![Listen::Tcp(addr(s))]
}

fn name(h: &str, port: u16) -> Target {
    Target {
        host: Host::Name(h.into()),
        port,
    }
}

fn assert_has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "{text:?} lacks {p:?}");
    }
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 && libc::getegid() == 0 }
}

#[test]
fn aws_file_parses_into_typed_values() {
    if !is_root() {
        // The file says `setuid = root`: as another user that is (rightly) an error.
        let p = err(AWS);
        assert!(p.iter().all(|p| p.contains("setuid") || p.contains("setgid")), "{p:#?}");
        eprintln!("not root: checked only that setuid/setgid = root are refused");
        return;
    }
    let (c, warnings) = ok(AWS);
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(c.path, Path::new(FILE));
    assert_eq!(c.global.pid, Some("/var/run/stunnel.pid".into()));
    assert_eq!(c.global.log_level, LogLevel::Debug);
    assert_eq!(c.global.output, None);
    assert!(c.global.foreground);
    assert_eq!(c.global.user.as_ref().map(|u| u.uid), Some(0));
    assert_eq!(c.global.group.as_ref().map(|g| g.gid), Some(0));
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["redis-cli", "redis-cli-replica"]);
    let (primary, replica) = (&c.services[0], &c.services[1]);
    assert_eq!(primary.accept, tcp("127.0.0.1:6379"));
    assert_eq!(replica.accept, tcp("127.0.0.1:6380"));
    assert_eq!(
        primary.connect,
        [name("master.ssltest.wif01h.use1.cache.amazonaws.com", 6379)]
    );
    assert_eq!(
        replica.connect,
        [name("ssltest-02.ssltest.wif01h.use1.cache.amazonaws.com", 6379)]
    );
    for s in &c.services {
        // NO_SSLv2/NO_SSLv3 allow TLSv1 and up; retunnel's own floor (1.2) stays.
        assert_eq!(
            s.tls,
            TlsSettings {
                verify_chain: true,
                ca_file: None,
                ca_path: None,
                check_host: None,
                sni: None,
                min_version: TlsVersion::Tls12,
                max_version: None,
                identity: None,
                ..TlsSettings::default()
            }
        );
        assert_eq!(s.connect_timeout, defaults::CONNECT_TIMEOUT);
        assert_eq!(s.close_timeout, defaults::CLOSE_TIMEOUT);
        assert_eq!(s.idle_timeout, Some(defaults::IDLE_TIMEOUT));
    }
}

#[test]
fn global_service_options_are_defaults_for_every_section() {
    let ca = pem("CERTIFICATE");
    let text = format!(
        "CAfile = {}\nTIMEOUTidle = 30\nTIMEOUTconnect = 3\nclient = yes\n\
         [a]\naccept = 1001\nconnect = a.example:1\n\
         [b]\naccept = 1002\nconnect = b.example:1\nTIMEOUTidle = 0\n",
        ca.path().display()
    );
    let (c, _) = ok(&text);
    let (a, b) = (&c.services[0], &c.services[1]);
    assert_eq!(a.tls.ca_file.as_deref(), Some(ca.path()));
    assert_eq!(b.tls.ca_file.as_deref(), Some(ca.path()));
    assert_eq!(a.connect_timeout, Duration::from_secs(3));
    assert_eq!(b.connect_timeout, Duration::from_secs(3));
    assert_eq!(a.idle_timeout, Some(Duration::from_secs(30)));
    // A section's own value wins over the global default.
    assert_eq!(b.idle_timeout, None);
}

#[test]
fn global_connect_is_a_default_and_a_section_connect_replaces_it() {
    let (c, _) = ok("connect = shared.example:6379\n[a]\naccept = 1001\n[b]\naccept = 1002\nconnect = own.example:1\n");
    assert_eq!(c.services[0].connect, [name("shared.example", 6379)]);
    assert_eq!(c.services[1].connect, [name("own.example", 1)]);
}

#[test]
fn options_accumulate_from_global_part_and_section() {
    let (c, w) = ok(&format!(
        "options = NO_TLSv1_2\n{}[other]\naccept = 1002\nconnect = x.example:1\n",
        section("options = NO_COMPRESSION")
    ));
    // The global NO_TLSv1_2 applies in both sections although [redis] has its own `options`.
    assert_eq!(c.services[0].tls.min_version, TlsVersion::Tls13);
    assert_eq!(c.services[1].tls.min_version, TlsVersion::Tls13);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_has(&w[0], &["[redis] options", "NO_COMPRESSION", "ignored"]);
}

#[test]
fn comments_blank_lines_crlf_bom_and_blanks() {
    let text = "\u{feff}; a comment\r\n# another\r\n\r\n   \r\n  debug   =   7  \r\n[  spaced name  ]\r\n\
                \t accept\t=\t6379 \r\n  connect=redis.example.com:6379\r\n; trailing comment\r\n";
    let (c, w) = ok(text);
    assert!(w.is_empty(), "{w:#?}");
    assert_eq!(c.global.log_level, LogLevel::Debug);
    let s = &c.services[0];
    assert_eq!(s.name, "spaced name");
    assert_eq!(s.accept, tcp("127.0.0.1:6379"));
    assert_eq!(s.connect, [name("redis.example.com", 6379)]);
}

#[test]
fn crlf_keeps_line_numbers() {
    let e = one_err("[a]\r\naccept = 1\r\nconnect = x:1\r\nbogus = 1\r\n");
    assert_has(&e, &[&format!("{FILE}:4: [a] bogus")]);
}

#[test]
fn names_and_yes_no_are_case_insensitive() {
    let ca = pem("CERTIFICATE");
    let text = format!(
        "FIPS = NO\nDebug = 7\n[r]\nCLIENT = Yes\nAccept = 1\nCONNECT = h.example:1\nCAFile = {0}\nverifychain = YES\nDELAY = yEs\ntimeoutidle = 5\n",
        ca.path().display()
    );
    let s = svc(&text);
    assert_eq!(s.tls.ca_file.as_deref(), Some(ca.path()));
    assert!(s.tls.verify_chain);
    assert_eq!(s.idle_timeout, Some(Duration::from_secs(5)));
    // Also the other spellings of CAfile.
    for key in ["cafile", "CAfile", "CAFILE"] {
        let s = svc(&section(&format!("{key} = {}", ca.path().display())));
        assert_eq!(s.tls.ca_file.as_deref(), Some(ca.path()), "{key}");
    }
    assert!(!svc(&section("VerifyChain = NO")).tls.verify_chain);
}

#[test]
fn windows_paths_keep_backslashes() {
    let (c, _) = ok(&format!(
        "output = C:\\Program Files\\stunnel\\log.txt\npid = C:\\run\\x.pid\n{}",
        section("")
    ));
    assert_eq!(
        c.global.output.as_deref(),
        Some(Path::new("C:\\Program Files\\stunnel\\log.txt"))
    );
    assert_eq!(c.global.pid.as_deref(), Some(Path::new("C:\\run\\x.pid")));
    // A CAfile that does not exist is refused with the path as written.
    let e = one_err(&section("CAfile = C:\\certs\\ca.pem"));
    assert_has(&e, &["C:\\certs\\ca.pem", "check the path"]);
}

#[test]
fn repeated_connect_keeps_every_target_in_order() {
    let s = svc("[r]\naccept = 1\nconnect = one.example:1\nconnect = [::1]:2\nconnect = 3\n");
    assert_eq!(
        s.connect,
        [
            name("one.example", 1),
            Target {
                host: Host::Ip("::1".parse().unwrap()),
                port: 2
            },
            name("localhost", 3),
        ]
    );
}

#[test]
fn every_honoured_option_sets_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let text = format!(
        "fips = no\nforeground = yes\noutput = /tmp/retunnel.log\npid = /tmp/retunnel.pid\ndebug = daemon.warning\n\
         [r]\nclient = yes\naccept = [::1]:7000\nconnect = db.example:6380\nCAfile = {ca}\nCApath = {dir}\n\
         verify = 2\nverifyChain = yes\nverifyPeer = no\ncheckHost = db.example\nsni = db.example\ndelay = no\n\
         options = NO_TLSv1_1\nsslVersionMax = TLSv1.3\nTIMEOUTconnect = 4\nTIMEOUTclose = 0\nTIMEOUTidle = 600\n",
        ca = ca.display(),
        dir = dir.path().display()
    );
    let (c, w) = ok(&text);
    assert!(w.is_empty(), "{w:#?}");
    assert_eq!(
        c.global,
        Global {
            pid: Some("/tmp/retunnel.pid".into()),
            log_level: LogLevel::Warn,
            output: Some("/tmp/retunnel.log".into()),
            ..Global::default()
        }
    );
    assert_eq!(
        c.services[0],
        ServiceConfig {
            name: "r".into(),
            accept: tcp("[::1]:7000"),
            connect: vec![name("db.example", 6380)],
            tls: TlsSettings {
                verify_chain: true,
                ca_file: Some(ca),
                ca_path: Some(dir.path().to_path_buf()),
                check_host: Some("db.example".into()),
                sni: Some("db.example".into()),
                min_version: TlsVersion::Tls12,
                max_version: Some(TlsVersion::Tls13),
                identity: None,
                ..TlsSettings::default()
            },
            connect_timeout: Duration::from_secs(4),
            close_timeout: Duration::ZERO,
            idle_timeout: Some(Duration::from_secs(600)),
            failover: Default::default(),
            socket_options: Vec::new(),
            max_connections: None,
            prewarm: 0,
            accept_tls: None,
            connect_tls: true,
            redis: None,
        }
    );
}

#[test]
fn verify_levels_and_verify_chain() {
    assert!(!svc(&section("verify = 0")).tls.verify_chain);
    assert!(svc(&section("verify = 1")).tls.verify_chain);
    assert!(svc(&section("verify = 2")).tls.verify_chain);
    assert!(!svc(&section("verifyChain = no")).tls.verify_chain);
    // stunnel's levels 3 (chain and pin) and 4 (pin only) need the certificates to pin to.
    let ca = pem("CERTIFICATE");
    let ca_line = format!("CAfile = {}", ca.path().display());
    let s = svc(&section(&format!("{ca_line}\nverify = 3")));
    assert!(s.tls.verify_chain && s.tls.verify_peer);
    let s = svc(&section(&format!("{ca_line}\nverify = 4")));
    assert!(!s.tls.verify_chain && s.tls.verify_peer);
    let s = svc(&section(&format!("{ca_line}\nverifyPeer = yes")));
    assert!(s.tls.verify_chain && s.tls.verify_peer);
    for pin in ["verify = 3", "verify = 4", "verifyPeer = yes"] {
        assert_has(&one_err(&section(pin)), &["[redis]", "verifyPeer", "add `CAfile"]);
    }
    assert_has(
        &one_err(&section("verify = 9")),
        &["not a verify level", "3 (chain and pin"],
    );
    assert!(svc(&section("verifyPeer = no")).tls.verify_chain);
}

#[test]
fn sni_and_check_host() {
    let long = format!("sni = {}.example", "a.".repeat(130));
    assert_has(&one_err(&section(&long)), &["[redis] sni", "bytes long", "at most 253"]);
    assert_has(
        &one_err(&section("sni = bad name")),
        &["[redis] sni", "not a valid host name"],
    );
    assert_eq!(svc(&section("sni =")).tls.sni.as_deref(), Some(""));
    assert_eq!(
        svc(&section("sni = other.example")).tls.sni.as_deref(),
        Some("other.example")
    );
    let e = one_err(&section("sni = a.example\ncheckHost = b.example"));
    assert_has(
        &e,
        &["[redis]", "sni = a.example", "checkHost = b.example", "remove `sni`"],
    );
    let e = one_err(&section("verifyChain = no\ncheckHost = b.example"));
    assert_has(&e, &["[redis]", "checkHost", "verifyChain = no"]);
    assert_has(
        &one_err(&section("checkHost = not a host")),
        &["[redis] checkHost", "not a valid host name"],
    );
}

#[test]
fn tls_versions() {
    let s = svc(&section("sslVersion = TLSv1.3"));
    assert_eq!(
        (s.tls.min_version, s.tls.max_version),
        (TlsVersion::Tls13, Some(TlsVersion::Tls13))
    );
    let s = svc(&section("options = NO_TLSv1_2"));
    assert_eq!(s.tls.min_version, TlsVersion::Tls13);
    let s = svc(&section("options = NO_TLSv1.1"));
    assert_eq!(s.tls.min_version, TlsVersion::Tls12);
    // NO_TLSv1.3 caps the version at 1.2; with NO_TLSv1.2 too nothing is left.
    let s = svc(&section("options = NO_TLSv1.3"));
    assert_eq!(
        (s.tls.min_version, s.tls.max_version),
        (TlsVersion::Tls12, Some(TlsVersion::Tls12))
    );
    assert_eq!(
        svc(&section("options = NO_TLSv1_3\nsslVersionMax = TLSv1.3"))
            .tls
            .max_version,
        Some(TlsVersion::Tls12)
    );
    assert_has(
        &one_err(&section("options = NO_TLSv1.2\noptions = NO_TLSv1.3")),
        &["[redis]", "NO_TLSv1.2", "NO_TLSv1.3", "no TLS version", "remove one"],
    );
    assert_has(
        &one_err(&section("options = NO_TLSv1.2\nsslVersionMax = TLSv1.2")),
        &["[redis]", "no TLS version", "sslVersionMax"],
    );
    // TLS 1.0 and 1.1 are refused at their own line, naming the option written and the fix;
    // `all` means 1.2 and 1.3.
    assert_has(
        &one_err(&section("sslVersionMin = TLSv1")),
        &[
            "[redis] sslVersionMin",
            "TLSv1 is not supported",
            "sslVersionMin = TLSv1.2",
        ],
    );
    let e = one_err(&section("sslVersion = TLSv1"));
    assert_has(
        &e,
        &[
            &format!("{FILE}:4: [redis] sslVersion:"),
            "TLSv1 is not supported",
            "`sslVersion = TLSv1.2`",
        ],
    );
    assert!(!e.contains("sslVersionMin"), "{e}");
    assert_has(
        &one_err(&section("sslVersionMax = TLSv1.1")),
        &[
            "[redis] sslVersionMax",
            "TLSv1.1 is not supported",
            "sslVersionMax = TLSv1.2",
        ],
    );
    assert_eq!(svc(&section("sslVersion = all")).tls.min_version, TlsVersion::Tls12);
    assert_eq!(svc(&section("sslVersionMin = all")).tls.min_version, TlsVersion::Tls12);
    let e = one_err(&section("sslVersionMin = TLSv1.3\nsslVersionMax = TLSv1.2"));
    assert_has(&e, &["[redis]", "below the lowest"]);
    assert_has(
        &one_err(&section("sslVersion = SSLv3")),
        &["[redis] sslVersion", "broken"],
    );
    assert_has(
        &one_err(&section("options = NO_SSLv4")),
        &["[redis] options", "did you mean"],
    );
    let (_, w) = ok(&section("options = -NO_SSLv3"));
    assert_has(&w[0], &["[redis] options", "-NO_SSLv3", "ignored"]);
}

#[test]
fn timeouts() {
    let s = svc(&section("TIMEOUTconnect = 1\nTIMEOUTclose = 2\nTIMEOUTidle = 3"));
    assert_eq!(
        (s.connect_timeout, s.close_timeout, s.idle_timeout),
        (
            Duration::from_secs(1),
            Duration::from_secs(2),
            Some(Duration::from_secs(3))
        )
    );
    assert_has(
        &one_err(&section("TIMEOUTconnect = 0")),
        &["[redis] TIMEOUTconnect", "at least 1 second"],
    );
    assert_has(
        &one_err(&section("TIMEOUTidle = 1.5")),
        &["[redis] TIMEOUTidle", "whole number of seconds"],
    );
    assert_has(
        &one_err(&section("TIMEOUTclose = -1")),
        &["[redis] TIMEOUTclose", "whole number"],
    );
}

#[test]
fn process_options() {
    let (c, w) = ok(&format!("pid =\nforeground = quiet\n{}", section("")));
    assert_eq!(c.global.pid, None);
    assert!(w.is_empty());
    let (c, w) = ok(&format!("foreground = no\n{}", section("")));
    assert!(w.is_empty(), "{w:?}");
    assert!(!c.global.foreground);
    assert_has(
        &one_err(&format!("foreground = maybe\n{}", section(""))),
        &["foreground", "`yes`, `quiet` or `no`"],
    );
    assert_has(
        &one_err(&format!("output =\n{}", section(""))),
        &["output", "needs a file path"],
    );
    for (level, want) in [
        ("0", LogLevel::Error),
        ("4", LogLevel::Warn),
        ("5", LogLevel::Info),
        ("local7.debug", LogLevel::Debug),
    ] {
        let (c, _) = ok(&format!("debug = {level}\n{}", section("")));
        assert_eq!(c.global.log_level, want, "debug = {level}");
    }
    assert_has(
        &one_err(&format!("debug = 8\n{}", section(""))),
        &[&format!("{FILE}:1: debug"), "0-7"],
    );
}

#[test]
fn global_only_option_in_a_section_is_refused() {
    let e = one_err(&section("pid = /tmp/x.pid"));
    assert_has(
        &e,
        &[
            &format!("{FILE}:4: [redis] pid"),
            "global option",
            "above the first [section]",
        ],
    );
}

#[test]
fn debug_in_a_section_is_a_warning_not_an_error() {
    // stunnel allows `debug` per service; retunnel has one level for the process.
    let (c, w) = ok(&format!("debug = 3\n{}", section("debug = 7")));
    assert_eq!(c.global.log_level, LogLevel::Error);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_has(&w[0], &["[redis] debug", "above the first [section]"]);
}

#[test]
fn tls_suites_groups_and_sessions_are_honoured_or_refused_naming_what_is_available() {
    let s = svc(&section(
        "ciphers = HIGH:!aNULL:!ECDHE-RSA-CHACHA20-POLY1305\nciphersuites = TLS_AES_128_GCM_SHA256\ncurves = P-256:x25519\nsessionCacheSize = 0\nsessionCacheTimeout = 60\nsessionResume = no",
    ));
    let ciphers = s.tls.ciphers.unwrap();
    assert!(
        ciphers.contains(&"ECDHE-ECDSA-AES256-GCM-SHA384".to_string()),
        "{ciphers:?}"
    );
    assert!(
        !ciphers.contains(&"ECDHE-RSA-CHACHA20-POLY1305".to_string()),
        "{ciphers:?}"
    );
    assert_eq!(s.tls.ciphersuites.unwrap(), ["TLS_AES_128_GCM_SHA256"]);
    assert_eq!(s.tls.curves.unwrap(), ["secp256r1", "X25519"]);
    assert_eq!(s.tls.session.cache_size, 0);
    assert_eq!(s.tls.session.cache_timeout, Duration::from_secs(60));
    assert!(!s.tls.session.resume);
    assert_has(
        &one_err(&section("ciphers = AES256-SHA")),
        &[
            "[redis] ciphers",
            "`AES256-SHA`",
            "available: ECDHE-ECDSA-AES256-GCM-SHA384",
        ],
    );
    assert_has(
        &one_err(&section("ciphersuites = TLS_AES_128_CCM_SHA256")),
        &["`TLS_AES_128_CCM_SHA256`", "available: TLS_AES_256_GCM_SHA384"],
    );
    assert_has(
        &one_err(&section("curves = brainpoolP256r1")),
        &["`brainpoolP256r1`", "X25519"],
    );
    assert_has(
        &one_err(&section("ECDHcurve = secp521r1")),
        &["[redis] ECDHcurve", "`secp521r1`"],
    );
}

#[test]
fn ignored_options_warn_naming_the_option() {
    for opt in [
        "renegotiation = no",
        "sessiond = 127.0.0.1:54321",
        "libwrap = no",
        "TIMEOUTbusy = 300",
    ] {
        let (c, w) = ok(&section(opt));
        assert_eq!(c.services.len(), 1);
        let key = opt.split(' ').next().unwrap();
        assert_eq!(w.len(), 1, "{opt}: {w:#?}");
        assert_has(&w[0], &[&format!("{FILE}:4: [redis] {key}"), "ignored"]);
    }
    let (_, w) = ok(&format!("RNDfile = /dev/urandom\n{}", section("")));
    assert_has(&w[0], &[&format!("{FILE}:1: RNDfile"), "ignored"]);
}

#[test]
fn security_relevant_options_are_errors() {
    for opt in ["OCSP = http://ocsp.example", "OCSPaia = yes", "OCSPrequire = yes"] {
        let key = opt.split(' ').next().unwrap();
        let e = one_err(&section(opt));
        assert_has(&e, &[&format!("{FILE}:4: [redis] {key}"), "not supported"]);
    }
    assert_has(&one_err(&section("OCSP = http://o.example")), &["revoked", "CRLfile"]);
}

#[test]
fn pem_files_are_checked_at_their_line_naming_the_option() {
    let key = pem("PRIVATE KEY");
    let der = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(der.path(), [0x30, 0x82, 0x01]).unwrap();
    let (k, d) = (key.path().display(), der.path().display());
    assert_has(
        &one_err(&section(&format!("cert = {k}"))),
        &[
            &format!("{FILE}:4: [redis] cert:"),
            &format!("{k} holds a private key"),
            "point `cert` at the PEM certificate chain",
        ],
    );
    assert_has(
        &one_err(&section(&format!("CAfile = {d}"))),
        &[
            &format!("{FILE}:4: [redis] CAfile:"),
            &format!("{d} holds no PEM certificate"),
            "openssl x509 -inform DER",
        ],
    );
    assert_has(
        &one_err(&section(&format!("CRLfile = {d}"))),
        &[
            &format!("{FILE}:4: [redis] CRLfile:"),
            "no PEM CRL",
            "openssl crl -inform DER",
        ],
    );
}

#[test]
fn revocation_and_check_ip_are_honoured() {
    let crl = pem("X509 CRL");
    let dir = tempfile::tempdir().unwrap();
    let s = svc(&section(&format!(
        "CRLfile = {}\nCRLpath = {}\ncheckIP = 10.0.0.1\ncheckIP = ::1",
        crl.path().display(),
        dir.path().display()
    )));
    assert_eq!(s.tls.crl_file.as_deref(), Some(crl.path()));
    assert_eq!(s.tls.crl_path.as_deref(), Some(dir.path()));
    let ips: Vec<std::net::IpAddr> = vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(s.tls.check_ips, ips);
    assert_has(
        &one_err(&section("checkIP = db.example")),
        &["[redis] checkIP", "not an IP address"],
    );
    assert_has(
        &one_err(&section("checkIP = 10.0.0.1\nverifyChain = no")),
        &["[redis]", "checkIP", "verifyChain = no"],
    );
    assert_has(
        &one_err(&section(&format!(
            "CRLfile = {}\nverifyChain = no",
            crl.path().display()
        ))),
        &["[redis]", "CRLfile", "along the certificate chain"],
    );
    assert_has(
        &one_err(&section("CRLpath = /nonexistent")),
        &["[redis] CRLpath", "cannot read"],
    );
}

#[test]
fn unknown_options_are_errors_with_a_suggestion() {
    let e = one_err(&section("conect = x:1"));
    assert_has(
        &e,
        &[
            &format!("{FILE}:4: [redis] conect"),
            "unknown option",
            "did you mean `connect`?",
        ],
    );
    let e = one_err(&format!("piid = /tmp/x\n{}", section("")));
    assert_has(&e, &[&format!("{FILE}:1: piid"), "did you mean `pid`?"]);
    let e = one_err(&section("TimeoutIdel = 5"));
    assert_has(&e, &["did you mean `TIMEOUTidle`?"]);
    let e = one_err(&section("banana = 1"));
    assert_has(&e, &["[redis] banana", "unknown option", "README"]);
}

#[test]
fn accept_forms() {
    let accept = |v: &str| svc(&format!("[r]\naccept = {v}\nconnect = h.example:1\n")).accept;
    assert_eq!(accept("6379"), tcp("127.0.0.1:6379"));
    assert_eq!(accept("127.0.0.1:6379"), tcp("127.0.0.1:6379"));
    assert_eq!(accept("localhost:6379"), tcp("127.0.0.1:6379"));
    assert_eq!(accept("0.0.0.0:6379"), tcp("0.0.0.0:6379"));
    assert_eq!(accept("[::1]:6379"), tcp("[::1]:6379"));
    assert_eq!(accept(":::6379"), tcp("[::]:6379"));
    assert_eq!(accept(" 6379 "), tcp("127.0.0.1:6379"));
    // stunnel's own test configs: an ephemeral port.
    assert_eq!(accept("127.0.0.1:0"), tcp("127.0.0.1:0"));
    assert_eq!(
        accept("/run/retunnel/redis.sock"),
        [Listen::Unix("/run/retunnel/redis.sock".into())]
    );
    for bad in ["redis.example.com:6379", ":6379", "abc", "127.0.0.1:", "127.0.0.1:port"] {
        let e = one_err(&format!("[r]\naccept = {bad}\nconnect = h.example:1\n"));
        assert_has(&e, &[&format!("{FILE}:2: [r] accept")]);
    }
}

#[test]
fn connect_forms() {
    let connect = |v: &str| svc(&format!("[r]\naccept = 1\nconnect = {v}\n")).connect[0].clone();
    assert_eq!(connect("redis.example.com:6379"), name("redis.example.com", 6379));
    assert_eq!(connect("6380"), name("localhost", 6380));
    let ip = |s: &str, port| Target {
        host: Host::Ip(s.parse().unwrap()),
        port,
    };
    assert_eq!(connect("10.1.2.3:6379"), ip("10.1.2.3", 6379));
    assert_eq!(connect("[::1]:6379"), ip("::1", 6379));
    assert_eq!(connect("[2001:db8::5]:6379"), ip("2001:db8::5", 6379));
    assert_eq!(connect("2001:db8::5:6379"), ip("2001:db8::5", 6379));
    for bad in ["bad host:1", "h.example:", "h.example:x", ":1"] {
        let e = one_err(&format!("[r]\naccept = 1\nconnect = {bad}\n"));
        assert_has(&e, &[&format!("{FILE}:3: [r] connect")]);
    }
}

#[test]
fn ports_outside_range_are_errors() {
    for port in ["65536", "99999"] {
        let e = one_err(&format!("[r]\naccept = {port}\nconnect = h.example:1\n"));
        assert_has(&e, &[&format!("{FILE}:2: [r] accept"), "outside 0-65535"]);
    }
    for port in ["0", "65536", "99999"] {
        let e = one_err(&format!("[r]\naccept = 1\nconnect = h.example:{port}\n"));
        assert_has(&e, &[&format!("{FILE}:3: [r] connect"), "outside 1-65535"]);
    }
    assert_eq!(
        svc("[r]\naccept = 65535\nconnect = h.example:1\n").accept,
        tcp("127.0.0.1:65535")
    );
}

#[test]
fn errors_name_file_line_section_option_and_fix() {
    let p = err("fips = yes\n\n[r]\naccept = 1\nconnect = h.example:1\nclient = maybe\n");
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_has(&p[0], &[&format!("{FILE}:1: fips"), "no FIPS mode", "set `fips = no`"]);
    assert_has(
        &p[1],
        &[&format!("{FILE}:6: [r] client"), "`maybe`", "not `yes` or `no`"],
    );
    // Every problem is reported at once, not only the first.
    let p = err("[a]\naccept = 70000\nconnect = x.example:1\nbogus = 1\n[b]\naccept = 2\n");
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn client_no_needs_a_certificate() {
    assert_has(
        &one_err(&section("client = no")),
        &["[redis]", "server mode (`client = no`) needs `cert`"],
    );
}

#[test]
fn section_needs_accept_and_connect() {
    let e = one_err("[r]\nconnect = h.example:1\n");
    assert_has(
        &e,
        &[
            &format!("{FILE}:1: [r]"),
            "no `accept`",
            "add `accept = 127.0.0.1:PORT`",
        ],
    );
    let e = one_err("[first]\naccept = 1\nconnect = h.example:1\n\n[r]\naccept = 2\n");
    assert_has(
        &e,
        &[&format!("{FILE}:5: [r]"), "no `connect`", "add `connect = host:port`"],
    );
    let p = err("[empty]\n");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn file_without_sections_is_refused() {
    let e = one_err("fips = no\n");
    assert_has(&e, &[FILE, "no [section]", "add one"]);
    assert_has(&one_err(""), &["no [section]"]);
}

#[test]
fn duplicate_section_names_are_refused() {
    let e = one_err("[r]\naccept = 1\nconnect = h.example:1\n[r]\naccept = 2\nconnect = h.example:1\n");
    assert_has(&e, &[&format!("{FILE}:4: [r]"), "defined twice", "rename"]);
}

#[test]
fn duplicate_accept_addresses_are_refused() {
    let e = one_err("[a]\naccept = 6379\nconnect = h.example:1\n[b]\naccept = 127.0.0.1:6379\nconnect = h.example:2\n");
    assert_has(
        &e,
        &[
            &format!("{FILE}:4: [b]"),
            "127.0.0.1:6379",
            "already used by [a]",
            "its own port",
        ],
    );
}

#[test]
fn metrics_on_a_sections_accept_port_is_refused_naming_both_lines() {
    let e = one_err(
        "metrics = 6379\n[a]\naccept = 6380\nconnect = h.example:1\n[b]\naccept = 127.0.0.1:6379\nconnect = h.example:2\n",
    );
    assert_has(
        &e,
        &[
            &format!("{FILE}:1: metrics 127.0.0.1:6379"),
            "[b] accepts clients",
            &format!("`accept` on {FILE}:6"),
            "give `metrics` a port of its own",
        ],
    );
    // Port 0 is never shared: each bind gets its own.
    ok("metrics = 127.0.0.1:0\n[a]\naccept = 127.0.0.1:0\nconnect = h.example:1\n");
}

#[test]
fn fips_yes_is_refused() {
    assert_eq!(ok(&format!("fips = no\n{}", section(""))).0.services.len(), 1);
    let e = one_err(&format!("fips = yes\n{}", section("")));
    assert_has(&e, &["fips", "no FIPS mode"]);
}

#[test]
fn setuid_and_setgid_name_existing_identities() {
    let uid = unsafe { libc::geteuid() };
    let gid = unsafe { libc::getegid() };
    let (c, w) = ok(&format!("setuid = {uid}\nsetgid = {gid}\n{}", section("")));
    assert_eq!(c.services.len(), 1);
    assert!(w.is_empty());
    let (c, _) = ok(&format!("setuid = nobody\n{}", section("")));
    assert_eq!(c.global.user.as_ref().map(|u| u.name.as_str()), Some("nobody"));
    let e = one_err(&format!("setuid = no-such-user-xyz\n{}", section("")));
    assert_has(&e, &[&format!("{FILE}:1: setuid"), "no-such-user-xyz"]);
    let e = one_err(&format!("setgid = no-such-group-xyz\n{}", section("")));
    assert_has(&e, &[&format!("{FILE}:1: setgid"), "no-such-group-xyz"]);
}

#[test]
fn syntax_errors_name_file_and_line() {
    let e = one_err("[r]\naccept = 1\nconnect yes\n");
    assert_has(&e, &[&format!("{FILE}:3:"), "connect yes", "option = value"]);
    assert_has(&one_err("[r\n"), &[&format!("{FILE}:1:"), "closing `]`"]);
}

#[test]
fn plaintext_on_the_network_is_allowed() {
    // The warning is logged at start (tunnel.rs); the config itself is valid.
    assert_eq!(
        svc("[r]\naccept = 0.0.0.0:1\nconnect = h.example:1\n").accept,
        tcp("0.0.0.0:1")
    );
}

#[test]
fn load_reports_unreadable_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.conf");
    let e = Config::load(&missing).unwrap_err();
    assert_has(&e.to_string(), &["config file", "missing.conf", "cannot read it"]);
    // Devices and pipes could be endless: only regular files are read.
    let e = Config::load(Path::new("/dev/zero")).unwrap_err();
    assert_has(&e.to_string(), &["/dev/zero", "not a regular file"]);
    let huge = dir.path().join("huge.conf");
    std::fs::write(&huge, vec![b';'; 2 << 20]).unwrap();
    assert_has(
        &Config::load(&huge).unwrap_err().to_string(),
        &["huge.conf", "more than"],
    );
    let latin1 = dir.path().join("latin1.conf");
    std::fs::write(&latin1, b"[r]\naccept = 1\n; caf\xe9\nconnect = h:1\n").unwrap();
    let e = Config::load(&latin1).unwrap_err();
    assert_has(
        &e.to_string(),
        &[
            "latin1.conf",
            "not UTF-8",
            "line 3, column 6 holds byte 0xe9",
            "save the file as UTF-8",
        ],
    );
    let good = dir.path().join("good.conf");
    std::fs::write(&good, section("")).unwrap();
    assert_eq!(Config::load(&good).unwrap().0.services[0].name, "redis");
}

#[test]
fn several_accepts_are_listeners_of_one_section() {
    // As stunnel: every `accept` line of a section listens, for the same service.
    let s = svc(&section(
        "accept = :::16379\naccept = /tmp/r.sock\naccept = 127.0.0.1:0\naccept = 127.0.0.1:0",
    ));
    assert_eq!(
        s.accept,
        [
            Listen::Tcp(addr("127.0.0.1:16379")),
            Listen::Tcp(addr("[::]:16379")),
            Listen::Unix("/tmp/r.sock".into()),
            Listen::Tcp(addr("127.0.0.1:0")),
            Listen::Tcp(addr("127.0.0.1:0")),
        ]
    );
    let e = one_err(&section("accept = localhost:16379"));
    assert_has(
        &e,
        &[
            &format!("{FILE}:4: [redis] accept"),
            "127.0.0.1:16379 is already an `accept` of this section",
            "remove the repeated line",
        ],
    );
    // A section's own `accept` replaces a global one without complaint.
    assert_eq!(
        svc(&format!("accept = 1\n{}", section(""))).accept,
        tcp("127.0.0.1:16379")
    );
    // Two sections may not share an address, whichever of their `accept` lines it is; port 0
    // never clashes.
    let two =
        |a: &str, b: &str| format!("[a]\naccept = 1\naccept = {a}\nconnect = h:1\n[b]\naccept = {b}\nconnect = h:1\n");
    assert_has(
        &one_err(&two("/tmp/x.sock", "/tmp/x.sock")),
        &["[b] accept /tmp/x.sock is already used by [a]"],
    );
    assert_eq!(ok(&two("127.0.0.1:0", "127.0.0.1:0")).0.services.len(), 2);
}

#[test]
fn unix_sockets_are_for_plain_clients_and_not_for_redis_cluster() {
    let cert = pem("CERTIFICATE");
    let server = format!("accept = /tmp/s.sock\nclient = no\ncert = {}", cert.path().display());
    assert_has(
        &one_err(&section(&server)),
        &["[redis]", "accept /tmp/s.sock", "server mode", "TCP address"],
    );
    assert_has(
        &one_err(&section("accept = /tmp/s.sock\nprotocol = redis")),
        &["[redis]", "accept /tmp/s.sock", "protocol = redis", "TCP address"],
    );
    for bad in ["/tmp/", "/tmp/a.sock\naccept = /tmp/a.sock"] {
        assert_has(&one_err(&section(&format!("accept = {bad}"))), &["[redis] accept"]);
    }
}

#[test]
fn a_default_is_reported_once_where_it_is_written() {
    let two = "[a]\naccept = 1\nconnect = h.example:1\n[b]\naccept = 2\nconnect = h.example:1\n";
    let p = err(&format!("CAfile = /nonexistent/ca.pem\n{two}"));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_has(&p[0], &[&format!("{FILE}:1: CAfile"), "/nonexistent/ca.pem"]);
    let (_, w) = ok(&format!("options = NO_COMPRESSION\n{two}"));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_has(&w[0], &[&format!("{FILE}:1: options"), "NO_COMPRESSION"]);
}

#[test]
fn access_control_options_are_not_silently_dropped() {
    assert_has(
        &one_err(&section("ident = nobody")),
        &["[redis] ident", "not supported", "let any client in"],
    );
    let (_, w) = ok(&section("libwrap = yes"));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_has(&w[0], &["[redis] libwrap", "hosts.allow", "127.0.0.1 or a firewall"]);
}

#[test]
fn an_inline_comment_is_explained() {
    let e = one_err("[r]\naccept = 7300 ; local only\nconnect = h.example:1\n");
    assert_has(&e, &["[r] accept", "comments go on their own line"]);
}

/// The option table drives parsing: every honoured row is parsed by its own setter, whatever
/// the value (a bad one is a problem naming the option, never a panic or "unknown option").
#[test]
fn every_honoured_row_is_parsed_by_its_setter() {
    let honoured: Vec<_> = options::OPTIONS.iter().filter(|o| o.is_honoured()).collect();
    assert!(honoured.len() > 30, "the table looks truncated");
    for o in honoured {
        for value in ["", "\u{1}junk", "yes", "0"] {
            let line = format!("{} = {value}", o.name);
            let text = match o.scope {
                options::Scope::Global => format!("{line}\n{}", section("")),
                options::Scope::Service => section(&line),
            };
            let problems = parse(&text).err().map(|e| e.problems).unwrap_or_default();
            for p in &problems {
                assert!(!p.contains("unknown option"), "{line}: {p}");
            }
        }
    }
}

/// A row's default is what a section without the line gets: writing the default explicitly
/// changes nothing.
#[test]
fn writing_a_default_changes_nothing() {
    let cert = pem("CERTIFICATE");
    // Server mode, where `connectTLS` means something.
    let server = format!("client = no\ncert = {}\n", cert.path().display());
    let mut checked = 0;
    for o in options::OPTIONS.iter().filter(|o| o.is_honoured()) {
        let Some(value) = o.default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
            continue;
        };
        if value.contains('`') {
            continue; // prose, not one value
        }
        // Options that only mean something in server mode or in a Redis section.
        let extra = match o.name {
            "connectTLS" => server.as_str(),
            "onReadonly" => "protocol = redis\n",
            _ => "",
        };
        let line = format!("{} = {value}", o.name);
        let (with, without) = match o.scope {
            options::Scope::Global => (format!("{line}\n{}", section(extra)), section(extra)),
            options::Scope::Service => (section(&format!("{extra}{line}")), section(extra)),
        };
        let (a, _) = ok(&with);
        let (b, _) = ok(&without);
        assert_eq!(a.global, b.global, "{line}");
        assert_eq!(a.services, b.services, "{line}");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} defaults checked");
}

#[test]
fn every_honoured_row_has_a_default_and_a_doc() {
    for o in options::OPTIONS {
        let has = !o.default.is_empty() && !o.doc.is_empty();
        assert_eq!(has, o.is_honoured(), "{}", o.name);
    }
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Runs `f` on a thread: a hang (an open() waiting for a FIFO writer) fails the test instead
/// of stalling the suite. The bound is a hang guard only.
fn without_hanging<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("hung (open() waits for a FIFO writer)")
}

#[test]
fn a_fifo_config_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("r.conf");
    mkfifo(&fifo);
    let e = without_hanging(move || Config::load(&fifo).map(|_| ()).unwrap_err().to_string());
    assert_has(&e, &["r.conf", "not a regular file"]);
}

#[test]
fn include_names_each_conf_entry_it_skips_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("conf.d");
    std::fs::create_dir(&d).unwrap();
    mkfifo(&d.join("a-pipe.conf"));
    std::os::unix::fs::symlink(d.join("b-loop.conf"), d.join("b-loop.conf")).unwrap();
    std::os::unix::fs::symlink("/dev/null", d.join("c-dev.conf")).unwrap();
    std::fs::create_dir(d.join("d-dir.conf")).unwrap();
    let main = dir.path().join("main.conf");
    std::fs::write(&main, "include = conf.d\n[r]\naccept = 1\nconnect = h:1\n").unwrap();
    let (_, warnings) = without_hanging(move || Config::load(&main).unwrap());
    let text: Vec<String> = warnings.iter().map(|w| w.0.clone()).collect();
    let all = text.join("\n");
    for (entry, why) in [
        ("a-pipe.conf", "FIFO"),
        ("b-loop.conf", "symlink loop"),
        ("c-dev.conf", "a device"),
        ("d-dir.conf", "a directory"),
    ] {
        assert!(
            text.iter()
                .any(|w| w.contains(entry) && w.contains(why) && w.contains("skipped")),
            "no warning names {entry} as {why}: {all}"
        );
    }
    assert!(all.contains("holds no readable *.conf file"), "{all}");
}

/// Issue 11 defect 8 and the outside test: a 1 MB section name is refused; huge names and
/// values are quoted short in the message (their first 64 characters and their length).
#[test]
fn huge_names_and_values_are_bounded_and_quoted_short() {
    let long = "s".repeat(1 << 20);
    let e = one_err(&format!("[{long}]\naccept = 1\nconnect = h:1\n"));
    assert_has(&e, &[&format!("{FILE}:1:"), "longer than 255 bytes", "short name"]);
    assert!(e.len() < 400, "{} bytes of message", e.len());
    assert!(
        svc(&format!("[{}]\naccept = 1\nconnect = h:1\n", "s".repeat(255)))
            .name
            .len()
            == 255
    );

    let value = "9".repeat(900 << 10);
    let e = one_err(&format!("[r]\naccept = 1\nconnect = h:1\nTIMEOUTidle = x{value}\n"));
    assert_has(&e, &[&format!("{FILE}:4: [r] TIMEOUTidle"), "…", "bytes)"]);
    assert!(e.len() < 600, "{} bytes of message: {}", e.len(), &e[..200]);

    let name = "x".repeat(1_000_000);
    let e = one_err(&format!("[r]\naccept = 1\nconnect = h:1\n{name} = 1\n"));
    assert_has(&e, &[&format!("{FILE}:4: [r] xxxx"), "…", "unknown option"]);
    assert!(e.len() < 600, "{} bytes of message", e.len());
}

#[test]
fn v4_mapped_loopback_is_loopback_for_the_network_warning() {
    let s = svc("[r]\naccept = [::ffff:127.0.0.1]:1\nconnect = h.example:1\n");
    assert_eq!(crate::tunnel::risks(&s), Vec::<String>::new());
    let s = svc("[r]\naccept = [::ffff:10.0.0.1]:1\nconnect = h.example:1\n");
    assert_eq!(crate::tunnel::risks(&s).len(), 1);
}

/// Problems about options together point at the line of the option to change (the last
/// written of those involved), not at the `[section]` line.
#[test]
fn combination_problems_point_at_the_option_line() {
    let ca = pem("CERTIFICATE");
    let crl = pem("X509 CRL");
    let cases = [
        (
            "verifyChain = no\ncheckIP = 10.0.0.1".to_string(),
            "5: [redis] checkIP: ",
        ),
        (
            format!(
                "verify = 4\nCAfile = {}\nCRLfile = {}",
                ca.path().display(),
                crl.path().display()
            ),
            "6: [redis] CRLfile: ",
        ),
        (
            "options = NO_TLSv1.2\nsslVersionMax = TLSv1.2".to_string(),
            "5: [redis] sslVersionMax: ",
        ),
        ("verifyPeer = yes".to_string(), "4: [redis] verifyPeer: "),
    ];
    for (lines, at) in cases {
        let e = one_err(&section(&lines));
        assert!(e.starts_with(&format!("{FILE}:{at}")), "{lines}: {e}");
    }
}

/// Tester finding 3: a section connecting to its own `accept` chained connections to itself
/// until no descriptor was left. Refused naming both lines, as another section's `accept` is.
#[test]
fn connect_to_an_own_accept_is_refused_naming_both_lines() {
    let p = one_err("[loop]\naccept = 6391\nconnect = localhost:6391\n");
    assert_has(
        &p,
        &[
            &format!("{FILE}:3: [loop] connect: "),
            "localhost:6391 is this section's own `accept`",
            &format!("({FILE}:2: accept = 6391)"),
            "connect to itself",
            "point `connect` at the TLS server",
        ],
    );
    let p = one_err(
        "[a]\naccept = 0.0.0.0:7001\nconnect = db.example.com:6379\n[b]\naccept = 7002\nconnect = 127.0.0.1:7001\n",
    );
    assert_has(
        &p,
        &[
            &format!("{FILE}:6: [b] connect: "),
            "[a]'s `accept`",
            &format!("{FILE}:2: accept"),
        ],
    );
    // Another port, another address, or a port the system picks: no loop.
    ok("[a]\naccept = 7001\nconnect = localhost:7002\n");
    ok("[a]\naccept = 127.0.0.1:7001\nconnect = 127.0.0.2:7001\n");
    ok("[a]\naccept = 0\nconnect = db.example.com:6379\n");
    // On the command line the flags are named.
    let o = OneOff {
        accept: "6391".into(),
        connect: "localhost:6391".into(),
        ..OneOff::default()
    };
    let p = Config::one_off(&o).unwrap_err().problems;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_has(
        &p[0],
        &["--connect localhost:6391 is this section's own `accept` (--accept: accept = 6391)"],
    );
}

#[test]
fn threads_is_auto_or_a_count_of_at_least_one() {
    let conf = |v: &str| format!("threads = {v}\n[a]\naccept = 1\nconnect = h.example:1\n");
    assert_eq!(ok(&conf("auto")).0.global.threads, None);
    assert_eq!(ok(&conf("AUTO")).0.global.threads, None);
    assert_eq!(ok(&conf("1")).0.global.threads, Some(1));
    assert!(ok(&conf("1")).1.is_empty());
    let (config, warnings) = ok(&conf("1024"));
    assert_eq!(config.global.threads, Some(1024));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("1024 threads on") && w.contains("`auto`")),
        "{warnings:?}"
    );
    assert_eq!(ok("[a]\naccept = 1\nconnect = h.example:1\n").0.global.threads, None);
    let e = one_err(&conf("0"));
    assert_has(&e, &[&format!("{FILE}:1"), "threads", "at least one thread", "`auto`"]);
    let e = one_err(&conf("many"));
    assert_has(&e, &["`many` is not `auto` or a whole number from 1 to 1024"]);
    one_err(&conf("1025"));
    one_err(&conf("+4"));
    assert_has(&one_err(&conf("")), &["is empty", "`auto`"]);
}
