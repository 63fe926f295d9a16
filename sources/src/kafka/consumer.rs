//! The running KafkaSource: one librdkafka group member subscribed to the topics. Records go
//! to the sink through a worker per partition (ordered) or a task each, up to
//! [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) (unordered); accepted records move the partition's
//! committable offset ([`Offsets`]), committed every [`COMMIT_INTERVAL`], when partitions
//! are revoked, and on shutdown. librdkafka's blocking calls (metadata, close) stay off the
//! runtime.

use super::event::{wrap, KafkaRecord};
use super::offsets::{Offsets, Partition, Tag};
use super::{Kafka, MAX_IN_FLIGHT};
use crate::{SourceContext, SourceError};
use herald_channels::kafka::codec;
use herald_channels::WireEvent;
use herald_core::{Check, InitialOffset, Ordering};
use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often accepted offsets are committed; a shorter interval means fewer redeliveries
/// after a crash.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// How long an event the sink refused (and no dead-letter sink took) waits to be tried again.
const REFUSED_PAUSE: Duration = Duration::from_secs(1);
/// Longest wait for the brokers' metadata when starting.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the consumer to commit and leave the group on shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Records of one partition read ahead of the one being sent (ordered).
const PARTITION_QUEUE: usize = 16;

type Group = StreamConsumer<GroupContext>;

fn lock(m: &Mutex<Offsets>) -> MutexGuard<'_, Offsets> {
    // Offsets change in single steps; a panic elsewhere cannot leave them half-changed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One record's trip to the sink.
struct Job {
    tag: Tag,
    event: WireEvent,
    /// Cancelled on shutdown or when the partition is revoked.
    stop: CancellationToken,
}

pub(super) async fn run(k: &Kafka, ctx: &SourceContext) -> Result<(), SourceError> {
    let offsets = Arc::new(Mutex::new(Offsets::new(ctx.shutdown.clone())));
    let consumer = match connect(k, ctx, &offsets).await {
        Ok(c) => c,
        Err(why) => {
            ctx.report(Check::failed("ConnectionFailed", why.clone()));
            return Err(SourceError::Kafka(why));
        }
    };
    ctx.report(Check::Ok);
    tracing::info!(source = %ctx.key, group = %k.group, topics = ?k.topics, "KafkaSource consuming");
    let tasks = TaskTracker::new();
    let result = read(k, ctx, &consumer, &offsets, &tasks).await;
    // Finish the events in hand; what is still queued is not accepted and so not committed.
    tasks.close();
    tasks.wait().await;
    commit(&*consumer, &offsets, None);
    lock(&offsets).revoke_all();
    close(consumer).await;
    result
}

async fn connect(
    k: &Kafka,
    ctx: &SourceContext,
    offsets: &Arc<Mutex<Offsets>>,
) -> Result<Arc<Group>, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &k.bootstrap_servers)
        .set("client.id", "herald-kafkasource")
        .set("group.id", &k.group)
        // Herald commits, and only what the sink accepted.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match k.initial_offset {
                InitialOffset::Earliest => "earliest",
                InitialOffset::Latest => "latest",
            },
        )
        .set("enable.partition.eof", "false")
        // librdkafka's reconnect chatter stays out of Herald's logs unless asked for.
        .set("log_level", "4");
    let context = GroupContext {
        offsets: offsets.clone(),
        group: k.group.clone(),
    };
    let consumer: Group = config
        .create_with_context(context)
        .map_err(|e| format!("cannot create consumer group {}: {e}", k.group))?;
    let consumer = Arc::new(consumer);
    let topics = k.topics.clone();
    let probe = consumer.clone();
    let checked = tokio::select! {
        r = tokio::task::spawn_blocking(move || check_topics(&probe, &topics)) => r,
        _ = ctx.shutdown.cancelled() => Ok(Ok(())),
    };
    let checked = checked.unwrap_or_else(|e| Err(e.to_string()));
    if let Err(why) = checked {
        close(consumer).await;
        return Err(why);
    }
    let topics: Vec<&str> = k.topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        close(consumer).await;
        return Err(format!("cannot subscribe to {topics:?}: {e}"));
    }
    Ok(consumer)
}

/// The brokers answer and know every topic (a typo'd topic would otherwise read nothing,
/// silently).
fn check_topics(consumer: &Group, topics: &[String]) -> Result<(), String> {
    for (i, topic) in topics.iter().enumerate() {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| format!("cannot reach the Kafka brokers: {e}"))?;
        let known = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !known {
            return Err(format!("spec.topics[{i}]: topic {topic:?} does not exist"));
        }
    }
    Ok(())
}

