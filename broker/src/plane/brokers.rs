//! Brokers in the data plane: each applied Broker gets a channel on its backend, an address
//! and a status; a deleted Broker's (or Channel's) backend channel is deleted once no route
//! reads it.

use super::{DataPlane, LogId, State};
use crate::backends::{BackendKind, LogOwner};
use herald_channels::{Channel, MemoryParkingLot, ParkingLot};
use herald_core::status::Addressable;
use herald_core::{Check, Kind, ResourceKey};
use herald_dispatcher::Fanout;
use std::sync::Arc;

/// An open backend channel.
pub(super) struct LogEntry {
    pub channel: Arc<dyn Channel>,
    pub kind: BackendKind,
    /// Where its routes park what they cannot deliver: the channel's own durable area, or
    /// one in memory for a channel without (lost on restart).
    pub parking: Arc<dyn ParkingLot>,
    /// Offers what the channel accepts to its watchers.
    pub tap: super::tap::EventTap,
    /// A Broker's shared reader for its Triggers, when the channel is one log (memory,
    /// sled): each event is evaluated once for all of them.
    pub fanout: Option<Arc<Fanout>>,
}

/// Knative's Broker conditions that Herald reports (Ready is their conjunction).
pub(super) const ADDRESSABLE: &str = "Addressable";
pub(super) const INGRESS_READY: &str = "IngressReady";
pub(super) const TRIGGER_CHANNEL_READY: &str = "TriggerChannelReady";

impl State {
    /// Opens the backend channel of `owner` if it has none; the check says whether it has one
    /// now, on the backend it asks for.
    pub(super) async fn ensure_log(
        &mut self,
        id: LogId,
        owner: LogOwner<'_>,
        fanout_queue: usize,
    ) -> Check {
        match (self.logs.get(&id), self.backends.kind_of(owner)) {
            (_, Err(e)) => Check::failed("ChannelFailed", e.to_string()),
            (Some(open), Ok(kind)) if open.kind != kind => Check::failed(
                "ChannelChangeRefused",
                format!(
                    "its events are on the {} channel; to move it to {kind}, delete it and apply it again",
                    open.kind
                ),
            ),
            (Some(_), Ok(_)) => Check::Ok,
            (None, Ok(_)) => match self.backends.open_for(owner).await {
                Ok((kind, channel)) => {
                    tracing::info!(kind = %id.0, key = %id.1, channel = %kind, "channel ready");
                    let parking = channel
                        .parking()
                        .unwrap_or_else(|| Arc::new(MemoryParkingLot::default()));
                    let fanout = (id.0 == Kind::Broker)
                        .then(|| channel.shared_log())
                        .flatten()
                        .map(|log| Arc::new(Fanout::new(log, fanout_queue)));
                    let (channel, tap) = super::tap::wrap(
                        channel,
                        &self.stopping_watches,
                        self.recorder.clone(),
                        id.clone(),
                    );
                    self.logs.insert(
                        id,
                        LogEntry {
                            channel,
                            kind,
                            parking,
                            tap,
                            fanout,
                        },
                    );
                    Check::Ok
                }
                Err(e) => {
                    tracing::warn!(kind = %id.0, key = %id.1, error = %e, "channel not ready");
                    Check::failed("ChannelFailed", e.to_string())
                }
            },
        }
    }

    pub(super) fn log(&self, kind: Kind, key: &ResourceKey) -> Option<Arc<dyn Channel>> {
        self.logs
            .get(&(kind, key.clone()))
            .map(|l| l.channel.clone())
    }
}

impl DataPlane {
    pub(super) async fn reconcile_brokers(&self, state: &mut State) {
        let keys: Vec<_> = state.brokers.keys().cloned().collect();
        for key in keys {
            let broker = state.brokers[&key].resource.clone();
            let channel = state
                .ensure_log(
                    (Kind::Broker, key.clone()),
                    LogOwner::Broker(&broker),
                    self.fanout_queue(),
                )
                .await;
            let addressable = state.logs.contains_key(&(Kind::Broker, key.clone()));
            let entry = state.brokers.get_mut(&key).expect("listed above");
            entry.status.observed_generation = entry.generation;
            entry.status.address = addressable.then(|| Addressable {
                url: self.resolver.broker_url(&key).to_string(),
            });
            let address = if addressable {
                Check::Ok
            } else {
                Check::failed("NoChannel", "the Broker has no channel yet")
            };
            entry.status.set_all(&[
                (ADDRESSABLE, address),
                (INGRESS_READY, Check::Ok),
                (TRIGGER_CHANNEL_READY, channel),
            ]);
        }
    }

    /// Closes and deletes from its backend every channel whose Broker or Channel is gone and
    /// that no Trigger or Subscription refers to any more.
    pub(super) async fn release_logs(&self, state: &mut State) {
        let unused: Vec<LogId> = state
            .logs
            .keys()
            .filter(|(kind, key)| match kind {
                Kind::Broker => {
                    !state.brokers.contains_key(key)
                        && !state
                            .triggers
                            .values()
                            .any(|t| &t.resource.broker_key() == key)
                }
                _ => {
                    !state.channels.contains_key(key)
                        && !state
                            .subscriptions
                            .values()
                            .any(|s| &s.resource.channel_key() == key)
                }
            })
            .filter(|id| !state.consumers.values().any(|c| &c.log == *id))
            .cloned()
            .collect();
        for id in unused {
            let entry = state.logs.remove(&id).expect("listed above");
            entry.channel.close().await;
            match entry.channel.delete().await {
                Ok(()) => tracing::info!(kind = %id.0, key = %id.1, "channel deleted"),
                Err(e) => {
                    tracing::warn!(kind = %id.0, key = %id.1, error = %e, "cannot delete the channel")
                }
            }
        }
    }

    /// Reconciles again while anything is not ready (a backend that was down, a
    /// subscription that could not be opened): called periodically, so resources become
    /// ready by themselves when what they wait for comes back.
    pub async fn resync(&self) {
        let mut state = self.state.lock().await;
        if state.closed {
            return;
        }
        if state.anything_not_ready() {
            self.reconcile(&mut state).await;
        }
    }
}
