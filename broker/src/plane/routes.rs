//! What Triggers and Subscriptions share in the data plane: one consumer per route, reading
//! its log under a route that is swapped in place when the resource changes, and the check
//! that a destination points at something that exists.

use super::{DataPlane, LogId, State};
use herald_channels::Channel;
use herald_core::{Check, Destination, Kind, Resolver, ResourceKey};
use herald_dispatcher::route::{DeliveryOrder, Route, RouteId};
use herald_dispatcher::{ConsumerControl, Fanout, RouteConsumer};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A route's running consumer.
pub(super) struct Running {
    /// The log it reads.
    pub log: LogId,
    pub channel: Arc<dyn Channel>,
    pub subscription: String,
    pub order: DeliveryOrder,
    pub route: watch::Sender<Arc<Route>>,
    /// The Broker's shared reader it is a member of, told when its filter changes.
    pub fanout: Option<Arc<Fanout>>,
    pub control: ConsumerControl,
    pub task: JoinHandle<()>,
}

impl Running {
    /// The resource was deleted: nothing more is delivered for it, in flight or not, and its
    /// subscription leaves the backend (no lag, retention no longer held back).
    pub async fn remove(self) {
        self.control.stop.cancel();
        self.control.abort.cancel();
        let _ = self.task.await;
        match self.channel.delete_subscription(&self.subscription).await {
            Ok(()) => tracing::info!(subscription = %self.subscription, "subscription deleted"),
            Err(e) => {
                tracing::warn!(subscription = %self.subscription, error = %e, "cannot delete the subscription")
            }
        }
    }

    /// Replaced or paused: stops reading now, finishes its deliveries in the background, and
    /// then deletes its subscription when `delete` (it moved to another log).
    pub fn retire(self, retiring: &mut JoinSet<()>, delete: bool) {
        self.control.stop.cancel();
        retiring.spawn(async move {
            if delete {
                self.remove().await;
            } else {
                let _ = self.task.await;
            }
        });
    }
}

impl State {
    /// Whether `kind key` is applied here (for destinations that reference it).
    pub(super) fn exists(&self, kind: Kind, key: &ResourceKey) -> bool {
        match kind {
            Kind::Broker => self.brokers.contains_key(key),
            Kind::Channel => self.channels.contains_key(key),
            Kind::Sequence => self.sequences.contains_key(key),
            Kind::Parallel => self.parallels.contains_key(key),
            Kind::EventTransform => self.transforms.contains_key(key),
            Kind::EventPolicy => self.policies.contains_key(key),
            Kind::EventType => self.event_types.contains_key(key),
            Kind::Trigger => self.triggers.contains_key(key),
            Kind::Subscription => self.subscriptions.contains_key(key),
            source => self
                .sources
                .get(&source)
                .is_some_and(|m| m.contains_key(key)),
        }
    }

    /// Pauses a route that cannot run now, keeping its position.
    pub(super) fn pause(&mut self, id: &RouteId) {
        if let Some(r) = self.consumers.remove(id) {
            r.retire(&mut self.retiring, false);
        }
    }
}

impl DataPlane {
    /// Events a Trigger may have queued by its Broker's shared reader before it is
    /// detached and reads on alone.
    pub(super) fn fanout_queue(&self) -> usize {
        (4 * self.config.max_in_flight).max(256)
    }

    /// A destination resolves when it is a URI or a ref to something applied here.
    pub(super) fn destination_check(
        &self,
        state: &State,
        dest: &Destination,
        namespace: &str,
    ) -> Check {
        if let Err(e) = self.resolver.resolve(dest, namespace) {
            return Check::failed("ResolveFailed", e.to_string());
        }
        match Resolver::target(dest, namespace) {
            Some((kind, key)) if !state.exists(kind, &key) => {
                Check::failed("ResolveFailed", format!("{kind} {key} does not exist"))
            }
            _ => Check::Ok,
        }
    }

    /// Starts the route's consumer on `log`, or hands the running one its new route.
    pub(super) async fn run_route(&self, state: &mut State, log: LogId, route: Route) -> Check {
        let id = route.id.clone();
        if let Some(r) = state.consumers.get(&id) {
            if r.log == log && r.order == route.order {
                r.route.send_replace(Arc::new(route));
                if let Some(fanout) = &r.fanout {
                    fanout.refresh();
                }
                return Check::Ok;
            }
            // Another log, or another order (which shapes the consumer): a new consumer;
            // the old one finishes what it started.
            let old = state.consumers.remove(&id).expect("present");
            let moved = old.log != log;
            old.retire(&mut state.retiring, moved);
        }
        let Some((channel, parking, fanout)) = state
            .logs
            .get(&log)
            .map(|l| (l.channel.clone(), l.parking.clone(), l.fanout.clone()))
        else {
            return Check::failed(
                "ChannelNotReady",
                format!("{} {} has no channel", log.0, log.1),
            );
        };
        let subscription = route.subscription();
        let order = route.order;
        let (tx, rx) = watch::channel(Arc::new(route));
        let consumer = RouteConsumer {
            route: rx,
            channel: channel.clone(),
            engine: self.engine.clone(),
            max_in_flight: self.config.max_in_flight,
            parking,
        };
        // A Trigger on a one-log channel reads through its Broker's shared reader.
        let fanout = fanout.filter(|_| id.kind == "Trigger");
        let opened = match &fanout {
            Some(f) => f.join(consumer.route.clone()).await,
            None => consumer.subscribe().await,
        };
        let opened = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(route = %id, error = %e, "cannot open the subscription");
                return Check::failed("SubscribeFailed", e.to_string());
            }
        };
        let control = ConsumerControl::default();
        let task = tokio::spawn(consumer.run(opened, control.clone()));
        tracing::info!(route = %id, kind = %log.0, channel = %log.1, "route ready");
        state.consumers.insert(
            id,
            Running {
                log,
                channel,
                subscription,
                order,
                route: tx,
                fanout,
                control,
                task,
            },
        );
        Check::Ok
    }
}
