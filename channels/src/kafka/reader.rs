//! One reader of a subscription: a member of the Trigger's consumer group with its own
//! consumer. It hands out records as deliveries, tracks their acknowledgements per partition
//! and commits the acknowledged prefix — periodically, when partitions are revoked, and when
//! it ends. Unacknowledged records are redelivered to whoever owns their partition next.
//!
//! Group membership needs polling: rebalances progress only while some `next()` call is
//! waiting (as with any Kafka consumer), so a reader that stops calling `next()` for longer
//! than `max.poll.interval.ms` is taken out of the group and its partitions move on.

use super::acks::{Acks, DeliveryTag};
use super::blocking::detached;
use super::{codec, KafkaConfig};
use crate::WireEvent;
use crate::{Acknowledge, ChannelError, Delivery, Settlement, Subscription};
use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type GroupConsumer = StreamConsumer<ReaderContext>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state behind these locks is updated in single steps; a panic elsewhere cannot
    // leave it half-changed, so poisoning is not a reason to stop reading.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The readers of one subscription opened from one channel, for seek to stop and restart.
pub(crate) struct SubscriptionReaders {
    /// Cancelled when the subscription (or its channel) is deleted or closed: its readers end.
    pub(crate) ended: CancellationToken,
    /// Held for reading while a reader creates its consumer, for writing while a seek moves
    /// the group's offsets: no consumer joins the group in between and reads the old ones.
    pub(crate) seek_lock: tokio::sync::RwLock<()>,
    readers: Mutex<Vec<Weak<ReaderShared>>>,
}

impl SubscriptionReaders {
    pub(crate) fn new(ended: CancellationToken) -> Self {
        Self {
            ended,
            seek_lock: tokio::sync::RwLock::new(()),
            readers: Mutex::new(Vec::new()),
        }
    }

    /// Takes every reader's consumer away (it leaves the group without committing anything
    /// more) and returns signals that fire once each has left.
    pub(crate) fn retire_all(&self) -> Vec<oneshot::Receiver<()>> {
        let mut readers = lock(&self.readers);
        readers.retain(|r| r.strong_count() > 0);
        readers
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|r| r.retire())
            .collect()
    }

    /// The partitions each live reader is assigned.
    pub(crate) fn assignments(&self) -> Vec<Vec<i32>> {
        lock(&self.readers)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|r| lock(&r.acks).assignment())
            .collect()
    }
}

/// What a reader shares with its consumer's callbacks, its deliveries' acks and seek.
pub(crate) struct ReaderShared {
    acks: Arc<Mutex<Acks>>,
    slot: Mutex<Slot>,
    /// Wakes the reader when seek took its consumer.
    retired: Notify,
}

#[derive(Default)]
struct Slot {
    consumer: Option<Arc<ConsumerHandle>>,
    left: Option<oneshot::Receiver<()>>,
}

impl ReaderShared {
    fn retire(&self) -> Option<oneshot::Receiver<()>> {
        let (consumer, left) = {
            let mut slot = lock(&self.slot);
            // Cleared under the slot lock: no commit from this consumer can follow.
            lock(&self.acks).clear();
            (slot.consumer.take(), slot.left.take())
        };
        self.retired.notify_one();
        drop(consumer);
        left
    }
}

/// Group consumers not yet closed, in the whole process, and a wake-up as each closes: a
/// stopping Herald waits for them ([`consumers_closed`]), else its exit would cut their
/// close short, so the group would neither get their last commit nor hear them leave (and
/// the next process would wait out their session timeout, or, on a coordinator that loses
/// track of members, never be assigned their partitions).
static OPEN_CONSUMERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static CONSUMER_CLOSED: Notify = Notify::const_new();

