//! `/metrics`: every metric in the Prometheus text format, written by prometheus-client's
//! encoder from the live counters at each scrape. [`METRICS`] is the one list of them (name,
//! type, labels, meaning), which the README's reference is checked against.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::histogram::Histogram;
use super::{Close, Metrics, Reason, Rewrite, SectionInfo, ServiceMetrics, Stage};

/// One metric, as the README lists it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The name as scraped (counters end in `_total`).
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: MetricType,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

const fn spec(name: &'static str, kind: MetricType, labels: &'static [&'static str], help: &'static str) -> Spec {
    Spec {
        name,
        kind,
        labels,
        help,
    }
}

use MetricType::{Counter, Gauge, Histogram as Hist};

const OPEN: Spec = spec(
    "retunnel_connections_open",
    Gauge,
    &["service"],
    "Client connections open now.",
);
const ACCEPTED: Spec = spec(
    "retunnel_connections_accepted_total",
    Counter,
    &["service"],
    "Client connections accepted.",
);
const REFUSED: Spec = spec(
    "retunnel_connections_refused_total",
    Counter,
    &["service"],
    "Clients closed at once because maxConnections connections were open.",
);
const CLOSED: Spec = spec(
    "retunnel_connections_closed_total",
    Counter,
    &["service", "reason"],
    "Client connections ended, by reason: closed, idle_timeout, error, upstream_failed, client_handshake.",
);
const FAILURES: Spec = spec(
    "retunnel_upstream_failures_total",
    Counter,
    &["service", "stage", "reason"],
    "Clients for whom no upstream could be reached, by stage and reason of the last failure: connect (dns, refused, unreachable, timeout), handshake (timeout, tls_verify, tls_other).",
);
const CONNECT_SECONDS: Spec = spec(
    "retunnel_upstream_connect_seconds",
    Hist,
    &["service"],
    "Time to resolve and connect to the upstream over TCP, successful attempts.",
);
const HANDSHAKE_SECONDS: Spec = spec(
    "retunnel_upstream_handshake_seconds",
    Hist,
    &["service"],
    "Time of the TLS handshake with the upstream, successful handshakes.",
);
const HANDSHAKES: Spec = spec(
    "retunnel_upstream_handshakes_total",
    Counter,
    &["service", "kind"],
    "Successful TLS handshakes with the upstream, by kind: full, or resumed (a session from an earlier connection, skipping the full handshake's cost).",
);
const BYTES: Spec = spec(
    "retunnel_bytes_total",
    Counter,
    &["service", "direction"],
    "Bytes relayed: direction up is client to upstream, down is upstream to client.",
);
const WARM: Spec = spec(
    "retunnel_upstream_warm_connections",
    Gauge,
    &["service"],
    "prewarm: upstream connections connected and handshaken, ready for new clients now.",
);
const LISTENING: Spec = spec(
    "retunnel_section_listening",
    Gauge,
    &["service"],
    "1 when the section accepts clients, 0 when it could not start.",
);
const NODE_LISTENERS: Spec = spec(
    "retunnel_cluster_node_listeners",
    Gauge,
    &["service"],
    "protocol = redis: cluster node listeners open now.",
);
const REWRITES: Spec = spec(
    "retunnel_redis_rewrites_total",
    Counter,
    &["service", "kind"],
    "protocol = redis: replies rewritten to name local node listeners, by kind (redirect: MOVED/ASK; topology: CLUSTER SLOTS|SHARDS|NODES|REPLICAS).",
);
const ERROR_REPLIES: Spec = spec(
    "retunnel_redis_error_replies_total",
    Counter,
    &["service"],
    "protocol = redis: `-ERR retunnel: ...` replies sent to clients when no upstream could be reached.",
);
const READONLY: Spec = spec(
    "retunnel_redis_readonly_total",
    Counter,
    &["service", "outcome"],
    "protocol = redis: -READONLY replies from a demoted primary, by outcome: replayed (the connection moved to the new primary) or closed (the client got the error and the connection closed).",
);
const START_TIME: Spec = spec(
    "retunnel_start_time_seconds",
    Gauge,
    &[],
    "When the process started, in seconds since the Unix epoch.",
);
const RELOADS: Spec = spec(
    "retunnel_reloads_total",
    Counter,
    &["result"],
    "SIGHUP reloads, by result: ok, or failed (the file did not validate, or a section could not apply its new settings).",
);
const GENERATION: Spec = spec(
    "retunnel_config_generation",
    Gauge,
    &[],
    "1 for the configuration read at start, plus one per reload that applied a valid file.",
);
const BUILD: Spec = spec(
    "retunnel_build_info",
    Gauge,
    &["version", "tls"],
    "Always 1; the labels give retunnel's version and its TLS library.",
);

/// Every metric `/metrics` serves.
pub const METRICS: &[Spec] = &[
    OPEN,
    ACCEPTED,
    REFUSED,
    CLOSED,
    FAILURES,
    CONNECT_SECONDS,
    HANDSHAKE_SECONDS,
    HANDSHAKES,
    BYTES,
    WARM,
    LISTENING,
    NODE_LISTENERS,
    REWRITES,
    ERROR_REPLIES,
    READONLY,
    START_TIME,
    RELOADS,
    GENERATION,
    BUILD,
];

/// The Prometheus text of every metric now.
pub fn render(metrics: &Arc<Metrics>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exporter(metrics.clone())));
    let mut out = String::new();
    // Writing to a String cannot fail, nor can the encoders on values they accept.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// Reads the counters at each scrape.
