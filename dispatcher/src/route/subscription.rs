//! Compiles a Subscription (`messaging.knative.dev`) into a [`Route`]: every event of its
//! Channel goes to its subscriber, the subscriber's reply to its `reply` (dropped when it has
//! none); a Subscription with only a `reply` forwards events there as they are. Delivery is
//! the Subscription's own DeliverySpec, else its Channel's, else the server default.

use super::{DeliveryOrder, ReplyTarget, Route, RouteId, TtlHandling};
use crate::retry::RetryPolicy;
use herald_core::{
    Channel, DeliveryFormat, DeliverySpec, ResolveError, Resolver, ResourceKey, Subscription,
};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("Subscription {subscription}: {field}: {source}")]
pub struct SubscriptionRouteError {
    pub subscription: ResourceKey,
    /// `spec.subscriber`, `spec.reply` or `spec.delivery.deadLetterSink`.
    pub field: &'static str,
    #[source]
    pub source: Box<ResolveError>,
}

pub fn subscription_route(
    subscription: &Subscription,
    channel: &Channel,
    resolver: &Resolver,
    default_delivery: &DeliverySpec,
    default_timeout: Duration,
) -> Result<Route, SubscriptionRouteError> {
    let key = subscription.key();
    let namespace = subscription.metadata.namespace();
    let resolve = |dest: &herald_core::Destination, field: &'static str| {
        resolver
            .resolve(dest, namespace)
            .map_err(|source| SubscriptionRouteError {
                subscription: key.clone(),
                field,
                source: Box::new(source),
            })
    };
    let subscriber = subscription
        .spec
        .subscriber
        .as_ref()
        .map(|d| resolve(d, "spec.subscriber"))
        .transpose()?;
    let reply = subscription
        .spec
        .reply
        .as_ref()
        .map(|d| resolve(d, "spec.reply"))
        .transpose()?;
    let delivery = subscription
        .spec
        .delivery
        .as_ref()
        .or(channel.spec.delivery.as_ref())
        .unwrap_or(default_delivery);
    let dead_letter_sink = delivery
        .dead_letter_sink
        .as_ref()
        .map(|d| resolve(d, "spec.delivery.deadLetterSink"))
        .transpose()?;
    let (subscriber, reply) = match (subscriber, reply) {
        (Some(s), Some(r)) => (s, ReplyTarget::Url(r)),
        (Some(s), None) => (s, ReplyTarget::Discard),
        // Only a reply: events are forwarded there as they are.
        (None, Some(r)) => (r, ReplyTarget::Discard),
        (None, None) => {
            return Err(SubscriptionRouteError {
                subscription: key,
                field: "spec.subscriber",
                source: Box::new(ResolveError::Empty),
            })
        }
    };
    Ok(Route {
        id: RouteId::subscription(key),
        filter: None,
        subscriber,
        reply,
        dead_letter_sink,
        policy: RetryPolicy::from_spec(delivery, default_timeout),
        order: DeliveryOrder::Unordered,
        format: delivery.format.unwrap_or(DeliveryFormat::Binary),
        ttl: TtlHandling::PassThrough,
        keep_dead_letters: false,
        broker: None,
        filter_type: String::new(),
        dispatch_metrics: Default::default(),
    })
}
