//! A consumer group's committed offsets, read and written from outside the group (to start a
//! new Trigger at the head, and to seek), and the log positions they are computed from.
//! librdkafka's calls here block, so callers run them on the blocking pool.

use super::blocking::OffRuntime;
use super::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type Client = BaseConsumer;

/// Talks to the group coordinator as a non-member of the group: it never subscribes, so it
/// never takes partitions from the group's readers.
pub struct GroupOffsets {
    client: OffRuntime<Client>,
    topic: String,
    timeout: Duration,
}

impl GroupOffsets {
    pub fn open(config: &KafkaConfig, topic: &str, group: &str) -> KafkaResult<Self> {
        Ok(Self {
            client: OffRuntime::new(config.consumer_config(group).create()?),
            topic: topic.to_string(),
            timeout: config.request_timeout,
        })
    }

    /// A client for reading records by position. librdkafka wants a group id even for
    /// assigned partitions; this one never joins a group or commits.
    pub fn open_reader(config: &KafkaConfig, topic: &str) -> KafkaResult<Self> {
        let client_config = config.consumer_config(&format!("{topic}.herald-seek"));
        Ok(Self {
            client: OffRuntime::new(client_config.create()?),
            topic: topic.to_string(),
            timeout: config.request_timeout,
        })
    }

    fn client(&self) -> &Client {
        &self.client
    }

    /// The topic's partitions. A topic created a moment ago may not be in the metadata yet,
    /// so this waits for it up to the request timeout.
    pub fn partitions(&self) -> KafkaResult<Vec<i32>> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let metadata = self
                .client()
                .fetch_metadata(Some(&self.topic), self.timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == self.topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !partitions.is_empty() {
                let mut partitions = partitions;
                partitions.sort_unstable();
                return Ok(partitions);
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The names of every consumer group in the cluster.
    pub fn group_names(&self, timeout: Duration) -> KafkaResult<Vec<String>> {
        let list = self.client().fetch_group_list(None, timeout)?;
        Ok(list.groups().iter().map(|g| g.name().to_string()).collect())
    }

    /// `(low, high)`: the first retained offset and the offset the next record will get.
    pub fn watermarks(&self, partition: i32) -> KafkaResult<(i64, i64)> {
        self.client()
            .fetch_watermarks(&self.topic, partition, self.timeout)
    }

    /// The group's committed offset per partition; `None` where it has none.
    pub fn committed(&self, partitions: &[i32]) -> KafkaResult<BTreeMap<i32, Option<i64>>> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let committed = self.client().committed_offsets(tpl, self.timeout)?;
        Ok(partitions
            .iter()
            .map(|p| {
                let offset =
                    committed
                        .find_partition(&self.topic, *p)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                (*p, offset)
            })
            .collect())
    }

    /// Commits the offsets for the group and waits for the coordinator to confirm — for as
    /// long as it takes: run it with [`bounded`](super::blocking::bounded). A group with live
    /// members elsewhere may refuse it (Kafka accepts commits from non-members only for an
    /// empty group).
    pub fn commit(&self, offsets: &[(i32, i64)]) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        // Synchronous: librdkafka delivers an asynchronous commit's result only to the
        // consumer queue of a group member. It has no timeout, so callers bound it.
        self.client().commit(&tpl, CommitMode::Sync)
    }

    /// Per partition, the first offset whose record timestamp is at or after `millis`;
    /// `None` where the broker has no such record.
    pub fn offsets_for_time(
        &self,
        partitions: &[i32],
        millis: i64,
    ) -> KafkaResult<BTreeMap<i32, Option<i64>>> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(millis))?;
        }
        let found = self.client().offsets_for_times(tpl, self.timeout)?;
        Ok(partitions
            .iter()
            .map(|p| {
                let offset = found
                    .find_partition(&self.topic, *p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o),
                        _ => None,
                    });
                (*p, offset)
            })
            .collect())
    }

    /// The timestamp (milliseconds) of the record at `offset`, read directly.
    pub fn timestamp_at(&self, partition: i32, offset: i64) -> KafkaResult<Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        self.client().assign(&tpl)?;
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            match self.client().poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.partition() == partition && m.offset() >= offset => {
                    return Ok(m.timestamp().to_millis());
                }
                Some(Err(e)) => return Err(e),
                _ => {}
            }
        }
        Ok(None)
    }
}
