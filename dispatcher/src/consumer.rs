//! One consumer per Trigger: reads its subscription, filters, and runs deliveries
//! concurrently (bounded), acknowledging each event once it is handled. An ordered Trigger
//! runs its deliveries in lanes chosen by `partitionkey`: sequential within a lane, lanes in
//! parallel, so each key keeps its order.

use crate::engine::DeliveryEngine;
use crate::route::{DeliveryOrder, TriggerRoute};
use cloudevents::AttributesReader;
use herald_channels::{Acknowledge, Channel, ChannelError, Delivery, Subscription};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
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
        let lanes =
            (self.route.order == DeliveryOrder::Ordered).then(|| self.start_lanes(&mut tasks));
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
                ack(delivery.into_parts().1, &self.route).await;
                continue;
            }
            match &lanes {
                Some(lanes) => {
                    let lane = &lanes[lane_of(&delivery.event, lanes.len())];
                    if lane.send((delivery, permit)).await.is_err() {
                        break;
                    }
                }
                None => {
                    let (route, channel, engine) = (
                        self.route.clone(),
                        self.channel.clone(),
                        self.engine.clone(),
                    );
                    tasks.spawn(async move {
                        handle(&route, channel.as_ref(), &engine, delivery).await;
                        drop(permit);
                    });
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        // Closing the lanes lets each finish what it holds, in order.
        drop(lanes);
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

impl TriggerConsumer {
    /// One sequential worker per in-flight slot; each handles its events in arrival order.
    fn start_lanes(
        &self,
        tasks: &mut JoinSet<()>,
    ) -> Vec<mpsc::Sender<(Delivery, OwnedSemaphorePermit)>> {
        (0..self.max_in_flight.max(1))
            .map(|_| {
                let (tx, mut rx) =
                    mpsc::channel::<(Delivery, OwnedSemaphorePermit)>(self.max_in_flight.max(1));
                let (route, channel, engine) = (
                    self.route.clone(),
                    self.channel.clone(),
                    self.engine.clone(),
                );
                tasks.spawn(async move {
                    while let Some((delivery, permit)) = rx.recv().await {
                        handle(&route, channel.as_ref(), &engine, delivery).await;
                        drop(permit);
                    }
                });
                tx
            })
            .collect()
    }
}

/// The lane of an event: by `partitionkey`, so equal keys share a lane (and an order).
fn lane_of(event: &cloudevents::Event, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    event
        .extension("partitionkey")
        .map(|k| k.to_string())
        .unwrap_or_default()
        .hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

/// Delivers one event (with retries, dead-lettering, replies) and acknowledges it.
async fn handle(
    route: &TriggerRoute,
    channel: &dyn Channel,
    engine: &DeliveryEngine,
    delivery: Delivery,
) {
    let span = tracing::info_span!(
        "dispatch", event.id = delivery.event.id(), broker = %route.broker, trigger = %route.trigger
    );
    async {
        let (event, acknowledge) = delivery.into_parts();
        let disposition = engine.dispatch(route, event, channel).await;
        tracing::debug!(?disposition, "handled");
        ack(acknowledge, route).await;
    }
    .instrument(span)
    .await
}

async fn ack(acknowledge: Box<dyn Acknowledge>, route: &TriggerRoute) {
    if let Err(e) = acknowledge.ack().await {
        // The event will be redelivered; at-least-once allows the duplicate.
        tracing::warn!(trigger = %route.trigger, error = %e, "acknowledgement failed");
    }
}
