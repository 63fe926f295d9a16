//! The in-memory channel: a bounded log shared by all subscriptions of one broker.
//!
//! Each subscription has a read cursor and a committed offset (everything below it is
//! acknowledged). Events are dropped from the log once every subscription has committed past
//! them, so memory is bounded by `capacity` events of the slowest subscription's backlog; past
//! that, `publish` answers [`ChannelError::Full`] instead of growing.

use crate::ack_prefix::AckPrefix;
use crate::registry::{Backend, BackendHealth, BackendKind, ChannelOptions};
use crate::shared_log::{Mark, Read, SharedLog};
use crate::WireEvent;
use crate::{
    Acknowledge, Channel, ChannelError, ChannelName, Delivery, Position, Settlement, Subscription,
};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryChannelConfig {
    /// Most events held at once (the slowest subscription's unacknowledged backlog).
    pub capacity: usize,
    /// Retry-After suggested to publishers when full.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub retry_after: Duration,
}

impl Default for MemoryChannelConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// The memory backend: channels live as long as the process, one per name.
pub struct MemoryBackend {
    config: MemoryChannelConfig,
    channels: Mutex<HashMap<ChannelName, Arc<MemoryChannel>>>,
}

/// The memory backend's constructor.
pub fn connect(config: MemoryChannelConfig) -> Arc<dyn Backend> {
    Arc::new(MemoryBackend {
        config,
        channels: Mutex::new(HashMap::new()),
    })
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    /// The same channel for the same name, unless it was closed or deleted: then a fresh one.
    async fn open(
        &self,
        channel: &ChannelName,
        _options: &ChannelOptions,
    ) -> Result<Arc<dyn Channel>, ChannelError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let open = channels
            .get(channel)
            .filter(|c| !c.shared.lock().closing)
            .cloned();
        let open = open.unwrap_or_else(|| {
            let fresh = Arc::new(MemoryChannel::new(channel.clone(), self.config.clone()));
            channels.insert(channel.clone(), fresh.clone());
            fresh
        });
        Ok(open)
    }

    async fn health(&self) -> BackendHealth {
        BackendHealth::Up
    }

    /// The last step of shutdown: what is still unhandled dies with the process, so it is
    /// counted and reported (a volatile channel has nothing to redeliver it from).
    async fn close(&self) {
        let channels: Vec<_> = {
            let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            channels.values().cloned().collect()
        };
        let mut total = 0;
        for c in channels {
            let lost = c.shared.lock().unhandled();
            if lost > 0 {
                tracing::error!(
                    channel = %c.name, lost,
                    "memory channel: {lost} accepted events were not handled by every \
                     subscription and are lost (the memory channel is volatile)"
                );
            }
            total += lost;
        }
        if total > 0 {
            tracing::error!(
                lost = total,
                "memory backend stopped: {total} accepted events lost in all"
            );
        }
    }
}

pub struct MemoryChannel {
    name: ChannelName,
    config: MemoryChannelConfig,
    shared: Arc<Shared>,
}

struct Shared {
    log: Mutex<Log>,
    /// Woken on publish, on ack while closing, and on close.
    changed: Notify,
}

#[derive(Default)]
struct Log {
    /// Offset of `events[0]`.
    base: u64,
    events: VecDeque<Arc<WireEvent>>,
    /// Looked up on every read and settlement: foldhash, not SipHash.
    subscriptions: foldhash::HashMap<String, Cursor>,
    closing: bool,
    /// Source of cursor epochs.
    epochs: u64,
    /// Seeks so far, for shared readers (see [`SharedLog::moves`]).
    moves: u64,
}

struct Cursor {
    /// Next offset to look at; offsets below it that are still due (released) are found
    /// again by moving it back.
    next: u64,
    /// What is settled; its committed offset is the subscription's position.
    acks: AckPrefix,
    /// Bumped on seek, so settlements of deliveries made before it are ignored.
    epoch: u64,
}

impl Cursor {
    fn at(offset: u64, epoch: u64) -> Self {
        Self {
            next: offset,
            acks: AckPrefix::at(offset),
            epoch,
        }
    }

