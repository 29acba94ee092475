//! Printing a [`Report`]: a table read at a glance (one row per section, a mark per step) with
//! the details under it, or JSON for scripts. Colour only when asked for by [`Style`].

use std::fmt::Write;
use std::io::IsTerminal;

use super::{Mark, Report, SectionReport, Step, TargetReport};

/// How marks are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Plain text (pipes, files, `NO_COLOR`).
    Plain,
    /// ANSI colours (a terminal).
    Colour,
}

impl Style {
    /// Colour on a terminal, never when `NO_COLOR` is set (https://no-color.org).
    pub fn detect() -> Style {
        if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Style::Colour
        } else {
            Style::Plain
        }
    }

    fn mark(self, m: Mark) -> String {
        let (glyph, colour) = match m {
            Mark::Ok => ("✓", "32"),
            Mark::Warn => ("!", "33"),
            Mark::Fail => ("✗", "31"),
            Mark::Skip => ("-", "2"),
        };
        match self {
            Style::Plain => glyph.to_string(),
            Style::Colour => format!("\x1b[{colour}m{glyph}\x1b[0m"),
        }
    }
}

/// The report as pretty JSON.
pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("the report serialises")
}

/// The table, the details of every section, and a summary line.
pub fn render_text(r: &Report, style: Style) -> String {
    let mut out = table(r, style);
    for s in &r.sections {
        out.push('\n');
        details(&mut out, s, style);
    }
    let failed = r.sections.iter().filter(|s| !s.ok).count();
    let summary = match failed {
        0 => format!("\nall {} section(s) OK\n", r.sections.len()),
        n => format!("\n{n} of {} section(s) FAILED\n", r.sections.len()),
    };
    out.push_str(&summary);
    out
}

const COLUMNS: [&str; 6] = ["BIND", "DNS", "TCP", "TLS", "CERT", "REDIS"];

fn table(r: &Report, style: Style) -> String {
    let name_w = r
        .sections
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max("SECTION".len());
    let accept_w = r
        .sections
        .iter()
        .map(|s| s.accept.len())
        .max()
        .unwrap_or(0)
        .max("ACCEPT".len());
    let mut out = format!("{:name_w$}  {:accept_w$}", "SECTION", "ACCEPT");
    for c in COLUMNS {
        let _ = write!(out, "  {c}");
    }
    out.push('\n');
    for s in &r.sections {
        let _ = write!(out, "{:name_w$}  {:accept_w$}", s.name, s.accept);
        for (col, mark) in COLUMNS.iter().zip(row_marks(s)) {
            // Pad by the header's width; the glyph is one column wide whatever its escape codes.
            let _ = write!(out, "  {}{}", style.mark(mark), " ".repeat(col.len() - 1));
        }
        out.truncate(out.trim_end().len());
        if s.targets.len() > 1 {
            let _ = write!(out, "  ({} targets, see below)", s.targets.len());
        }
        out.push('\n');
    }
    out
}

fn row_marks(s: &SectionReport) -> Vec<Mark> {
    let mut marks = vec![s.bind.mark];
    match s.shown() {
        Some(t) => marks.extend(t.steps().iter().map(|(_, step)| step.mark)),
        None => marks.extend([Mark::Skip; 5]),
    }
    marks
}

fn details(out: &mut String, s: &SectionReport, style: Style) {
    let _ = writeln!(out, "[{}]", s.name);
    step(out, "bind", &s.bind, style);
    for t in &s.targets {
        target(out, t, style);
    }
}

fn target(out: &mut String, t: &TargetReport, style: Style) {
    let via = t
        .connect_to
        .as_ref()
        .map(|c| format!(" (--connect-to {c})"))
        .unwrap_or_default();
    let _ = writeln!(out, "  connect {}{via}", t.target);
    for (name, s) in t.steps() {
        step(out, &name.to_ascii_lowercase(), s, style);
        if name == "CERT"
            && let Some(c) = &t.cert
        {
            let sans = if c.sans.is_empty() {
                "none".into()
            } else {
                c.sans.join(", ")
            };
            let _ = writeln!(out, "           subject {}; SANs {sans}", c.subject);
            let _ = writeln!(
                out,
                "           issuer {}; not after {} ({} days left)",
                c.issuer, c.not_after, c.days_left
            );
        }
    }
}

fn step(out: &mut String, name: &str, s: &Step, style: Style) {
    let _ = writeln!(out, "    {name:<6} {} {}", style.mark(s.mark), s.message);
}

/// `check --offline` on a valid config: what would run, as text or JSON.
pub fn render_offline(config: &crate::config::Config, warnings: &[crate::config::Warning], json: bool) -> String {
    if json {
        let sections: Vec<_> = config
            .services
            .iter()
            .map(|s| {
                serde_json::json!({"name": s.name, "accept": s.accept_list(),
                "connect": s.connect.iter().map(|t| t.to_string()).collect::<Vec<_>>()})
            })
            .collect();
        let v = serde_json::json!({
            "config": config.path.display().to_string(),
            "ok": true,
            "warnings": warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "sections": sections,
        });
        return format!("{v:#}\n");
    }
    let mut out = format!(
        "{}: valid, {} section(s), {} warning(s)\n",
        config.path.display(),
        config.services.len(),
        warnings.len()
    );
    for s in &config.services {
        let targets: Vec<String> = s.connect.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(out, "  [{}] {} → {}", s.name, s.accept_list(), targets.join(", "));
    }
    out
}
