//! The README's configuration reference must cover every option retunnel knows: each honoured
//! option has a table row showing the table's default, and each ignored or refused one is named.
//! Likewise every metric `/metrics` serves has a row with its type and labels.

use retunnel::config::options::{OPTIONS, Support};

#[test]
fn readme_covers_every_option() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for o in OPTIONS {
        let wanted = match o.support {
            // The row and its default, as the option table has them.
            Support::Honoured(_) => format!("| `{}` | {} |", o.name, o.default),
            Support::Ignored(_) | Support::Refused(_) => format!("`{}`", o.name),
        };
        if !readme.contains(&wanted) {
            missing.push(wanted);
        }
    }
    assert!(OPTIONS.len() > 50, "the option table looks truncated");
    assert!(missing.is_empty(), "README.md lacks: {missing:?}");
}

#[test]
fn readme_lists_every_metric_with_its_type() {
    use prometheus_client::metrics::MetricType;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for m in retunnel::metrics::export::METRICS {
        let kind = match m.kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            _ => "histogram",
        };
        let labels: Vec<String> = m.labels.iter().map(|l| format!("`{l}`")).collect();
        let labels = if labels.is_empty() {
            "—".to_string()
        } else {
            labels.join(", ")
        };
        let wanted = format!("| `{}` | {kind} | {labels} |", m.name);
        if !readme.contains(&wanted) {
            missing.push(wanted);
        }
    }
    assert!(
        retunnel::metrics::export::METRICS.len() >= 16,
        "the metric table looks truncated"
    );
    assert!(missing.is_empty(), "README.md lacks: {missing:#?}");
}

#[test]
fn example_config_is_valid() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tunnel.conf.example"));
    let (config, warnings) = retunnel::config::Config::load(path).unwrap();
    assert_eq!(config.services.len(), 2);
    assert!(warnings.is_empty(), "{warnings:?}");
}
