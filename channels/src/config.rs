//! The configuration of every channel backend, one section each, as read from a
//! `--channels-config` YAML (or JSON) file:
//!
//! ```yaml
//! default: sled            # backend of Brokers that name none
//! memory: {capacity: 10000}
//! sled: {dataDir: /var/lib/herald, sync: group, retention: {maxAge: PT1H}}
//! nats: {url: "nats://nats:4222", ackWait: PT30S}
//! kafka: {bootstrapServers: "kafka:9092", partitions: 8, client: {security.protocol: SASL_SSL}}
//! ```
//!
//! Durations are ISO-8601 (`PT30S`, as Knative writes them), humane (`30s`, `500ms`, `1h`) or
//! a number of seconds. Unknown keys are refused: a typo must not silently change behaviour.

use crate::registry::BackendKind;
use crate::{KafkaConfig, MemoryChannelConfig, NatsConfig, SledConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Every backend's configuration, and which one Brokers use by default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelsConfig {
    /// Backend of Brokers that do not name one. The library defaults to memory, so
    /// embedding Herald writes nothing to disk unless asked; the `herald` binary to sled.
    pub default: BackendKind,
    pub memory: MemoryChannelConfig,
    pub sled: SledSection,
    pub nats: NatsConfig,
    pub kafka: KafkaConfig,
}

/// The sled backend: where its store lives, and how it behaves.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SledSection {
    /// Directory of the embedded sled store.
    pub data_dir: PathBuf,
    #[serde(flatten)]
    pub store: SledConfig,
}

impl Default for SledSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("herald-data"),
            store: SledConfig::default(),
        }
    }
}

/// Parses a duration: ISO-8601 (`PT1.5S`), humane (`1500ms`, `30s`, `5m`, `2h`, `1d`) or a
/// bare number of seconds (`2.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('P') || text.starts_with('p') {
        return text
            .parse::<herald_core::IsoDuration>()
            .map(|d| d.as_duration())
            .map_err(|e| format!("{text:?}: {e}"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. PT30S, 30s, 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (ms, s, m, h or d)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Serde helpers for [`Duration`] fields (see [`parse_duration`]).
pub(crate) mod duration {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;
    use std::time::Duration;

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration: ISO-8601 (PT30S), humane (30s, 500ms) or seconds")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("a duration cannot be negative, got {v}")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(E::custom)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    /// For `Option<Duration>` fields; `null` is `None`.
    pub(crate) mod option {
        use serde::{Deserialize, Deserializer};
        use std::time::Duration;

        #[derive(Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "super::deserialize")] Duration);

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NatsStorage, SyncPolicy};

    #[test]
    fn durations_read_iso_humane_and_numbers() {
        assert_eq!(parse_duration("PT30S").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("PT0.5S").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        let e = parse_duration("10 parsecs").unwrap_err();
        assert!(e.contains("parsecs"), "{e}");
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn a_file_sets_each_backend_and_the_rest_stays_default() {
        let yaml = r#"
default: nats
memory: {capacity: 5, retryAfter: 2}
sled:
  dataDir: /tmp/h
  sync: per-event
  retention: {maxAge: PT1H, maxBytes: 1000}
  commitInterval: 50ms
nats: {url: "nats://n:4222", ackWait: PT10S, storage: memory, maxBytes: 4096}
kafka:
  bootstrapServers: "k:9092"
  partitions: 8
  client: {security.protocol: SASL_SSL}
  publishTimeout: 3s
"#;
        let c: ChannelsConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(c.default, BackendKind::Nats);
        assert_eq!(c.memory.capacity, 5);
        assert_eq!(c.memory.retry_after, Duration::from_secs(2));
        assert_eq!(c.sled.data_dir, PathBuf::from("/tmp/h"));
        assert_eq!(c.sled.store.sync, SyncPolicy::PerEvent);
        assert_eq!(
            c.sled.store.retention.max_age,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(c.sled.store.retention.max_bytes, Some(1000));
        assert_eq!(c.sled.store.commit_interval, Duration::from_millis(50));
        assert_eq!(
            c.sled.store.max_lag_events,
            SledConfig::default().max_lag_events
        );
        assert_eq!(c.nats.url, "nats://n:4222");
        assert_eq!(c.nats.ack_wait, Duration::from_secs(10));
        assert_eq!(c.nats.storage, NatsStorage::Memory);
        assert_eq!(c.nats.max_bytes, Some(4096));
        assert_eq!(c.kafka.bootstrap_servers, "k:9092");
        assert_eq!(c.kafka.partitions, 8);
        assert_eq!(c.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka.publish_timeout, Duration::from_secs(3));
        assert_eq!(c.kafka.topic_prefix, "herald");
    }

    #[test]
    fn sync_reads_group_per_event_or_an_interval() {
        let sync = |v: &str| -> SyncPolicy {
            let c: ChannelsConfig = serde_yaml::from_str(&format!("sled: {{sync: {v}}}")).unwrap();
            c.sled.store.sync
        };
        assert_eq!(sync("group"), SyncPolicy::Group);
        assert_eq!(sync("per-event"), SyncPolicy::PerEvent);
        assert_eq!(
            sync("PT0.2S"),
            SyncPolicy::Interval(Duration::from_millis(200))
        );
        assert_eq!(
            sync("250"),
            SyncPolicy::Interval(Duration::from_millis(250))
        );
    }

    #[test]
    fn typos_are_refused_with_the_key_named() {
        for yaml in [
            "defualt: sled",
            "sled: {dataDri: /x}",
            "sled: {retention: {maxAgee: PT1H}}",
            "nats: {ur: x}",
            "kafka: {bootstrap: x}",
            "memory: {capacty: 1}",
        ] {
            let e = serde_yaml::from_str::<ChannelsConfig>(yaml).unwrap_err();
            let key = yaml
                .trim_start_matches(|c: char| c != '{' && c != ' ')
                .to_string();
            assert!(
                e.to_string().contains("unknown field"),
                "{yaml}: {e} ({key})"
            );
        }
        let e = serde_yaml::from_str::<ChannelsConfig>("default: kafkaa").unwrap_err();
        assert!(e.to_string().contains("kafkaa"), "{e}");
        let e = serde_yaml::from_str::<ChannelsConfig>("nats: {ackWait: soon}").unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }
}