    fn committed(&self) -> u64 {
        self.acks.committed().unwrap_or(self.next)
    }
}

impl Log {
    fn head(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    fn trim(&mut self) {
        let head = self.head();
        let low = self
            .subscriptions
            .values()
            .map(Cursor::committed)
            .min()
            .unwrap_or(head);
        while self.base < low && !self.events.is_empty() {
            self.events.pop_front();
            self.base += 1;
        }
        if self.events.is_empty() {
            self.base = low.max(self.base);
        }
    }

    /// Events some subscription has not settled (delivered, dead-lettered or dropped).
    fn unhandled(&self) -> usize {
        let cursors: Vec<_> = self
            .subscriptions
            .values()
            .map(|c| (c.committed(), c.acks.settled_above()))
            .collect();
        (self.base..self.head())
            .filter(|o| {
                cursors
                    .iter()
                    .any(|(committed, settled)| o >= committed && !settled.contains(o))
            })
            .count()
    }

    fn drained(&self) -> bool {
        let head = self.head();
        self.subscriptions.values().all(|c| c.committed() >= head)
    }
}

impl MemoryChannel {
    pub fn new(name: impl Into<ChannelName>, config: MemoryChannelConfig) -> Self {
        Self {
            name: name.into(),
            config,
            shared: Arc::new(Shared {
                log: Mutex::new(Log::default()),
                changed: Notify::new(),
            }),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic while holding this lock cannot leave the log half-updated in a way that
        // loses events, so poisoning is not a reason to stop serving.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Channel for MemoryChannel {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    async fn publish(&self, events: Vec<WireEvent>) -> Result<(), ChannelError> {
        {
            let mut log = self.shared.lock();
            log.trim();
            if log.events.len() + events.len() > self.config.capacity {
                return Err(ChannelError::full(
                    self.name.as_str(),
                    format!(
                        "{} events held, capacity {}",
                        log.events.len(),
                        self.config.capacity
                    ),
                    self.config.retry_after,
                ));
            }
            log.events.extend(events.into_iter().map(Arc::new));
        }
        self.shared.changed.notify_waiters();
        Ok(())
    }

    fn shared_log(&self) -> Option<Arc<dyn SharedLog>> {
        Some(self.shared.clone())
    }

    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError> {
        {
            let mut log = self.shared.lock();
            let head = log.head();
            log.epochs += 1;
            let epoch = log.epochs;
            // A new subscription starts at the head, like a Trigger created after events
            // flowed; an existing one resumes where it is, with what was released handed out
            // again.
            let cursor = log
                .subscriptions
                .entry(subscription.to_string())
                .or_insert_with(|| Cursor::at(head, epoch));
            if let Some(released) = cursor.acks.first_released() {
                cursor.next = cursor.next.min(released);
            }
        }
        self.shared.changed.notify_waiters();
        Ok(Box::new(MemoryReader {
            shared: self.shared.clone(),
            subscription: subscription.to_string(),
        }))
    }

    /// The memory channel drops events once every subscription has acknowledged them, so
    /// only positions still held (a lagging subscription's backlog) can be replayed.
    async fn lag(&self, subscription: &str) -> Option<u64> {
        let log = self.shared.lock();
        let committed = log.subscriptions.get(subscription)?.committed();
        Some(log.head().saturating_sub(committed))
    }

    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        let offset = {
            let mut log = self.shared.lock();
            let (base, head) = (log.base, log.head());
            let offset = match &position {
                Position::Offset(o) if *o >= base && *o <= head => *o,
                Position::Offset(o) if *o > head => {
                    return Err(ChannelError::PastHead {
                        channel: self.name.to_string(),
                        position: position.to_string(),
                        detail: format!("the next event will be offset {head}"),
                    })
                }
                _ => {
                    return Err(ChannelError::NotRetained {
                        channel: self.name.to_string(),
                        position: position.to_string(),
                        detail: format!(
                            "the in-memory channel keeps only unacknowledged events (offsets {base}..{head})"
                        ),
                    })
                }
            };
            log.epochs += 1;
            let epoch = log.epochs;
            let Some(cursor) = log.subscriptions.get_mut(subscription) else {
                return Err(ChannelError::backend(
                    self.name.as_str(),
                    format!("no subscription {subscription:?}"),
                ));
            };
            *cursor = Cursor::at(offset, epoch);
            log.moves += 1;
            offset
        };
        self.shared.changed.notify_waiters();
        Ok(offset)
    }