/// Reads records and hands them out until shutdown.
async fn read(
    k: &Kafka,
    ctx: &SourceContext,
    consumer: &Arc<Group>,
    offsets: &Arc<Mutex<Offsets>>,
    tasks: &TaskTracker,
) -> Result<(), SourceError> {
    let mut tick = tokio::time::interval(COMMIT_INTERVAL);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Ordered: each partition's worker and the token that ends it.
    let mut workers: HashMap<Partition, (CancellationToken, mpsc::Sender<Job>)> = HashMap::new();
    loop {
        let message = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                commit(&**consumer, offsets, None);
                continue;
            }
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code)) => {
                return Err(SourceError::Kafka(format!("consumer failed: {code}")));
            }
            Err(e) => {
                // A lost connection or a broker restarting: librdkafka recovers by itself.
                tracing::warn!(source = %ctx.key, error = %e, "Kafka consumer error");
                continue;
            }
        };
        let partition: Partition = (message.topic().to_string(), message.partition());
        let event = to_event(k, &message);
        tracing::debug!(source = %ctx.key, topic = %partition.0, partition = partition.1, offset = message.offset(), id = event.id(), "record read");
        let (tag, stop) = lock(offsets).read(&partition, message.offset());
        drop(message);
        let job = Job { tag, event, stop };
        match k.ordering {
            Ordering::Ordered => {
                let fresh = workers
                    .get(&partition)
                    .is_none_or(|(stop, tx)| stop.is_cancelled() || tx.is_closed());
                if fresh {
                    let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
                    tasks.spawn(ordered_worker(rx, ctx.sink.clone(), offsets.clone()));
                    workers.insert(partition.clone(), (job.stop.clone(), tx));
                }
                let tx = workers[&partition].1.clone();
                // Waiting for room, while still committing what is accepted meanwhile.
                let slot = loop {
                    tokio::select! {
                        biased;
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        _ = tick.tick() => commit(&**consumer, offsets, None),
                        s = tx.reserve() => break s,
                    }
                };
                match slot {
                    Ok(slot) => slot.send(job),
                    // The worker ended (its partition was revoked): the record is the next
                    // owner's to send.
                    Err(_) => continue,
                }
            }
            Ordering::Unordered => {
                let permit = loop {
                    tokio::select! {
                        biased;
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        _ = tick.tick() => commit(&**consumer, offsets, None),
                        p = permits.clone().acquire_owned() => break p,
                    }
                };
                let Ok(permit) = permit else { return Ok(()) };
                let (sink, offsets) = (ctx.sink.clone(), offsets.clone());
                tasks.spawn(async move {
                    deliver(job, &sink, &offsets).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Sends a partition's records one at a time, in order, until its partition is revoked or
/// the source stops.
async fn ordered_worker(
    mut jobs: mpsc::Receiver<Job>,
    sink: crate::Sink,
    offsets: Arc<Mutex<Offsets>>,
) {
    while let Some(job) = jobs.recv().await {
        if job.stop.is_cancelled() {
            return;
        }
        deliver(job, &sink, &offsets).await;
    }
}

/// Sends one record's event until the sink accepts it (or the job is stopped), then marks it
/// committable.
async fn deliver(job: Job, sink: &crate::Sink, offsets: &Mutex<Offsets>) {
    let id = job.event.id().to_string();
    match sink
        .send_until_accepted(job.event, REFUSED_PAUSE, &job.stop)
        .await
    {
        Some(_) => {
            if !lock(offsets).accepted(&job.tag) {
                tracing::debug!(%id, "accepted after its partition was revoked; the next owner sends it again");
            }
        }
        None => tracing::debug!(%id, "stopped before the sink accepted it; it will be read again"),
    }
}

/// A record as an event: the CloudEvent it holds, or the record wrapped.
fn to_event(k: &Kafka, m: &BorrowedMessage<'_>) -> WireEvent {
    let headers: Vec<(&str, Option<&[u8]>)> = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let is_cloudevent = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("ce_specversion")
            || (name.eq_ignore_ascii_case("content-type")
                && value.is_some_and(|v| v.starts_with(b"application/cloudevents")))
    });
    if is_cloudevent {
        match codec::decode(m) {
            Ok(e) => return e,
            Err(e) => tracing::warn!(
                topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e,
                "record claims to be a CloudEvent but is not one; wrapped"
            ),
        }
    }
    wrap(
        &k.source_base,
        &KafkaRecord {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key(),
            headers,
            value: m.payload(),
        },
    )
}

/// Commits what is committable (of `only` these partitions), without waiting: the answer
/// comes to [`GroupContext::commit_callback`].
fn commit<C: Consumer<GroupContext>>(
    consumer: &C,
    offsets: &Mutex<Offsets>,
    only: Option<&[Partition]>,
) {
    let commits = lock(offsets).to_commit(only);
    if commits.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &commits {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(%topic, partition, error = %e, "cannot commit this offset");
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::warn!(error = %e, "offset commit failed; trying again");
        let mut o = lock(offsets);
        for (p, offset) in &commits {
            o.commit_failed(p, *offset);
        }
    }
}

/// Closes the consumer (it commits what is pending and leaves the group) on a thread of its
/// own: librdkafka's close waits for the group coordinator, for ever when it is unreachable.
async fn close(consumer: Arc<Group>) {
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("herald-kafkasource-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done_tx.send(());
        });
    if spawned.is_ok() && tokio::time::timeout(CLOSE_TIMEOUT, done).await.is_err() {
        tracing::warn!("the Kafka consumer did not leave its group in time; it will time out");
    }
}

/// The group member's callbacks: commit and let go of revoked partitions, retry failed
/// commits.
struct GroupContext {
    offsets: Arc<Mutex<Offsets>>,
    group: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<Partition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                // The accepted prefix is where the next owner starts; records beyond it that
                // are in flight here are sent again there.
                commit(consumer, &self.offsets, Some(&partitions));
                lock(&self.offsets).revoke(&partitions);
                tracing::debug!(group = %self.group, ?partitions, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                tracing::debug!(group = %self.group, partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.group, error = %e, "offset commit failed; trying again");
            let mut o = lock(&self.offsets);
            for e in offsets.elements() {
                if let Offset::Offset(offset) = e.offset() {
                    o.commit_failed(&(e.topic().to_string(), e.partition()), offset);
                }
            }
        }
    }
}
