//! The health rule and the JSON views of the sections. A section is healthy when it listens
//! and has not failed every attempt to reach its upstream over the last [`WINDOW`] (a section
//! with no attempt in that time is healthy: nothing says its upstream is gone). One success
//! makes it healthy again at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Metrics, ServiceMetrics};

/// How far back the health rule looks.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Why a section is unhealthy, if it is, by the rule: `now`, the last success and the last
/// failure are times on the same clock.
pub fn verdict(
    listening: bool,
    now: Duration,
    last_ok: Option<Duration>,
    last_failed: Option<Duration>,
) -> Option<&'static str> {
    if !listening {
        return Some("not listening");
    }
    let recent = |t: Option<Duration>| t.is_some_and(|t| now.saturating_sub(t) < WINDOW);
    match recent(last_failed) && !recent(last_ok) {
        true => Some("every upstream attempt failed in the last 30 s"),
        false => None,
    }
}

/// One section, as `/status` and `retunnel status --json` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionStatus {
    /// The section name.
    pub name: String,
    /// Where it listens.
    pub accept: String,
    /// Its `connect` targets.
    pub connect: String,
    /// Why it is unhealthy; `None`: healthy.
    pub failing: Option<String>,
    /// Connections open now.
    pub open: i64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Failed attempts to reach the upstream since start.
    pub upstream_failures: u64,
    /// The last failure's reason (`refused`, `tls_verify`, …).
    pub last_failure: Option<String>,
    /// Bytes client → upstream.
    pub bytes_up: u64,
    /// Bytes upstream → client.
    pub bytes_down: u64,
    /// `protocol = redis`: node listeners open now; `None` for plain sections.
    pub node_listeners: Option<i64>,
}

/// The answer of `/status`: every section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// retunnel's version.
    pub version: String,
    /// Whether every section is healthy.
    pub healthy: bool,
    /// Every configured section, by name.
    pub sections: Vec<SectionStatus>,
}

/// The answer of `/health` (one line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// How many sections are configured.
    pub sections: usize,
    /// The failing sections, with why.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub failing: Vec<Failing>,
}

/// One failing section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failing {
    /// The section name.
    pub section: String,
    /// Why it fails.
    pub why: String,
}

impl Metrics {
    /// Every section as `/status` shows it.
    pub fn status(&self) -> Status {
        let now = self.now();
        let sections: Vec<SectionStatus> = self
            .sections()
            .into_iter()
            .map(|(name, s)| section_status(name, &s, now))
            .collect();
        Status {
            version: crate::cli::version(),
            healthy: sections.iter().all(|s| s.failing.is_none()),
            sections,
        }
    }

    /// `/health`'s answer.
    pub fn health(&self) -> Health {
        let status = self.status();
        let failing: Vec<Failing> = status
            .sections
            .iter()
            .filter_map(|s| {
                let why = s.failing.clone()?;
                Some(Failing {
                    section: s.name.clone(),
                    why,
                })
            })
            .collect();
        Health {
            status: if failing.is_empty() { "ok" } else { "unhealthy" }.into(),
            sections: status.sections.len(),
            failing,
        }
    }
}

fn section_status(name: String, s: &ServiceMetrics, now: Duration) -> SectionStatus {
    let (last_ok, last_failed) = s.last_attempts();
    let failing = verdict(s.is_listening(), now, last_ok, last_failed).map(|why| match s.last_reason() {
        Some(r) if why.starts_with("every") => format!("{why} (last: {})", r.label()),
        _ => why.to_string(),
    });
    let info = s.info();
    let failures = s.failures.iter().flatten().map(|c| c.get()).sum();
    SectionStatus {
        name,
        accept: info.accept,
        connect: info.connect,
        failing,
        open: s.open.get(),
        accepted: s.accepted.get(),
        upstream_failures: failures,
        last_failure: s.last_reason().map(|r| r.label().to_string()),
        bytes_up: s.bytes.up.load(Ordering::Relaxed),
        bytes_down: s.bytes.down.load(Ordering::Relaxed),
        node_listeners: info.redis.then(|| s.node_listeners.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_rule() {
        // No attempt yet, or only successes: healthy.
        assert_eq!(verdict(true, S(100), None, None), None);
        assert_eq!(verdict(true, S(100), Some(S(99)), None), None);
        // Failures only, recently: unhealthy; long ago: healthy again (nothing recent).
        assert!(verdict(true, S(100), None, Some(S(99))).is_some());
        assert_eq!(verdict(true, S(200), None, Some(S(99))), None);
        // A success within the window outweighs later failures...
        assert_eq!(verdict(true, S(100), Some(S(75)), Some(S(99))), None);
        // ...until it is older than the window.
        assert!(verdict(true, S(106), Some(S(75)), Some(S(105))).is_some());
        // One success after failures: healthy at once.
        assert_eq!(verdict(true, S(100), Some(S(100)), Some(S(99))), None);
        // Not listening beats everything.
        assert_eq!(verdict(false, S(100), Some(S(100)), None), Some("not listening"));
    }
}
