//! Herald's Prometheus metrics: one [`Metrics`] per server, owning the registry `/metrics`
//! encodes. Ingress and dispatch metrics carry Knative's names and labels (broker ingress:
//! `mt_broker_ingress_*`, broker filter: `mt_broker_filter_*`) so Knative's dashboards and
//! alerts carry over; Herald's own are prefixed `herald_`.
//!
//! Another part (a source, a channel backend) adds its own metric with [`Metrics::register`]:
//! build the metric, keep a clone (metrics are shared handles), register it once under a name
//! without prefix, and update the clone:
//!
//! ```
//! use herald_core::metrics::{Metrics, Counter};
//! let metrics = Metrics::new();
//! let ticks: Counter = Counter::default();
//! metrics.register("pingsource_ticks", "PingSource ticks emitted", ticks.clone());
//! ticks.inc();
//! assert!(metrics.encode().contains("herald_pingsource_ticks_total 1"));
//! ```

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family as LabelledFamily;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Knative's latency buckets, in milliseconds.
const LATENCY_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// Labels of broker ingress metrics (Knative's, less the pod-specific `unique_name` and
/// `container_name`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    pub namespace_name: String,
    pub broker_name: String,
    /// Empty when the request held no event that could be read.
    pub event_type: String,
    pub response_code: String,
    pub response_code_class: String,
}

/// Labels of a Trigger's deliveries (Knative's broker filter labels).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FilterLabels {
    pub namespace_name: String,
    pub broker_name: String,
    pub trigger_name: String,
    /// The `type` the Trigger filters on, `any` when it filters on none.
    pub filter_type: String,
    /// The subscriber's last answer; `0` when it gave none (refused, timed out).
    pub response_code: String,
    pub response_code_class: String,
}

/// Labels of event processing (filtering) latency: Knative's, without response code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessingLabels {
    pub namespace_name: String,
    pub broker_name: String,
    pub trigger_name: String,
    pub filter_type: String,
}

/// A route (Trigger or Subscription) of Herald's own metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `Trigger` or `Subscription`.
    pub kind: String,
    pub namespace_name: String,
    pub name: String,
}

/// Why something was not done (e.g. an EventType recording dropped: `queue_full`, `limit`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// A channel backend (`memory`, `sled`, `nats`, `kafka`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

/// Broker ingress (Knative's `mt_broker_ingress_*`).
#[derive(Clone)]
pub struct IngressMetrics {
    /// `event_count`: events received by a Broker, by answer.
    pub event_count: Family<IngressLabels, Counter>,
    /// `event_dispatch_latencies`: time to store an event in the Broker's channel (ms).
    pub event_dispatch_latencies: Latencies<IngressLabels>,
    series: Arc<IngressSeries>,
}

/// The ingress series a Broker has used, by event type and answer: a request finds its
/// handles without building five label strings and hashing them twice (which cost more
/// than the counting).
#[derive(Default)]
struct IngressSeries(Mutex<SeriesMap>);

#[derive(Default)]
struct SeriesMap {
    by_broker: foldhash::HashMap<crate::ResourceKey, Vec<IngressHandles>>,
    /// Keys in `by_broker` that named no Broker when first counted.
    unknown: usize,
}

struct IngressHandles {
    event_type: String,
    code: u16,
    count: Counter,
    latencies: Histogram,
}

/// Series one Broker may have (as many as the EventTypes it may record); past that (a
/// sender inventing types) an event of a new type counts with an empty `event_type`, so
/// the families cannot grow without bound.
pub const INGRESS_SERIES_PER_BROKER: usize = 1000;
/// Names that are no Broker which get series of their own; past that a request to one
/// counts with empty `namespace_name` and `broker_name`, so requests to made-up paths
/// cannot grow the families without bound.
pub const INGRESS_UNKNOWN_BROKERS: usize = 64;

impl IngressMetrics {
    /// Counts one event `broker` answered `code` (with an empty type when the request held
    /// none that could be read), and how long storing it took when that was tried. `known`
    /// is false when no Broker has that name.
    pub fn record(
        &self,
        broker: &crate::ResourceKey,
        known: bool,
        event_type: &str,
        code: u16,
        took: Option<Duration>,
    ) {
        let mut series = self.series.0.lock().unwrap_or_else(|p| p.into_inner());
        let SeriesMap { by_broker, unknown } = &mut *series;
        let nameless;
        let mut broker = broker;
        if !known && !by_broker.contains_key(broker) {
            if *unknown < INGRESS_UNKNOWN_BROKERS {
                *unknown += 1;
            } else {
                nameless = crate::ResourceKey::new(String::new(), String::new());
                broker = &nameless;
            }
        }
        let handles = match by_broker.get_mut(broker) {
            Some(handles) => handles,
            None => by_broker.entry(broker.clone()).or_default(),
        };
        let mut event_type = event_type;
        let mut found = handles
            .iter()
            .position(|h| h.code == code && h.event_type == event_type);
        if found.is_none() && handles.len() >= INGRESS_SERIES_PER_BROKER {
            event_type = "";
            found = handles
                .iter()
                .position(|h| h.code == code && h.event_type.is_empty());
        }
        let h = match found {
            Some(i) => &handles[i],
            None => {
                let labels = IngressLabels {
                    namespace_name: broker.namespace.clone(),
                    broker_name: broker.name.clone(),
                    event_type: event_type.to_string(),
                    response_code: code.to_string(),
                    response_code_class: code_class(code),
                };
                handles.push(IngressHandles {
                    count: self.event_count.get_or_create(&labels).clone(),
                    latencies: self.event_dispatch_latencies.get_or_create(&labels).clone(),
                    event_type: labels.event_type,
                    code,
                });
                handles.last().expect("pushed")
            }
        };
        h.count.inc();
        if let Some(took) = took {
            h.latencies.observe(millis(took));
        }
    }
}

