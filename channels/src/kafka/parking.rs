//! The parking lot of a Kafka channel, in Kafka itself: a compacted topic of its own per
//! Broker (`<prefix>-parked.<namespace>.<broker>`, one partition), one record per parked
//! event keyed `<subscription, hex>/<uuid>` holding the [`ParkedEvent`] as JSON. The record's
//! offset is the entry's id: unique and increasing across restarts and replicas. Removing an
//! entry writes a tombstone (the key without a value); listing reads the topic from its start
//! to its end and keeps what no tombstone followed.
//!
//! Compacted, not deleted by time: the Broker's retention must never drop a parked event
//! (Herald expires them itself), and compaction reclaims what tombstones remove. One
//! partition, so offsets order every entry; parked events are few next to the Broker's
//! traffic. The topic is separate from the Broker's so that parked events reach no consumer.

use super::blocking::{blocking, OffRuntime};
use super::producer::{publish_error, ProducerSlot};
use super::KafkaConfig;
use crate::parking::{ParkedEvent, Parking, ParkingLot};
use crate::ChannelError;
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct KafkaParkingLot {
    topic: String,
    channel: String,
    config: Arc<KafkaConfig>,
    producer: Arc<ProducerSlot>,
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// An entry as read: its key, offset and JSON.
struct Record {
    key: String,
    offset: i64,
    payload: Vec<u8>,
}

impl KafkaParkingLot {
    pub(super) fn new(
        topic: String,
        channel: &str,
        config: Arc<KafkaConfig>,
        producer: Arc<ProducerSlot>,
    ) -> Self {
        Self {
            topic,
            channel: channel.to_string(),
            config,
            producer,
        }
    }

    fn unavailable(&self, what: &str, e: KafkaError) -> ChannelError {
        ChannelError::unavailable(
            self.channel.as_str(),
            format!("parking area ({}): {what}", self.topic),
            self.config.retry_after,
        )
        .caused_by(e)
    }

    /// Produces one record (`None`: a tombstone) and waits for Kafka to store it; its offset.
    async fn produce(&self, key: &str, payload: Option<&[u8]>) -> Result<i64, ChannelError> {
        let producer = self.producer.get();
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        let delivery = producer.send_result(record).map_err(|(e, _)| {
            publish_error(&self.channel, &self.topic, e, self.config.retry_after)
        })?;
        let stored = tokio::time::timeout(
            self.config.publish_timeout + Duration::from_secs(1),
            delivery,
        )
        .await
        .map_err(|_| {
            ChannelError::unavailable(
                self.channel.as_str(),
                format!(
                    "parking area: not stored within {:?}",
                    self.config.publish_timeout
                ),
                self.config.retry_after,
            )
        })?;
        match stored {
            Ok(Ok(d)) => Ok(d.offset),
            Ok(Err((e, _))) => Err(publish_error(
                &self.channel,
                &self.topic,
                e,
                self.config.retry_after,
            )),
            Err(_) => Err(ChannelError::unavailable(
                self.channel.as_str(),
                "parking area: the producer was shut down",
                self.config.retry_after,
            )),
        }
    }

    /// The live entries of `subscription` (no tombstone after them), by offset.
    async fn records(&self, subscription: &str) -> Result<Vec<Record>, ChannelError> {
        let (config, topic) = (self.config.clone(), self.topic.clone());
        let prefix = format!("{}/", hex(subscription));
        let all = blocking(move || read_live(&config, &topic))
            .await
            .map_err(|e| self.unavailable("cannot read", e))?;
        let mut mine: Vec<Record> = all
            .into_iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(key, (offset, payload))| Record {
                key,
                offset,
                payload,
            })
            .collect();
        mine.sort_by_key(|r| r.offset);
        Ok(mine)
    }

    fn entry(&self, record: &Record, subscription: &str) -> Result<ParkedEvent, ChannelError> {
        let mut entry: ParkedEvent = serde_json::from_slice(&record.payload).map_err(|e| {
            ChannelError::backend(
                self.channel.as_str(),
                format!("parking area: entry {} cannot be read", record.offset),
            )
            .caused_by(e)
        })?;
        // Stored before Kafka gave it an offset: the offset is its id.
        entry.id = record.offset as u64;
        entry.subscription = subscription.to_string();
        Ok(entry)
    }
}

/// Every key of the topic whose last record is not a tombstone, with that record's offset
/// and value. Blocking.
fn read_live(config: &KafkaConfig, topic: &str) -> KafkaResult<BTreeMap<String, (i64, Vec<u8>)>> {
    // librdkafka wants a group id even for assigned partitions; this client never joins it.
    let client: OffRuntime<BaseConsumer> = OffRuntime::new(
        config
            .consumer_config(&format!("{topic}.herald-read"))
            .create()?,
    );
    let timeout = config.request_timeout;
    let (low, high) = match client.fetch_watermarks(topic, 0, timeout) {
        Ok(w) => w,
        // Not created yet (or deleted): nothing is parked.
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            return Ok(BTreeMap::new())
        }
        Err(e) => return Err(e),
    };
    let mut live = BTreeMap::new();
    if high <= low {
        return Ok(live);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    client.assign(&tpl)?;
    // The deadline moves with progress: a long topic is read, a stalled one is not waited on.
    let mut deadline = Instant::now() + timeout;
    loop {
        match client.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                deadline = Instant::now() + timeout;
                if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    match m.payload() {
                        Some(p) => {
                            live.insert(key.to_string(), (m.offset(), p.to_vec()));
                        }
                        None => {
                            live.remove(key);
                        }
                    }
                }
                if m.offset() + 1 >= high {
                    return Ok(live);
                }
            }
            Some(Err(e)) => return Err(e),
            None if Instant::now() > deadline => {
                return Err(KafkaError::Global(RDKafkaErrorCode::OperationTimedOut))
            }
            None => {}
        }
    }
}

#[async_trait]
impl ParkingLot for KafkaParkingLot {
    fn durable(&self) -> bool {
        true
    }

    async fn park(&self, subscription: &str, parking: Parking) -> Result<u64, ChannelError> {
        let entry = ParkedEvent::new(0, subscription, parking);
        let payload = serde_json::to_vec(&entry).map_err(|e| {
            ChannelError::backend(self.channel.as_str(), "parking area: cannot encode").caused_by(e)
        })?;
        let key = format!("{}/{}", hex(subscription), uuid::Uuid::new_v4());
        // Only once Kafka has stored it may the event be acknowledged on the channel.
        let offset = self.produce(&key, Some(&payload)).await?;
        Ok(offset as u64)
    }

    async fn list(&self, subscription: &str) -> Result<Vec<ParkedEvent>, ChannelError> {
        let mut entries = Vec::new();
        for record in self.records(subscription).await? {
            match self.entry(&record, subscription) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    tracing::error!(channel = %self.channel, offset = record.offset, error = %e, "parking area: an entry cannot be read");
                }
            }
        }
        Ok(entries)
    }

    async fn get(&self, subscription: &str, id: u64) -> Result<Option<ParkedEvent>, ChannelError> {
        let records = self.records(subscription).await?;
        match records.iter().find(|r| r.offset as u64 == id) {
            Some(r) => self.entry(r, subscription).map(Some),
            None => Ok(None),
        }
    }

    async fn remove(&self, subscription: &str, id: u64) -> Result<bool, ChannelError> {
        let records = self.records(subscription).await?;
        let Some(record) = records.iter().find(|r| r.offset as u64 == id) else {
            return Ok(false);
        };
        self.produce(&record.key, None).await?;
        Ok(true)
    }
}