/// Waits up to `timeout` until every group consumer created so far has committed and left
/// its group; whether they all did.
pub(crate) async fn consumers_closed(timeout: std::time::Duration) -> bool {
    use std::sync::atomic::Ordering;
    tokio::time::timeout(timeout, async {
        loop {
            let closed = CONSUMER_CLOSED.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if OPEN_CONSUMERS.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    })
    .await
    .is_ok()
}

/// A consumer that, when the last reference goes, commits what is acknowledged and leaves the
/// group on a thread of its own: librdkafka's close waits for the coordinator.
struct ConsumerHandle {
    consumer: Option<GroupConsumer>,
    acks: Arc<Mutex<Acks>>,
    topic: String,
    left: Option<oneshot::Sender<()>>,
}

impl ConsumerHandle {
    /// Counted among the open consumers until its close has run.
    fn new(
        consumer: GroupConsumer,
        acks: Arc<Mutex<Acks>>,
        topic: String,
        left: oneshot::Sender<()>,
    ) -> Self {
        OPEN_CONSUMERS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self {
            consumer: Some(consumer),
            acks,
            topic,
            left: Some(left),
        }
    }

    fn consumer(&self) -> &GroupConsumer {
        self.consumer.as_ref().expect("present until dropped")
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let acks = self.acks.clone();
        let topic = self.topic.clone();
        let left = self.left.take();
        let close = move || {
            let commits = lock(&acks).take_commits(None);
            if !commits.is_empty() {
                // Not a synchronous commit: that waits forever for an unreachable
                // coordinator. Closing waits for outstanding commits, within its own bounds.
                if let Err(e) = commit(&consumer, &topic, &commits, CommitMode::Async) {
                    tracing::warn!(%topic, error = %e, "final commit failed; those events will be redelivered");
                }
            }
            drop(consumer);
            if let Some(left) = left {
                let _ = left.send(());
            }
            OPEN_CONSUMERS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            CONSUMER_CLOSED.notify_waiters();
        };
        detached(close);
    }
}

fn commit<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    offsets: &[(i32, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, mode)
}

/// Rebalance and commit callbacks of a reader's consumer.
struct ReaderContext {
    acks: Arc<Mutex<Acks>>,
    topic: String,
    group: String,
}

impl ClientContext for ReaderContext {}

impl ConsumerContext for ReaderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                let mut acks = lock(&self.acks);
                // The acknowledged prefix is the new owner's starting point; anything owed
                // beyond it is redelivered there.
                let commits = acks.take_commits(Some(&partitions));
                if !commits.is_empty() {
                    if let Err(e) = commit(consumer, &self.topic, &commits, CommitMode::Async) {
                        tracing::warn!(group = %self.group, error = %e, "commit on revoke failed");
                    }
                }
                acks.revoke(&partitions);
                tracing::debug!(group = %self.group, ?partitions, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                lock(&self.acks).assign(&partitions);
                tracing::debug!(group = %self.group, ?partitions, "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.group, error = %e, "offset commit failed; retrying");
            let mut acks = lock(&self.acks);
            for element in offsets.elements_for_topic(&self.topic) {
                if let Offset::Offset(o) = element.offset() {
                    acks.commit_failed(element.partition(), o);
                }
            }
        }
    }
}

pub(crate) struct KafkaReader {
    channel: String,
    topic: String,
    group: String,
    config: Arc<KafkaConfig>,
    shared: Arc<ReaderShared>,
    readers: Arc<SubscriptionReaders>,
    closed: CancellationToken,
    last_commit: Instant,
}

/// What one wait in `next` ended with.
enum Woken {
    Closed,
    Retired,
    CommitDue,
    /// Boxed: an event is large, and most wake-ups carry none.
    Record(Box<Record>),
    Failed(KafkaError),
}

struct Record {
    partition: i32,
    offset: i64,
    event: Result<WireEvent, String>,
}

impl KafkaReader {
    pub(crate) fn new(
        channel: &str,
        topic: &str,
        group: &str,
        config: Arc<KafkaConfig>,
        readers: Arc<SubscriptionReaders>,
        closed: CancellationToken,
    ) -> Self {
        let shared = Arc::new(ReaderShared {
            acks: Arc::new(Mutex::new(Acks::default())),
            slot: Mutex::new(Slot::default()),
            retired: Notify::new(),
        });
        lock(&readers.readers).push(Arc::downgrade(&shared));
        Self {
            channel: channel.to_string(),
            topic: topic.to_string(),
            group: group.to_string(),
            config,
            shared,
            readers,
            closed,
            last_commit: Instant::now(),
        }
    }

    fn unavailable(&self, detail: String, e: KafkaError) -> ChannelError {
        ChannelError::unavailable(self.channel.as_str(), detail, self.config.retry_after)
            .caused_by(e)
    }

    /// The reader's consumer, created (and joined to the group) if it has none: at the
    /// start, and after a seek took it.
    async fn consumer(&self) -> Result<Arc<ConsumerHandle>, ChannelError> {
        if let Some(c) = lock(&self.shared.slot).consumer.clone() {
            return Ok(c);
        }
        let _no_seek = self.readers.seek_lock.read().await;
        let context = ReaderContext {
            acks: self.shared.acks.clone(),
            topic: self.topic.clone(),
            group: self.group.clone(),
        };
        let consumer: GroupConsumer = self
            .config
            .consumer_config(&self.group)
            .create_with_context(context)
            .map_err(|e| self.unavailable(format!("cannot create consumer {}", self.group), e))?;
        let (left_tx, left_rx) = oneshot::channel();
        // Wrapped at once, so even a consumer that fails to subscribe is closed off the
        // runtime.
        let handle = Arc::new(ConsumerHandle::new(
            consumer,
            self.shared.acks.clone(),
            self.topic.clone(),
            left_tx,
        ));
        handle
            .consumer()
            .subscribe(&[&self.topic])
            .map_err(|e| self.unavailable(format!("cannot subscribe to {}", self.topic), e))?;
        let mut slot = lock(&self.shared.slot);
        lock(&self.shared.acks).clear();
        slot.consumer = Some(handle.clone());
        slot.left = Some(left_rx);
        Ok(handle)
    }

