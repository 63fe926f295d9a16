//! Subscriptions in the data plane: each ready Subscription has one consumer reading its
//! Channel (see [`super::routes`]); replies go to its `reply`.

use super::{DataPlane, State};
use herald_core::{Check, Kind, Subscription};
use herald_dispatcher::route::{subscription_route, Route, RouteId};
use serde_json::json;

/// Knative's Subscription conditions (Ready is their conjunction).
const CHANNEL_READY: &str = "ChannelReady";
const REFERENCES_RESOLVED: &str = "ReferencesResolved";
const ADDED_TO_CHANNEL: &str = "AddedToChannel";

impl DataPlane {
    pub(super) async fn reconcile_subscriptions(&self, state: &mut State) {
        let keys: Vec<_> = state.subscriptions.keys().cloned().collect();
        for key in keys {
            let subscription = state.subscriptions[&key].resource.clone();
            let (checks, route) = self.plan_subscription(state, &subscription);
            let log = (Kind::Channel, subscription.channel_key());
            let physical = route.as_ref().map(|r| {
                json!({
                    "subscriberUri": r.subscriber.as_str(),
                    "replyUri": match &r.reply {
                        herald_dispatcher::ReplyTarget::Url(u) => Some(u.to_string()),
                        _ => None,
                    },
                    "deadLetterSinkUri": r.dead_letter_sink.as_ref().map(|u| u.to_string()),
                })
            });
            let mut added = match route {
                Some(route) => self.run_route(state, log, route).await,
                None => {
                    if state.channels.contains_key(&log.1) {
                        state.pause(&RouteId::subscription(key.clone()));
                    }
                    Check::failed("NotRunning", "the Subscription is not ready")
                }
            };
            let entry = state.subscriptions.get_mut(&key).expect("listed above");
            entry.status.observed_generation = entry.generation;
            if let Some(p) = physical {
                entry.status.extra.insert("physicalSubscription".into(), p);
            }
            let mut all = checks;
            if !all.iter().all(|(_, c)| c.is_ok()) {
                added = Check::unknown("NotRunning", "waiting for the conditions above");
            }
            all.push((ADDED_TO_CHANNEL, added));
            entry.status.set_all(&all);
        }
    }

    fn plan_subscription(
        &self,
        state: &State,
        subscription: &Subscription,
    ) -> (Vec<(&'static str, Check)>, Option<Route>) {
        let namespace = subscription.metadata.namespace();
        let channel_key = subscription.channel_key();
        let channel = state.channels.get(&channel_key).map(|e| &e.resource);
        let channel_check = match (channel, state.log(Kind::Channel, &channel_key)) {
            (None, _) => Check::failed(
                "ChannelDoesNotExist",
                format!("Channel {channel_key} does not exist"),
            ),
            (Some(_), None) => Check::failed(
                "ChannelNotReady",
                format!("Channel {channel_key} has no backing channel yet; its status says why"),
            ),
            (Some(_), Some(_)) => Check::Ok,
        };
        let delivery = subscription
            .spec
            .delivery
            .as_ref()
            .or_else(|| channel.and_then(|c| c.spec.delivery.as_ref()))
            .unwrap_or(&self.config.default_delivery);
        let references = [
            subscription.spec.subscriber.as_ref(),
            subscription.spec.reply.as_ref(),
            delivery.dead_letter_sink.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|d| self.destination_check(state, d, namespace))
        .find(|c| !c.is_ok())
        .unwrap_or(Check::Ok);
        let mut checks = vec![
            (CHANNEL_READY, channel_check),
            (REFERENCES_RESOLVED, references),
        ];
        let Some(channel) = channel else {
            return (checks, None);
        };
        if !checks.iter().all(|(_, c)| c.is_ok()) {
            return (checks, None);
        }
        match subscription_route(
            subscription,
            channel,
            &self.resolver,
            &self.config.default_delivery,
            self.config.engine.default_timeout,
        ) {
            Ok(route) => (checks, Some(route)),
            Err(e) => {
                checks[1].1 = Check::failed("ResolveFailed", e.to_string());
                (checks, None)
            }
        }
    }
}
