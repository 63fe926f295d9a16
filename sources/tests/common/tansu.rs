//! The plain Kafka clients the KafkaSource tests drive a private tansu with (the broker itself
//! is herald-test-support's, as every crate's Kafka tests start it).

#![allow(dead_code)]

pub use herald_test_support::tansu::Tansu;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Topics, a producer and the committed offsets of a group, on a tansu.
#[allow(async_fn_in_trait)]
pub trait KafkaClients {
    async fn create_topic(&self, topic: &str, partitions: i32);
    fn producer(&self) -> Producer;
    /// The group's committed offset per partition of `topic` (partitions with none left out).
    async fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64>;
    /// Waits until the group has committed `want` (partition -> offset) on `topic`.
    async fn wait_committed(&self, group: &str, topic: &str, want: &BTreeMap<i32, i64>);
}

impl KafkaClients for Tansu {
    async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topic");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("topic {t}: {e}"));
        }
        tokio::task::spawn_blocking(move || drop(admin))
            .await
            .unwrap();
    }

    fn producer(&self) -> Producer {
        Producer(
            ClientConfig::new()
                .set("bootstrap.servers", self.bootstrap())
                .set("message.timeout.ms", "10000")
                .create()
                .unwrap(),
        )
    }

    async fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .create()
            .unwrap();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let got = client
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("committed offsets");
            got.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .await
        .unwrap()
    }

    async fn wait_committed(&self, group: &str, topic: &str, want: &BTreeMap<i32, i64>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let partitions = want.keys().max().map_or(1, |p| p + 1);
            let now = self.committed(group, topic, partitions).await;
            if want.iter().all(|(p, o)| now.get(p) == Some(o)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "committed {now:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub struct Producer(FutureProducer);

impl Producer {
    /// Produces one record to `partition`; returns its offset.
    pub async fn send(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        headers: &[(&str, &str)],
        value: Option<&[u8]>,
    ) -> i64 {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).partition(partition).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivered = self
            .0
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        delivered.offset
    }
}
