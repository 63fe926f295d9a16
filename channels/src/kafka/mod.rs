//! The Kafka channel: one topic per Broker (`<prefix>.<namespace>.<broker>`), one consumer
//! group per Trigger. Events are records in the CloudEvents Kafka binding (binary mode,
//! `ce_*` headers), keyed by their `partitionkey` extension so one key keeps its order. Every
//! Herald replica that opens a subscription joins the same group, so replicas share the
//! Trigger's partitions; a reader commits a partition's offset only up to the first event
//! not yet delivered or dead-lettered, and whatever is uncommitted when a partition moves
//! (rebalance, crash) is delivered again by its next owner — at-least-once.
//!
//! Offsets are per partition: a [`Delivery`](crate::Delivery)'s offset is its record's
//! offset within its partition, and [`Position::Offset`] is applied to every partition.

mod acks;
mod blocking;
mod circuit;
pub mod codec;
mod config;
mod lag;
mod offsets;
mod parking;
mod producer;
mod reader;
mod seek;

pub use crate::kafka_config::KafkaConfig;

use crate::backlog::BacklogGate;
use crate::name::kafka_group;
use crate::registry::{Backend, BackendHealth, BackendKind, ChannelOptions};
use crate::WireEvent;
use crate::{Channel, ChannelError, ChannelName, ParkingLot, Position, Subscription};
use async_trait::async_trait;
use blocking::{blocking, bounded, OffRuntime};
use circuit::Circuit;
use offsets::GroupOffsets;
use parking::KafkaParkingLot;
use producer::{publish_error, ProducerSlot};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use reader::{KafkaReader, SubscriptionReaders};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The Kafka backend's constructor.
pub async fn connect(config: KafkaConfig) -> Result<Arc<dyn Backend>, ChannelError> {
    Ok(Arc::new(KafkaBackend::connect(config).await?))
}

/// A connection to a Kafka cluster, from which each Broker's channel is opened.
#[derive(Clone)]
pub struct KafkaBackend {
    config: Arc<KafkaConfig>,
    admin: Arc<OffRuntime<AdminClient<DefaultClientContext>>>,
    producer: Arc<ProducerSlot>,
    /// Channels opened through [`Backend::open`], shared: seek coordinates one channel's
    /// readers.
    opened: Arc<Mutex<HashMap<ChannelName, Arc<KafkaChannel>>>>,
}

#[async_trait]
impl Backend for KafkaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kafka
    }

    /// The same channel for the same name, unless it was closed or deleted.
    async fn open(
        &self,
        channel: &ChannelName,
        _options: &ChannelOptions,
    ) -> Result<Arc<dyn Channel>, ChannelError> {
        let cached = self
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .filter(|c| !c.closed.is_cancelled())
            .cloned();
        if let Some(open) = cached {
            return Ok(open);
        }
        let fresh = self.channel(channel).await?;
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone(), fresh.clone());
        Ok(fresh)
    }

    async fn health(&self) -> BackendHealth {
        match self.reachable(HEALTH_TIMEOUT).await {
            Ok(()) => BackendHealth::Up,
            Err(e) => BackendHealth::Down(format!(
                "Kafka at {} does not answer: {e}",
                self.config.bootstrap_servers
            )),
        }
    }

    /// After every channel closed and every delivery settled: their consumers commit and
    /// leave their groups before Herald exits (bounded by the request timeout).
    async fn close(&self) {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if !reader::consumers_closed(self.config.request_timeout).await {
            tracing::warn!(
                "Kafka consumers did not leave their groups in time; the next start waits out their session timeout"
            );
        }
    }
}

