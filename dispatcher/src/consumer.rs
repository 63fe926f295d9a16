//! One consumer per route: reads its subscription, filters, and runs deliveries concurrently
//! (bounded), settling each event once it is handled. An ordered route runs its deliveries in
//! lanes chosen by `partitionkey`: sequential within a lane, lanes in parallel, so each key
//! keeps its order.
//!
//! The route is read from a `watch` for every event, so a changed Trigger (filter,
//! subscriber, delivery) applies to the next event while deliveries already started finish
//! under the spec they started with, and the subscription keeps its position.

use crate::cancellation::Cancellation;
use crate::engine::DeliveryEngine;
use crate::engine::Disposition;
use crate::route::{DeliveryOrder, Route};
use herald_channels::{
    Acknowledge, Channel, ChannelError, Delivery, Parking, ParkingLot, Settlement, Subscription,
};
use herald_core::metrics::Histogram;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub struct RouteConsumer {
    /// The current route; a new value applies from the next event on.
    pub route: watch::Receiver<Arc<Route>>,
    pub channel: Arc<dyn Channel>,
    pub engine: DeliveryEngine,
    /// Deliveries of this route in flight at once.
    pub max_in_flight: usize,
    /// Where events that cannot be delivered nor dead-lettered are kept (the channel's).
    pub parking: Arc<dyn ParkingLot>,
}

/// When a consumer ends.
#[derive(Clone, Debug, Default)]
pub struct ConsumerControl {
    /// Stop reading; deliveries in flight finish (the route was removed or replaced).
    pub stop: CancellationToken,
    /// Abandon deliveries in flight too (a shutdown whose drain took too long).
    pub abort: CancellationToken,
}

impl RouteConsumer {
    /// Opens the route's subscription. Done before the consumer is announced, so no event
    /// accepted after that can precede the subscription and be missed.
    pub async fn subscribe(&self) -> Result<Box<dyn Subscription>, ChannelError> {
        let name = self.route.borrow().subscription();
        self.channel.subscribe(&name).await
    }

    fn current(&self) -> Arc<Route> {
        self.route.borrow().clone()
    }

