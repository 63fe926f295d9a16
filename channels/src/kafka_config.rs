//! The Kafka channel's configuration. Always compiled, so configuration (CLI flags, Broker
//! settings) reads the same with or without the `kafka` feature; the client itself is in
//! [`crate::kafka`].

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
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
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub publish_timeout: Duration,
    /// Retry-After suggested to publishers while Kafka is unreachable or the producer queue
    /// is full.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub retry_after: Duration,
    /// How often each reader commits its acknowledged prefix (also committed on rebalance
    /// and on close). A shorter interval means fewer redeliveries after a crash.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub commit_interval: Duration,
    /// Longest wait for metadata, admin and offset requests (topic creation, seek).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub request_timeout: Duration,
    /// Most events the slowest Trigger's consumer group may lag (high watermark minus
    /// committed offset, summed over partitions) before publishes answer 429; 0 turns the
    /// check off.
    pub max_lag_events: u64,
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
            max_lag_events: 1_000_000,
            idempotence: false,
        }
    }
}
