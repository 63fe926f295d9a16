//! A [`Route`]: one subscription compiled for the delivery engine. Every kind of subscription
//! (a Trigger today; a Channel's Subscription, a Sequence step, a Parallel branch) compiles
//! into this one type, so the engine never knows which kind it serves.

mod dispatch_metrics;
mod subscription;
mod trigger;

use crate::filter::Filter;
use crate::retry::RetryPolicy;
use herald_channels::Channel;
use herald_core::metrics::{ProcessingLabels, RouteLabels};
pub use herald_core::DeliveryFormat;
use herald_core::ResourceKey;
use std::fmt;
use std::sync::Arc;
use url::Url;

pub use dispatch_metrics::DispatchMetrics;
pub use subscription::{subscription_route, SubscriptionRouteError};
pub use trigger::{
    check_trigger, dlq_retention, trigger_route, RouteError, DEAD_LETTER_COPIES_ANNOTATION,
    DELIVERY_ORDER_ANNOTATION, DLQ_RETENTION_ANNOTATION,
};

/// Who a route belongs to: the resource kind and its key, e.g. `Trigger default/orders`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    pub kind: &'static str,
    pub key: ResourceKey,
}

impl RouteId {
    pub fn trigger(key: ResourceKey) -> Self {
        Self {
            kind: "Trigger",
            key,
        }
    }

    pub fn subscription(key: ResourceKey) -> Self {
        Self {
            kind: "Subscription",
            key,
        }
    }

    /// The route's subscription on its channel; stable across restarts, since committed
    /// offsets are kept under it (`trigger.{ns}.{name}` for Triggers).
    pub fn subscription_name(&self) -> String {
        format!(
            "{}.{}.{}",
            self.kind.to_ascii_lowercase(),
            self.key.namespace,
            self.key.name
        )
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

/// Where a subscriber's reply goes.
#[derive(Clone)]
pub enum ReplyTarget {
    /// Published into a channel (a Broker's, for a Trigger; a Subscription's reply channel).
    Channel(Arc<dyn Channel>),
    /// Delivered to an address, with the route's retry policy.
    Url(Url),
    /// Not asked for (no `Prefer: reply`) and dropped if sent anyway.
    Discard,
}

impl fmt::Debug for ReplyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(c) => write!(f, "Channel({})", c.name()),
            Self::Url(u) => write!(f, "Url({u})"),
            Self::Discard => f.write_str("Discard"),
        }
    }
}

/// What the route does with Knative's broker TTL (`knativebrokerttl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TtlHandling {
    /// Broker semantics: the TTL is removed before delivery and a reply carries it one hop
    /// lower; an exhausted TTL drops the reply (stops reply loops).
    #[default]
    Broker,
    /// Channel semantics: the event goes out as stored, TTL and all.
    PassThrough,
}

/// How a route's deliveries are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryOrder {
    /// Concurrent, highest throughput.
    #[default]
    Unordered,
    /// In order per `partitionkey` (events without one share a single order), while
    /// different keys progress in parallel.
    Ordered,
}

/// One subscription, resolved: what to deliver, where, how, and what happens after.
#[derive(Clone, Debug)]
pub struct Route {
    pub id: RouteId,
    /// Events the filter rejects are settled as dropped; `None` passes everything.
    pub filter: Option<Filter>,
    pub subscriber: Url,
    pub reply: ReplyTarget,
    pub dead_letter_sink: Option<Url>,
    pub policy: RetryPolicy,
    pub order: DeliveryOrder,
    pub format: DeliveryFormat,
    pub ttl: TtlHandling,
    /// Park a copy of every event that reached the dead-letter sink too, for inspection
    /// and redrive (annotation `herald.dev/dead-letter-copies: "true"`).
    pub keep_dead_letters: bool,
    /// The Broker a Trigger reads (the `broker_name` of its metrics); `None` for others.
    pub broker: Option<ResourceKey>,
    /// The `type` a Trigger filters on, `any` when none (Knative's `filter_type` label).
    pub filter_type: String,
    /// Its dispatch metrics' handles, found on first use.
    pub dispatch_metrics: DispatchMetrics,
}

impl Route {
    pub fn subscription(&self) -> String {
        self.id.subscription_name()
    }

    pub fn accepts(&self, event: &herald_channels::WireEvent) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(event))
    }

    /// The labels of Herald's own per-route metrics.
    pub fn metric_labels(&self) -> RouteLabels {
        RouteLabels {
            kind: self.id.kind.to_string(),
            namespace_name: self.id.key.namespace.clone(),
            name: self.id.key.name.clone(),
        }
    }

    /// Knative's broker filter labels, for a Trigger's route.
    pub fn processing_labels(&self) -> Option<ProcessingLabels> {
        let broker = self.broker.as_ref()?;
        Some(ProcessingLabels {
            namespace_name: self.id.key.namespace.clone(),
            broker_name: broker.name.clone(),
            trigger_name: self.id.key.name.clone(),
            filter_type: self.filter_type.clone(),
        })
    }
}
