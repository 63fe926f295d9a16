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
mod names;
mod offsets;
mod producer;
mod reader;
mod seek;

pub use crate::kafka_config::KafkaConfig;

use crate::{Channel, ChannelError, Position, Subscription};
use async_trait::async_trait;
use blocking::{blocking, bounded, OffRuntime};
use circuit::Circuit;
use cloudevents::Event;
use offsets::GroupOffsets;
use producer::{publish_error, ProducerSlot};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use reader::{KafkaReader, SubscriptionReaders};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A connection to a Kafka cluster, from which each Broker's channel is opened.
#[derive(Clone)]
pub struct KafkaBackend {
    config: Arc<KafkaConfig>,
    admin: Arc<OffRuntime<AdminClient<DefaultClientContext>>>,
    producer: Arc<ProducerSlot>,
}

impl KafkaBackend {
    /// Creates the clients and checks that the cluster answers; later connection losses are
    /// retried by librdkafka in the background.
    pub async fn connect(config: KafkaConfig) -> Result<Self, ChannelError> {
        let config = Arc::new(config);
        let unavailable = |detail: String| ChannelError::Unavailable {
            channel: config.bootstrap_servers.clone(),
            detail,
            retry_after: config.retry_after,
        };
        let admin: AdminClient<DefaultClientContext> = config
            .admin_config()
            .create()
            .map_err(|e| unavailable(format!("cannot create the Kafka admin client: {e}")))?;
        let admin = OffRuntime::new(admin);
        let producer = ProducerSlot::new(&config)
            .map_err(|e| unavailable(format!("cannot create the Kafka producer: {e}")))?;
        let probe = producer.current();
        let timeout = config.request_timeout;
        blocking(move || probe.client().fetch_metadata(None, timeout).map(|_| ()))
            .await
            .map_err(|e| unavailable(format!("cannot reach Kafka: {e}")))?;
        Ok(Self {
            config,
            admin: Arc::new(admin),
            producer: Arc::new(producer),
        })
    }

    /// Opens the channel `name` (e.g. `ns/broker`), creating its topic if it does not exist.
    /// Open each channel once and share it: seek coordinates the readers of one channel.
    pub async fn channel(&self, name: &str) -> Result<Arc<KafkaChannel>, ChannelError> {
        let topic = names::topic(&self.config.topic_prefix, name);
        let new_topic = NewTopic::new(
            &topic,
            self.config.partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let options = AdminOptions::new().operation_timeout(Some(self.config.request_timeout));
        let created = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| ChannelError::Unavailable {
                channel: name.to_string(),
                detail: format!("cannot create topic {topic}: {e}"),
                retry_after: self.config.retry_after,
            })?;
        for result in created {
            match result {
                Ok(_) => {
                    tracing::info!(%topic, partitions = self.config.partitions, "created topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(ChannelError::Backend {
                        channel: name.to_string(),
                        detail: format!("cannot create topic {topic}: {code}"),
                    })
                }
            }
        }
        Ok(Arc::new(KafkaChannel {
            name: name.to_string(),
            topic,
            config: self.config.clone(),
            producer: self.producer.clone(),
            circuit: Circuit::new(self.config.retry_after),
            subscriptions: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        }))
    }
}

/// One Broker's topic, its publisher side and its subscriptions' consumer groups.
pub struct KafkaChannel {
    name: String,
    topic: String,
    config: Arc<KafkaConfig>,
    producer: Arc<ProducerSlot>,
    /// Per channel, not per backend: a failure may concern one topic or partition leader, and
    /// one sick Broker must not make every other Broker answer 503.
    circuit: Circuit,
    subscriptions: Mutex<HashMap<String, Arc<SubscriptionReaders>>>,
    closed: CancellationToken,
}

impl KafkaChannel {
    /// The Kafka topic holding this channel's events.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The Kafka consumer group of a subscription (for operators and tools).
    pub fn consumer_group(&self, subscription: &str) -> String {
        names::group(&self.topic, subscription)
    }

    /// The partitions assigned to each open reader of the subscription in this process
    /// (empty while a rebalance is in progress).
    pub fn assignments(&self, subscription: &str) -> Vec<Vec<i32>> {
        self.readers(subscription).assignments()
    }

    fn unavailable(&self, detail: String) -> ChannelError {
        ChannelError::Unavailable {
            channel: self.name.clone(),
            detail,
            retry_after: self.config.retry_after,
        }
    }

