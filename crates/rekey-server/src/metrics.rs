//! Prometheus metrics at `/metrics`. Labels are route templates (`/v1/tenants/{tenant}`), never
//! concrete names, so no tenant, credential or token ever appears in a metric.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rekey_core::connectors::ConnectorStats;
use rekey_core::writer::WriterStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    duration: HistogramFamily,
    /// Audit events not yet in the deferred audit index; only where there is one (SQLite).
    index_lag: Option<Gauge>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

#[derive(Debug)]
struct AuditCollector(Arc<WriterStats>);

/// Reads the reveal cache's figures when metrics are rendered.
pub(crate) type RevealCacheProbe = Box<dyn Fn() -> Option<rekey_store::RevealCacheStats> + Send + Sync>;

struct RevealCacheCollector(RevealCacheProbe);

impl std::fmt::Debug for RevealCacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevealCacheCollector")
    }
}

impl Collector for RevealCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = (self.0)() else { return Ok(()) };
        for (name, help, value) in [
            ("rekey_reveal_cache_hits", "Reveals whose sealed row came from memory", s.hits),
            ("rekey_reveal_cache_misses", "Reveals that read their sealed row from the database", s.misses),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        for (name, help, value) in [
            ("rekey_reveal_cache_rows", "Sealed reveal rows kept in memory", s.rows),
            ("rekey_reveal_cache_bytes", "Estimated bytes of the sealed reveal rows kept in memory", s.bytes),
            ("rekey_reveal_cache_budget_bytes", "The reveal cache's budget ([store] reveal_cache_mb)", s.budget),
        ] {
            let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// Whether the vault is sealed, read when metrics are rendered.
pub(crate) type SealedProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// The server itself: `rekey_sealed` and `rekey_build_info`.
struct ServerCollector(SealedProbe);

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(i64::from((self.0)()));
        g.encode(encoder.encode_descriptor(
            "rekey_sealed",
            "1 while the vault is sealed (every route but health, status and the seal's own answers 503)",
            None,
            g.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "rekey_build_info",
            "Always 1; the labels say which build is running",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(1).encode(family.encode_family(&BuildLabels { version: env!("CARGO_PKG_VERSION") })?)?;
        Ok(())
    }
}

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        for (name, help, value) in [
            ("rekey_audit_events", "Audit events committed by this server", s.events.load(Ordering::Relaxed)),
            ("rekey_audit_batches", "Group commits of audit events and writes", s.batches.load(Ordering::Relaxed)),
            (
                "rekey_audit_failed_batches",
                "Group commits that failed or were not flushed to disk (their requests were refused)",
                s.failed_batches.load(Ordering::Relaxed),
            ),
            (
                "rekey_integrity_failures",
                "Rows refused because their integrity check failed (a token row or a version's target fields \
                 changed outside Rekey)",
                s.integrity_failures.load(Ordering::Relaxed),
            ),
            (
                "rekey_audit_witness_failures",
                "Checkpoints a witness did not cosign (refused, or not reached)",
                s.witness_failures.load(Ordering::Relaxed),
            ),
            (
                "rekey_siem_failures",
                "Batches of audit events a SIEM sink did not take (sent again later)",
                s.siem_failures.load(Ordering::Relaxed),
            ),
            (
                "rekey_feed_failures",
                "Reads of a threat feed that failed (tried again at the feed's next interval)",
                s.feed_failures.load(Ordering::Relaxed),
            ),
            (
                "rekey_rate_limited_requests",
                "Requests refused because their token was over its role's rate limit ([limits.rate])",
                s.rate_limited.load(Ordering::Relaxed),
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        for (name, help, value) in [
            (
                "rekey_audit_rollback",
                "1 while writes are refused because the audit log was found shorter than, or inconsistent with, a \
                 signed checkpoint",
                s.rollback.load(Ordering::Relaxed) as i64,
            ),
            (
                "rekey_audit_checkpoint_size",
                "Events covered by the last checkpoint this server signed",
                s.checkpoint_size.load(Ordering::Relaxed) as i64,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let g = ConstGauge::new(s.head_seq.load(Ordering::SeqCst));
        g.encode(encoder.encode_descriptor(
            "rekey_audit_head_seq",
            "Highest audit sequence number committed by this server",
            None,
            g.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "rekey_alerts",
            "Alerts this server stored, by rule ([detect]; docs/detection.md)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (rule, count) in rekey_core::rules::Rule::ALL.iter().zip(&s.alerts) {
            let labels = RuleLabel { rule: rule.name() };
            ConstCounter::new(count.load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "rekey_alert_notices",
            "Delivery attempts of alert notices (webhook and e-mail), by outcome",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, count) in [("delivered", &s.alert_notices), ("failed", &s.alert_notice_failures)] {
            ConstCounter::new(count.load(Ordering::Relaxed))
                .encode(family.encode_family(&OutcomeLabel { outcome })?)?;
        }
        let g = ConstGauge::new(s.detector_seq.load(Ordering::Relaxed));
        g.encode(encoder.encode_descriptor(
            "rekey_detector_seq",
            "The last audit sequence number the detection rules looked at on this server (behind \
             rekey_audit_head_seq by the events still to look at)",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindStatus {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindStep {
    kind: String,
    step: String,
}

/// Connector checks and rotation steps, and the credentials' last check results. Labels are
/// kinds and statuses only, never a tenant or credential name.
#[derive(Debug)]
struct ConnectorCollector(Arc<ConnectorStats>);

impl Collector for ConnectorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let verifies: Vec<_> =
            self.0.verifies.lock().expect("stats lock").iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut family = encoder.encode_descriptor(
            "rekey_connector_checks",
            "Checks of credentials against their targets, by kind and result",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for ((kind, status), value) in verifies {
            ConstCounter::new(value).encode(family.encode_family(&KindStatus { kind, status })?)?;
        }
        let rotations: Vec<_> =
            self.0.rotations.lock().expect("stats lock").iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut family = encoder.encode_descriptor(
            "rekey_rotation_steps",
            "Rotation steps taken (started, applied, promoted, retired, failed), by kind",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for ((kind, step), value) in rotations {
            ConstCounter::new(value).encode(family.encode_family(&KindStep { kind, step })?)?;
        }
        let health = self.0.health.lock().expect("stats lock").clone();
        let mut family = encoder.encode_descriptor(
            "rekey_credentials_by_last_check",
            "Credentials by kind and the result of their last check (as of the scheduler's last pass)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for h in health {
            ConstGauge::new(h.count).encode(family.encode_family(&KindStatus { kind: h.kind, status: h.status })?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// `deferred_index`: the store keeps the audit log's indexes behind the writer (SQLite).
    pub fn new(
        writer_stats: Arc<WriterStats>,
        connector_stats: Arc<ConnectorStats>,
        deferred_index: bool,
        reveal_cache: RevealCacheProbe,
        sealed: SealedProbe,
    ) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        let duration = HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "rekey_http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "rekey_http_request_duration_seconds",
            "HTTP request latency by route template",
            duration.clone(),
        );
        registry.register_collector(Box::new(AuditCollector(writer_stats)));
        registry.register_collector(Box::new(ConnectorCollector(connector_stats)));
        registry.register_collector(Box::new(RevealCacheCollector(reveal_cache)));
        registry.register_collector(Box::new(ServerCollector(sealed)));
        let index_lag = deferred_index.then(|| {
            let g = Gauge::default();
            registry.register(
                "rekey_audit_index_lag",
                "Audit events committed but not yet in the audit log's index by resource and principal \
                 (queries scan them instead)",
                g.clone(),
            );
            g
        });
        Self { registry, requests, duration, index_lag }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&HttpLabels { method: method.to_owned(), route: route.to_owned(), status }).inc();
        self.duration.get_or_create(&RouteLabels { route: route.to_owned() }).observe(seconds);
    }

    /// The metrics, with the audit index lag as just read from the store, if known.
    pub fn render(&self, index_lag: Option<i64>) -> String {
        if let (Some(gauge), Some(lag)) = (&self.index_lag, index_lag) {
            gauge.set(lag);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
