//! Prometheus metrics, exposed as text on the admin listener's `GET /metrics`.
//!
//! Per-API series are created on first use and their handles cached in a fixed array indexed
//! by API key, so the hot path does an array load and a few atomic adds per request instead
//! of a labelled hash-map lookup.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sluice_wasm::kms::Kms;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// API keys below this bound get a cached slot; others share the `unknown` slot.
const API_SLOTS: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    mechanism: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    interceptor: String,
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    interceptor: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginMetricLabels {
    interceptor: String,
    name: String,
}

fn plugin_histogram() -> Histogram {
    // 1 µs .. ~0.5 s
    Histogram::new(exponential_buckets(1e-6, 2.0, 20))
}

/// The handles of one API key's series.
#[derive(Clone)]
pub struct ApiMetrics {
    /// Requests received from clients.
    pub requests: Counter,
    /// Request bytes received from clients (frames, length prefix included).
    pub request_bytes: Counter,
    /// Response bytes sent to clients.
    pub response_bytes: Counter,
    /// Time spent inside the gateway per request (request and response handling).
    pub gateway_seconds: Histogram,
    /// Time between forwarding a request and reading its full response from the broker.
    pub upstream_seconds: Histogram,
    /// Responses the gateway produced itself (ApiVersions errors, rejections).
    pub local_responses: Counter,
}

fn gateway_histogram() -> Histogram {
    // 2 µs .. ~0.5 s
    Histogram::new(exponential_buckets(2e-6, 2.0, 19))
}

fn upstream_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(5e-5, 2.0, 20))
}

