//! One consumer per Trigger: reads its subscription, filters, and runs deliveries
//! concurrently (bounded), acknowledging each event once it is handled.

use crate::engine::DeliveryEngine;
use crate::route::TriggerRoute;
use cloudevents::AttributesReader;
use herald_channels::{Channel, ChannelError, Delivery, Subscription};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub struct TriggerConsumer {
    pub route: Arc<TriggerRoute>,
    pub channel: Arc<dyn Channel>,
    pub engine: DeliveryEngine,
    /// Deliveries of this Trigger in flight at once.
    pub max_in_flight: usize,
}

impl TriggerConsumer {
    /// Opens the Trigger's subscription. Done before ingress starts, so no accepted event
    /// can precede the subscription and be missed.
    pub async fn subscribe(&self) -> Result<Box<dyn Subscription>, ChannelError> {
        self.channel.subscribe(&self.route.subscription()).await
    }

    /// Runs until the channel ends the subscription (after `Channel::close`), then waits for
    /// in-flight deliveries. `abort` stops it at once (a shutdown whose drain took too long).
    pub async fn run(self, mut subscription: Box<dyn Subscription>, abort: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.max_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        loop {
            // With every slot busy on stuck deliveries, abort must still get through.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p,
                _ = abort.cancelled() => break,
            };
            let Ok(permit) = permit else {
                break;
            };
            let next = tokio::select! {
                n = subscription.next() => n,
                _ = abort.cancelled() => break,
            };
            let delivery = match next {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(trigger = %self.route.trigger, error = %e, "channel read failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_secs(1))) => continue,
                        _ = abort.cancelled() => break,
                    }
                }
            };
            if !self.route.filter.matches(&delivery.event) {
                ack(delivery, &self.route).await;
                continue;
            }
            let (route, channel, engine) = (
                self.route.clone(),
                self.channel.clone(),
                self.engine.clone(),
            );
            let span = tracing::info_span!(
                "dispatch", event.id = delivery.event.id(), broker = %route.broker, trigger = %route.trigger
            );
            tasks.spawn(
                async move {
                    let event = delivery.event.clone();
                    let disposition = engine.dispatch(&route, event, channel.as_ref()).await;
                    tracing::debug!(?disposition, "handled");
                    ack(delivery, &route).await;
                    drop(permit);
                }
                .instrument(span),
            );
            while tasks.try_join_next().is_some() {}
        }
        if abort.is_cancelled() {
            if !tasks.is_empty() {
                tracing::error!(
                    trigger = %self.route.trigger, in_flight = tasks.len(),
                    "shutdown deadline passed: abandoning in-flight deliveries (a durable channel redelivers them)"
                );
            }
            tasks.abort_all();
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn ack(delivery: Delivery, route: &TriggerRoute) {
    if let Err(e) = delivery.ack().await {
        // The event will be redelivered; at-least-once allows the duplicate.
        tracing::warn!(trigger = %route.trigger, error = %e, "acknowledgement failed");
    }
}
