//! The durable, embedded channel backend: every broker's events in one sled database on local
//! disk, so accepted events survive a restart or a crash.
//!
//! # On-disk layout
//!
//! One sled database (a directory) per Herald process, opened by [`SledStore::open`]:
//!
//! - Tree `log\0<broker>`, one per broker: the append-only log. Key: the offset as a u64
//!   big-endian (so sled's order is log order). Value: a 9-byte header — a version byte (1) and
//!   the append time in ms since the Unix epoch as a u64 big-endian, monotonic per broker —
//!   followed by the event in CloudEvents JSON format.
//! - Tree `meta`, shared:
//!   - `format` -> u64 BE layout version (1).
//!   - `c\0<broker>\0<subscription>` -> u64 BE committed offset: everything below it is
//!     acknowledged. A restart resumes the subscription there, so anything not yet committed
//!     (in flight, mid-retry, or acknowledged out of order above a gap) is delivered again.
//!   - `b\0<broker>` -> u64 BE base (oldest retained offset) ++ u64 BE append time of the
//!     newest removed event. Written and flushed before compaction removes events, so the head
//!     recovered on open (`max(base, last key + 1)`) never reuses an offset.
//!
//! - Tree `parked\0<broker>`: events its routes could not deliver nor dead-letter, per
//!   subscription, until redriven (see [`parking`]).
//!
//! # Durability and flow
//!
//! Publishes go to one writer thread which assigns offsets and appends them in one sled batch
//! per broker, flushes per [`SyncPolicy`], and only then answers and makes the events visible
//! to readers. Readers read chunks off the runtime. Acks are in memory; a maintenance thread
//! persists committed offsets every `commit_interval` (and on close) and runs compaction per
//! [`Retention`]. Limits ([`SledConfig::max_lag_events`], [`SledConfig::max_log_bytes`], the
//! writer queue) make `publish` answer `Full` instead of growing without bound.
//!
//! "Open subscriptions", for retention and lag, means every subscription this store knows:
//! those opened in this process and those persisted by an earlier run, until
//! [`SledChannel::remove_subscription`] forgets one — otherwise a restart would compact away
//! events of a Trigger that has not re-subscribed yet.

mod channel;
mod compaction;
mod config;
mod parking;
mod reader;
mod record;
mod seek;
mod state;
mod store;
mod writer;

#[cfg(test)]
mod tests;

pub use channel::{SledChannel, SledChannelStats};
pub use config::{Retention, SledConfig, SyncPolicy};
pub use parking::SledParkingLot;
pub use store::{SledStats, SledStore};

use crate::config::SledSection;
use crate::registry::{Backend, BackendHealth, BackendKind, ChannelOptions};
use crate::{Channel, ChannelError, ChannelName};
use async_trait::async_trait;
use std::sync::Arc;

/// The sled backend's constructor: opens (recovering) the store in `section.data_dir`.
pub async fn connect(section: SledSection) -> Result<Arc<dyn Backend>, ChannelError> {
    let label = format!("sled store {}", section.data_dir.display());
    // Opening recovers the store from disk: blocking work, off the runtime.
    let store =
        tokio::task::spawn_blocking(move || SledStore::open(&section.data_dir, section.store))
            .await
            .map_err(|e| ChannelError::backend(label, "cannot open").caused_by(e))??;
    Ok(Arc::new(SledBackend(Arc::new(store))))
}

/// The store as a [`Backend`].
pub struct SledBackend(pub Arc<SledStore>);

#[async_trait]
impl Backend for SledBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sled
    }

    /// The channel with `options.retention` if given (the first open of a channel decides),
    /// else the store's.
    async fn open(
        &self,
        channel: &ChannelName,
        options: &ChannelOptions,
    ) -> Result<Arc<dyn Channel>, ChannelError> {
        let store = self.0.clone();
        let (name, retention) = (channel.clone(), options.retention);
        let opened = tokio::task::spawn_blocking(move || match retention {
            Some(r) => store.channel_with_retention(name, r),
            None => store.channel(name),
        })
        .await
        .map_err(|e| ChannelError::backend(channel.as_str(), "cannot open").caused_by(e))??;
        Ok(opened)
    }

    async fn health(&self) -> BackendHealth {
        if self.0.is_closed() {
            BackendHealth::Down("the sled store is closed".into())
        } else {
            BackendHealth::Up
        }
    }

    async fn close(&self) {
        self.0.close().await;
    }
}