    /// Commits the acknowledged prefix, unless seek has taken this consumer meanwhile.
    fn commit(&mut self, consumer: &Arc<ConsumerHandle>) {
        self.last_commit = Instant::now();
        let slot = lock(&self.shared.slot);
        if !slot
            .consumer
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, consumer))
        {
            return;
        }
        let commits = lock(&self.shared.acks).take_commits(None);
        if commits.is_empty() {
            return;
        }
        if let Err(e) = commit(
            consumer.consumer(),
            &self.topic,
            &commits,
            CommitMode::Async,
        ) {
            tracing::warn!(group = %self.group, error = %e, "offset commit failed; retrying");
            let mut acks = lock(&self.shared.acks);
            for (p, o) in commits {
                acks.commit_failed(p, o);
            }
        }
    }

    async fn wait(&self, consumer: &ConsumerHandle) -> Woken {
        let commit_at = self.last_commit + self.config.commit_interval;
        tokio::select! {
            biased;
            _ = self.closed.cancelled() => Woken::Closed,
            _ = self.shared.retired.notified() => Woken::Retired,
            _ = tokio::time::sleep_until(commit_at) => Woken::CommitDue,
            message = consumer.consumer().recv() => match message {
                Ok(m) => Woken::Record(Box::new(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    event: codec::decode(&m),
                })),
                Err(e) => Woken::Failed(e),
            },
        }
    }
}

#[async_trait]
impl Subscription for KafkaReader {
    async fn next(&mut self) -> Result<Option<Delivery>, ChannelError> {
        loop {
            if self.closed.is_cancelled() {
                // Durable: what is not acknowledged yet is redelivered after a restart, so
                // end at once. Later acknowledgements are committed when the reader drops.
                let current = lock(&self.shared.slot).consumer.clone();
                if let Some(consumer) = current {
                    self.commit(&consumer);
                }
                return Ok(None);
            }
            let consumer = self.consumer().await?;
            if self.last_commit.elapsed() >= self.config.commit_interval {
                self.commit(&consumer);
            }
            let record = match self.wait(&consumer).await {
                Woken::Closed | Woken::Retired => continue,
                Woken::CommitDue => {
                    self.commit(&consumer);
                    continue;
                }
                Woken::Failed(KafkaError::MessageConsumptionFatal(code)) => {
                    // This consumer is done for: the next call starts a new one.
                    let dead = lock(&self.shared.slot).consumer.take();
                    drop(dead);
                    return Err(self.unavailable(
                        format!("reading {}", self.topic),
                        KafkaError::MessageConsumptionFatal(code),
                    ));
                }
                Woken::Failed(e) => {
                    // Informational (a lost connection, a broker restarting): librdkafka
                    // recovers by itself, and the reader keeps waiting as it would for
                    // any event.
                    tracing::warn!(group = %self.group, error = %e, "Kafka consumer error");
                    continue;
                }
                Woken::Record(r) => r,
            };
            let tag = lock(&self.shared.acks).delivered(record.partition, record.offset);
            match record.event {
                Ok(event) => {
                    let ack = KafkaAck {
                        acks: self.shared.acks.clone(),
                        tag,
                    };
                    let offset = u64::try_from(record.offset).ok();
                    return Ok(Some(Delivery::new(event, offset, Box::new(ack))));
                }
                Err(e) => {
                    // Not a CloudEvent (another producer wrote to the topic): skip it for
                    // good rather than redeliver it forever.
                    tracing::error!(
                        channel = %self.channel, partition = record.partition,
                        offset = record.offset, error = %e,
                        "skipping a record that is not a CloudEvent"
                    );
                    lock(&self.shared.acks).ack(tag);
                }
            }
        }
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // The handle commits the acknowledged prefix and leaves the group off the runtime.
        let consumer = lock(&self.shared.slot).consumer.take();
        drop(consumer);
    }
}

/// Acknowledges one delivery: it joins its partition's acknowledged set, and the next commit
/// covers it once everything before it is acknowledged too.
struct KafkaAck {
    acks: Arc<Mutex<Acks>>,
    tag: DeliveryTag,
}

#[async_trait]
impl Acknowledge for KafkaAck {
    /// Released stays unacknowledged: the partition's commit stays below it, and it is
    /// delivered again when the partition is next assigned.
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), ChannelError> {
        let mut acks = lock(&self.acks);
        let current = if how.is_handled() {
            acks.ack(self.tag)
        } else {
            acks.release(self.tag)
        };
        if !current {
            // The partition moved to another reader (rebalance) or was reset (seek); the
            // event is redelivered there, as at-least-once allows.
            tracing::debug!(
                partition = self.tag.partition,
                offset = self.tag.offset,
                "acknowledgement after the partition was revoked; it will be redelivered"
            );
        }
        Ok(())
    }
}