    fn readers(&self, subscription: &str) -> Arc<SubscriptionReaders> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subscription.to_string())
            .or_default()
            .clone()
    }

    /// Produces every record and waits until Kafka has acknowledged each one.
    async fn produce(&self, encoded: &[codec::EncodedEvent]) -> Result<(), ChannelError> {
        let producer = self.producer.get();
        let now = chrono::Utc::now().timestamp_millis();
        let mut deliveries = Vec::with_capacity(encoded.len());
        for event in encoded {
            // The record's timestamp is the acceptance time, which Position::Time seeks by.
            let record = event.to_record(&self.topic).timestamp(now);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    return Err(publish_error(
                        &self.name,
                        &self.topic,
                        &e,
                        self.config.retry_after,
                    ));
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
                    return Err(publish_error(
                        &self.name,
                        &self.topic,
                        &e,
                        self.config.retry_after,
                    ));
                }
                Err(_) => return Err(self.unavailable("the producer was shut down".into())),
            }
        }
        Ok(())
    }

    fn group_offsets(&self, group: &str) -> Result<GroupOffsets, ChannelError> {
        GroupOffsets::open(&self.config, &self.topic, group)
            .map_err(|e| self.unavailable(format!("cannot create a client for group {group}: {e}")))
    }
}

#[async_trait]
impl Channel for KafkaChannel {
    fn name(&self) -> &str {
        &self.name
    }

    /// Kafka has no all-or-nothing append without transactions: each record is produced on
    /// its own, and the publish succeeds only once every one is acknowledged (`acks=all`).
    /// After a failure some of the events may be stored; the publisher's retry can duplicate
    /// them, which at-least-once allows. After a failure for want of Kafka, publishes are
    /// refused at once (see [`circuit`]) until one gets through again. That includes the
    /// replies of callable subscribers: during an outage their delivery retries are spent
    /// at the pace of the backoff rather than one publish timeout each.
    async fn publish(&self, events: Vec<Event>) -> Result<(), ChannelError> {
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            encoded.push(codec::encode(event).map_err(|e| ChannelError::Backend {
                channel: self.name.clone(),
                detail: format!("cannot encode event: {e}"),
            })?);
        }
        let circuit = &self.circuit;
        if !circuit.admit() {
            return Err(self.unavailable(
                "Kafka is unreachable (a recent publish failed); probing it again shortly".into(),
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

    /// Joins the Trigger's consumer group. A brand-new group first gets the current end of
    /// every partition committed, so the Trigger starts at the head as of this call (not as
    /// of whenever its first reader finishes joining).
    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError> {
        let group = names::group(&self.topic, subscription);
        let readers = self.readers(subscription);
        {
            let _exclusive = readers.seek_lock.write().await;
            let offsets = Arc::new(self.group_offsets(&group)?);
            let heads = blocking({
                let offsets = offsets.clone();
                move || seek::heads_without_commits(&offsets)
            })
            .await
            .map_err(|e| self.unavailable(format!("cannot initialise group {group}: {e}")))?;
            if !heads.is_empty() {
                // Refused when another replica's readers already joined: they started at
                // the head, so there is nothing to do.
                let commit = bounded(self.config.request_timeout, move || offsets.commit(&heads));
                if let Err(e) = commit.await {
                    tracing::debug!(%group, error = %e, "not initialising the group's offsets");
                }
            }
        }
        Ok(Box::new(KafkaReader::new(
            &self.name,
            &self.topic,
            &group,
            self.config.clone(),
            readers,
            self.closed.clone(),
        )))
    }

    /// Moves every partition of the subscription's group to `position` (an offset applies
    /// to each partition; one beyond a partition's end means its end). The readers of this
    /// channel leave the group first — Kafka lets a non-member commit only for an empty group
    /// — and rejoin from the new offsets. Readers of the same group in other processes must
    /// be stopped for a seek to be accepted. Returns the lowest offset a partition resumes
    /// from, among partitions that have something to replay.
    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        let group = names::group(&self.topic, subscription);
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
            Ok(Err(detail)) => {
                return Err(ChannelError::NotRetained {
                    channel: self.name.clone(),
                    position: position.to_string(),
                    detail,
                })
            }
            Err(e) => return Err(self.unavailable(format!("cannot resolve {position}: {e}"))),
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
                ) => self.unavailable(format!("cannot move group {group} to {position}: {e}")),
                _ => ChannelError::Backend {
                    channel: self.name.clone(),
                    detail: format!(
                        "cannot move group {group} to {position} (its readers in other \
                         processes must be stopped first): {e}"
                    ),
                },
            });
        }
        tracing::info!(%group, %position, ?targets, "subscription moved");
        Ok(seek::resume_offset(&targets))
    }

    async fn close(&self) {
        self.closed.cancel();
    }
}
