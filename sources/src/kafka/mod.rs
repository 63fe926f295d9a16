//! KafkaSource (`sources.knative.dev/v1beta1`): the records of Kafka topics as events, read
//! by a member of the source's consumer group (`spec.consumerGroup`, starting at
//! `spec.initialOffset` when the group has committed nothing). A record that is a CloudEvent
//! in the Kafka protocol binding (binary `ce_` headers, or structured
//! `application/cloudevents+json`) is that event, as written; any other record is wrapped as
//! Knative wraps it ([`event`]).
//!
//! At least once: a partition's offset is committed only up to the first record the sink has
//! not accepted (delivered, or dead-lettered per the DeliverySpec), so a restart or a
//! rebalance resumes there ([`offsets`]). `ordering: ordered` (the default) sends one record
//! of a partition at a time, in order; `unordered` sends up to [`MAX_IN_FLIGHT`] at once.
//! `spec.consumers` is accepted and not used: each Herald runs one group member per source.

pub mod event;
pub mod offsets;

#[cfg(feature = "kafka")]
mod consumer;

use crate::error::ConfigError;
use crate::{Source, SourceContext, SourceError};
use herald_core::{InitialOffset, KafkaSource, Kind, Ordering};

/// Records sent to the sink at once by an `unordered` source.
pub const MAX_IN_FLIGHT: usize = 64;

// Read by the consumer, which the `kafka` feature builds.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub struct Kafka {
    bootstrap_servers: String,
    topics: Vec<String>,
    group: String,
    initial_offset: InitialOffset,
    ordering: Ordering,
    /// `/apis/v1/namespaces/<ns>/kafkasources/<name>`; a wrapped record's source adds
    /// `#<topic>`.
    source_base: String,
}

pub fn build(k: &KafkaSource) -> Result<Kafka, ConfigError> {
    let bad = |field: String, message: String| ConfigError {
        kind: Kind::KafkaSource,
        key: k.key(),
        field,
        message,
    };
    for (i, server) in k.spec.bootstrap_servers.iter().enumerate() {
        let ok = server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(bad(
                format!("spec.bootstrapServers[{i}]"),
                format!("{server:?} is not host:port"),
            ));
        }
    }
    for (i, topic) in k.spec.topics.iter().enumerate() {
        if let Err(why) = check_topic(topic) {
            return Err(bad(format!("spec.topics[{i}]"), format!("{topic:?} {why}")));
        }
    }
    if k.spec
        .consumer_group
        .as_ref()
        .is_some_and(|g| g.trim().is_empty())
    {
        return Err(bad("spec.consumerGroup".into(), "must not be empty".into()));
    }
    Ok(Kafka {
        bootstrap_servers: k.spec.bootstrap_servers.join(","),
        topics: k.spec.topics.clone(),
        group: k.consumer_group(),
        initial_offset: k.spec.initial_offset.unwrap_or_default(),
        ordering: k.spec.ordering.unwrap_or_default(),
        source_base: format!(
            "/apis/v1/namespaces/{}/kafkasources/{}",
            k.metadata.namespace(),
            k.metadata.name
        ),
    })
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must be 1 to 249 characters");
    }
    if topic == "." || topic == ".." {
        return Err("is not a topic name");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may hold only a-z, A-Z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

#[async_trait::async_trait]
impl Source for Kafka {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        #[cfg(feature = "kafka")]
        {
            consumer::run(&self, &ctx).await
        }
        #[cfg(not(feature = "kafka"))]
        {
            ctx.report(herald_core::Check::failed(
                "NotImplemented",
                "this Herald was built without Kafka (the `kafka` feature)",
            ));
            ctx.shutdown.cancelled().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_core::{load_resource, Resource};

    fn source(spec: &str) -> Result<super::Kafka, String> {
        let yaml = format!(
            "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata: {{name: orders, namespace: shop}}\nspec:\n  sink: {{uri: 'http://127.0.0.1:1/'}}\n{spec}"
        );
        let Resource::KafkaSource(k) = load_resource("t.yaml", &yaml).map_err(|e| e.to_string())?
        else {
            unreachable!()
        };
        super::build(&k).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_config_names_the_source_and_field() {
        let e = source("  bootstrapServers: [localhost]\n  topics: [t]\n")
            .err()
            .unwrap();
        assert!(e.contains("KafkaSource shop/orders"), "{e}");
        assert!(e.contains("spec.bootstrapServers[0]"), "{e}");
        let e = source("  bootstrapServers: ['k:9092']\n  topics: [ok, 'bad topic']\n")
            .err()
            .unwrap();
        assert!(
            e.contains("spec.topics[1]") && e.contains("bad topic"),
            "{e}"
        );
        let e = source("  bootstrapServers: ['k:9092']\n  topics: [t]\n  consumerGroup: ' '\n")
            .err()
            .unwrap();
        assert!(e.contains("spec.consumerGroup"), "{e}");
    }

    #[test]
    fn defaults_follow_knative() {
        let k = source("  bootstrapServers: ['a:9092', 'b:9092']\n  topics: [t]\n").unwrap();
        assert_eq!(k.bootstrap_servers, "a:9092,b:9092");
        assert_eq!(k.initial_offset, herald_core::InitialOffset::Latest);
        assert_eq!(k.ordering, herald_core::Ordering::Ordered);
        assert_eq!(
            k.source_base,
            "/apis/v1/namespaces/shop/kafkasources/orders"
        );
    }
}
