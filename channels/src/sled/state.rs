//! One broker's in-memory view of its log: offsets, byte accounting and the cursors of its
//! subscriptions, loaded from disk on open (segments and metadata snapshot) and kept in step
//! with it by the writer, the readers, acknowledgements and retention.

use super::log::Log;
use super::meta;
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
    pub(crate) log: Log,
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
    /// Seeks so far, for shared readers (see `SharedLog::moves`).
    pub(crate) moves: u64,
    /// Where subscriptions the metadata does not name start (see `meta::Snapshot`).
    pub(crate) unknown_start: Option<u64>,
    /// Base and removal time in the last snapshot written.
    persisted_base: (u64, u64),
    /// Something the cursors do not show changed (a subscription removed, metadata lost).
    meta_dirty: bool,
    /// The last snapshot was synced.
    meta_durable: bool,
    /// The newest durable events, decoded, for readers at the head.
    pub(crate) tail: super::tail::Tail,
    /// Events shared readers read from the segments (not found in `tail`).
    pub(crate) read_from_disk: u64,
}

pub(crate) struct Cursor {
    /// Next offset to look at for handing out.
    pub(crate) next: u64,
    /// What is settled: everything below its committed offset, and the offsets settled out
    /// of order above it (persisted too).
    pub(crate) acks: AckPrefix,
    /// What the metadata snapshot holds for this subscription, if anything yet.
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
            // A new subscription starts at the head, like a Trigger created after events
            // flowed, unless metadata was lost and it may be an old one.
            let start = self
                .unknown_start
                .map_or(self.head, |u| u.clamp(self.base, self.head));
            let cursor = Cursor::at(start, epoch, None);
            self.cursors.insert(subscription.to_string(), cursor);
        }
    }
}