#[derive(Debug)]
struct Exporter(Arc<Metrics>);

/// A sample's labels beside `service`.
type Labels = Vec<(&'static str, &'static str)>;

/// A sample's value, as the section holds it.
enum Value<'s> {
    /// A live counter or gauge.
    Metric(&'s dyn EncodeMetric),
    /// A count read from an atomic.
    Count(u64),
    /// A level computed at the scrape.
    Level(i64),
    /// A duration histogram.
    Hist(&'s Histogram),
}

impl Value<'_> {
    fn encode(&self, e: &mut MetricEncoder, labels: &[(&str, &str)]) -> fmt::Result {
        let labels = labels.to_vec();
        match self {
            Value::Metric(m) => m.encode(e.encode_family(&labels)?),
            Value::Count(n) => ConstCounter::new(*n).encode(e.encode_family(&labels)?),
            Value::Level(n) => ConstGauge::new(*n).encode(e.encode_family(&labels)?),
            Value::Hist(h) => {
                let h = h.snapshot();
                e.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
            }
        }
    }
}

/// One metric with a `service` label: the sections it covers and each one's samples.
struct Family {
    spec: Spec,
    covers: fn(&SectionInfo) -> bool,
    samples: for<'s> fn(&'s ServiceMetrics) -> Vec<(Labels, Value<'s>)>,
}

const fn family(
    spec: Spec,
    covers: fn(&SectionInfo) -> bool,
    samples: for<'s> fn(&'s ServiceMetrics) -> Vec<(Labels, Value<'s>)>,
) -> Family {
    Family { spec, covers, samples }
}

fn every(_: &SectionInfo) -> bool {
    true
}

fn redis(i: &SectionInfo) -> bool {
    i.redis
}

fn one(v: Value<'_>) -> Vec<(Labels, Value<'_>)> {
    vec![(vec![], v)]
}

/// Each of `values` labelled `label` = the matching `names`.
fn each<'s, M: EncodeMetric>(label: &'static str, names: &[&'static str], values: &'s [M]) -> Vec<(Labels, Value<'s>)> {
    let pairs = names.iter().zip(values);
    pairs.map(|(n, v)| (vec![(label, *n)], Value::Metric(v))).collect()
}

/// Every per-section metric, in the order served.
const FAMILIES: &[Family] = &[
    family(OPEN, every, |s| one(Value::Metric(&s.open))),
    family(ACCEPTED, every, |s| one(Value::Metric(&s.accepted))),
    family(REFUSED, every, |s| one(Value::Metric(&s.refused))),
    family(CLOSED, every, |s| {
        each("reason", &Close::ALL.map(Close::label), &s.closed)
    }),
    family(FAILURES, every, failures),
    family(CONNECT_SECONDS, every, |s| one(Value::Hist(&s.connect_seconds))),
    family(HANDSHAKE_SECONDS, every, |s| one(Value::Hist(&s.handshake_seconds))),
    family(HANDSHAKES, every, |s| each("kind", &["full", "resumed"], &s.handshakes)),
    family(BYTES, every, |s| {
        let (up, down) = (s.bytes.up.load(Ordering::Relaxed), s.bytes.down.load(Ordering::Relaxed));
        vec![
            (vec![("direction", "up")], Value::Count(up)),
            (vec![("direction", "down")], Value::Count(down)),
        ]
    }),
    family(WARM, |i| i.prewarm, |s| one(Value::Metric(&s.warm))),
    family(LISTENING, every, |s| one(Value::Level(i64::from(s.is_listening())))),
    // The Redis metrics only for `protocol = redis` sections.
    family(NODE_LISTENERS, redis, |s| one(Value::Metric(&s.node_listeners))),
    family(REWRITES, redis, |s| {
        each("kind", &Rewrite::ALL.map(Rewrite::label), &s.rewrites)
    }),
    family(ERROR_REPLIES, redis, |s| one(Value::Metric(&s.error_replies))),
    family(READONLY, redis, |s| {
        each("outcome", &["replayed", "closed"], &s.readonly)
    }),
];

/// Failures by stage and reason: only the reasons each stage can have.
fn failures(s: &ServiceMetrics) -> Vec<(Labels, Value<'_>)> {
    let mut out = Vec::new();
    for (stage, row) in Stage::ALL.iter().zip(&s.failures) {
        for (reason, n) in Reason::ALL.iter().zip(row) {
            if stage.reasons().contains(reason) {
                let labels = vec![("stage", stage.label()), ("reason", reason.label())];
                out.push((labels, Value::Metric(n as &dyn EncodeMetric)));
            }
        }
    }
    out
}