/// How long a readiness probe waits for Kafka's metadata.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl KafkaBackend {
    /// Creates the clients and checks that the cluster answers; later connection losses are
    /// retried by librdkafka in the background.
    pub async fn connect(config: KafkaConfig) -> Result<Self, ChannelError> {
        let config = Arc::new(config);
        let unavailable = |detail: &str, e: KafkaError| {
            ChannelError::unavailable(config.bootstrap_servers.clone(), detail, config.retry_after)
                .caused_by(e)
        };
        let admin: AdminClient<DefaultClientContext> = config
            .admin_config()
            .create()
            .map_err(|e| unavailable("cannot create the Kafka admin client", e))?;
        let admin = OffRuntime::new(admin);
        let producer = ProducerSlot::new(&config)
            .map_err(|e| unavailable("cannot create the Kafka producer", e))?;
        let backend = Self {
            config: config.clone(),
            admin: Arc::new(admin),
            producer: Arc::new(producer),
            opened: Arc::default(),
        };
        backend
            .reachable(config.request_timeout)
            .await
            .map_err(|e| unavailable("cannot reach Kafka", e))?;
        Ok(backend)
    }

    /// Whether the cluster answers a metadata request within `timeout`.
    pub async fn reachable(&self, timeout: Duration) -> Result<(), KafkaError> {
        let probe = self.producer.current();
        blocking(move || probe.client().fetch_metadata(None, timeout).map(|_| ())).await
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.config.bootstrap_servers
    }

    /// Opens the channel `name` (e.g. `ns/broker`), creating its topic if it does not exist.
    /// Open each channel once and share it: seek coordinates the readers of one channel.
    pub async fn channel(
        &self,
        name: impl Into<ChannelName>,
    ) -> Result<Arc<KafkaChannel>, ChannelError> {
        let name = name.into();
        let topic = name.kafka_topic(&self.config.topic_prefix);
        let replication = || TopicReplication::Fixed(self.config.replication_factor);
        let new_topic = NewTopic::new(&topic, self.config.partitions, replication());
        self.create_topic(&name, &topic, new_topic).await?;
        let parked_topic = parking_topic(&name, &self.config.topic_prefix);
        let parked = NewTopic::new(&parked_topic, 1, replication())
            // Tombstones remove entries; nothing goes by age (Herald expires them itself).
            .set("cleanup.policy", "compact");
        self.create_topic(&name, &parked_topic, parked).await?;
        let parking = KafkaParkingLot::new(
            parked_topic,
            name.as_str(),
            self.config.clone(),
            self.producer.clone(),
        );
        let closed = CancellationToken::new();
        let backlog = BacklogGate::new(
            name.as_str(),
            self.config.max_lag_events,
            self.config.retry_after,
        );
        let lag = Arc::new(Mutex::new(lag::TopicLag::new(
            self.config.clone(),
            topic.clone(),
        )));
        let subscriptions: Arc<Mutex<HashMap<String, Arc<SubscriptionReaders>>>> = Arc::default();
        let (watched, known, group_topic) = (lag.clone(), subscriptions.clone(), topic.clone());
        backlog.watch(LAG_REFRESH, closed.clone(), move || {
            let lag = watched.clone();
            let known: Vec<String> = known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .map(|s| kafka_group(&group_topic, s))
                .collect();
            blocking(move || {
                lag.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .slowest(&known)
            })
        });
        Ok(Arc::new(KafkaChannel {
            name,
            topic,
            config: self.config.clone(),
            admin: self.admin.clone(),
            producer: self.producer.clone(),
            parking: Arc::new(parking),
            circuit: Circuit::new(self.config.retry_after),
            backlog,
            lag,
            subscriptions,
            closed,
        }))
    }
}

impl KafkaBackend {
    /// Creates `topic`; one that exists already is fine.
    async fn create_topic(
        &self,
        name: &ChannelName,
        topic: &str,
        new_topic: NewTopic<'_>,
    ) -> Result<(), ChannelError> {
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let created = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| {
                ChannelError::unavailable(
                    name.as_str(),
                    format!("cannot create topic {topic}"),
                    self.config.retry_after,
                )
                .caused_by(e)
            })?;
        for result in created {
            match result {
                Ok(_) => tracing::info!(%topic, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(ChannelError::backend(
                        name.as_str(),
                        format!("cannot create topic {topic}"),
                    )
                    .caused_by(KafkaError::AdminOp(code)))
                }
            }
        }
        Ok(())
    }
}

/// The topic of a channel's parking lot: `<prefix>-parked.<namespace>.<broker>`, which no
/// Broker's topic (`<prefix>.<namespace>.<broker>`) can be.
fn parking_topic(name: &ChannelName, prefix: &str) -> String {
    name.kafka_topic(&format!("{prefix}-parked"))
}

