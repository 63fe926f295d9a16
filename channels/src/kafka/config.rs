//! The Kafka channel's configuration and the librdkafka client settings derived from it.

use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` of the Kafka-API brokers.
    pub bootstrap_servers: String,
    /// First part of every topic and consumer group name (`<prefix>.<namespace>.<broker>`).
    pub topic_prefix: String,
    /// Partitions of a newly created topic. Existing topics keep theirs.
    pub partitions: i32,
    /// Replication factor of a newly created topic.
    pub replication_factor: i32,
    /// Extra librdkafka settings for every client (security: `security.protocol`,
    /// `sasl.*`, `ssl.*`); they override Herald's defaults.
    pub client: BTreeMap<String, String>,
    /// Extra librdkafka producer settings (`compression.type`, `linger.ms`, security…);
    /// they override Herald's defaults.
    pub producer: BTreeMap<String, String>,
    /// Extra librdkafka consumer settings (`session.timeout.ms`, `max.poll.interval.ms`,
    /// security…); they override Herald's defaults.
    pub consumer: BTreeMap<String, String>,
    /// Longest wait for every record of a publish to be acknowledged by the brokers.
    pub publish_timeout: Duration,
    /// Retry-After suggested to publishers while Kafka is unreachable or the producer queue
    /// is full.
    pub retry_after: Duration,
    /// How often each reader commits its acknowledged prefix (also committed on rebalance
    /// and on close). A shorter interval means fewer redeliveries after a crash.
    pub commit_interval: Duration,
    /// Longest wait for metadata, admin and offset requests (topic creation, seek).
    pub request_timeout: Duration,
    /// Idempotent producer (`enable.idempotence`): no duplicates from producer retries.
    /// Off by default: tansu 0.6 accepts idempotent producers but, once a record has timed
    /// out (a broker outage), fails every later produce of that producer. Turn it on for
    /// Apache Kafka and compatible brokers that implement KIP-360.
    pub idempotence: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: "herald".into(),
            partitions: 4,
            replication_factor: 1,
            client: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
            publish_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            commit_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            idempotence: false,
        }
    }
}

impl KafkaConfig {
    fn common(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "herald")
            // librdkafka logs through `log`; keep its reconnect chatter out of Herald's logs
            // unless asked for.
            .set("log_level", "4");
        for (k, v) in &self.client {
            config.set(k, v);
        }
        config
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.common();
        let timeout_ms = self.publish_timeout.as_millis().max(1).to_string();
        config
            // A publish is confirmed only once every in-sync replica has the record.
            .set("acks", "all")
            .set("enable.idempotence", self.idempotence.to_string())
            // librdkafka gives up on a record (and fails its delivery future) when the
            // publisher would give up anyway.
            .set("message.timeout.ms", &timeout_ms)
            // Publishers are waiting for the answer: send at once rather than batch up.
            .set("linger.ms", "1");
        for (k, v) in &self.producer {
            config.set(k, v);
        }
        config
    }

    /// A group member: offsets are committed by Herald, only for acknowledged events.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.common();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Only a group with no committed offset at all falls back to this; `subscribe`
            // commits the head for a new Trigger first, so this is a safety net.
            .set("auto.offset.reset", "latest")
            .set("enable.partition.eof", "false");
        for (k, v) in &self.consumer {
            config.set(k, v);
        }
        config
    }

    pub(crate) fn admin_config(&self) -> ClientConfig {
        self.common()
    }
}
