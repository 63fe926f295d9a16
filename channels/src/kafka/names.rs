//! Kafka names for Herald's channels and subscriptions: one topic per Broker, one consumer
//! group per Trigger.

/// Kafka rejects topic names longer than this.
const MAX_TOPIC_LEN: usize = 249;

/// `<prefix>.<namespace>.<broker>` for the channel `namespace/broker`, restricted to the
/// characters Kafka allows in topic names.
pub(crate) fn topic(prefix: &str, channel: &str) -> String {
    fit(format!("{}.{}", sanitize(prefix), sanitize(channel)))
}

/// The consumer group of one subscription: scoped by the topic, because subscription names
/// (`trigger.<ns>.<name>`) are unique only within a Broker and group ids are cluster-wide.
pub(crate) fn group(topic: &str, subscription: &str) -> String {
    fit(format!("{topic}.{}", sanitize(subscription)))
}

/// Keeps `[A-Za-z0-9._-]`; anything else (`/` in `namespace/broker`) becomes `.`.
fn sanitize(name: &str) -> String {
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

/// Shortens an over-long name, keeping it unique with a hash of the whole name.
fn fit(name: String) -> String {
    if name.len() <= MAX_TOPIC_LEN {
        return name;
    }
    let hash = format!("{:016x}", fnv1a(name.as_bytes()));
    // The name is ASCII after sanitizing, so any byte index is a char boundary.
    format!("{}.{hash}", &name[..MAX_TOPIC_LEN - hash.len() - 1])
}

/// A hash that is stable across Rust versions (topic names must not change on upgrade).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_group_names_are_kafka_safe() {
        assert_eq!(
            topic("herald", "default/my-broker"),
            "herald.default.my-broker"
        );
        assert_eq!(
            group("herald.default.b", "trigger.default.t1"),
            "herald.default.b.trigger.default.t1"
        );
        assert_eq!(topic("herald", "ns/ü b"), "herald.ns...b");
    }

    #[test]
    fn long_names_are_shortened_but_stay_distinct() {
        let a = topic("herald", &format!("ns/{}", "a".repeat(300)));
        let b = topic("herald", &format!("ns/{}b", "a".repeat(300)));
        assert_eq!(a.len(), MAX_TOPIC_LEN);
        assert_ne!(a, b);
    }
}
