//! A Trigger resolved for the data plane: its compiled filter, subscriber URL and delivery.

use crate::filter::{Filter, FilterError};
use crate::retry::RetryPolicy;
use herald_core::{Broker, DeliverySpec, ResolveError, Resolver, ResourceKey, Trigger};
use std::time::Duration;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("Trigger {trigger}: invalid filter: {source}")]
    Filter {
        trigger: ResourceKey,
        source: FilterError,
    },
    #[error("Trigger {trigger}: spec.subscriber: {source}")]
    Subscriber {
        trigger: ResourceKey,
        source: Box<ResolveError>,
    },
    #[error("Trigger {trigger}: annotation {DELIVERY_ORDER_ANNOTATION}: expected ordered or unordered, got {value:?}")]
    DeliveryOrder { trigger: ResourceKey, value: String },
    #[error("Trigger {trigger}: {field}.deadLetterSink: {source}")]
    DeadLetterSink {
        trigger: ResourceKey,
        field: &'static str,
        source: Box<ResolveError>,
    },
}

#[derive(Clone, Debug)]
pub struct TriggerRoute {
    pub trigger: ResourceKey,
    pub broker: ResourceKey,
    pub filter: Filter,
    pub subscriber: Url,
    pub policy: RetryPolicy,
    pub dead_letter_sink: Option<Url>,
    pub order: DeliveryOrder,
}

/// Trigger annotation choosing the delivery order, spelled as Knative's Kafka broker does.
pub const DELIVERY_ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";

/// How a Trigger's deliveries are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryOrder {
    /// Concurrent, highest throughput.
    #[default]
    Unordered,
    /// In order per `partitionkey` (events without one share a single order), while
    /// different keys progress in parallel.
    Ordered,
}

impl TriggerRoute {
    /// Resolves `trigger` against its `broker`. Delivery is the Trigger's own DeliverySpec,
    /// else the Broker's, else `default_delivery` (as Knative, a spec replaces, not merges).
    pub fn build(
        trigger: &Trigger,
        broker: &Broker,
        resolver: &Resolver,
        default_delivery: &DeliverySpec,
        default_timeout: Duration,
    ) -> Result<Self, RouteError> {
        let key = trigger.key();
        let namespace = trigger.metadata.namespace();
        let filter = Filter::compile(&trigger.spec).map_err(|source| RouteError::Filter {
            trigger: key.clone(),
            source,
        })?;
        let subscriber = resolver
            .resolve(&trigger.spec.subscriber, namespace)
            .map_err(|source| RouteError::Subscriber {
                trigger: key.clone(),
                source: Box::new(source),
            })?;
        let (delivery, field) = match (&trigger.spec.delivery, &broker.spec.delivery) {
            (Some(d), _) => (d, "spec.delivery"),
            (None, Some(d)) => (d, "Broker spec.delivery"),
            (None, None) => (default_delivery, "default delivery"),
        };
        let dead_letter_sink = delivery
            .dead_letter_sink
            .as_ref()
            .map(|d| resolver.resolve(d, namespace))
            .transpose()
            .map_err(|source| RouteError::DeadLetterSink {
                trigger: key.clone(),
                field,
                source: Box::new(source),
            })?;
        let order = match trigger
            .metadata
            .annotations
            .get(DELIVERY_ORDER_ANNOTATION)
            .map(String::as_str)
        {
            None | Some("unordered") => DeliveryOrder::Unordered,
            Some("ordered") => DeliveryOrder::Ordered,
            Some(other) => {
                return Err(RouteError::DeliveryOrder {
                    trigger: key,
                    value: other.to_string(),
                })
            }
        };
        Ok(Self {
            order,
            trigger: key,
            broker: broker.key(),
            filter,
            subscriber,
            policy: RetryPolicy::from_spec(delivery, default_timeout),
            dead_letter_sink,
        })
    }

    /// Name of this Trigger's subscription on the Broker's channel.
    pub fn subscription(&self) -> String {
        subscription_name(&self.trigger)
    }
}

/// The channel subscription of a Trigger (stable across restarts: offsets are kept under it).
pub fn subscription_name(trigger: &ResourceKey) -> String {
    format!("trigger.{}.{}", trigger.namespace, trigger.name)
}