impl Collector for Exporter {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let all: Vec<_> = self.0.sections().into_iter().map(|(n, s)| (n, s.info(), s)).collect();
        for family in FAMILIES {
            let mut e = descriptor(&mut enc, &family.spec)?;
            for (name, _, s) in all.iter().filter(|(_, info, _)| (family.covers)(info)) {
                for (extra, value) in (family.samples)(s) {
                    let mut labels = vec![("service", name.as_str())];
                    labels.extend(extra);
                    value.encode(&mut e, &labels)?;
                }
            }
        }
        process(&mut enc, &self.0)
    }
}

fn descriptor<'a>(enc: &'a mut DescriptorEncoder, spec: &'a Spec) -> Result<MetricEncoder<'a>, fmt::Error> {
    // The encoder adds `_total` to counters itself.
    let name = spec.name.strip_suffix("_total").unwrap_or(spec.name);
    enc.encode_descriptor(name, spec.help, None, spec.kind)
}

fn process(enc: &mut DescriptorEncoder, m: &Metrics) -> fmt::Result {
    let started = m.started().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    ConstGauge::new(started.as_secs_f64()).encode(descriptor(enc, &START_TIME)?)?;
    let mut e = descriptor(enc, &RELOADS)?;
    for (result, n) in ["ok", "failed"].into_iter().zip(&m.reloads) {
        n.encode(e.encode_family(&vec![("result", result)])?)?;
    }
    m.generation.encode(descriptor(enc, &GENERATION)?)?;
    // The version line's parenthesis names the TLS library, whichever it is.
    let line = crate::cli::version();
    let tls = line.split_once(" (").map_or("", |(_, t)| t.trim_end_matches(')'));
    let labels = vec![("version", env!("CARGO_PKG_VERSION")), ("tls", tls)];
    ConstGauge::new(1i64).encode(descriptor(enc, &BUILD)?.encode_family(&labels)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn the_text_names_every_listed_metric_with_its_type_and_labels() {
        let text = "[db]\naccept = 127.0.0.1:7000\nconnect = db.example.com:6379\nprotocol = redis\n";
        let (config, _) = Config::parse(text, std::path::Path::new("t.conf")).unwrap();
        let m = Arc::new(Metrics::default());
        m.configured(&config.services);
        let s = m.service("db");
        s.listening(&config.services[0], "127.0.0.1:7000".into());
        let _open = s.accepted();
        s.failed(Stage::Handshake, Reason::TlsVerify);
        s.connected(Duration::from_millis(3));
        s.rewritten(Rewrite::Redirect);
        s.readonly(true);
        s.bytes.up.fetch_add(5, Ordering::Relaxed);
        m.reloaded(false, false);
        let out = render(&m);
        assert!(!out.contains("stage=\"connect\",reason=\"tls_verify\""), "{out}");
        assert!(
            out.contains("retunnel_build_info{version=\"") && !out.contains("tls=\"\""),
            "{out}"
        );
        assert!(!out.contains("stage=\"handshake\",reason=\"refused\""), "{out}");
        for spec in METRICS {
            let kind = match spec.kind {
                Counter => "counter",
                Gauge => "gauge",
                _ => "histogram",
            };
            assert!(
                out.contains(&format!("# TYPE {} {kind}\n", spec.name)),
                "{}:\n{out}",
                spec.name
            );
        }
        for line in [
            "retunnel_connections_open{service=\"db\"} 1\n",
            "retunnel_connections_accepted_total{service=\"db\"} 1\n",
            "retunnel_upstream_failures_total{service=\"db\",stage=\"handshake\",reason=\"tls_verify\"} 1\n",
            "retunnel_upstream_failures_total{service=\"db\",stage=\"connect\",reason=\"refused\"} 0\n",
            "retunnel_redis_error_replies_total{service=\"db\"} 0\n",
            "retunnel_upstream_connect_seconds_bucket{service=\"db\",le=\"0.005\"} 1\n",
            "retunnel_upstream_connect_seconds_count{service=\"db\"} 1\n",
            "retunnel_bytes_total{service=\"db\",direction=\"up\"} 5\n",
            "retunnel_section_listening{service=\"db\"} 1\n",
            "retunnel_cluster_node_listeners{service=\"db\"} 0\n",
            "retunnel_redis_rewrites_total{service=\"db\",kind=\"redirect\"} 1\n",
            "retunnel_redis_readonly_total{service=\"db\",outcome=\"replayed\"} 1\n",
            "retunnel_redis_readonly_total{service=\"db\",outcome=\"closed\"} 0\n",
            "retunnel_reloads_total{result=\"failed\"} 1\n",
            "retunnel_config_generation 1\n",
        ] {
            assert!(out.contains(line), "no {line:?} in:\n{out}");
        }
    }
}