    async fn delete_subscription(&self, subscription: &str) -> Result<(), ChannelError> {
        {
            let mut log = self.shared.lock();
            log.subscriptions.remove(subscription);
            // What only it still held can go now.
            log.trim();
        }
        // Its readers find their cursor gone and end.
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn delete(&self) -> Result<(), ChannelError> {
        {
            let mut log = self.shared.lock();
            let head = log.head();
            log.subscriptions.clear();
            log.events.clear();
            log.base = head;
            log.closing = true;
        }
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_waiters();
    }
}

impl Log {
    fn mark(&self, subscription: &str) -> Option<Mark> {
        self.subscriptions.get(subscription).map(|c| Mark {
            committed: c.committed(),
            settled: c.acks.settled_above(),
            epoch: c.epoch,
        })
    }
}

#[async_trait]
impl SharedLog for Shared {
    async fn open(&self, subscription: &str) -> Result<Mark, ChannelError> {
        let mut log = self.lock();
        let head = log.head();
        if !log.subscriptions.contains_key(subscription) {
            log.epochs += 1;
            let epoch = log.epochs;
            log.subscriptions
                .insert(subscription.to_string(), Cursor::at(head, epoch));
        }
        Ok(log.mark(subscription).expect("just opened"))
    }

    fn mark(&self, subscription: &str) -> Option<Mark> {
        self.lock().mark(subscription)
    }

    fn moves(&self) -> u64 {
        self.lock().moves
    }

    async fn read(
        &self,
        from: u64,
        until: Option<u64>,
        max: usize,
        moves: u64,
    ) -> Result<Read, ChannelError> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a publish between the look and the await counts.
            notified.as_mut().enable();
            {
                let log = self.lock();
                if log.moves != moves {
                    return Ok(Read::Moved(log.moves));
                }
                let from = from.max(log.base);
                let end = until.map_or(log.head(), |u| u.min(log.head()));
                if from < end || until.is_some() {
                    let to = end.min(from + max.max(1) as u64).max(from);
                    let events = (from..to)
                        .map(|o| (o, log.events[(o - log.base) as usize].clone()))
                        .collect();
                    return Ok(Read::Events { events, end: to });
                }
                // As for subscriptions: the end only once everything is handled, since a
                // reply published by an in-flight delivery may still arrive.
                if log.closing && log.drained() {
                    return Ok(Read::End);
                }
            }
            notified.await;
        }
    }

    fn advance(&self, subscription: &str, epoch: u64, settled: Option<u64>, through: u64) -> bool {
        let closing = {
            let mut log = self.lock();
            let Some(c) = log.subscriptions.get_mut(subscription) else {
                return false;
            };
            if c.epoch != epoch {
                return false;
            }
            if let Some(offset) = settled {
                c.acks.settle(offset);
            }
            c.acks.settle_below(through);
            c.next = c.next.max(through);
            log.closing
        };
        if closing {
            // A drained channel ends its readers.
            self.changed.notify_waiters();
        }
        true
    }
}

struct MemoryReader {
    shared: Arc<Shared>,
    subscription: String,
}

