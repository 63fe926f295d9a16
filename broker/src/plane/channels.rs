//! Channels (`messaging.knative.dev`) in the data plane: each gets a backend channel (the
//! kind of its template picks the backend), an address like a Broker's ingress, and a status.

use super::brokers::ADDRESSABLE;
use super::{DataPlane, State};
use crate::backends::LogOwner;
use herald_core::status::Addressable;
use herald_core::{Check, Kind};

/// Knative's Channel condition for its backing channel.
const BACKING_CHANNEL_READY: &str = "BackingChannelReady";

impl DataPlane {
    pub(super) async fn reconcile_channels(&self, state: &mut State) {
        let keys: Vec<_> = state.channels.keys().cloned().collect();
        for key in keys {
            let channel = state.channels[&key].resource.clone();
            let backing = state
                .ensure_log(
                    (Kind::Channel, key.clone()),
                    LogOwner::Channel(&channel),
                    self.fanout_queue(),
                )
                .await;
            let open = state.logs.contains_key(&(Kind::Channel, key.clone()));
            let entry = state.channels.get_mut(&key).expect("listed above");
            entry.status.observed_generation = entry.generation;
            entry.status.address = open.then(|| Addressable {
                url: self.resolver.channel_url(&key).to_string(),
            });
            let address = if open {
                Check::Ok
            } else {
                Check::failed("NoChannel", "the Channel has no backing channel yet")
            };
            entry
                .status
                .set_all(&[(BACKING_CHANNEL_READY, backing), (ADDRESSABLE, address)]);
        }
    }
}
