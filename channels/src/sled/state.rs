//! One broker's in-memory view of its log: offsets, byte accounting and the cursors of its
//! subscriptions, loaded from disk on open and kept in step with it by the writer, the readers,
//! acknowledgements and compaction.

use super::record;
use super::store::StoreCore;
use crate::ChannelError;
use cloudevents::Event;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Everything one broker's channel, its readers, acks and the store's threads share.
pub(crate) struct ChannelShared {
    pub(crate) name: String,
    /// This broker's retention: the store's default unless the broker sets its own.
    pub(crate) retention: super::Retention,
    pub(crate) log: ::sled::Tree,
    pub(crate) core: Arc<StoreCore>,
    state: Mutex<ChannelState>,
    /// Woken when events become durable, on seek, on close and when a read chunk arrives.
    pub(crate) changed: Notify,
    /// Serialises writes of committed offsets, so an older snapshot never overwrites a newer.
    persist_lock: Mutex<()>,
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
    /// Source of epochs and fetch tokens, unique within this channel.
    next_id: u64,
}

pub(crate) struct Cursor {
    /// Next offset to hand out.
    pub(crate) next: u64,
    /// Lowest unacknowledged offset: everything below it is acknowledged.
    pub(crate) committed: u64,
    /// Acknowledged offsets above `committed` (acks arrive out of order).
    pub(crate) acked: BTreeSet<u64>,
    /// What the meta tree holds for this subscription, if anything yet.
    pub(crate) persisted: Option<u64>,
    /// Bumped whenever `acked` changes; `acked_persisted` is the generation on disk. Acks
    /// above a gap are persisted too, so a crash redelivers only what is truly unacknowledged.
    pub(crate) acked_generation: u64,
    pub(crate) acked_persisted: u64,
    /// Changes on seek, so deliveries and reads from before it are recognised as stale.
    pub(crate) epoch: u64,
    /// Events read from disk, starting at `next`, not yet handed out (None: unreadable).
    pub(crate) buffer: VecDeque<(u64, Option<Event>)>,
    /// Token of the reader currently filling `buffer`, so only one reads at a time.
    pub(crate) fetching: Option<u64>,
}

impl Cursor {
    fn at(offset: u64, epoch: u64, persisted: Option<u64>) -> Self {
        Self {
            next: offset,
            committed: offset,
            acked: BTreeSet::new(),
            persisted,
            acked_generation: 0,
            acked_persisted: 0,
            epoch,
            buffer: VecDeque::new(),
            fetching: None,
        }
    }

    pub(crate) fn ack(&mut self, offset: u64) {
        if offset >= self.committed && offset < self.next {
            self.acked.insert(offset);
            while self.acked.remove(&self.committed) {
                self.committed += 1;
            }
            self.acked_generation += 1;
        }
    }

    /// Moves the subscription to `offset`, forgetting what was in flight before.
    pub(crate) fn reset(&mut self, offset: u64, epoch: u64) {
        self.next = offset;
        self.committed = offset;
        self.acked.clear();
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
        self.cursors.values().map(|c| c.committed).min()
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
        name: &str,
        retention: super::Retention,
    ) -> Result<Self, ::sled::Error> {
        let log = core.db.open_tree(record::log_tree_name(name))?;
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
            for range in ranges {
                cursor.acked.extend(
                    (range.start.max(cursor.committed)..range.end.min(head))
                        .filter(|o| *o > cursor.committed),
                );
            }
            cursor.acked_persisted = cursor.acked_generation;
        }
        Ok(Self {
            name: name.to_string(),
            retention,
            log,
            core,
            state: Mutex::new(state),
            changed: Notify::new(),
            persist_lock: Mutex::new(()),
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
        let dirty: Vec<(String, u64, Vec<u8>, u64)> = self
            .lock()
            .cursors
            .iter()
            .filter(|(_, c)| {
                c.persisted != Some(c.committed) || c.acked_persisted != c.acked_generation
            })
            .map(|(s, c)| {
                (
                    s.clone(),
                    c.committed,
                    record::encode_ranges(&c.acked),
                    c.acked_generation,
                )
            })
            .collect();
        if !dirty.is_empty() {
            let mut batch = ::sled::Batch::default();
            for (sub, committed, acked, _) in &dirty {
                batch.insert(
                    record::committed_key(&self.name, sub),
                    &record::offset_key(*committed),
                );
                let key = record::acked_key(&self.name, sub);
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
            .remove(record::committed_key(&self.name, subscription))?
            .is_some();
        self.core
            .meta
            .remove(record::acked_key(&self.name, subscription))?;
        self.core.db.flush()?;
        self.changed.notify_waiters();
        Ok(known || stored)
    }

    /// Gives back a reservation made by `publish` that the writer did not (or will not) use.
    pub(crate) fn release(&self, events: u64, bytes: u64) {
        let mut state = self.lock();
        state.pending_events = state.pending_events.saturating_sub(events);
        state.pending_bytes = state.pending_bytes.saturating_sub(bytes);
    }

    pub(crate) fn unavailable(&self, detail: impl std::fmt::Display) -> ChannelError {
        ChannelError::Unavailable {
            channel: self.name.clone(),
            detail: detail.to_string(),
            retry_after: self.core.config.retry_after,
        }
    }

    pub(crate) fn backend(&self, detail: impl std::fmt::Display) -> ChannelError {
        ChannelError::Backend {
            channel: self.name.clone(),
            detail: detail.to_string(),
        }
    }
}

/// Subscription names end up in meta keys after a NUL separator, so they may not hold one.
pub(crate) fn check_name(channel: &str, what: &str, name: &str) -> Result<(), ChannelError> {
    if name.is_empty() || name.contains('\0') {
        return Err(ChannelError::Backend {
            channel: channel.to_string(),
            detail: format!("invalid {what} name {name:?}: empty or contains NUL"),
        });
    }
    Ok(())
}