/// How often the slowest consumer group's lag is read for admission (a group listing plus an
/// offset request per group and partition).
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// One Broker's topic, its publisher side and its subscriptions' consumer groups.
pub struct KafkaChannel {
    name: ChannelName,
    topic: String,
    config: Arc<KafkaConfig>,
    admin: Arc<OffRuntime<AdminClient<DefaultClientContext>>>,
    producer: Arc<ProducerSlot>,
    /// Undeliverable events, in a topic of their own (see [`parking`]).
    parking: Arc<KafkaParkingLot>,
    /// Per channel, not per backend: a failure may concern one topic or partition leader, and
    /// one sick Broker must not make every other Broker answer 503.
    circuit: Circuit,
    backlog: Arc<BacklogGate>,
    /// Reads lag for the backlog gate and for [`Channel::lag`].
    lag: Arc<Mutex<lag::TopicLag>>,
    /// Shared with the backlog gate's task, which reads the lag of these groups where the
    /// broker cannot list groups.
    subscriptions: Arc<Mutex<HashMap<String, Arc<SubscriptionReaders>>>>,
    closed: CancellationToken,
}

impl KafkaChannel {
    /// The Kafka topic holding this channel's events.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The Kafka consumer group of a subscription (for operators and tools).
    pub fn consumer_group(&self, subscription: &str) -> String {
        kafka_group(&self.topic, subscription)
    }

    /// The partitions assigned to each open reader of the subscription in this process
    /// (empty while a rebalance is in progress).
    pub fn assignments(&self, subscription: &str) -> Vec<Vec<i32>> {
        self.readers(subscription).assignments()
    }

    fn unavailable(&self, detail: impl Into<String>) -> ChannelError {
        ChannelError::unavailable(self.name.as_str(), detail, self.config.retry_after)
    }

    /// The subscription's readers in this process; after a delete, a fresh set.
    fn readers(&self, subscription: &str) -> Arc<SubscriptionReaders> {
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let readers = subscriptions
            .entry(subscription.to_string())
            .or_insert_with(|| Arc::new(SubscriptionReaders::new(self.closed.child_token())));
        if readers.ended.is_cancelled() && !self.closed.is_cancelled() {
            *readers = Arc::new(SubscriptionReaders::new(self.closed.child_token()));
        }
        readers.clone()
    }

    /// Ends the readers of one subscription in this process and waits (bounded) until they
    /// have left its group.
    async fn end_readers(&self, readers: &SubscriptionReaders) {
        readers.ended.cancel();
        let left = readers.retire_all();
        let all_left =
            tokio::time::timeout(self.config.request_timeout, futures::future::join_all(left))
                .await;
        if all_left.is_err() {
            tracing::warn!(channel = %self.name, "readers did not leave their group in time");
        }
    }

    /// Deletes consumer groups; one that does not exist counts as deleted.
    async fn delete_groups(&self, groups: &[String]) -> Result<(), ChannelError> {
        if groups.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let results = self
            .admin
            .delete_groups(&names, &options)
            .await
            .map_err(|e| {
                self.unavailable("cannot delete consumer groups")
                    .caused_by(e)
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((group, code)) => {
                    return Err(ChannelError::backend(
                        self.name.as_str(),
                        format!(
                            "cannot delete consumer group {group} (its readers in other \
                             processes must be stopped first)"
                        ),
                    )
                    .caused_by(KafkaError::AdminOp(code)))
                }
            }
        }
        Ok(())
    }

    /// The groups of this channel's subscriptions known to the cluster (named
    /// `<topic>.<subscription>`), and those opened here.
    async fn subscription_groups(&self) -> Vec<String> {
        let mut groups: BTreeSet<String> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|s| kafka_group(&self.topic, s))
            .collect();
        let lister = GroupOffsets::open_reader(&self.config, &self.topic);
        let prefix = format!("{}.", self.topic);
        let timeout = self.config.request_timeout;
        let listed = match lister {
            Ok(lister) => blocking(move || lister.group_names(timeout)).await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(names) => groups.extend(names.into_iter().filter(|g| g.starts_with(&prefix))),
            Err(e) => tracing::warn!(
                channel = %self.name, error = %e,
                "cannot list consumer groups; deleting only those opened here"
            ),
        }
        // Our own seek reader's group, never a subscription's, goes too.
        groups.insert(format!("{}.herald-seek", self.topic));
        groups.into_iter().collect()
    }

    /// Produces every record and waits until Kafka has acknowledged each one.
    async fn produce(&self, encoded: &[codec::EncodedEvent]) -> Result<(), ChannelError> {
        let producer = self.producer.get();
        let name = self.name.as_str();
        let now = chrono::Utc::now().timestamp_millis();
        let mut deliveries = Vec::with_capacity(encoded.len());
        for event in encoded {
            // The record's timestamp is the acceptance time, which Position::Time seeks by.
            let record = event.to_record(&self.topic).timestamp(now);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    return Err(publish_error(name, &self.topic, e, self.config.retry_after));
                }
            }
        }
        // librdkafka fails each record by itself after `message.timeout.ms` (the publish
        // timeout); the margin only guards against a report that never comes.
        let confirmed = tokio::time::timeout(
            self.config.publish_timeout + Duration::from_secs(1),
            futures::future::join_all(deliveries),
        )
        .await
        .map_err(|_| {
            self.unavailable(format!(
                "publish not confirmed within {:?}",
                self.config.publish_timeout
            ))
        })?;
        for result in confirmed {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(publish_error(name, &self.topic, e, self.config.retry_after));
                }
                Err(_) => return Err(self.unavailable("the producer was shut down")),
            }
        }
        Ok(())
    }

    fn group_offsets(&self, group: &str) -> Result<GroupOffsets, ChannelError> {
        GroupOffsets::open(&self.config, &self.topic, group).map_err(|e| {
            self.unavailable(format!("cannot create a client for group {group}"))
                .caused_by(e)
        })
    }
}

