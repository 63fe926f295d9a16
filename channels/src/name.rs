//! How a channel's name (a Broker key, `namespace/name`) and a subscription's name become the
//! names each backend stores them under: a NATS stream, subject and durable consumer, a Kafka
//! topic and consumer group, the durable log's directory. One place, so the backends cannot drift apart and a
//! name never changes on upgrade (stored data is found by it).

use std::fmt;

/// Kafka rejects topic and group names longer than this.
const MAX_KAFKA_NAME_LEN: usize = 249;
/// Longest directory name the durable log uses for a channel.
const MAX_DIR_NAME_LEN: usize = 200;

/// A channel's name as Herald knows it: a Broker's `namespace/name` (or any non-empty text
/// for channels opened directly).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JetStream stream: `<prefix>_<namespace>_<name>`.
    pub fn nats_stream(&self, prefix: &str) -> String {
        format!("{prefix}_{}", nats_token(&self.0, '_'))
    }

    /// The subject the stream listens on: `<prefix lowercased>.<namespace>.<name>`.
    pub fn nats_subject(&self, prefix: &str) -> String {
        format!("{}.{}", prefix.to_lowercase(), nats_token(&self.0, '.'))
    }

    /// The Kafka topic: `<prefix>.<namespace>.<name>`, restricted to the characters Kafka
    /// allows and shortened (with a hash) if too long.
    pub fn kafka_topic(&self, prefix: &str) -> String {
        fit(format!("{}.{}", kafka_token(prefix), kafka_token(&self.0)))
    }

    /// The directory of the durable log: the name with every byte outside `[A-Za-z0-9_-]`
    /// written `%XX` (so `/` and `.` cannot escape the store), shortened with a hash past
    /// 200 bytes (file systems allow 255).
    pub fn log_dir_name(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        if out.len() <= MAX_DIR_NAME_LEN {
            return out;
        }
        let hash = format!("{:016x}", fnv1a(self.0.as_bytes()));
        // ASCII after escaping, so any byte index is a char boundary.
        format!("{}~{hash}", &out[..MAX_DIR_NAME_LEN - hash.len() - 1])
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ChannelName {
    fn from(name: &str) -> Self {
        Self(name.to_string())
    }
}

impl From<String> for ChannelName {
    fn from(name: String) -> Self {
        Self(name)
    }
}

impl From<&String> for ChannelName {
    fn from(name: &String) -> Self {
        Self(name.clone())
    }
}

impl From<&ChannelName> for ChannelName {
    fn from(name: &ChannelName) -> Self {
        name.clone()
    }
}

impl From<&herald_core::ResourceKey> for ChannelName {
    fn from(key: &herald_core::ResourceKey) -> Self {
        Self(key.to_string())
    }
}

/// The durable consumer of a subscription on its stream.
pub fn nats_durable(subscription: &str) -> String {
    nats_token(subscription, '_')
}

/// The consumer group of one subscription: scoped by the topic, because subscription names
/// (`trigger.<ns>.<name>`) are unique only within a Broker and group ids are cluster-wide.
pub fn kafka_group(topic: &str, subscription: &str) -> String {
    fit(format!("{topic}.{}", kafka_token(subscription)))
}

/// NATS names allow only a safe subset: anything else becomes `separator`.
fn nats_token(name: &str, separator: char) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                separator
            }
        })
        .collect()
}

/// Keeps `[A-Za-z0-9._-]`; anything else (`/` in `namespace/broker`) becomes `.`.
fn kafka_token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '.'
            }
        })
        .collect()
}

/// Shortens an over-long Kafka name, keeping it unique with a hash of the whole name.
fn fit(name: String) -> String {
    if name.len() <= MAX_KAFKA_NAME_LEN {
        return name;
    }
    let hash = format!("{:016x}", fnv1a(name.as_bytes()));
    // The name is ASCII after sanitizing, so any byte index is a char boundary.
    format!("{}.{hash}", &name[..MAX_KAFKA_NAME_LEN - hash.len() - 1])
}

/// A hash that is stable across Rust versions (names must not change on upgrade).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_names_are_safe() {
        let n = ChannelName::from("default/my-broker");
        assert_eq!(n.nats_stream("HERALD"), "HERALD_default_my-broker");
        assert_eq!(n.nats_subject("HERALD"), "herald.default.my-broker");
        assert_eq!(nats_durable("trigger.default.t1"), "trigger_default_t1");
    }

    #[test]
    fn topic_and_group_names_are_kafka_safe() {
        let n = ChannelName::from("default/my-broker");
        assert_eq!(n.kafka_topic("herald"), "herald.default.my-broker");
        assert_eq!(
            kafka_group("herald.default.b", "trigger.default.t1"),
            "herald.default.b.trigger.default.t1"
        );
        assert_eq!(
            ChannelName::from("ns/ü b").kafka_topic("herald"),
            "herald.ns...b"
        );
    }

    #[test]
    fn long_kafka_names_are_shortened_but_stay_distinct() {
        let a = ChannelName::new(format!("ns/{}", "a".repeat(300))).kafka_topic("herald");
        let b = ChannelName::new(format!("ns/{}b", "a".repeat(300))).kafka_topic("herald");
        assert_eq!(a.len(), MAX_KAFKA_NAME_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn log_directories_cannot_escape_and_stay_distinct() {
        assert_eq!(ChannelName::from("ns/b-1").log_dir_name(), "ns%2Fb-1");
        assert_eq!(ChannelName::from("..").log_dir_name(), "%2E%2E");
        let a = ChannelName::new(format!("ns/{}", "a".repeat(300))).log_dir_name();
        let b = ChannelName::new(format!("ns/{}b", "a".repeat(300))).log_dir_name();
        assert_eq!(a.len(), MAX_DIR_NAME_LEN);
        assert_ne!(a, b);
    }
}
