//! The Kafka tests' broker: a private tansu per test (herald-test-support's, sqlite store), and
//! Herald's channel backends pointed at it.

use herald_broker::backends::BackendsConfig;
use herald_channels::KafkaConfig;
pub use herald_test_support::tansu::Tansu;

/// Channel backends with Kafka on `tansu`.
pub fn kafka_channels(tansu: &Tansu) -> BackendsConfig {
    BackendsConfig {
        kafka: KafkaConfig {
            bootstrap_servers: tansu.bootstrap(),
            ..Default::default()
        },
        ..Default::default()
    }
}
