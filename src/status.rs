//! `retunnel status`: asks a running retunnel over its metrics endpoint (`/status` for the
//! sections, `/health` for the verdict) and prints one row per section, or JSON. The exit code
//! is the health: 0 healthy, 1 unhealthy, 2 nothing answers.

use std::net::SocketAddr;

use hyper::StatusCode;

use crate::metrics::client::{self, FetchError};
use crate::metrics::health::{SectionStatus, Status};

/// What a running retunnel said.
#[derive(Debug)]
pub struct Answer {
    /// Every section.
    pub status: Status,
    /// Whether `/health` answered 200.
    pub healthy: bool,
}

/// Why `status` has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing answered, or not as retunnel does.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// It answered, but not with retunnel's JSON.
    #[error(
        "{addr} answered /status with something that is not retunnel's status JSON ({why}); is `metrics` pointing at retunnel?"
    )]
    NotRetunnel {
        /// The metrics address.
        addr: SocketAddr,
        /// What did not parse.
        why: String,
    },
}

/// Asks the retunnel whose metrics endpoint is `addr`.
pub async fn ask(addr: SocketAddr) -> Result<Answer, StatusError> {
    let (code, body) = client::get(addr, "/status").await?;
    let not_retunnel = |why: String| StatusError::NotRetunnel { addr, why };
    if code != StatusCode::OK {
        return Err(not_retunnel(format!("HTTP {code}")));
    }
    let status: Status = serde_json::from_str(&body).map_err(|e| not_retunnel(e.to_string()))?;
    let (health, _) = client::get(addr, "/health").await?;
    Ok(Answer {
        status,
        healthy: health == StatusCode::OK,
    })
}

/// The table: one row per section.
pub fn render_table(status: &Status) -> String {
    let header = [
        "SECTION", "ACCEPT", "CONNECT", "OPEN", "ACCEPTED", "FAILED", "UP", "DOWN", "NODES", "HEALTH",
    ];
    let rows: Vec<[String; 10]> = status.sections.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    if status.sections.is_empty() {
        out.push_str("(no sections)\n");
    }
    out
}

fn row(s: &SectionStatus) -> [String; 10] {
    let failed = match &s.last_failure {
        Some(reason) if s.upstream_failures > 0 => format!("{} (last: {reason})", s.upstream_failures),
        _ => s.upstream_failures.to_string(),
    };
    [
        s.name.clone(),
        s.accept.clone(),
        s.connect.clone(),
        s.open.to_string(),
        s.accepted.to_string(),
        failed,
        bytes(s.bytes_up),
        bytes(s.bytes_down),
        s.node_listeners.map_or("-".into(), |n| n.to_string()),
        s.failing.clone().unwrap_or_else(|| "ok".into()),
    ]
}

/// Bytes in the largest binary unit that keeps a number of at least 1.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, failing: Option<&str>) -> SectionStatus {
        SectionStatus {
            name: name.into(),
            accept: "127.0.0.1:6379".into(),
            connect: "db.example.com:6379".into(),
            failing: failing.map(String::from),
            open: 2,
            accepted: 10,
            upstream_failures: 3,
            last_failure: Some("refused".into()),
            bytes_up: 1536,
            bytes_down: 12,
            node_listeners: None,
        }
    }

    #[test]
    fn one_aligned_row_per_section() {
        let status = Status {
            version: "x".into(),
            healthy: false,
            sections: vec![section("cache", None), section("sessions-db", Some("not listening"))],
        };
        let table = render_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("SECTION      ACCEPT"), "{table}");
        assert!(
            lines[1].contains("3 (last: refused)") && lines[1].contains("1.5 KiB"),
            "{table}"
        );
        assert!(lines[1].ends_with("ok"), "{table}");
        assert!(lines[2].ends_with("not listening"), "{table}");
        let col = |l: &str| l.find("127.0.0.1").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024 * 1024 * 3), "3.0 MiB");
    }
}
