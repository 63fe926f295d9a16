//! One broker's in-memory view of its log: offsets, byte accounting and the cursors of its
//! subscriptions, loaded from disk on open and kept in step with it by the writer, the readers,
//! acknowledgements and compaction.

use super::record;
use super::store::{Registry, StoreCore};
use crate::ack_prefix::AckPrefix;
use crate::WireEvent;
use crate::{ChannelError, ChannelName};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Everything one broker's channel, its readers, acks and the store's threads share.
pub(crate) struct ChannelShared {
    pub(crate) name: ChannelName,
    /// This broker's retention: the store's default unless the broker sets its own.
    pub(crate) retention: super::Retention,
    pub(crate) log: ::sled::Tree,
    pub(crate) core: Arc<StoreCore>,
    state: Mutex<ChannelState>,
    /// Woken when events become durable, on seek, on close and when a read chunk arrives.
    pub(crate) changed: Notify,
    /// Serialises writes of committed offsets, so an older snapshot never overwrites a newer.
    persist_lock: Mutex<()>,
    /// The store's open channels, to leave when deleted (weak: the store owns them).
    pub(crate) registry: std::sync::Weak<Mutex<HashMap<String, Arc<super::SledChannel>>>>,
}

pub(crate) struct ChannelState {
    /// Oldest retained offset; everything below it has been removed.
    pub(crate) base: u64,
    /// Next offset to assign; events below it are durable and readable.
    pub(crate) head: u64,
    /// Append time of the newest removed event (0 if none), to refuse time seeks before it.
    pub(crate) last_removed_ms: u64,
    /// Append times are kept monotonic per broker so time seeks can bisect the log.
    pub(crate) last_append_ms: u64,
    /// Bytes of the entries in `base..head`.
    pub(crate) retained_bytes: u64,
    /// Events and bytes accepted by `publish` but not yet written by the writer thread.
    pub(crate) pending_events: u64,
    pub(crate) pending_bytes: u64,
    /// Every known subscription: opened in this process or persisted by an earlier one.
    pub(crate) cursors: HashMap<String, Cursor>,
    pub(crate) closed: bool,
    /// Deleted from the store: nothing is written for it any more.
    pub(crate) deleted: bool,
    /// Source of epochs and fetch tokens, unique within this channel.
    next_id: u64,
}

pub(crate) struct Cursor {
    /// Next offset to look at for handing out.
    pub(crate) next: u64,
    /// What is settled: everything below its committed offset, and the offsets settled out
    /// of order above it (persisted too).
    pub(crate) acks: AckPrefix,
    /// What the meta tree holds for this subscription, if anything yet.
    pub(crate) persisted: Option<u64>,
    /// Bumped whenever `acks` changes; `acked_persisted` is the generation on disk. Acks
    /// above a gap are persisted too, so a crash redelivers only what is truly unacknowledged.
    pub(crate) acked_generation: u64,
    pub(crate) acked_persisted: u64,
    /// Changes on seek, so deliveries and reads from before it are recognised as stale.
    pub(crate) epoch: u64,
    /// Events read from disk, starting at `next`, not yet handed out (None: unreadable).
    pub(crate) buffer: VecDeque<(u64, Option<WireEvent>)>,
    /// Token of the reader currently filling `buffer`, so only one reads at a time.
    pub(crate) fetching: Option<u64>,
}

impl Cursor {
    fn at(offset: u64, epoch: u64, persisted: Option<u64>) -> Self {
        Self {
            next: offset,
            acks: AckPrefix::at(offset),
            persisted,
            acked_generation: 0,
            acked_persisted: 0,
            epoch,
            buffer: VecDeque::new(),
            fetching: None,
        }
    }

    /// Lowest unsettled offset: everything below it is settled.
    pub(crate) fn committed(&self) -> u64 {
        self.acks.committed().unwrap_or(self.next)
    }

    /// Records that `offset` was handed out.
    pub(crate) fn delivered(&mut self, offset: u64) {
        self.acks.delivered(offset);
    }

    pub(crate) fn settle(&mut self, offset: u64) {
        if offset < self.next {
            self.acks.settle(offset);
            self.acked_generation += 1;
        }
    }

    /// Leaves `offset` unsettled, to be handed out again when the subscription is next
    /// opened (or after a restart).
    pub(crate) fn release(&mut self, offset: u64) {
        self.acks.release(offset);
    }

    /// The subscription is opened again: what was released is handed out again.
    pub(crate) fn requeue_released(&mut self) {
        if let Some(released) = self.acks.first_released() {
            if released < self.next {
                self.next = released;
                self.buffer.clear();
            }
        }
    }