    /// Runs until the channel ends the subscription (after `Channel::close`) or `stop`, then
    /// waits for in-flight deliveries; `abort` ends it at once.
    pub async fn run(self, mut subscription: Box<dyn Subscription>, control: ConsumerControl) {
        let ConsumerControl { stop, abort } = control;
        let permits = Arc::new(Semaphore::new(self.max_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        let lanes = (self.current().order == DeliveryOrder::Ordered)
            .then(|| self.start_lanes(&mut tasks, &abort));
        let mut processing = ProcessingHistogram::default();
        // Made once, and cheap to poll again: both are polled before every read.
        let mut aborted = Cancellation::new(abort.clone());
        let mut stopped = Cancellation::new(stop.clone());
        loop {
            // With every slot busy on stuck deliveries, abort must still get through.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p,
                _ = &mut aborted => break,
                _ = &mut stopped => break,
            };
            let Ok(permit) = permit else {
                break;
            };
            let next = tokio::select! {
                biased;
                _ = &mut aborted => break,
                _ = &mut stopped => break,
                n = subscription.next() => n,
            };
            let delivery = match next {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(route = %self.current().id, error = %e, "channel read failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_secs(1))) => continue,
                        _ = &mut aborted => break,
                        _ = &mut stopped => break,
                    }
                }
            };
            let route = self.current();
            let filtering = std::time::Instant::now();
            let accepted = route.accepts(&delivery.event);
            if let Some(histogram) = processing.for_route(&route, &self.engine) {
                histogram.observe(herald_core::metrics::millis(filtering.elapsed()));
            }
            if !accepted {
                let offset = delivery.offset;
                settle(delivery.into_parts().1, Settlement::Dropped, &route, offset).await;
                continue;
            }
            match &lanes {
                Some(lanes) => {
                    let lane = &lanes[lane_of(&delivery.event, lanes.len())];
                    if lane.send((route, delivery, permit)).await.is_err() {
                        break;
                    }
                }
                None => {
                    let (engine, abort) = (self.engine.clone(), abort.clone());
                    let parking = self.parking.clone();
                    tasks.spawn(async move {
                        handle(&route, &engine, parking.as_ref(), delivery, &abort).await;
                        drop(permit);
                    });
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        // Closing the lanes lets each finish what it holds, in order.
        drop(lanes);
        if abort.is_cancelled() && !tasks.is_empty() {
            tracing::error!(
                route = %self.current().id, in_flight = tasks.len(),
                "abandoning in-flight deliveries: released for redelivery (a durable channel redelivers them)"
            );
            // Each abandoned delivery is released at once; a backend that cannot even take
            // that (it is down) does not get to hold shutdown up.
            let released = tokio::time::timeout(RELEASE_GRACE, async {
                while tasks.join_next().await.is_some() {}
            });
            if released.await.is_err() {
                tasks.abort_all();
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The route's `event_processing_latencies` histogram, looked up again only when the route
/// changes (the labels are four strings: building and hashing them per event costs more
/// than the filter).
#[derive(Default)]
struct ProcessingHistogram {
    route: Option<Arc<Route>>,
    histogram: Option<Histogram>,
}

impl ProcessingHistogram {
    fn for_route(&mut self, route: &Arc<Route>, engine: &DeliveryEngine) -> Option<&Histogram> {
        if !self.route.as_ref().is_some_and(|r| Arc::ptr_eq(r, route)) {
            let latencies = &engine.metrics().filter.event_processing_latencies;
            self.histogram = route
                .processing_labels()
                .map(|labels| latencies.get_or_create(&labels).clone());
            self.route = Some(route.clone());
        }
        self.histogram.as_ref()
    }
}

/// One event handed to an ordered lane, with the route it was read under.
type LaneItem = (Arc<Route>, Delivery, OwnedSemaphorePermit);

impl RouteConsumer {
    /// One sequential worker per in-flight slot; each handles its events in arrival order.
    fn start_lanes(
        &self,
        tasks: &mut JoinSet<()>,
        abort: &CancellationToken,
    ) -> Vec<mpsc::Sender<LaneItem>> {
        (0..self.max_in_flight.max(1))
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<LaneItem>(self.max_in_flight.max(1));
                let (engine, abort) = (self.engine.clone(), abort.clone());
                let parking = self.parking.clone();
                tasks.spawn(async move {
                    while let Some((route, delivery, permit)) = rx.recv().await {
                        handle(&route, &engine, parking.as_ref(), delivery, &abort).await;
                        drop(permit);
                    }
                });
                tx
            })
            .collect()
    }
}

/// The lane of an event: by `partitionkey`, so equal keys share a lane (and an order).
fn lane_of(event: &herald_channels::WireEvent, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    event
        .extension("partitionkey")
        .map(|k| k.to_string())
        .unwrap_or_default()
        .hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

/// How long abandoned deliveries get to be released before their tasks are dropped.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

/// Delivers one event (with retries, dead-lettering, replies) and settles it; abandoned
/// (`abort`) it is released, so the backend hands it out again (NATS: at once, elsewhere).
/// An undeliverable event is parked first and acknowledged only once it is.
async fn handle(
    route: &Route,
    engine: &DeliveryEngine,
    parking: &dyn ParkingLot,
    delivery: Delivery,
    abort: &CancellationToken,
) {
    // Debug: at info, creating it (its fields formatted for the log) and entering it at each
    // poll cost 9% of an event's instructions. What is logged above debug on the way names
    // the route and the event itself.
    let span = tracing::debug_span!(
        "dispatch", event.id = delivery.event.id(), offset = delivery.offset, route = %route.id
    );
    let offset = delivery.offset;
    async {
        let (event, acknowledge) = delivery.into_parts();
        let how = tokio::select! {
            // Boxed: the dispatch (retries, the HTTP exchange) is a large future, which would
            // otherwise be copied into every spawned task and moved at each await above it.
            disposition = Box::pin(engine.dispatch(route, event)) => {
                tracing::debug!(disposition = disposition.name(), "handled");
                match disposition {
                    Disposition::Delivered => Settlement::Delivered,
                    Disposition::DeadLettered(copy) => {
                        if let Some(copy) = copy {
                            // A copy: the event itself reached the sink, so a failure here
                            // loses nothing and does not hold the event back.
                            park(route, engine, parking, *copy).await;
                        }
                        Settlement::DeadLettered
                    }
                    Disposition::Undeliverable(parked) => {
                        if park(route, engine, parking, *parked).await {
                            Settlement::DeadLettered
                        } else {
                            // Not kept anywhere yet: the channel hands it out again.
                            Settlement::Released
                        }
                    }
                }
            }
            _ = abort.cancelled() => Settlement::Released,
        };
        settle(acknowledge, how, route, offset).await;
    }
    .instrument(span)
    .await
}

/// Parks `parking` for the route; whether it is kept.
async fn park(
    route: &Route,
    engine: &DeliveryEngine,
    lot: &dyn ParkingLot,
    parking: Parking,
) -> bool {
    let why = parking.why;
    let event_id = parking.event.id().to_string();
    match lot.park(&route.subscription(), parking).await {
        Ok(id) => {
            let parked = &engine.metrics().herald.parked;
            parked.get_or_create(&route.metric_labels()).inc();
            tracing::warn!(route = %route.id, event.id = event_id, parked = id, %why, durable = lot.durable(), "event parked: `herald dlq list` shows it, `herald dlq redrive` re-sends it");
            true
        }
        Err(e) => {
            tracing::error!(route = %route.id, event.id = event_id, %why, error = %e, "cannot park the event");
            false
        }
    }
}

async fn settle(
    acknowledge: Box<dyn Acknowledge>,
    how: Settlement,
    route: &Route,
    offset: Option<u64>,
) {
    if let Err(e) = acknowledge.settle(how).await {
        // The event will be redelivered; at-least-once allows the duplicate.
        tracing::warn!(route = %route.id, ?offset, error = %e, "settling a delivery failed");
    }
}