/// Trigger deliveries (Knative's `mt_broker_filter_*`).
#[derive(Clone)]
pub struct FilterMetrics {
    /// `event_count`: events handed to a Trigger's subscriber, by its final answer.
    pub event_count: Family<FilterLabels, Counter>,
    /// `event_dispatch_latencies`: time to deliver one event to the subscriber, all
    /// attempts included (ms).
    pub event_dispatch_latencies: Latencies<FilterLabels>,
    /// `event_processing_latencies`: time to filter an event for a Trigger (ms); its count
    /// is the events the Trigger's filter looked at.
    pub event_processing_latencies: Latencies<ProcessingLabels>,
}

/// Herald's own (`herald_*`).
#[derive(Clone)]
pub struct HeraldMetrics {
    /// Events a route's subscriber took (after retries, if any), per route.
    pub delivered: Family<RouteLabels, Counter>,
    /// Delivery attempts after the first, per route.
    pub retries: Family<RouteLabels, Counter>,
    /// Events that reached a route's dead-letter sink.
    pub dead_letters: Family<RouteLabels, Counter>,
    /// Events kept for `herald dlq` (undeliverable, or copies of dead-lettered ones).
    pub parked: Family<RouteLabels, Counter>,
    /// Events parked for a route now (set on every scrape).
    pub parked_events: Family<RouteLabels, Gauge>,
    /// Events in a route's channel it has not settled yet, where the backend can tell (set
    /// on every scrape).
    pub channel_lag: Family<RouteLabels, Gauge>,
    /// Bytes the durable store holds on disk (set on every scrape).
    pub store_size_bytes: Family<BackendLabels, Gauge>,
    /// 1 while a backend in use is reachable, else 0 (set on every scrape).
    pub backend_up: Family<BackendLabels, Gauge>,
}

/// The metrics of one Herald server.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub ingress: IngressMetrics,
    pub filter: FilterMetrics,
    pub herald: HeraldMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let ingress = IngressMetrics {
            event_count: Family::default(),
            event_dispatch_latencies: Family::new_with_constructor(latency_histogram),
            series: Default::default(),
        };
        let filter = FilterMetrics {
            event_count: Family::default(),
            event_dispatch_latencies: Family::new_with_constructor(latency_histogram),
            event_processing_latencies: Family::new_with_constructor(latency_histogram),
        };
        let herald = HeraldMetrics {
            delivered: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            parked: Family::default(),
            parked_events: Family::default(),
            channel_lag: Family::default(),
            store_size_bytes: Family::default(),
            backend_up: Family::default(),
        };
        let mut registry = Registry::default();
        let r = registry.sub_registry_with_prefix("mt_broker_ingress");
        r.register(
            "event_count",
            "Number of events received by a Broker",
            ingress.event_count.clone(),
        );
        r.register(
            "event_dispatch_latencies",
            "The time spent dispatching an event to a Channel (ms)",
            ingress.event_dispatch_latencies.clone(),
        );
        let r = registry.sub_registry_with_prefix("mt_broker_filter");
        r.register(
            "event_count",
            "Number of events dispatched to a Trigger's subscriber",
            filter.event_count.clone(),
        );
        r.register(
            "event_dispatch_latencies",
            "The time spent dispatching an event to a Trigger subscriber (ms)",
            filter.event_dispatch_latencies.clone(),
        );
        r.register(
            "event_processing_latencies",
            "The time spent processing (filtering) an event before dispatching it to a Trigger subscriber (ms)",
            filter.event_processing_latencies.clone(),
        );
        let r = registry.sub_registry_with_prefix("herald");
        r.register(
            "delivered",
            "Events a route's subscriber took",
            herald.delivered.clone(),
        );
        r.register(
            "delivery_retries",
            "Delivery attempts after the first",
            herald.retries.clone(),
        );
        r.register(
            "dead_letters",
            "Events delivered to a dead-letter sink",
            herald.dead_letters.clone(),
        );
        r.register(
            "parked",
            "Events parked for herald dlq (undeliverable, or copies of dead-lettered ones)",
            herald.parked.clone(),
        );
        r.register(
            "parked_events",
            "Events parked for a route now",
            herald.parked_events.clone(),
        );
        r.register(
            "channel_lag",
            "Events in a route's channel it has not settled yet",
            herald.channel_lag.clone(),
        );
        r.register(
            "store_size_bytes",
            "Bytes the durable store holds on disk",
            herald.store_size_bytes.clone(),
        );
        r.register(
            "backend_up",
            "1 while a channel backend in use is reachable, else 0",
            herald.backend_up.clone(),
        );
        Arc::new(Self {
            registry: Mutex::new(registry),
            ingress,
            filter,
            herald,
        })
    }

    /// Adds another part's metric as `herald_{name}` (counters get `_total` on encoding).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock()
            .sub_registry_with_prefix("herald")
            .register(name, help, metric);
    }

    /// Every metric, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.lock())
            .expect("writing to a String cannot fail");
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic elsewhere while holding it leaves a registry that is still consistent.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `202` -> `2xx`, Knative's `response_code_class`.
pub fn code_class(code: u16) -> String {
    format!("{}xx", code / 100)
}

