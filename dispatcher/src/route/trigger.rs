//! Compiles a Trigger into a [`Route`]: its filter, subscriber, delivery (the Trigger's own
//! DeliverySpec, else its Broker's, else the server default) and replies into its Broker.

use super::{DeliveryOrder, ReplyTarget, Route, RouteId, TtlHandling};
use crate::filter::{Filter, FilterError};
use crate::retry::RetryPolicy;
use herald_core::{
    Broker, DeliveryFormat, DeliverySpec, ResolveError, Resolver, ResourceKey, Trigger,
};
use std::time::Duration;

/// Trigger annotation choosing the delivery order, spelled as Knative's Kafka broker does.
pub const DELIVERY_ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";
/// Trigger annotation: `"true"` parks a copy of each dead-lettered event as well.
pub const DEAD_LETTER_COPIES_ANNOTATION: &str = "herald.dev/dead-letter-copies";
/// Trigger annotation: how long its parked events are kept (ISO-8601, e.g. `P7D`) before
/// they expire; the server's `--dlq-retention` without it.
pub const DLQ_RETENTION_ANNOTATION: &str = "herald.dev/dlq-retention";

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("Trigger {trigger}: invalid filter: {source}")]
    Filter {
        trigger: ResourceKey,
        #[source]
        source: FilterError,
    },
    #[error("Trigger {trigger}: spec.subscriber: {source}")]
    Subscriber {
        trigger: ResourceKey,
        #[source]
        source: Box<ResolveError>,
    },
    #[error("Trigger {trigger}: annotation {DELIVERY_ORDER_ANNOTATION}: expected ordered or unordered, got {value:?}")]
    DeliveryOrder { trigger: ResourceKey, value: String },
    #[error("Trigger {trigger}: annotation {DEAD_LETTER_COPIES_ANNOTATION}: expected \"true\" or \"false\", got {value:?}")]
    DeadLetterCopies { trigger: ResourceKey, value: String },
    #[error("Trigger {trigger}: annotation {DLQ_RETENTION_ANNOTATION}: {source}")]
    DlqRetention {
        trigger: ResourceKey,
        #[source]
        source: herald_core::duration::DurationError,
    },
    #[error("Trigger {trigger}: {field}.deadLetterSink: {source}")]
    DeadLetterSink {
        trigger: ResourceKey,
        field: &'static str,
        #[source]
        source: Box<ResolveError>,
    },
}

impl RouteError {
    /// A problem in the Trigger itself (refused on apply), as opposed to something it
    /// points at that may appear later (not ready until then).
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            Self::Filter { .. }
                | Self::DeliveryOrder { .. }
                | Self::DeadLetterCopies { .. }
                | Self::DlqRetention { .. }
        )
    }

    /// The field in error, for apply answers and status.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Filter { .. } => "spec.filters",
            Self::Subscriber { .. } => "spec.subscriber",
            Self::DeliveryOrder { .. }
            | Self::DeadLetterCopies { .. }
            | Self::DlqRetention { .. } => "metadata.annotations",
            Self::DeadLetterSink { .. } => "spec.delivery.deadLetterSink",
        }
    }
}

/// What a Trigger compiles into, checked before it runs: the parts that need no Broker.
pub fn check_trigger(trigger: &Trigger) -> Result<(Filter, DeliveryOrder), RouteError> {
    let key = trigger.key();
    let filter = Filter::compile(&trigger.spec).map_err(|source| RouteError::Filter {
        trigger: key.clone(),
        source,
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
    dead_letter_copies(trigger)?;
    dlq_retention(trigger)?;
    Ok((filter, order))
}

/// How long the Trigger's parked events are kept, when its annotation says.
pub fn dlq_retention(trigger: &Trigger) -> Result<Option<std::time::Duration>, RouteError> {
    trigger
        .metadata
        .annotations
        .get(DLQ_RETENTION_ANNOTATION)
        .map(|text| {
            text.parse::<herald_core::IsoDuration>()
                .map(|d| d.as_duration())
                .map_err(|source| RouteError::DlqRetention {
                    trigger: trigger.key(),
                    source,
                })
        })
        .transpose()
}

/// Whether the Trigger asks for copies of dead-lettered events.
fn dead_letter_copies(trigger: &Trigger) -> Result<bool, RouteError> {
    match trigger
        .metadata
        .annotations
        .get(DEAD_LETTER_COPIES_ANNOTATION)
        .map(String::as_str)
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(RouteError::DeadLetterCopies {
            trigger: trigger.key(),
            value: other.to_string(),
        }),
    }
}

/// Resolves `trigger` against its `broker`, replying into `reply` (the Broker's channel).
/// As in Knative, a DeliverySpec replaces the one below it whole, it does not merge.
pub fn trigger_route(
    trigger: &Trigger,
    broker: &Broker,
    resolver: &Resolver,
    default_delivery: &DeliverySpec,
    default_timeout: Duration,
    reply: ReplyTarget,
) -> Result<Route, RouteError> {
    let key = trigger.key();
    let namespace = trigger.metadata.namespace();
    let (filter, order) = check_trigger(trigger)?;
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
    Ok(Route {
        id: RouteId::trigger(key),
        filter: Some(filter),
        subscriber,
        reply,
        dead_letter_sink,
        policy: RetryPolicy::from_spec(delivery, default_timeout),
        order,
        format: delivery.format.unwrap_or(DeliveryFormat::Binary),
        ttl: TtlHandling::Broker,
        keep_dead_letters: dead_letter_copies(trigger)?,
        broker: Some(broker.key()),
        filter_type: filter_type(trigger),
        dispatch_metrics: Default::default(),
    })
}

/// Knative's `filter_type`: the `type` of the legacy attribute filter, `any` without one.
fn filter_type(trigger: &Trigger) -> String {
    trigger
        .spec
        .filter
        .as_ref()
        .and_then(|f| f.attributes.get("type"))
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| "any".into())
}