impl ChannelShared {
    /// Loads a broker's log and subscriptions from disk, cutting a torn tail. Blocking.
    pub(crate) fn open(
        core: Arc<StoreCore>,
        channel: &ChannelName,
        retention: super::Retention,
        registry: &Registry,
    ) -> std::io::Result<Self> {
        let name = channel.as_str();
        let dir = core.channels_dir.join(channel.log_dir_name());
        std::fs::create_dir_all(&dir)?;
        let (snapshot, lost) = match meta::load(&dir) {
            meta::Loaded::Found(s) if s.name == name => (s, None),
            meta::Loaded::Found(s) => (
                meta::Snapshot::default(),
                Some(format!("it names channel {:?}", s.name)),
            ),
            meta::Loaded::Missing => (meta::Snapshot::default(), None),
            meta::Loaded::Damaged(why) => (meta::Snapshot::default(), Some(why)),
        };
        let (log, recovered) = Log::open(&dir, core.config.segment_bytes, snapshot.base)?;
        let base = snapshot.base.max(recovered.first);
        let head = snapshot.base.max(recovered.end);
        // Metadata lost while events are on disk: nobody knows which subscriptions still owe
        // them, so every subscription not named starts at the oldest, not at the head.
        let lost = lost.or_else(|| {
            (snapshot.subscriptions.is_empty() && snapshot.name.is_empty() && base < head)
                .then(|| "it is missing while the log holds events".to_string())
        });
        let unknown_start = match &lost {
            Some(why) => {
                tracing::error!(broker = name, dir = %dir.display(), reason = %why, base, head,
                    "the channel's metadata is lost: subscriptions start again at the oldest \
                     retained event (redelivering what they had acknowledged)");
                Some(base)
            }
            None => snapshot.unknown_start,
        };
        if recovered.truncated > 0 {
            tracing::warn!(
                broker = name,
                bytes = recovered.truncated,
                head,
                "recovered the log after a crash"
            );
        }
        let mut state = ChannelState {
            base,
            head,
            last_removed_ms: snapshot.last_removed_ms,
            last_append_ms: snapshot.last_removed_ms.max(recovered.last_ms.unwrap_or(0)),
            retained_bytes: log.bytes_between(base, head),
            pending_events: 0,
            pending_bytes: 0,
            cursors: HashMap::new(),
            closed: false,
            deleted: false,
            next_id: 0,
            moves: 0,
            unknown_start,
            persisted_base: (snapshot.base, snapshot.last_removed_ms),
            meta_dirty: lost.is_some(),
            meta_durable: true,
            tail: Default::default(),
            read_from_disk: 0,
        };
        for sub in snapshot.subscriptions {
            let epoch = state.next_id();
            // Clamped: offsets below the base were acknowledged; above the head were never
            // durable (only possible after a power loss under SyncPolicy::Interval).
            let at = sub.committed.clamp(base, head);
            let mut cursor = Cursor::at(at, epoch, Some(sub.committed));
            // Only what is still above the committed offset and inside the log matters.
            for range in sub.acked {
                for offset in range.start.max(at + 1)..range.end.min(head) {
                    cursor.acks.settle(offset);
                }
            }
            state.cursors.insert(sub.name, cursor);
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

    /// Writes the metadata snapshot if anything changed since the last one; with `flush`,
    /// durably (synced) even if nothing changed since a snapshot that was not. Blocking.
    pub(crate) fn persist(&self, flush: bool) -> std::io::Result<()> {
        let _serial = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (snapshot, generations) = {
            let state = self.lock();
            if state.deleted {
                return Ok(());
            }
            let dirty = state.meta_dirty
                || state.persisted_base != (state.base, state.last_removed_ms)
                || state.cursors.values().any(|c| {
                    c.persisted != Some(c.committed()) || c.acked_persisted != c.acked_generation
                });
            if !dirty && (!flush || state.meta_durable) {
                return Ok(());
            }
            let mut generations = Vec::with_capacity(state.cursors.len());
            let subscriptions = state
                .cursors
                .iter()
                .map(|(name, c)| {
                    generations.push((name.clone(), c.committed(), c.acked_generation));
                    meta::SubscriptionState {
                        name: name.clone(),
                        committed: c.committed(),
                        acked: meta::ranges(&c.acks.settled_above()),
                    }
                })
                .collect();
            let snapshot = meta::Snapshot {
                name: self.name.to_string(),
                base: state.base,
                last_removed_ms: state.last_removed_ms,
                unknown_start: state.unknown_start,
                subscriptions,
            };
            (snapshot, generations)
        };
        meta::store(self.log.dir(), &snapshot, flush)?;
        let mut state = self.lock();
        for (sub, committed, generation) in generations {
            if let Some(c) = state.cursors.get_mut(&sub) {
                c.persisted = Some(committed);
                c.acked_persisted = generation;
            }
        }
        state.persisted_base = (snapshot.base, snapshot.last_removed_ms);
        state.meta_dirty = false;
        state.meta_durable = flush;
        Ok(())
    }

    /// Forgets a subscription, on disk too. Blocking.
    pub(crate) fn remove_cursor(&self, subscription: &str) -> std::io::Result<bool> {
        let known = {
            let mut state = self.lock();
            let known = state.cursors.remove(subscription).is_some();
            state.meta_dirty |= known;
            known
        };
        self.changed.notify_waiters();
        self.persist(true)?;
        Ok(known)
    }

    /// Removes the whole log and every subscription's state from the store, and leaves the
    /// store's open channels (a later open starts an empty log). Blocking.
    pub(crate) fn delete(&self) -> std::io::Result<()> {
        {
            let mut state = self.lock();
            state.closed = true;
            state.deleted = true;
            state.cursors.clear();
            state.tail.clear();
        }
        self.changed.notify_waiters();
        if let Some(registry) = self.registry.upgrade() {
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(self.name.as_str());
        }
        // After the flag, under the locks (in the order retention takes them): no persist
        // writes this channel's metadata again, no retention pass touches its files.
        let _compaction = self
            .core
            .compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _serial = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.log.delete(&self.core.trash_path())
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

/// Names of channels and subscriptions may not be empty or hold NUL (kept from the earlier
/// layout, where they were key parts; NUL is no name anybody means).
pub(crate) fn check_name(channel: &str, what: &str, name: &str) -> Result<(), ChannelError> {
    if name.is_empty() || name.contains('\0') {
        return Err(ChannelError::backend(
            channel,
            format!("invalid {what} name {name:?}: empty or contains NUL"),
        ));
    }
    Ok(())
}
