//! The handles of one route's per-delivery metrics (Knative's `event_count` and
//! `event_dispatch_latencies` of the broker filter, once per response code, and
//! `herald_delivered_total`), looked up once: building the label strings and hashing them for
//! every delivery cost more than the counting.

use super::Route;
use herald_core::metrics::{code_class, millis, Counter, FilterLabels, Histogram, Metrics};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Shared by the clones of a route; starts empty.
#[derive(Clone, Default)]
pub struct DispatchMetrics(Arc<Mutex<Handles>>);

#[derive(Default)]
struct Handles {
    /// The registry the handles belong to (a route could meet another engine's).
    registry: usize,
    by_code: Vec<(u16, Counter, Histogram)>,
    delivered: Option<Counter>,
}

impl fmt::Debug for DispatchMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DispatchMetrics")
    }
}

impl DispatchMetrics {
    /// Counts one dispatch of `route` that ended with `code` (`0`: no answer) after `took`,
    /// and the event as delivered when it was (under one lock); routes other than a
    /// Trigger's have no per-code metrics.
    pub(crate) fn record(
        &self,
        route: &Route,
        metrics: &Arc<Metrics>,
        code: u16,
        took: Duration,
        delivered: bool,
    ) {
        let mut handles = self.handles(metrics);
        if delivered {
            handles
                .delivered
                .get_or_insert_with(|| {
                    let delivered = &metrics.herald.delivered;
                    delivered.get_or_create(&route.metric_labels()).clone()
                })
                .inc();
        }
        let at = match handles.by_code.iter().position(|(c, ..)| *c == code) {
            Some(at) => at,
            None => {
                let Some(p) = route.processing_labels() else {
                    return;
                };
                let labels = FilterLabels {
                    namespace_name: p.namespace_name,
                    broker_name: p.broker_name,
                    trigger_name: p.trigger_name,
                    filter_type: p.filter_type,
                    response_code: code.to_string(),
                    response_code_class: code_class(code),
                };
                let filter = &metrics.filter;
                let count = filter.event_count.get_or_create(&labels).clone();
                let latencies = filter
                    .event_dispatch_latencies
                    .get_or_create(&labels)
                    .clone();
                handles.by_code.push((code, count, latencies));
                handles.by_code.len() - 1
            }
        };
        let (_, count, latencies) = &handles.by_code[at];
        count.inc();
        latencies.observe(millis(took));
    }

    /// The handles, emptied first if they belong to another registry than `metrics`.
    fn handles(&self, metrics: &Arc<Metrics>) -> MutexGuard<'_, Handles> {
        let mut handles = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let registry = Arc::as_ptr(metrics) as usize;
        if handles.registry != registry {
            *handles = Handles {
                registry,
                ..Handles::default()
            };
        }
        handles
    }
}