#[async_trait]
impl Subscription for MemoryReader {
    async fn next(&mut self) -> Result<Option<Delivery>, ChannelError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Register for wake-ups before looking, so a publish between the look and the
            // await is not missed.
            notified.as_mut().enable();
            {
                let mut log = self.shared.lock();
                let (base, head, closing) = (log.base, log.head(), log.closing);
                let drained = log.drained();
                let Some(cursor) = log.subscriptions.get_mut(&self.subscription) else {
                    return Ok(None);
                };
                if cursor.next < base {
                    cursor.next = base;
                }
                // Skip what is settled or in flight with another reader (after a rewind to
                // a released offset).
                while cursor.next < head && !cursor.acks.is_due(cursor.next) {
                    cursor.next += 1;
                }
                if cursor.next < head {
                    let offset = cursor.next;
                    cursor.next += 1;
                    cursor.acks.delivered(offset);
                    let epoch = cursor.epoch;
                    let event = log.events[(offset - base) as usize].clone();
                    let ack = MemoryAck {
                        shared: self.shared.clone(),
                        subscription: self.subscription.clone(),
                        offset,
                        epoch,
                    };
                    return Ok(Some(Delivery::shared(event, Some(offset), Box::new(ack))));
                }
                // Only end once every subscription has acknowledged everything: a reply
                // published by another trigger's in-flight delivery may still arrive.
                if closing && drained {
                    return Ok(None);
                }
            }
            notified.await;
        }
    }
}

struct MemoryAck {
    shared: Arc<Shared>,
    subscription: String,
    offset: u64,
    epoch: u64,
}

#[async_trait]
impl Acknowledge for MemoryAck {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), ChannelError> {
        let closing = {
            let mut log = self.shared.lock();
            if let Some(c) = log.subscriptions.get_mut(&self.subscription) {
                // After a seek, settlements of earlier deliveries no longer apply.
                if c.epoch == self.epoch {
                    if how.is_handled() {
                        c.acks.settle(self.offset);
                    } else {
                        c.acks.release(self.offset);
                    }
                }
            }
            log.closing
        };
        if closing {
            self.shared.changed.notify_waiters();
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    pub(crate) fn event(id: &str) -> WireEvent {
        EventBuilderV10::new()
            .id(id)
            .source("/test")
            .ty("t")
            .build()
            .unwrap()
            .into()
    }

    fn small(capacity: usize) -> MemoryChannel {
        MemoryChannel::new(
            "test",
            MemoryChannelConfig {
                capacity,
                ..Default::default()
            },
        )
    }

    async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("no delivery within 5s")
            .unwrap()
            .expect("subscription ended")
    }

    #[tokio::test]
    async fn every_subscription_sees_every_event_in_order() {
        let ch = small(10);
        let mut a = ch.subscribe("a").await.unwrap();
        let mut b = ch.subscribe("b").await.unwrap();
        ch.publish(vec![event("1"), event("2")]).await.unwrap();
        for sub in [&mut a, &mut b] {
            let d1 = next(sub).await;
            let d2 = next(sub).await;
            assert_eq!((d1.event.id(), d2.event.id()), ("1", "2"));
            assert_eq!((d1.offset, d2.offset), (Some(0), Some(1)));
        }
    }

