//! The durable, embedded channel backend (the default; `sled` is its historical name, kept
//! for flags and config): every broker's events in Herald's own segment-file log on local
//! disk, so accepted events survive a restart or a crash.
//!
//! # On-disk layout
//!
//! One directory per Herald process ([`SledStore::open`]):
//!
//! - `FORMAT`: the layout version (`herald-log 1`).
//! - `channels/<broker>/` per broker (the name escaped, see `ChannelName::log_dir_name`):
//!   - `<first offset, 20 digits>.log`: segment files, records back to back, each with its
//!     length, a CRC-32, its offset and append time (see `segment`). The event bytes inside
//!     are opaque to the log; `codec` alone turns events into them and back.
//!   - `meta`: a CRC'd snapshot, replaced by atomic rename, of the base (oldest retained
//!     offset), each subscription's committed offset and the acknowledgements above it (see
//!     `meta`). Damaged or missing, it costs redelivery, never events.
//! - `parked/<broker, hex>/`: events its routes could not deliver nor dead-letter, one file
//!   each, per subscription, until redriven (see `parking`).
//!
//! # Durability and flow
//!
//! Publishes go to one writer thread which gathers every request waiting at that moment,
//! assigns offsets, appends each broker's share with one write and, per [`SyncPolicy`], one
//! `fdatasync`, and only then answers and makes the events visible to readers. On open, a
//! torn tail (a crash mid-append, never acknowledged) is cut at the last valid record.
//! Readers read chunks off the runtime. Acks are in memory; a maintenance thread snapshots
//! committed offsets every `commit_interval` (and on close) and runs retention per
//! [`Retention`], dropping whole segments below the base. Limits
//! ([`SledConfig::max_lag_events`], [`SledConfig::max_log_bytes`], the writer queue) make
//! `publish` answer `Full` instead of growing without bound; a full disk answers
//! `Unavailable` (503 with Retry-After) until space is freed, and the next append simply
//! succeeds again: a failed append is cut from the file, so nothing of it remains.
//!
//! "Open subscriptions", for retention and lag, means every subscription this store knows:
//! those opened in this process and those persisted by an earlier run, until
//! [`SledChannel::remove_subscription`] forgets one — otherwise a restart would remove
//! events of a Trigger that has not re-subscribed yet.

mod channel;
mod codec;
mod compaction;
mod config;
mod log;
mod meta;
mod parking;
mod prealloc;
mod reader;
mod seek;
mod segment;
mod shared;
mod state;
mod store;
mod tail;
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

/// The durable backend's constructor: opens the store in `section.data_dir`.
pub async fn connect(section: SledSection) -> Result<Arc<dyn Backend>, ChannelError> {
    let label = format!("durable store {}", section.data_dir.display());
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
            BackendHealth::Down("the durable store is closed".into())
        } else {
            BackendHealth::Up
        }
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn ms_to_rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| format!("{ms} ms since the epoch"))
}