struct Families {
    requests: Family<ApiLabel, Counter>,
    request_bytes: Family<ApiLabel, Counter>,
    response_bytes: Family<ApiLabel, Counter>,
    gateway_seconds: Family<ApiLabel, Histogram, fn() -> Histogram>,
    upstream_seconds: Family<ApiLabel, Histogram, fn() -> Histogram>,
    local_responses: Family<ApiLabel, Counter>,
    protocol_errors: Family<KindLabel, Counter>,
    connections_refused: Family<ReasonLabel, Counter>,
    connections_closed: Family<ReasonLabel, Counter>,
    accept_errors: Family<KindLabel, Counter>,
    authentications: Family<AuthLabels, Counter>,
    listener_connections: Family<ListenerLabel, Counter>,
    listener_connections_open: Family<ListenerLabel, Gauge>,
    authorization_denied: Family<DeniedLabels, Counter>,
    interceptor_calls: Family<HookLabels, Counter>,
    interceptor_seconds: Family<HookLabels, Histogram, fn() -> Histogram>,
    interceptor_failures: Family<FailureLabels, Counter>,
    plugin_counters: Family<PluginMetricLabels, Counter>,
    plugin_gauges: Family<PluginMetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// All gateway metrics.
pub struct Metrics {
    registry: Registry,
    families: Families,
    slots: Vec<OnceLock<ApiMetrics>>,
    unknown: OnceLock<ApiMetrics>,
    /// Client connections open now.
    pub connections_open: Gauge,
    /// Client connections accepted since start.
    pub connections_total: Counter,
    /// Failed attempts to connect to a broker.
    pub upstream_connect_errors: Counter,
    /// Upstream connections lost while requests were in flight.
    pub upstream_disconnects: Counter,
    /// The gateway's own SASL sessions on broker connections renewed in place (KIP-368).
    pub upstream_reauthentications: Counter,
    /// KIP-951 endpoints left out of streamed responses (see `advertise::tail`).
    pub node_endpoints_dropped: Counter,
    /// The KMS whose counters are exported, once the registry has opened it.
    kms: Arc<OnceLock<Arc<Kms>>>,
    /// Records plugins published that reached the cluster.
    pub published: Counter,
    /// Records plugins published that could not be delivered.
    pub publish_errors: Counter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("sluice");
        let families = Families {
            requests: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            gateway_seconds: Family::new_with_constructor(gateway_histogram),
            upstream_seconds: Family::new_with_constructor(upstream_histogram),
            local_responses: Family::default(),
            protocol_errors: Family::default(),
            connections_refused: Family::default(),
            connections_closed: Family::default(),
            accept_errors: Family::default(),
            authentications: Family::default(),
            listener_connections: Family::default(),
            listener_connections_open: Family::default(),
            authorization_denied: Family::default(),
            interceptor_calls: Family::default(),
            interceptor_seconds: Family::new_with_constructor(plugin_histogram),
            interceptor_failures: Family::default(),
            plugin_counters: Family::default(),
            plugin_gauges: Family::default(),
        };
        registry.register(
            "interceptor_calls",
            "Interceptor plugin calls, by interceptor and hook",
            families.interceptor_calls.clone(),
        );
        registry.register(
            "interceptor_call_seconds",
            "Duration of interceptor plugin calls, by interceptor and hook",
            families.interceptor_seconds.clone(),
        );
        registry.register(
            "interceptor_failures",
            "Interceptor calls that trapped, timed out or ran out of memory",
            families.interceptor_failures.clone(),
        );
        registry.register(
            "plugin_counter",
            "Counters maintained by plugins",
            families.plugin_counters.clone(),
        );
        registry.register(
            "plugin_gauge",
            "Gauges maintained by plugins",
            families.plugin_gauges.clone(),
        );
        registry.register(
            "requests",
            "Kafka requests received from clients, by API",
            families.requests.clone(),
        );
        registry.register(
            "request_bytes",
            "Request bytes received from clients, by API",
            families.request_bytes.clone(),
        );
        registry.register(
            "response_bytes",
            "Response bytes sent to clients, by API",
            families.response_bytes.clone(),
        );
        registry.register(
            "gateway_latency_seconds",
            "Time a request and its response spend inside the gateway, by API",
            families.gateway_seconds.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from forwarding a request to reading its whole response from the broker",
            families.upstream_seconds.clone(),
        );
        registry.register(
            "local_responses",
            "Responses produced by the gateway itself, by API",
            families.local_responses.clone(),
        );
        registry.register(
            "protocol_errors",
            "Connections closed for malformed or unacceptable input, by kind",
            families.protocol_errors.clone(),
        );
        registry.register(
            "authentications",
            "Client authentications, by mechanism (SASL name or SSL) and outcome",
            families.authentications.clone(),
        );
        registry.register(
            "listener_connections",
            "Client connections accepted, by listener set",
            families.listener_connections.clone(),
        );
        registry.register(
            "listener_connections_open",
            "Client connections open now, by listener set",
            families.listener_connections_open.clone(),
        );
        registry.register(
            "authorization_denied",
            "Requests the ACLs denied in whole or in part, by API",
            families.authorization_denied.clone(),
        );
        let connections_open = Gauge::default();
        let connections_total = Counter::default();
        let upstream_connect_errors = Counter::default();
        let upstream_disconnects = Counter::default();
        let upstream_reauthentications = Counter::default();
        let node_endpoints_dropped = Counter::default();
        let kms = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(KmsCollector(kms.clone())));
        registry.register(
            "node_endpoints_dropped",
            "KIP-951 leader endpoints left out of streamed Fetch/Produce responses because the gateway's address did not fit in their bytes (clients refresh metadata instead)",
            node_endpoints_dropped.clone(),
        );
        registry.register(
            "upstream_reauthentications",
            "The gateway's SASL sessions on broker connections renewed in place before they expired (KIP-368)",
            upstream_reauthentications.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at accept, by reason (max_connections, fd_limit, per_source)",
            families.connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections the gateway closed for a timeout, by reason (handshake_timeout, idle_timeout)",
            families.connections_closed.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts on the Kafka listeners, by kind (fd_exhausted, other)",
            families.accept_errors.clone(),
        );
        registry.register(
            "upstream_connect_errors",
            "Failed connection attempts to brokers",
            upstream_connect_errors.clone(),
        );
        registry.register(
            "upstream_disconnects",
            "Broker connections lost while client requests were in flight",
            upstream_disconnects.clone(),
        );
        let published = Counter::default();
        let publish_errors = Counter::default();
        registry.register(
            "plugin_published_records",
            "Records published by plugins and delivered to the cluster",
            published.clone(),
        );
        registry.register(
            "plugin_publish_errors",
            "Records published by plugins that could not be delivered",
            publish_errors.clone(),
        );
        Arc::new(Metrics {
            published,
            publish_errors,
            registry,
            families,
            slots: (0..API_SLOTS).map(|_| OnceLock::new()).collect(),
            unknown: OnceLock::new(),
            connections_open,
            connections_total,
            upstream_connect_errors,
            upstream_disconnects,
            upstream_reauthentications,
            node_endpoints_dropped,
            kms,
        })
    }

    /// The series of one API key.
    pub fn api(&self, api_key: i16) -> &ApiMetrics {
        let known = ApiKey::try_from(api_key).ok();
        let slot = match (known, usize::try_from(api_key)) {
            (Some(_), Ok(i)) if i < API_SLOTS => &self.slots[i],
            _ => &self.unknown,
        };
        slot.get_or_init(|| {
            let label = ApiLabel {
                api: known.map_or_else(|| "unknown".to_string(), |k| format!("{k:?}")),
            };
            let f = &self.families;
            ApiMetrics {
                requests: f.requests.get_or_create(&label).clone(),
                request_bytes: f.request_bytes.get_or_create(&label).clone(),
                response_bytes: f.response_bytes.get_or_create(&label).clone(),
                gateway_seconds: f.gateway_seconds.get_or_create(&label).clone(),
                upstream_seconds: f.upstream_seconds.get_or_create(&label).clone(),
                local_responses: f.local_responses.get_or_create(&label).clone(),
            }
        })
    }

    /// The connection counters of listener set `listener` (accepted, open now): a handful of
    /// sets per gateway, so a bounded label.
    pub fn listener_connections(&self, listener: &str) -> (Counter, Gauge) {
        let label = ListenerLabel {
            listener: listener.into(),
        };
        (
            self.families
                .listener_connections
                .get_or_create(&label)
                .clone(),
            self.families
                .listener_connections_open
                .get_or_create(&label)
                .clone(),
        )
    }

    /// Counts an authentication attempt (`outcome`: `success` or `failure`).
    pub fn authentication(&self, mechanism: &str, outcome: &str) {
        self.families
            .authentications
            .get_or_create(&AuthLabels {
                mechanism: mechanism.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a request the ACLs denied in whole or in part.
    pub fn authorization_denied(&self, api_key: i16) {
        let api = kafka_protocol::messages::ApiKey::try_from(api_key)
            .map_or_else(|_| format!("unknown_{api_key}"), |k| format!("{k:?}"));
        self.families
            .authorization_denied
            .get_or_create(&DeniedLabels { api })
            .inc();
    }

    /// Counts a connection refused at accept (`reason`: `max_connections`, `fd_limit`,
    /// `per_source`).
    pub fn connection_refused(&self, reason: &str) {
        self.families
            .connections_refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a connection the gateway closed for a timeout (`handshake_timeout`,
    /// `idle_timeout`).
    pub fn connection_closed(&self, reason: &str) {
        self.families
            .connections_closed
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a failed accept (`fd_exhausted` or `other`).
    pub fn accept_error(&self, kind: &str) {
        self.families
            .accept_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Counts a connection closed for bad input.
    pub fn protocol_error(&self, kind: &str) {
        self.families
            .protocol_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// The call counter and duration histogram of one interceptor hook, looked up once at
    /// install time so a call costs two atomic updates, not a labelled lookup.
    pub fn interceptor_hook(&self, interceptor: &str, hook: &str) -> (Counter, Histogram) {
        let labels = HookLabels {
            interceptor: interceptor.into(),
            hook: hook.into(),
        };
        (
            self.families
                .interceptor_calls
                .get_or_create(&labels)
                .clone(),
            self.families
                .interceptor_seconds
                .get_or_create(&labels)
                .clone(),
        )
    }

    /// Counts a failed interceptor call.
    pub fn interceptor_failure(&self, interceptor: &str, kind: &str) {
        self.families
            .interceptor_failures
            .get_or_create(&FailureLabels {
                interceptor: interceptor.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// A plugin-defined counter.
    pub fn plugin_counter(&self, interceptor: &str, name: &str) -> Counter {
        self.families
            .plugin_counters
            .get_or_create(&PluginMetricLabels {
                interceptor: interceptor.into(),
                name: name.into(),
            })
            .clone()
    }

    /// A plugin-defined gauge.
    pub fn plugin_gauge(
        &self,
        interceptor: &str,
        name: &str,
    ) -> Gauge<f64, std::sync::atomic::AtomicU64> {
        self.families
            .plugin_gauges
            .get_or_create(&PluginMetricLabels {
                interceptor: interceptor.into(),
                name: name.into(),
            })
            .clone()
    }

    /// Renders the Prometheus text exposition format.
    /// Exports the counters of `kms` (`sluice_kms_*`) from now on.
    pub fn watch_kms(&self, kms: Arc<Kms>) {
        let _ = self.kms.set(kms);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Reads the KMS's own counters at each scrape.
struct KmsCollector(Arc<OnceLock<Arc<Kms>>>);

impl std::fmt::Debug for KmsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KmsCollector")
    }
}

impl Collector for KmsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(kms) = self.0.get() else {
            return Ok(());
        };
        let s = &kms.stats;
        for (name, help, value) in [
            (
                "kms_data_keys_generated",
                "Data keys the key provider generated (one per key id and window: the provider round trips of encryption)",
                &s.data_keys_generated,
            ),
            (
                "kms_data_keys_unwrapped",
                "Data keys the key provider unwrapped (the provider round trips of decryption; then cached)",
                &s.data_keys_unwrapped,
            ),
            (
                "kms_provider_errors",
                "Key provider calls that failed (unreachable, refused, unknown key)",
                &s.provider_errors,
            ),
            (
                "kms_keys_shredded",
                "Key ids deleted (crypto-shredding)",
                &s.keys_shredded,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// Seconds as f64, for histograms.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The plugin host counts plugin-defined metrics through this; they are exported as
/// `plugin_counter` and `plugin_gauge`.
impl sluice_wasm::services::PluginMetrics for Metrics {
    fn counter_add(&self, interceptor: &str, name: &str, delta: u64) {
        self.plugin_counter(interceptor, name).inc_by(delta);
    }

    fn gauge_set(&self, interceptor: &str, name: &str, value: f64) {
        self.plugin_gauge(interceptor, name).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_api_series() {
        let m = Metrics::new();
        m.api(0).requests.inc();
        m.api(0).request_bytes.inc_by(100);
        m.api(3).gateway_seconds.observe(0.001);
        m.api(999).requests.inc();
        m.connections_total.inc();
        m.protocol_error("too_large");
        m.connection_refused("per_source");
        m.connection_closed("idle_timeout");
        let text = m.render();
        assert!(
            text.contains("sluice_requests_total{api=\"Produce\"} 1"),
            "{text}"
        );
        assert!(text.contains("sluice_request_bytes_total{api=\"Produce\"} 100"));
        assert!(text.contains("sluice_gateway_latency_seconds_count{api=\"Metadata\"} 1"));
        assert!(text.contains("sluice_requests_total{api=\"unknown\"} 1"));
        assert!(text.contains("sluice_connections_total 1"));
        assert!(text.contains("sluice_protocol_errors_total{kind=\"too_large\"} 1"));
        assert!(text.contains("sluice_connections_refused_total{reason=\"per_source\"} 1"));
        assert!(text.contains("sluice_connections_closed_total{reason=\"idle_timeout\"} 1"));
    }
}