/// A duration in milliseconds, as Knative's latency histograms count.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knative_names_and_labels_are_encoded() {
        let m = Metrics::new();
        let labels = IngressLabels {
            namespace_name: "default".into(),
            broker_name: "b".into(),
            event_type: "t".into(),
            response_code: "202".into(),
            response_code_class: code_class(202),
        };
        m.ingress.event_count.get_or_create(&labels).inc_by(3);
        m.ingress
            .event_dispatch_latencies
            .get_or_create(&labels)
            .observe(4.0);
        let text = m.encode();
        assert!(
            text.contains(r#"mt_broker_ingress_event_count_total{namespace_name="default",broker_name="b",event_type="t",response_code="202",response_code_class="2xx"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mt_broker_ingress_event_dispatch_latencies_bucket{le="5.0",namespace_name="default",broker_name="b",event_type="t",response_code="202",response_code_class="2xx"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    fn ingress_series(m: &Metrics) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| l.starts_with("mt_broker_ingress_event_count_total{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn requests_to_made_up_brokers_cannot_grow_the_ingress_series_without_bound() {
        let m = Metrics::new();
        let known = crate::ResourceKey::new("ns", "default");
        m.ingress.record(&known, true, "t", 202, None);
        for i in 0..INGRESS_UNKNOWN_BROKERS + 500 {
            let key = crate::ResourceKey::new("ns", format!("nope-{i}"));
            m.ingress.record(&key, false, "", 404, None);
        }
        let series = ingress_series(&m);
        assert_eq!(series.len(), 1 + INGRESS_UNKNOWN_BROKERS + 1, "{series:?}");
        assert!(series.contains(&r#"mt_broker_ingress_event_count_total{namespace_name="ns",broker_name="nope-0",event_type="",response_code="404",response_code_class="4xx"} 1"#.to_string()));
        assert!(series.contains(&r#"mt_broker_ingress_event_count_total{namespace_name="",broker_name="",event_type="",response_code="404",response_code_class="4xx"} 500"#.to_string()));
        // A name counted once keeps its series; a Broker is never folded.
        m.ingress.record(
            &crate::ResourceKey::new("ns", "nope-0"),
            false,
            "",
            404,
            None,
        );
        m.ingress
            .record(&crate::ResourceKey::new("ns", "late"), true, "t", 202, None);
        let series = ingress_series(&m);
        assert!(series.contains(&r#"mt_broker_ingress_event_count_total{namespace_name="ns",broker_name="nope-0",event_type="",response_code="404",response_code_class="4xx"} 2"#.to_string()));
        assert!(series.contains(&r#"mt_broker_ingress_event_count_total{namespace_name="ns",broker_name="late",event_type="t",response_code="202",response_code_class="2xx"} 1"#.to_string()));
    }

    #[test]
    fn a_sender_inventing_types_cannot_grow_a_brokers_series_without_bound() {
        let m = Metrics::new();
        let key = crate::ResourceKey::new("ns", "default");
        for i in 0..INGRESS_SERIES_PER_BROKER + 300 {
            m.ingress.record(&key, true, &format!("t{i}"), 202, None);
        }
        m.ingress.record(&key, true, "t0", 202, None);
        let series = ingress_series(&m);
        assert_eq!(series.len(), INGRESS_SERIES_PER_BROKER + 1);
        assert!(series.contains(&r#"mt_broker_ingress_event_count_total{namespace_name="ns",broker_name="default",event_type="",response_code="202",response_code_class="2xx"} 300"#.to_string()));
        assert!(series.contains(&r#"mt_broker_ingress_event_count_total{namespace_name="ns",broker_name="default",event_type="t0",response_code="202",response_code_class="2xx"} 2"#.to_string()));
    }

    #[test]
    fn other_parts_register_under_the_herald_prefix() {
        let m = Metrics::new();
        let c = Counter::<u64>::default();
        m.register("widget_events", "Widget events", c.clone());
        c.inc();
        assert!(m.encode().contains("herald_widget_events_total 1"));
    }
}
