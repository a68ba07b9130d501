//! Prometheus metrics (names documented in README.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabel {
    /// `namespace/name`.
    pub secret: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: String,
    pub state: String,
}

pub struct Metrics {
    registry: Registry,
    pub connected_proxies: Gauge,
    pub pushes: Family<TypeLabel, Counter>,
    pub nacks: Family<TypeLabel, Counter>,
    pub resources: Family<TypeLabel, Gauge>,
    pub objects: Family<ObjectLabels, Gauge>,
    pub sent_bytes: Counter,
    pub snapshots: Counter,
    pub translation_seconds: Histogram,
    pub snapshot_build_seconds: Histogram,
    pub convergence_seconds: Histogram,
    pub watch_events: Counter,
    pub relists: Counter,
    pub file_errors: Gauge,
    /// KIngress mode: 1 while this replica holds the status Lease.
    pub leader: Gauge,
    pub status_writes: Counter,
    /// Per certificate served: when it (its earliest-expiring member) expires.
    pub certificate_expiry: Family<SecretLabel, Gauge>,
    /// Certificates named but not served as asked (bad, missing, expired, or kept last good).
    pub certificate_problems: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("knative_xds");
        let m = Metrics {
            connected_proxies: Gauge::default(),
            pushes: Family::default(),
            nacks: Family::default(),
            resources: Family::default(),
            objects: Family::default(),
            sent_bytes: Counter::default(),
            snapshots: Counter::default(),
            // 50 µs … ~3 s
            translation_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 17)),
            snapshot_build_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 17)),
            // 1 ms … ~32 s
            convergence_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            watch_events: Counter::default(),
            relists: Counter::default(),
            file_errors: Gauge::default(),
            leader: Gauge::default(),
            status_writes: Counter::default(),
            certificate_expiry: Family::default(),
            certificate_problems: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connected_proxies",
            "Envoy ADS streams open",
            m.connected_proxies.clone(),
        );
        registry.register(
            "pushes",
            "Discovery responses sent, by type",
            m.pushes.clone(),
        );
        registry.register(
            "nacks",
            "Responses Envoy rejected (NACK), by type",
            m.nacks.clone(),
        );
        registry.register(
            "resources",
            "Resources in the current snapshot, by type",
            m.resources.clone(),
        );
        registry.register(
            "objects",
            "Knative objects by kind and translation state (served, stale, rejected, input)",
            m.objects.clone(),
        );
        registry.register(
            "sent_bytes",
            "Encoded bytes of discovery responses",
            m.sent_bytes.clone(),
        );
        registry.register("snapshots", "Snapshots published", m.snapshots.clone());
        registry.register(
            "translation_duration_seconds",
            "Time to translate the store into Envoy resources",
            m.translation_seconds.clone(),
        );
        registry.register(
            "snapshot_build_duration_seconds",
            "Time to encode and version a snapshot",
            m.snapshot_build_seconds.clone(),
        );
        registry.register(
            "convergence_seconds",
            "From an object change seen to every connected Envoy ACKing the resulting snapshot",
            m.convergence_seconds.clone(),
        );
        registry.register(
            "watch_events",
            "Source change notifications (file events)",
            m.watch_events.clone(),
        );
        registry.register("relists", "Full reloads of a source", m.relists.clone());
        registry.register(
            "file_errors",
            "Manifest files that failed to parse",
            m.file_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease and writes KIngress status",
            m.leader.clone(),
        );
        registry.register(
            "status_writes",
            "KIngress status updates written",
            m.status_writes.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Per Secret served over SDS: when its certificate chain's earliest member expires (Unix time)",
            m.certificate_expiry.clone(),
        );
        registry.register(
            "certificate_problems",
            "Certificates named by objects that are not served as asked (see /debug/rejections)",
            m.certificate_problems.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn type_label(t: &str) -> TypeLabel {
        TypeLabel {
            r#type: t.to_string(),
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