    #[tokio::test]
    async fn full_until_the_slowest_subscription_acknowledges() {
        let ch = small(2);
        let mut a = ch.subscribe("a").await.unwrap();
        ch.publish(vec![event("1"), event("2")]).await.unwrap();
        let err = ch.publish(vec![event("3")]).await.unwrap_err();
        assert!(matches!(err, ChannelError::Full { .. }), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        // Acknowledging out of order frees nothing until the lowest offset is acknowledged.
        let d1 = next(&mut a).await;
        let d2 = next(&mut a).await;
        d2.ack().await.unwrap();
        assert!(ch.publish(vec![event("3")]).await.is_err());
        d1.ack().await.unwrap();
        ch.publish(vec![event("3"), event("4")]).await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_is_all_or_nothing() {
        let ch = small(2);
        let _a = ch.subscribe("a").await.unwrap();
        assert!(ch
            .publish(vec![event("1"), event("2"), event("3")])
            .await
            .is_err());
        ch.publish(vec![event("1"), event("2")]).await.unwrap();
    }

    #[tokio::test]
    async fn close_ends_subscriptions_only_after_everything_is_acknowledged() {
        let ch = Arc::new(small(10));
        let mut a = ch.subscribe("a").await.unwrap();
        ch.publish(vec![event("1")]).await.unwrap();
        ch.close().await;
        let d = next(&mut a).await;
        // Unacknowledged: the reader must keep waiting rather than end.
        let waiting = tokio::time::timeout(Duration::from_millis(50), a.next()).await;
        assert!(
            waiting.is_err(),
            "ended before the in-flight event was acknowledged"
        );
        // A reply published while closing is still handed out.
        ch.publish(vec![event("reply")]).await.unwrap();
        d.ack().await.unwrap();
        let r = next(&mut a).await;
        assert_eq!(r.event.id(), "reply");
        r.ack().await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn readers_of_one_subscription_share_its_events() {
        let ch = small(10);
        let mut r1 = ch.subscribe("a").await.unwrap();
        let mut r2 = ch.subscribe("a").await.unwrap();
        ch.publish(vec![event("1"), event("2")]).await.unwrap();
        let d1 = next(&mut r1).await;
        let d2 = next(&mut r2).await;
        assert_ne!(d1.event.id(), d2.event.id());
    }

    #[tokio::test]
    async fn a_subscription_opened_while_events_flow_starts_at_the_head() {
        let ch = small(100);
        let mut a = ch.subscribe("a").await.unwrap();
        ch.publish(vec![event("before")]).await.unwrap();
        let mut late = ch.subscribe("late").await.unwrap();
        ch.publish(vec![event("after")]).await.unwrap();
        assert_eq!(next(&mut late).await.event.id(), "after");
        assert_eq!(next(&mut a).await.event.id(), "before");
        assert_eq!(next(&mut a).await.event.id(), "after");
    }

    #[tokio::test]
    async fn a_released_event_comes_again_when_the_subscription_is_reopened() {
        let ch = small(100);
        let mut a = ch.subscribe("a").await.unwrap();
        ch.publish(vec![event("1"), event("2"), event("3")])
            .await
            .unwrap();
        let d1 = next(&mut a).await;
        let d2 = next(&mut a).await;
        let d3 = next(&mut a).await;
        d1.settle(Settlement::Dropped).await.unwrap();
        d2.settle(Settlement::Released).await.unwrap();
        d3.settle(Settlement::DeadLettered).await.unwrap();
        // Held back: the released event is still owed, so the log keeps it.
        assert_eq!(ch.shared.lock().subscriptions["a"].committed(), 1);
        drop(a);
        let mut again = ch.subscribe("a").await.unwrap();
        let d = next(&mut again).await;
        assert_eq!(d.event.id(), "2");
        d.ack().await.unwrap();
        assert_eq!(ch.shared.lock().subscriptions["a"].committed(), 3);
        ch.publish(vec![event("4")]).await.unwrap();
        assert_eq!(next(&mut again).await.event.id(), "4", "nothing else again");
    }

    #[tokio::test]
    async fn a_deleted_subscription_ends_its_readers_and_holds_nothing_back() {
        let ch = small(2);
        let mut gone = ch.subscribe("gone").await.unwrap();
        let _kept = ch.subscribe("kept").await.unwrap();
        ch.publish(vec![event("1")]).await.unwrap();
        ch.delete_subscription("gone").await.unwrap();
        ch.delete_subscription("gone").await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), gone.next())
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_none());
        // Reopened: a fresh subscription at the head.
        let mut fresh = ch.subscribe("gone").await.unwrap();
        ch.publish(vec![event("2")]).await.unwrap();
        assert_eq!(next(&mut fresh).await.event.id(), "2");
    }

    #[tokio::test]
    async fn a_deleted_channel_ends_its_readers_and_the_backend_opens_a_fresh_one() {
        let backend = connect(MemoryChannelConfig::default());
        let name = ChannelName::from("ns/b");
        let ch = backend
            .open(&name, &ChannelOptions::default())
            .await
            .unwrap();
        let mut a = ch.subscribe("a").await.unwrap();
        ch.publish(vec![event("1")]).await.unwrap();
        ch.close().await;
        ch.delete().await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_none());
        let fresh = backend
            .open(&name, &ChannelOptions::default())
            .await
            .unwrap();
        let mut a = fresh.subscribe("a").await.unwrap();
        fresh.publish(vec![event("2")]).await.unwrap();
        assert_eq!(next(&mut a).await.event.id(), "2");
    }
}
