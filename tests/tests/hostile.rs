//! Hostile attribute values on every channel (memory, sled, NATS, Kafka): what ingress
//! answers 202 for arrives exactly as sent, and no value can rewrite another attribute
//! (attribute injection through a line break in a header) or get an event dropped after its
//! 202 (non-ASCII on NATS, line breaks at delivery, a binary `ce-data` header on sled). What
//! no channel can carry is refused with 400 before the 202.
//!
//! NATS needs JetStream on 127.0.0.1:4222, Kafka a tansu binary (`~/.cargo/bin/tansu`); with
//! CI=true a missing server fails the test, otherwise it is skipped with a notice.

mod common;

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use common::tansu::{kafka_channels, Tansu};
use common::*;
use herald_broker::backends::BackendsConfig;
use herald_broker::serve::ServeConfig;
use herald_channels::binding::decode_header_value;
use std::time::Duration;

const INJECTED: &str = "x\r\nce-type: admin.command";
const BROKEN_LINE: &str = "line\nbreak\r\n\0end";
const UNICODE: &str = "héllo 😀";

/// Broker `ns/b` on `channel` with a catch-all Trigger to `all` and a Trigger filtering
/// `type: admin.command` to `admin`.
fn yaml(channel: &str, all: &Subscriber, admin: &Subscriber) -> String {
    format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: b
  namespace: ns
  annotations: {{herald.dev/channel: {channel}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all, namespace: ns}}
spec:
  broker: b
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: admin, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{type: admin.command}}}}
  subscriber: {{uri: "{}"}}
"#,
        all.url(),
        admin.url()
    )
}

fn hostile(id: &str, subject: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source(SOURCE)
        .ty("user.note")
        .subject(subject)
        .extension("note", BROKEN_LINE)
        .data("application/json", serde_json::json!({"k": 1}))
        .build()
        .unwrap()
}

/// A delivered request's header, percent-decoded per the HTTP binding.
fn decoded(r: &Received, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .map(|v| decode_header_value(v.as_bytes()).expect("a decodable header"))
}

async fn post_raw(url: &url::Url, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = reqwest::Client::new()
        .post(url.clone())
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

async fn check_channel(channel: &str, channels: BackendsConfig) {
    let (all, admin) = (Subscriber::start().await, Subscriber::start().await);
    let config = ServeConfig {
        channels,
        ..config()
    };
    let server = start_with(&yaml(channel, &all, &admin), config).await;
    let url = server.broker_url("ns", "b");

    // Structured mode: JSON strings may carry anything; ingress accepts and carries them.
    for (id, subject) in [("inject", INJECTED), ("unicode", UNICODE)] {
        let reply = send_structured(&url, &hostile(id, subject)).await;
        assert_eq!(reply.status, 202, "{channel}: {id}: {}", reply.body);
    }
    // Binary mode: percent-encoded values are decoded at ingress and carried exactly.
    let encoded = [
        ("ce-specversion", "1.0"),
        ("ce-id", "binary"),
        ("ce-source", SOURCE),
        ("ce-type", "user.note"),
        ("ce-subject", "x%0D%0Ace-type:%20admin.command"),
        ("ce-note", "line%0Abreak%0D%0A%00end"),
        ("content-type", "application/json"),
    ];
    let reply = post_raw(&url, &encoded, r#"{"k":1}"#).await;
    assert_eq!(reply.status, 202, "{channel}: binary: {}", reply.body);
    // A binary ce-data header makes an extension named data, which no stored form can carry.
    let with_data = [
        ("ce-specversion", "1.0"),
        ("ce-id", "with-data"),
        ("ce-source", SOURCE),
        ("ce-type", "user.note"),
        ("ce-data", "{}"),
    ];
    let reply = post_raw(&url, &with_data, "").await;
    assert_eq!(reply.status, 400, "{channel}: ce-data: {}", reply.body);
    assert!(reply.body.contains("\"data\""), "{channel}: {}", reply.body);

    let received = all.wait_for(3, Duration::from_secs(30)).await;
    for r in &received {
        let id = decoded(r, "ce-id").unwrap();
        assert_eq!(
            r.header("ce-type"),
            Some("user.note"),
            "{channel}: {id}: type rewritten; headers {:?}",
            r.headers
        );
        assert_eq!(
            r.headers.get_all("ce-type").iter().count(),
            1,
            "{channel}: {id}"
        );
        let want_subject = if id == "unicode" { UNICODE } else { INJECTED };
        assert_eq!(
            decoded(r, "ce-subject").as_deref(),
            Some(want_subject),
            "{channel}: {id}"
        );
        assert_eq!(
            decoded(r, "ce-note").as_deref(),
            Some(BROKEN_LINE),
            "{channel}: {id}"
        );
        for (name, value) in &r.headers {
            assert!(
                value.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)),
                "{channel}: {id}: header {name} is not printable ASCII: {value:?}"
            );
        }
    }
    let mut ids: Vec<_> = received
        .iter()
        .map(|r| decoded(r, "ce-id").unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["binary", "inject", "unicode"], "{channel}");
    all.assert_no_more(3, Duration::from_millis(300), "each event once")
        .await;
    admin
        .assert_no_more(
            0,
            Duration::from_millis(300),
            "nothing passes the admin filter",
        )
        .await;
    server.shutdown().await;
    println!("{channel}: 3 hostile events delivered exactly, ce-data refused with 400, admin trigger got 0");
}

#[tokio::test]
async fn hostile_attributes_on_the_memory_channel() {
    check_channel("memory", BackendsConfig::default()).await;
}

#[tokio::test]
async fn hostile_attributes_on_the_sled_channel() {
    let dir = tempfile::tempdir().unwrap();
    check_channel("sled", sled_channels(dir.path())).await;
}

#[tokio::test]
async fn hostile_attributes_on_the_nats_channel() {
    let Some(channels) = nats_channels("HOSTILE").await else {
        return;
    };
    check_channel("nats", channels).await;
}

#[tokio::test]
async fn hostile_attributes_on_the_kafka_channel() {
    let Some(tansu) = Tansu::start(module_path!()).await else {
        return;
    };
    check_channel("kafka", kafka_channels(&tansu)).await;
}
