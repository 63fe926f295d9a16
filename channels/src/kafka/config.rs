//! The Kafka channel's configuration and the librdkafka client settings derived from it.

pub use crate::kafka_config::KafkaConfig;
use rdkafka::ClientConfig;

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
