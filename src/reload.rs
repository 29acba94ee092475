//! SIGHUP: read the configuration file again and apply what can change while running — the
//! sections. A file that does not validate changes nothing. Process-wide options (pid file,
//! privileges, logging, detaching) were acted on at start and are named in a warning instead.

use tracing::{error, info, warn};

use crate::config::{Config, Global};
use crate::tunnel::{ReloadSummary, Tunnel};

/// Reloads `current.path` into `tunnel`; on success `current` holds the sections now running.
/// `None`: nothing was applied (no file, or it did not validate).
pub async fn reload(tunnel: &mut Tunnel, current: &mut Config) -> Option<ReloadSummary> {
    if current.from_flags() {
        warn!("SIGHUP: the tunnel was given on the command line; there is no file to reload");
        return None;
    }
    info!(config = %current.path.display(), "SIGHUP: reloading the configuration");
    let (new, warnings) = match Config::load(&current.path) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.problems {
                error!("{p}");
            }
            error!(
                problems = e.problems.len(),
                "reload failed: the configuration is not valid; still running the previous one"
            );
            return None;
        }
    };
    for w in &warnings {
        warn!("{w}");
    }
    // Files named by CAfile/CApath may have changed: read each again, once, and share it.
    crate::tls::reread_trust_stores();
    let fixed = fixed_changes(&current.global, &new.global);
    if !fixed.is_empty() {
        warn!(
            options = %fixed.join(", "),
            "these options changed but only take effect at restart; they keep their old values"
        );
    }
    let sum = tunnel.reload(new.services.clone()).await;
    current.services = new.services;
    info!(
        added = sum.added,
        removed = sum.removed,
        changed = sum.changed,
        unchanged = sum.unchanged,
        failed = sum.failed,
        "reloaded"
    );
    Some(sum)
}

/// The global options whose new value differs from the running one.
pub fn fixed_changes(old: &Global, new: &Global) -> Vec<&'static str> {
    let checks = [
        ("pid", old.pid != new.pid),
        ("setuid", old.user != new.user),
        ("setgid", old.group != new.group),
        ("foreground", old.foreground != new.foreground),
        ("output", old.output != new.output),
        ("log", old.log_mode != new.log_mode),
        ("syslog", old.syslog != new.syslog),
        ("debug", old.log_level != new.log_level),
        ("metrics", old.metrics != new.metrics),
        ("threads", old.threads != new.threads),
    ];
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(n, _)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn global(text: &str) -> Global {
        let conf = format!("{text}\n[a]\naccept = 1\nconnect = localhost:2\n");
        Config::parse(&conf, Path::new("t.conf")).unwrap().0.global
    }

    #[test]
    fn names_every_start_only_option_that_changed() {
        let old = global("pid = /run/a.pid\nforeground = yes");
        assert!(fixed_changes(&old, &old.clone()).is_empty());
        let new = global("pid = /run/b.pid\nforeground = no\nsetuid = root\nlog = overwrite\nsyslog = no\ndebug = 7");
        assert_eq!(
            fixed_changes(&old, &new),
            ["pid", "setuid", "foreground", "log", "syslog", "debug"]
        );
    }
}