#[async_trait]
impl Channel for KafkaChannel {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Kafka has no all-or-nothing append without transactions: each record is produced on
    /// its own, and the publish succeeds only once every one is acknowledged (`acks=all`).
    /// After a failure some of the events may be stored; the publisher's retry can duplicate
    /// them, which at-least-once allows. After a failure for want of Kafka, publishes are
    /// refused at once (see [`circuit`]) until one gets through again. That includes the
    /// replies of callable subscribers: during an outage their delivery retries are spent
    /// at the pace of the backoff rather than one publish timeout each.
    async fn publish(&self, events: Vec<WireEvent>) -> Result<(), ChannelError> {
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            encoded.push(codec::encode(&event).map_err(|e| {
                ChannelError::backend(self.name.as_str(), format!("cannot encode event: {e}"))
            })?);
        }
        self.backlog.admit()?;
        let circuit = &self.circuit;
        if !circuit.admit() {
            return Err(self.unavailable(
                "Kafka is unreachable (a recent publish failed); probing it again shortly",
            ));
        }
        let outcome = self.produce(&encoded).await;
        match &outcome {
            Ok(()) if circuit.succeeded() => {
                tracing::info!(channel = %self.name, "Kafka is reachable again; accepting events")
            }
            Err(e @ ChannelError::Unavailable { .. }) if circuit.failed() => tracing::warn!(
                channel = %self.name,
                error = %e,
                "Kafka is unreachable; refusing events with 503 until a probe publish succeeds"
            ),
            _ => {}
        }
        outcome
    }

    fn parking(&self) -> Option<Arc<dyn ParkingLot>> {
        Some(self.parking.clone())
    }

    /// The subscription's group's lag: high watermarks minus its committed offsets, over
    /// every partition (so every replica's progress counts), read from the cluster; `None`
    /// when the cluster does not answer.
    async fn lag(&self, subscription: &str) -> Option<u64> {
        let (lag, group) = (self.lag.clone(), kafka_group(&self.topic, subscription));
        // Every request in it has the request timeout: the blocking pool will get it back.
        let read = blocking(move || lag.lock().unwrap_or_else(|p| p.into_inner()).of(&group));
        match read.await {
            Ok(lag) => Some(lag),
            Err(e) => {
                tracing::debug!(channel = %self.name, %subscription, error = %e, "cannot read the lag");
                None
            }
        }
    }

    /// Joins the Trigger's consumer group. A brand-new group first gets the current end of
    /// every partition committed, so the Trigger starts at the head as of this call (not as
    /// of whenever its first reader finishes joining).
    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError> {
        let group = kafka_group(&self.topic, subscription);
        let readers = self.readers(subscription);
        {
            let _exclusive = readers.seek_lock.write().await;
            let offsets = Arc::new(self.group_offsets(&group)?);
            let heads = blocking({
                let offsets = offsets.clone();
                move || seek::heads_without_commits(&offsets)
            })
            .await
            .map_err(|e| {
                self.unavailable(format!("cannot initialise group {group}"))
                    .caused_by(e)
            })?;
            if !heads.is_empty() {
                // Refused when another replica's readers already joined: they started at
                // the head, so there is nothing to do.
                let commit = bounded(self.config.request_timeout, move || offsets.commit(&heads));
                if let Err(e) = commit.await {
                    tracing::debug!(%group, error = %e, "not initialising the group's offsets");
                }
            }
        }
        let ended = readers.ended.clone();
        Ok(Box::new(KafkaReader::new(
            self.name.as_str(),
            &self.topic,
            &group,
            self.config.clone(),
            readers,
            ended,
        )))
    }

    /// Moves every partition of the subscription's group to `position` (an offset applies
    /// to each partition; one beyond a partition's end means its end). The readers of this
    /// channel leave the group first — Kafka lets a non-member commit only for an empty group
    /// — and rejoin from the new offsets. Readers of the same group in other processes must
    /// be stopped for a seek to be accepted. Returns the lowest offset a partition resumes
    /// from, among partitions that have something to replay.
    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        let group = kafka_group(&self.topic, subscription);
        let readers = self.readers(subscription);
        let _exclusive = readers.seek_lock.write().await;
        let offsets = Arc::new(self.group_offsets(&group)?);
        let resolve = {
            let (offsets, position) = (offsets.clone(), position.clone());
            let (config, topic) = (self.config.clone(), self.topic.clone());
            blocking(move || {
                seek::resolve(&offsets, &position, || {
                    GroupOffsets::open_reader(&config, &topic)
                })
            })
        };
        let targets = match resolve.await {
            Ok(Ok(targets)) => targets,
            Ok(Err(seek::Unseekable::NotRetained(detail))) => {
                return Err(ChannelError::NotRetained {
                    channel: self.name.to_string(),
                    position: position.to_string(),
                    detail,
                })
            }
            Ok(Err(seek::Unseekable::PastHead(detail))) => {
                return Err(ChannelError::PastHead {
                    channel: self.name.to_string(),
                    position: position.to_string(),
                    detail,
                })
            }
            Err(e) => {
                return Err(self
                    .unavailable(format!("cannot resolve {position}"))
                    .caused_by(e))
            }
        };
        let left = readers.retire_all();
        let all_left =
            tokio::time::timeout(self.config.request_timeout, futures::future::join_all(left))
                .await;
        if all_left.is_err() {
            tracing::warn!(%group, "readers did not leave the group in time; seeking anyway");
        }
        let commits: Vec<(i32, i64)> = targets.iter().map(|t| (t.partition, t.offset)).collect();
        let committed = bounded(self.config.request_timeout, move || {
            offsets.commit(&commits)
        });
        if let Err(e) = committed.await {
            return Err(match e.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::CoordinatorNotAvailable
                    | RDKafkaErrorCode::NotCoordinator,
                ) => self
                    .unavailable(format!("cannot move group {group} to {position}"))
                    .caused_by(e),
                _ => ChannelError::backend(
                    self.name.as_str(),
                    format!(
                        "cannot move group {group} to {position} (its readers in other \
                         processes must be stopped first)"
                    ),
                )
                .caused_by(e),
            });
        }
        tracing::info!(%group, %position, ?targets, "subscription moved");
        Ok(seek::resume_offset(&targets))
    }

    /// Ends this process's readers of the subscription (they leave the group) and deletes
    /// its consumer group.
    async fn delete_subscription(&self, subscription: &str) -> Result<(), ChannelError> {
        let readers = self.readers(subscription);
        {
            let _exclusive = readers.seek_lock.write().await;
            self.end_readers(&readers).await;
        }
        self.delete_groups(&[kafka_group(&self.topic, subscription)])
            .await
    }

    /// Ends every reader, deletes the topic and the groups of its subscriptions.
    async fn delete(&self) -> Result<(), ChannelError> {
        self.closed.cancel();
        let all: Vec<Arc<SubscriptionReaders>> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for readers in &all {
            self.end_readers(readers).await;
        }
        let groups = self.subscription_groups().await;
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let parked = parking_topic(&self.name, &self.config.topic_prefix);
        let deleted = self
            .admin
            .delete_topics(&[&self.topic, &parked], &options)
            .await
            .map_err(|e| self.unavailable("cannot delete the topic").caused_by(e))?;
        for result in deleted {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => {
                    return Err(ChannelError::backend(
                        self.name.as_str(),
                        format!("cannot delete topic {topic}"),
                    )
                    .caused_by(KafkaError::AdminOp(code)))
                }
            }
        }
        self.delete_groups(&groups).await
    }

    async fn close(&self) {
        self.closed.cancel();
    }
}
