//! Triggers in the data plane: each ready Trigger has one consumer reading its Broker's
//! channel under a route that is swapped in place when the Trigger changes.

use super::{DataPlane, State};
use herald_channels::Channel;
use herald_core::{Check, DeliverySpec, Destination, Kind, ResourceKey, Trigger};
use herald_dispatcher::route::{trigger_route, DeliveryOrder, ReplyTarget, Route};
use herald_dispatcher::{ConsumerControl, RouteConsumer};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Knative's Trigger conditions (Ready is their conjunction).
pub(super) const BROKER_READY: &str = "BrokerReady";
pub(super) const SUBSCRIBER_RESOLVED: &str = "SubscriberResolved";
pub(super) const DEAD_LETTER_SINK_RESOLVED: &str = "DeadLetterSinkResolved";
pub(super) const SUBSCRIPTION_READY: &str = "SubscriptionReady";

/// A Trigger's running consumer.
pub(super) struct Running {
    pub broker: ResourceKey,
    pub channel: Arc<dyn Channel>,
    pub subscription: String,
    pub order: DeliveryOrder,
    pub route: watch::Sender<Arc<Route>>,
    pub control: ConsumerControl,
    pub task: JoinHandle<()>,
}

impl Running {
    /// The Trigger was deleted: nothing more is delivered for it, in flight or not, and its
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
    /// then deletes its subscription when `delete` (the Trigger moved to another Broker).
    fn retire(self, retiring: &mut JoinSet<()>, delete: bool) {
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

impl DataPlane {
    pub(super) async fn reconcile_triggers(&self, state: &mut State) {
        let keys: Vec<_> = state.triggers.keys().cloned().collect();
        for key in keys {
            let trigger = state.triggers[&key].resource.clone();
            let (checks, route) = self.plan_trigger(state, &trigger);
            let mut running = match route {
                Some(route) => self.run_trigger(state, &key, route).await,
                None => {
                    // Not runnable any more (e.g. its subscriber went away): pause, keeping
                    // its position, unless its Broker is merely deleted, in which case it
                    // drains what its channel still holds.
                    let broker_gone = !state.brokers.contains_key(&trigger.broker_key());
                    if !broker_gone {
                        if let Some(r) = state.consumers.remove(&key) {
                            r.retire(&mut state.retiring, false);
                        }
                    }
                    Check::failed("NotRunning", "the Trigger is not ready")
                }
            };
            let entry = state.triggers.get_mut(&key).expect("listed above");
            entry.status.observed_generation = entry.generation;
            let mut all = checks;
            if !all.iter().all(|(_, c)| c.is_ok()) {
                running = Check::unknown("NotRunning", "waiting for the conditions above");
            }
            all.push((SUBSCRIPTION_READY, running));
            entry.status.set_all(&all);
        }
    }

    /// The Trigger's conditions, and its route when they all hold.
    fn plan_trigger(
        &self,
        state: &State,
        trigger: &Trigger,
    ) -> (Vec<(&'static str, Check)>, Option<Route>) {
        let namespace = trigger.metadata.namespace();
        let broker_key = trigger.broker_key();
        let broker = state.brokers.get(&broker_key).map(|e| &e.resource);
        let channel = state.channels.get(&broker_key).map(|c| c.channel.clone());
        let broker_check = match (broker, &channel) {
            (None, _) => Check::failed(
                "BrokerDoesNotExist",
                format!("Broker {broker_key} does not exist"),
            ),
            (Some(_), None) => Check::failed(
                "BrokerNotReady",
                format!("Broker {broker_key} has no channel yet; its status says why"),
            ),
            (Some(_), Some(_)) => Check::Ok,
        };
        let delivery: Option<&DeliverySpec> = trigger
            .spec
            .delivery
            .as_ref()
            .or_else(|| broker.and_then(|b| b.spec.delivery.as_ref()))
            .or(Some(&self.config.default_delivery));
        let subscriber = self.destination_check(state, &trigger.spec.subscriber, namespace);
        let dls = match delivery.and_then(|d| d.dead_letter_sink.as_ref()) {
            Some(d) => self.destination_check(state, d, namespace),
            None => Check::Ok,
        };
        let mut checks = vec![
            (BROKER_READY, broker_check),
            (SUBSCRIBER_RESOLVED, subscriber),
            (DEAD_LETTER_SINK_RESOLVED, dls),
        ];
        let (Some(broker), Some(channel)) = (broker, channel) else {
            return (checks, None);
        };
        if !checks.iter().all(|(_, c)| c.is_ok()) {
            return (checks, None);
        }
        match trigger_route(
            trigger,
            broker,
            &self.resolver,
            &self.config.default_delivery,
            self.config.engine.default_timeout,
            ReplyTarget::Channel(channel),
        ) {
            Ok(route) => (checks, Some(route)),
            Err(e) => {
                let field = match e.field() {
                    "spec.subscriber" => SUBSCRIBER_RESOLVED,
                    "spec.delivery.deadLetterSink" => DEAD_LETTER_SINK_RESOLVED,
                    _ => BROKER_READY,
                };
                if let Some(slot) = checks.iter_mut().find(|(k, _)| *k == field) {
                    slot.1 = Check::failed("ResolveFailed", e.to_string());
                }
                (checks, None)
            }
        }
    }

    /// A destination resolves when it is a URI or a ref to a Broker that exists here.
    fn destination_check(&self, state: &State, dest: &Destination, namespace: &str) -> Check {
        if let Err(e) = self.resolver.resolve(dest, namespace) {
            return Check::failed("ResolveFailed", e.to_string());
        }
        match &dest.reference {
            Some(r) => {
                let key = ResourceKey::new(r.namespace.as_deref().unwrap_or(namespace), &r.name);
                if state.brokers.contains_key(&key) {
                    Check::Ok
                } else {
                    Check::failed(
                        "ResolveFailed",
                        format!("{} {key} does not exist", Kind::Broker),
                    )
                }
            }
            None => Check::Ok,
        }
    }

    /// Starts the Trigger's consumer, or hands the running one its new route.
    async fn run_trigger(&self, state: &mut State, key: &ResourceKey, route: Route) -> Check {
        let broker = state.triggers[key].resource.broker_key();
        if let Some(r) = state.consumers.get(key) {
            if r.broker == broker && r.order == route.order {
                r.route.send_replace(Arc::new(route));
                return Check::Ok;
            }
            // Another Broker, or another order (which shapes the consumer): a new consumer;
            // the old one finishes what it started.
            let old = state.consumers.remove(key).expect("present");
            let moved = old.broker != broker;
            old.retire(&mut state.retiring, moved);
        }
        let channel = state.channels[&broker].channel.clone();
        let subscription = route.subscription();
        let order = route.order;
        let (tx, rx) = watch::channel(Arc::new(route));
        let consumer = RouteConsumer {
            route: rx,
            channel: channel.clone(),
            engine: self.engine.clone(),
            max_in_flight: self.config.max_in_flight,
        };
        let opened = match consumer.subscribe().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(trigger = %key, error = %e, "cannot open the subscription");
                return Check::failed("SubscribeFailed", e.to_string());
            }
        };
        let control = ConsumerControl::default();
        let task = tokio::spawn(consumer.run(opened, control.clone()));
        tracing::info!(trigger = %key, %broker, "trigger ready");
        state.consumers.insert(
            key.clone(),
            Running {
                broker,
                channel,
                subscription,
                order,
                route: tx,
                control,
                task,
            },
        );
        Check::Ok
    }
}
