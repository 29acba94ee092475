//! A one-section configuration from command-line flags (`--accept`, `--connect`, …) instead of
//! a file. The values go through the same parsers as the file's, and the result is an ordinary
//! [`Config`], so a one-off tunnel runs on exactly the same engine and logs the same way.

use std::path::{Path, PathBuf};

use super::lines::{Entry, Section};
use super::{Config, ConfigError, Global, Parser};

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

/// Each flag and the option it stands for.
const FLAGS: &[(&str, &str)] = &[
    ("accept", "accept"),
    ("connect", "connect"),
    ("cafile", "CAfile"),
    ("checkhost", "checkHost"),
    ("sni", "sni"),
    ("insecure", "verifyChain"),
];

/// The flag that stands for an option, as messages name it (`--cafile`).
pub(super) fn flag_of(option: &str) -> String {
    let flag = FLAGS
        .iter()
        .find(|(_, o)| o.eq_ignore_ascii_case(option))
        .map_or(option, |(f, _)| f);
    format!("--{flag}")
}

impl OneOff {
    /// The flags as the lines of a section, in the order a file would have them.
    fn entries(&self) -> Vec<Entry> {
        let ca_file = self.ca_file.as_ref().map(|f| f.to_string_lossy().into_owned());
        let lines = [
            ("accept", Some(self.accept.clone())),
            ("connect", Some(self.connect.clone())),
            ("CAfile", ca_file),
            ("checkHost", self.check_host.clone()),
            ("sni", self.sni.clone()),
            ("verifyChain", self.insecure.then(|| "no".to_string())),
        ];
        lines
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .enumerate()
            .map(|(i, (key, value))| Entry {
                key: key.into(),
                value,
                line: i + 1,
                file: None,
            })
            .collect()
    }
}

impl Config {
    /// Builds a one-section configuration from the flags, through the same option table and
    /// checks as a file's section; every problem names its flag.
    pub fn one_off(o: &OneOff) -> Result<Config, ConfigError> {
        let path = Path::new(COMMAND_LINE);
        let mut p = Parser {
            path,
            flags: true,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let section = Section {
            name: Some(NAME.into()),
            line: 0,
            entries: o.entries(),
            file: None,
        };
        let service = p.service(&section, &[]);
        p.self_loops(&[super::lines_of(&section, &[])]);
        match service {
            Some(service) if p.problems.is_empty() => Ok(Config {
                path: path.to_path_buf(),
                global: Global::default(),
                services: vec![service],
            }),
            _ => Err(ConfigError { problems: p.problems }),
        }
    }
}

/// The `path` of a config built from flags (for messages; there is no file to reload).
pub const COMMAND_LINE: &str = "(command line)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsSettings;

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
        assert_eq!(s.accept_list(), "127.0.0.1:6379");
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

    /// The flags go through the file's option table and checks: the same message for the
    /// same mistake, named by the flag.
    #[test]
    fn flags_get_the_files_messages() {
        let file = Config::parse("[tunnel]\naccept = 70000\nconnect = h.example:1\n", "f.conf".as_ref())
            .unwrap_err()
            .problems;
        let flag = Config::one_off(&flags("70000", "h.example:1")).unwrap_err().problems;
        let (file, flag) = (&file[0], &flag[0]);
        assert!(flag.starts_with("--accept port 70000 is outside"), "{flag}");
        assert!(file.ends_with(flag.trim_start_matches("--accept ")), "{file} / {flag}");
        // A contradiction the file refuses is refused on the command line too.
        let mut o = flags("6379", "127.0.0.1:6380");
        (o.insecure, o.check_host) = (true, Some("db.example".into()));
        let e = Config::one_off(&o).unwrap_err();
        assert!(
            e.problems[0].contains("`checkHost`/`checkIP` need the certificate verified"),
            "{e}"
        );
    }
}
