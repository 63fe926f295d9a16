//! Triggers in the data plane: each ready Trigger has one consumer reading its Broker's
//! channel (see [`super::routes`]), replying into the Broker.

use super::{DataPlane, State};
use herald_core::{Check, DeliverySpec, Kind, Trigger};
use herald_dispatcher::route::{trigger_route, ReplyTarget, Route, RouteId};

/// Knative's Trigger conditions (Ready is their conjunction).
pub(super) const BROKER_READY: &str = "BrokerReady";
pub(super) const SUBSCRIBER_RESOLVED: &str = "SubscriberResolved";
pub(super) const DEAD_LETTER_SINK_RESOLVED: &str = "DeadLetterSinkResolved";
pub(super) const SUBSCRIPTION_READY: &str = "SubscriptionReady";
/// Herald's own: the filter can be evaluated.
pub(super) const FILTER_READY: &str = "FilterReady";

impl DataPlane {
    pub(super) async fn reconcile_triggers(&self, state: &mut State) {
        let keys: Vec<_> = state.triggers.keys().cloned().collect();
        for key in keys {
            let trigger = state.triggers[&key].resource.clone();
            let (checks, route) = self.plan_trigger(state, &trigger);
            let log = (Kind::Broker, trigger.broker_key());
            let uris = route.as_ref().map(|r| {
                (
                    r.subscriber.to_string(),
                    r.dead_letter_sink.as_ref().map(|u| u.to_string()),
                )
            });
            let mut running = match route {
                Some(route) => self.run_route(state, log, route).await,
                None => {
                    // Not runnable any more (e.g. its subscriber went away): pause, keeping
                    // its position, unless its Broker is merely deleted, in which case it
                    // drains what its channel still holds.
                    if state.brokers.contains_key(&log.1) {
                        state.pause(&RouteId::trigger(key.clone()));
                    }
                    Check::failed("NotRunning", "the Trigger is not ready")
                }
            };
            let entry = state.triggers.get_mut(&key).expect("listed above");
            entry.status.observed_generation = entry.generation;
            if let Some((subscriber, dls)) = uris {
                entry.status.subscriber_uri = Some(subscriber);
                entry.status.dead_letter_sink_uri = dls;
            }
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
        let channel = state.log(Kind::Broker, &broker_key);
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
        // Unknown CESQL functions parse (the TCK says so) but can never evaluate.
        let missing = herald_dispatcher::route::check_trigger(trigger)
            .map(|(f, _)| f.missing_functions())
            .unwrap_or_default();
        let filter_check = if missing.is_empty() {
            Check::Ok
        } else {
            Check::failed(
                "UnknownFunction",
                format!(
                    "spec.filters: CESQL calls {}, which no built-in provides; such a call never evaluates",
                    missing.join(", ")
                ),
            )
        };
        let mut checks = vec![
            (BROKER_READY, broker_check),
            (FILTER_READY, filter_check),
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
}
