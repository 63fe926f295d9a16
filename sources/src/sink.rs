//! Where a source's events go: its resolved `sink`, under its DeliverySpec (retries, backoff,
//! dead-letter sink). Sending is the dispatcher's [`DeliveryEngine`], the same code that
//! delivers Trigger and Subscription events, so a source retries and dead-letters exactly as
//! a Trigger does.

use crate::metrics::{SourceCounters, SourceMetrics};
use herald_channels::WireEvent;
use herald_core::{DeliverySpec, Kind, ResourceKey};
use herald_dispatcher::route::{DeliveryFormat, ReplyTarget, Route, RouteId, TtlHandling};
use herald_dispatcher::{DeliveryEngine, Disposition, RetryPolicy};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Every attempt failed and there was no dead-letter sink, or it failed too.
#[derive(Debug, thiserror::Error)]
#[error("event {id} could not be delivered to {sink} nor dead-lettered")]
pub struct SinkError {
    pub id: String,
    pub sink: String,
}

#[derive(Clone)]
pub struct Sink {
    kind: Kind,
    engine: DeliveryEngine,
    route: Arc<Route>,
    overrides: Arc<BTreeMap<String, String>>,
    counts: Arc<SinkCounts>,
    /// The source's Prometheus series (unregistered until [`Sink::with_metrics`]).
    counters: SourceCounters,
}

/// What a source's sink did with its events, counted since the source started: shown in
/// the source's `status.eventCounts` (Prometheus counters once Herald has a registry).
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Accepted by the sink.
    pub delivered: AtomicU64,
    /// Refused by the sink (every retry) and taken by the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Refused by the sink and by the dead-letter sink, or there was none: sink failures.
    pub failed: AtomicU64,
}

impl SinkCounts {
    /// As `status.eventCounts`: `{"delivered": n, "deadLettered": n, "sinkFailures": n}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "delivered": self.delivered.load(Relaxed),
            "deadLettered": self.dead_lettered.load(Relaxed),
            "sinkFailures": self.failed.load(Relaxed),
        })
    }
}

impl Sink {
    /// The sink of source `kind key` at `url`, with `delivery` (dead-letter sink resolved to
    /// `dead_letter_sink`) and the source's `ceOverrides` extensions.
    pub fn new(
        engine: DeliveryEngine,
        kind: Kind,
        key: ResourceKey,
        url: Url,
        delivery: &DeliverySpec,
        dead_letter_sink: Option<Url>,
        overrides: BTreeMap<String, String>,
    ) -> Self {
        let default_timeout = engine.config().default_timeout;
        let route = Route {
            id: RouteId {
                kind: kind.name(),
                key,
            },
            filter: None,
            subscriber: url,
            // A sink's answer is not an event to route: sources have no reply.
            reply: ReplyTarget::Discard,
            dead_letter_sink,
            policy: RetryPolicy::from_spec(delivery, default_timeout),
            order: Default::default(),
            format: delivery.format.unwrap_or(DeliveryFormat::Binary),
            ttl: TtlHandling::PassThrough,
            // Sources have no Trigger's parking area; an undeliverable event is the
            // source's to handle (GitHub gets 502, Kafka/NATS retry it).
            keep_dead_letters: false,
            broker: None,
            filter_type: String::new(),
            dispatch_metrics: Default::default(),
        };
        Self {
            kind,
            engine,
            route: Arc::new(route),
            overrides: Arc::new(overrides),
            counts: Arc::default(),
            counters: SourceCounters::default(),
        }
    }

    /// Counts this sink's events in `metrics` too (`herald_source_events_total`,
    /// `herald_source_sink_failures_total`).
    pub fn with_metrics(mut self, metrics: &SourceMetrics) -> Self {
        self.counters = metrics.of(self.kind, &self.route.id.key);
        self
    }

    /// A sink at `url` with no retries and no overrides (tests, tools).
    pub fn to_url(engine: DeliveryEngine, kind: Kind, key: ResourceKey, url: Url) -> Self {
        Self::new(
            engine,
            kind,
            key,
            url,
            &DeliverySpec::default(),
            None,
            BTreeMap::new(),
        )
    }

    /// What became of this sink's events so far (shared by its clones).
    pub fn counts(&self) -> Arc<SinkCounts> {
        self.counts.clone()
    }

    pub fn url(&self) -> &Url {
        &self.route.subscriber
    }

    /// The per-attempt timeout and retries, for sources that pace themselves by them.
    pub fn policy(&self) -> &RetryPolicy {
        &self.route.policy
    }

    /// Sends `event` (with the `ceOverrides` extensions set), retrying per the DeliverySpec;
    /// `Ok` once it is delivered or dead-lettered.
    pub async fn send(&self, event: impl Into<WireEvent>) -> Result<Disposition, SinkError> {
        let mut event: WireEvent = event.into();
        for (name, value) in self.overrides.iter() {
            event.set_extension(name, value.clone());
        }
        let id = event.id().to_string();
        let disposition = self.engine.dispatch(&self.route, Arc::new(event)).await;
        let counter = match &disposition {
            Disposition::Delivered => &self.counts.delivered,
            Disposition::DeadLettered(_) => &self.counts.dead_lettered,
            Disposition::Undeliverable(_) => &self.counts.failed,
        };
        counter.fetch_add(1, Relaxed);
        match &disposition {
            Disposition::Undeliverable(_) => self.counters.sink_failures.inc(),
            _ => self.counters.events.inc(),
        };
        match disposition {
            Disposition::Undeliverable(_) => Err(SinkError {
                id,
                sink: herald_dispatcher::redact::without_credentials(self.url()),
            }),
            other => Ok(other),
        }
    }

    /// Like [`send`](Self::send), but an undeliverable event is tried again (after `pause`)
    /// until it is accepted or `stop` is cancelled: for sources that must not lose a record
    /// they read (Kafka, NATS), so their position only moves past accepted events.
    pub async fn send_until_accepted(
        &self,
        event: impl Into<WireEvent>,
        pause: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<Disposition> {
        let event: WireEvent = event.into();
        loop {
            match self.send(event.clone()).await {
                Ok(d) => return Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, ?pause, "sink refused the event; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.cancelled() => return None,
                    }
                }
            }
        }
    }
}
