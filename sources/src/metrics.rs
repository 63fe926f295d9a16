//! Per-source Prometheus counters, labelled like Herald's route metrics (`kind`,
//! `namespace_name`, `name`): events a source emitted, sink failures, and restarts. The host
//! registers them once in its [`Metrics`] ([`SourceMetrics::register`]); a standalone run
//! keeps an unregistered set that no one scrapes.

use herald_core::metrics::{Counter, LabelledFamily, Metrics, RouteLabels};
use herald_core::{Kind, ResourceKey};

/// The counter families every source records into (shared handles: clones count together).
#[derive(Clone, Default)]
pub struct SourceMetrics {
    /// `herald_source_events_total`: events taken by the sink or its dead-letter sink.
    pub events: LabelledFamily<RouteLabels, Counter>,
    /// `herald_source_sink_failures_total`: sends neither the sink nor a dead-letter sink
    /// took.
    pub sink_failures: LabelledFamily<RouteLabels, Counter>,
    /// `herald_source_restarts_total`: a ContainerSource's command started again after it
    /// exited, or a failed source built and started again.
    pub restarts: LabelledFamily<RouteLabels, Counter>,
}

impl SourceMetrics {
    /// The families, registered in `metrics` (served on `/metrics`).
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self::default();
        metrics.register(
            "source_events",
            "Events a source emitted that its sink (or dead-letter sink) took",
            m.events.clone(),
        );
        metrics.register(
            "source_sink_failures",
            "Events a source sent that neither its sink nor a dead-letter sink took",
            m.sink_failures.clone(),
        );
        metrics.register(
            "source_restarts",
            "Times a source (a ContainerSource's command) was started again",
            m.restarts.clone(),
        );
        m
    }

    /// The counters of one source.
    pub fn of(&self, kind: Kind, key: &ResourceKey) -> SourceCounters {
        let labels = labels(kind, key);
        SourceCounters {
            events: self.events.get_or_create(&labels).clone(),
            sink_failures: self.sink_failures.get_or_create(&labels).clone(),
            restarts: self.restarts.get_or_create(&labels).clone(),
        }
    }
}

/// One source's counters (its series in each family).
#[derive(Clone, Default)]
pub struct SourceCounters {
    pub events: Counter,
    pub sink_failures: Counter,
    pub restarts: Counter,
}

fn labels(kind: Kind, key: &ResourceKey) -> RouteLabels {
    RouteLabels {
        kind: kind.name().to_string(),
        namespace_name: key.namespace.clone(),
        name: key.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_encoded_per_source_kind_namespace_and_name() {
        let registry = Metrics::new();
        let m = SourceMetrics::register(&registry);
        let key = ResourceKey {
            namespace: "ns".into(),
            name: "cs".into(),
        };
        let c = m.of(Kind::ContainerSource, &key);
        c.restarts.inc();
        c.restarts.inc();
        m.of(Kind::ContainerSource, &key).events.inc();
        let text = registry.encode();
        let series = r#"{kind="ContainerSource",namespace_name="ns",name="cs"}"#;
        assert!(
            text.contains(&format!("herald_source_restarts_total{series} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("herald_source_events_total{series} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("herald_source_sink_failures_total{series} 0")),
            "{text}"
        );
    }
}
