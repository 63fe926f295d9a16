//! A Broker of Knative's `Kafka` class runs on the Kafka channel end to end: ingress ->
//! topic -> one consumer group per Trigger -> subscribers. Against a private tansu (a real
//! Kafka-API broker) on sqlite; with CI=true a missing tansu fails the test.

mod common;

use common::tansu::{kafka_channels, Tansu};
use common::*;
use herald_broker::serve::ServeConfig;
use std::time::Duration;

/// Test ServeConfig with Kafka on `tansu`.
fn on_kafka(tansu: &Tansu) -> ServeConfig {
    ServeConfig {
        channels: kafka_channels(tansu),
        ..config()
    }
}

#[tokio::test]
async fn a_kafka_class_broker_routes_events_to_its_triggers() {
    let Some(tansu) = Tansu::start(module_path!()).await else {
        return;
    };
    let (orders, payments) = (Subscriber::start().await, Subscriber::start().await);
    let trigger = |name: &str, ty: &str, sub: &Subscriber| {
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: ns}}\n\
             spec:\n  broker: b\n  filter: {{attributes: {{type: {ty}}}}}\n  subscriber: {{uri: '{}'}}\n",
            sub.url()
        )
    };
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: ns\n  \
         annotations: {{eventing.knative.dev/broker.class: Kafka}}\n{}{}",
        trigger("orders", "order", &orders),
        trigger("payments", "payment", &payments)
    );
    let config = on_kafka(&tansu);
    let server = start_with(&yaml, config).await;
    let url = server.broker_url("ns", "b");
    let n = 20;
    for i in 0..n {
        for ty in ["order", "payment"] {
            let reply = send_binary(&url, &event(&format!("{ty}-{i}"), ty)).await;
            assert_eq!(reply.status, 202, "{}", reply.body);
        }
    }
    for (sub, ty) in [(&orders, "order"), (&payments, "payment")] {
        let received = sub.wait_for(n, Duration::from_secs(30)).await;
        let mut ids: Vec<String> = received.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{ty}: every event once");
        assert!(
            ids.iter().all(|id| id.starts_with(ty)),
            "{ty}: a filtered-out event arrived: {ids:?}"
        );
    }
    // The fences above prove delivery; nothing beyond the 2n events may arrive.
    orders
        .assert_no_more(
            n,
            Duration::from_millis(300),
            "no duplicates in the happy path",
        )
        .await;
    server.shutdown().await;
}

/// A KafkaChannel is a Channel on the Kafka backend: its Subscriptions get every event.
#[tokio::test]
async fn a_kafka_channel_fans_out_to_its_subscriptions() {
    let Some(tansu) = Tansu::start(module_path!()).await else {
        return;
    };
    let (a, b) = (Subscriber::start().await, Subscriber::start().await);
    let sub = |name: &str, s: &Subscriber| {
        format!(
            "---\napiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{name: {name}, namespace: ns}}\n\
             spec:\n  channel: {{apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: work}}\n  \
             subscriber: {{uri: '{}'}}\n",
            s.url()
        )
    };
    let yaml = format!(
        "apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel\nmetadata: {{name: work, namespace: ns}}\n\
         spec: {{numPartitions: 2, replicationFactor: 1}}\n{}{}",
        sub("a", &a),
        sub("b", &b)
    );
    let config = on_kafka(&tansu);
    let server = start_with(&yaml, config).await;
    let url = server.url().join("/channels/ns/work").unwrap();
    let n = 20;
    for i in 0..n {
        let reply = send_binary(&url, &event(&format!("e{i}"), "work")).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    for s in [&a, &b] {
        let received = s.wait_for(n, Duration::from_secs(30)).await;
        let mut ids: Vec<String> = received.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
    server.shutdown().await;
}