    /// Moves the subscription to `offset`, forgetting what was in flight before.
    pub(crate) fn reset(&mut self, offset: u64, epoch: u64) {
        self.next = offset;
        self.acks = AckPrefix::at(offset);
        self.acked_generation += 1;
        self.buffer.clear();
        self.epoch = epoch;
    }
}

impl ChannelState {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Lowest committed offset of all known subscriptions: nothing at or above it may go.
    pub(crate) fn low_committed(&self) -> Option<u64> {
        self.cursors.values().map(Cursor::committed).min()
    }

    /// Events written or being written that the slowest subscription has not acknowledged.
    pub(crate) fn lag(&self) -> u64 {
        let end = self.head + self.pending_events;
        self.low_committed()
            .map_or(0, |low| end.saturating_sub(low))
    }

    pub(crate) fn add_cursor(&mut self, subscription: &str) {
        if !self.cursors.contains_key(subscription) {
            let epoch = self.next_id();
            // A new subscription starts at the head, like a Trigger created after events flowed.
            let cursor = Cursor::at(self.head, epoch, None);
            self.cursors.insert(subscription.to_string(), cursor);
        }
    }
}

impl ChannelShared {
    /// Loads a broker's log and subscriptions from disk. Blocking.
    pub(crate) fn open(
        core: Arc<StoreCore>,
        channel: &ChannelName,
        retention: super::Retention,
        registry: &Registry,
    ) -> Result<Self, ::sled::Error> {
        let name = channel.as_str();
        let log = core.db.open_tree(channel.sled_log_tree())?;
        let (stored_base, last_removed_ms) = match core.meta.get(record::base_key(name))? {
            Some(v) => record::decode_base(&v).unwrap_or((0, 0)),
            None => (0, 0),
        };
        // A crash between recording a new base and removing the events below it leaves them.
        if let Some((first, _)) = log.first()? {
            if record::decode_u64(&first).is_some_and(|f| f < stored_base) {
                let mut batch = ::sled::Batch::default();
                for item in log.range(..record::offset_key(stored_base)) {
                    batch.remove(item?.0);
                }
                log.apply_batch(batch)?;
            }
        }
        let (mut head, mut last_append_ms) = (stored_base, last_removed_ms);
        if let Some((key, value)) = log.last()? {
            if let Some(last) = record::decode_u64(&key) {
                head = head.max(last + 1);
            }
            last_append_ms = last_append_ms.max(record::append_ms(&value).unwrap_or(0));
        }
        let mut retained_bytes = 0;
        for item in log.iter() {
            retained_bytes += record::entry_bytes(item?.1.len());
        }
        let mut state = ChannelState {
            base: stored_base,
            head,
            last_removed_ms,
            last_append_ms,
            retained_bytes,
            pending_events: 0,
            pending_bytes: 0,
            cursors: HashMap::new(),
            closed: false,
            deleted: false,
            next_id: 0,
        };
        let prefix = record::committed_prefix(name);
        for item in core.meta.scan_prefix(&prefix) {
            let (key, value) = item?;
            let (Some(sub), Some(committed)) = (
                key.get(prefix.len()..)
                    .and_then(|s| std::str::from_utf8(s).ok()),
                record::decode_u64(&value),
            ) else {
                tracing::warn!(
                    broker = name,
                    ?key,
                    "skipping an unreadable committed offset"
                );
                continue;
            };
            let epoch = state.next_id();
            // Clamped: offsets below the base were acknowledged; above the head were never
            // durable (only possible after a crash under SyncPolicy::Interval).
            let at = committed.clamp(stored_base, head);
            state
                .cursors
                .insert(sub.to_string(), Cursor::at(at, epoch, Some(committed)));
        }
        let prefix = record::acked_prefix(name);
        for item in core.meta.scan_prefix(&prefix) {
            let (key, value) = item?;
            let sub = key
                .get(prefix.len()..)
                .and_then(|s| std::str::from_utf8(s).ok());
            let (Some(cursor), Some(ranges)) = (
                sub.and_then(|s| state.cursors.get_mut(s)),
                record::decode_ranges(&value),
            ) else {
                tracing::warn!(broker = name, ?key, "skipping unreadable acknowledgements");
                continue;
            };
            // Only what is still above the committed offset and inside the log matters.
            let committed = cursor.committed();
            for range in ranges {
                for offset in
                    (range.start.max(committed)..range.end.min(head)).filter(|o| *o > committed)
                {
                    cursor.acks.settle(offset);
                }
            }
            cursor.acked_persisted = cursor.acked_generation;
        }
        Ok(Self {
            name: channel.clone(),
            retention,
            log,
            core,
            state: Mutex::new(state),
            changed: Notify::new(),
            persist_lock: Mutex::new(()),
            registry: Arc::downgrade(registry),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // Every update under this lock leaves the state consistent, so a panic elsewhere while
        // holding it is no reason to stop serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the committed offsets that changed since the last call, and flushes if asked.
    /// Blocking.
    pub(crate) fn persist(&self, flush: bool) -> Result<(), ::sled::Error> {
        let _serial = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dirty: Vec<(String, u64, Vec<u8>, u64)> = {
            let state = self.lock();
            if state.deleted {
                return Ok(());
            }
            state
                .cursors
                .iter()
                .filter(|(_, c)| {
                    c.persisted != Some(c.committed()) || c.acked_persisted != c.acked_generation
                })
                .map(|(s, c)| {
                    (
                        s.clone(),
                        c.committed(),
                        record::encode_ranges(&c.acks.settled_above()),
                        c.acked_generation,
                    )
                })
                .collect()
        };
        if !dirty.is_empty() {
            let mut batch = ::sled::Batch::default();
            for (sub, committed, acked, _) in &dirty {
                batch.insert(
                    record::committed_key(self.name.as_str(), sub),
                    &record::offset_key(*committed),
                );
                let key = record::acked_key(self.name.as_str(), sub);
                if acked.is_empty() {
                    batch.remove(key);
                } else {
                    batch.insert(key, acked.as_slice());
                }
            }
            self.core.meta.apply_batch(batch)?;
            let mut state = self.lock();
            for (sub, committed, _, generation) in dirty {
                if let Some(c) = state.cursors.get_mut(&sub) {
                    c.persisted = Some(committed);
                    c.acked_persisted = generation;
                }
            }
        }
        if flush {
            self.core.db.flush()?;
        }
        Ok(())
    }

    /// Forgets a subscription, on disk too. Blocking.
    pub(crate) fn remove_cursor(&self, subscription: &str) -> Result<bool, ::sled::Error> {
        let _serial = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.lock().cursors.remove(subscription).is_some();
        let stored = self
            .core
            .meta
            .remove(record::committed_key(self.name.as_str(), subscription))?
            .is_some();
        self.core
            .meta
            .remove(record::acked_key(self.name.as_str(), subscription))?;
        self.core.db.flush()?;
        self.changed.notify_waiters();
        Ok(known || stored)
    }

    /// Removes the whole log and every subscription's state from the store, and leaves the
    /// store's open channels (a later open starts an empty log). Blocking.
    pub(crate) fn delete(&self) -> Result<(), ::sled::Error> {
        {
            let mut state = self.lock();
            state.closed = true;
            state.deleted = true;
            state.cursors.clear();
        }
        self.changed.notify_waiters();
        if let Some(registry) = self.registry.upgrade() {
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(self.name.as_str());
        }
        // After the flag, under the lock: no persist writes this channel's keys again.
        let _serial = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        let _compaction = self
            .core
            .compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut batch = ::sled::Batch::default();
        let name = self.name.as_str();
        for prefix in [record::committed_prefix(name), record::acked_prefix(name)] {
            for item in self.core.meta.scan_prefix(&prefix) {
                batch.remove(item?.0);
            }
        }
        batch.remove(record::base_key(name));
        self.core.meta.apply_batch(batch)?;
        self.log.clear()?;
        self.core.db.drop_tree(self.name.sled_log_tree())?;
        self.core.db.flush()?;
        Ok(())
    }

    /// Gives back a reservation made by `publish` that the writer did not (or will not) use.
    pub(crate) fn release(&self, events: u64, bytes: u64) {
        let mut state = self.lock();
        state.pending_events = state.pending_events.saturating_sub(events);
        state.pending_bytes = state.pending_bytes.saturating_sub(bytes);
    }

    pub(crate) fn unavailable(&self, detail: impl Into<String>) -> ChannelError {
        ChannelError::unavailable(self.name.as_str(), detail, self.core.config.retry_after)
    }

    pub(crate) fn backend(&self, detail: impl Into<String>) -> ChannelError {
        ChannelError::backend(self.name.as_str(), detail)
    }
}

/// Subscription names end up in meta keys after a NUL separator, so they may not hold one.
pub(crate) fn check_name(channel: &str, what: &str, name: &str) -> Result<(), ChannelError> {
    if name.is_empty() || name.contains('\0') {
        return Err(ChannelError::backend(
            channel,
            format!("invalid {what} name {name:?}: empty or contains NUL"),
        ));
    }
    Ok(())
}
