//! A one-section configuration from command-line flags (`--accept`, `--connect`, …) instead of
//! a file. The values go through the same parsers as the file's, and the result is an ordinary
//! [`Config`], so a one-off tunnel runs on exactly the same engine and logs the same way.

use std::path::PathBuf;

use super::{Config, ConfigError, Global, ServiceConfig, TlsSettings, defaults, values};

/// The section name a one-off tunnel gets in logs and `check` output.
pub const NAME: &str = "tunnel";

/// The one-off tunnel's flags, as given.
#[derive(Debug, Clone, Default)]
pub struct OneOff {
    /// `--accept`: where plain clients connect.
    pub accept: String,
    /// `--connect`: the TLS server.
    pub connect: String,
    /// `--cafile`: extra trust anchors.
    pub ca_file: Option<PathBuf>,
    /// `--checkhost`: the name the certificate must carry.
    pub check_host: Option<String>,
    /// `--sni`: the name sent in the handshake.
    pub sni: Option<String>,
    /// `--insecure`: do not verify the certificate at all.
    pub insecure: bool,
}

impl Config {
    /// Builds a one-section configuration from the flags; every problem names its flag.
    pub fn one_off(o: &OneOff) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let p = &mut problems;
        let accept = flag(p, "accept", values::accept_addr(&o.accept));
        let connect = flag(p, "connect", values::target(&o.connect));
        let ca_file = o
            .ca_file
            .as_ref()
            .and_then(|f| flag(p, "cafile", values::existing_file(&f.to_string_lossy())));
        let check_host = o
            .check_host
            .as_ref()
            .and_then(|h| flag(p, "checkhost", values::host_name(h)));
        if let (Some(sni), Some(host)) = (&o.sni, &o.check_host)
            && !sni.is_empty()
            && !sni.eq_ignore_ascii_case(host)
        {
            problems.push(format!(
                "--sni {sni} differs from --checkhost {host}; retunnel verifies the name it sends, so give one of them"
            ));
        }
        let (Some(accept), Some(connect), true) = (accept, connect, problems.is_empty()) else {
            return Err(ConfigError { problems });
        };
        let tls = TlsSettings {
            verify_chain: !o.insecure,
            ca_file,
            check_host,
            sni: o.sni.clone(),
            ..TlsSettings::default()
        };
        let service = ServiceConfig {
            name: NAME.into(),
            accept,
            connect: vec![connect],
            tls,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            close_timeout: defaults::CLOSE_TIMEOUT,
            idle_timeout: Some(defaults::IDLE_TIMEOUT),
            failover: Default::default(),
            socket_options: Vec::new(),
            max_connections: None,
            accept_tls: None,
            connect_tls: true,
            redis: None,
        };
        Ok(Config {
            path: PathBuf::from(COMMAND_LINE),
            global: Global::default(),
            services: vec![service],
        })
    }
}

/// The `path` of a config built from flags (for messages; there is no file to reload).
pub const COMMAND_LINE: &str = "(command line)";

/// The value, or `None` with the problem recorded under the flag's name.
fn flag<T>(problems: &mut Vec<String>, name: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| problems.push(format!("--{name} {e}"))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(accept: &str, connect: &str) -> OneOff {
        OneOff {
            accept: accept.into(),
            connect: connect.into(),
            ..OneOff::default()
        }
    }

    #[test]
    fn builds_a_verifying_section() {
        let c = Config::one_off(&flags("127.0.0.1:6379", "db.example.com:6380")).unwrap();
        let s = &c.services[0];
        assert_eq!(s.accept.to_string(), "127.0.0.1:6379");
        assert_eq!(s.connect[0].to_string(), "db.example.com:6380");
        assert!(s.tls.verify_chain);
        assert_eq!(s.tls, TlsSettings::default());
    }

    #[test]
    fn every_bad_flag_is_named() {
        let mut o = flags("nowhere:1", "bad host:1");
        o.ca_file = Some("/no/such/ca.pem".into());
        o.sni = Some("a.example".into());
        o.check_host = Some("b.example".into());
        let e = Config::one_off(&o).unwrap_err();
        for flag in ["--accept", "--connect", "--cafile", "--sni"] {
            assert!(
                e.problems.iter().any(|p| p.starts_with(flag)),
                "{flag} missing in {e:?}"
            );
        }
    }

    #[test]
    fn insecure_turns_verification_off() {
        let mut o = flags("6379", "127.0.0.1:6380");
        o.insecure = true;
        assert!(!Config::one_off(&o).unwrap().services[0].tls.verify_chain);
    }
}
