//! Brokers in the data plane: each applied Broker gets a channel on its backend, an address
//! and a status; channels of deleted Brokers are deleted once no Trigger reads them.

use super::{DataPlane, State};
use crate::backends::BackendKind;
use herald_channels::Channel;
use herald_core::status::Addressable;
use herald_core::Check;
use std::sync::Arc;

/// A Broker's open channel.
pub(super) struct ChannelEntry {
    pub channel: Arc<dyn Channel>,
    pub kind: BackendKind,
}

/// Knative's Broker conditions that Herald reports (Ready is their conjunction).
pub(super) const ADDRESSABLE: &str = "Addressable";
pub(super) const INGRESS_READY: &str = "IngressReady";
pub(super) const TRIGGER_CHANNEL_READY: &str = "TriggerChannelReady";

impl DataPlane {
    pub(super) async fn reconcile_brokers(&self, state: &mut State) {
        let keys: Vec<_> = state.brokers.keys().cloned().collect();
        for key in keys {
            let broker = state.brokers[&key].resource.clone();
            let channel = match (state.channels.get(&key), state.backends.kind_for(&broker)) {
                (_, Err(e)) => Check::failed("ChannelFailed", e.to_string()),
                (Some(open), Ok(kind)) if open.kind != kind => Check::failed(
                    "ChannelChangeRefused",
                    format!(
                        "the Broker's events are on the {} channel; to move it to {kind}, delete the Broker and apply it again",
                        open.kind
                    ),
                ),
                (Some(_), Ok(_)) => Check::Ok,
                (None, Ok(_)) => match state.backends.open(&broker).await {
                    Ok((kind, channel)) => {
                        tracing::info!(broker = %key, channel = %kind, "broker ready");
                        state.channels.insert(key.clone(), ChannelEntry { channel, kind });
                        Check::Ok
                    }
                    Err(e) => {
                        tracing::warn!(broker = %key, error = %e, "broker not ready");
                        Check::failed("ChannelFailed", e.to_string())
                    }
                },
            };
            let addressable = state.channels.contains_key(&key);
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

    /// Closes and deletes from its backend every channel whose Broker is gone and that no
    /// Trigger refers to any more.
    pub(super) async fn release_channels(&self, state: &mut State) {
        let unused: Vec<_> = state
            .channels
            .keys()
            .filter(|k| !state.brokers.contains_key(*k))
            .filter(|k| {
                !state
                    .triggers
                    .values()
                    .any(|t| &t.resource.broker_key() == *k)
                    && !state.consumers.values().any(|c| &c.broker == *k)
            })
            .cloned()
            .collect();
        for key in unused {
            let entry = state.channels.remove(&key).expect("listed above");
            entry.channel.close().await;
            match entry.channel.delete().await {
                Ok(()) => tracing::info!(broker = %key, "channel deleted"),
                Err(e) => tracing::warn!(broker = %key, error = %e, "cannot delete the channel"),
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
        let waiting = state.brokers.values().any(|e| !e.status.is_ready())
            || state.triggers.values().any(|e| !e.status.is_ready());
        if waiting {
            self.reconcile(&mut state).await;
        }
    }
}
