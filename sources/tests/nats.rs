//! NatsSource on the real NATS server (127.0.0.1:4222): a core subject (a request is
//! answered once the sink accepted its event) and a JetStream stream through a durable
//! consumer that acks a message only after the sink accepted it.

mod common;

use async_nats::jetstream;
use common::{nats_up, resource, run, unique, Refusing, TestSink};
use herald_sources::SourceEnv;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const NATS: &str = "nats://127.0.0.1:4222";

fn source(name: &str, subject: &str, extra: &str) -> herald_core::Resource {
    resource(&format!(
        "apiVersion: sources.herald.dev/v1alpha1\nkind: NatsSource\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  url: {NATS}\n  subject: {subject}\n{extra}  sink: {{uri: 'http://127.0.0.1:9/'}}\n"
    ))
}

#[tokio::test]
async fn a_core_subject_wraps_plain_messages_and_passes_cloudevents_on() {
    if !nats_up().await {
        return;
    }
    let subject = unique("orders");
    let mut sink = TestSink::start().await;
    let mut running = run(
        source("core", &subject, ""),
        &sink.url,
        Arc::new(SourceEnv::default()),
    );
    running.until_ok(WAIT).await;
    let client = async_nats::connect(NATS).await.unwrap();

    // A request is answered once the sink has the event.
    tokio::time::timeout(WAIT, client.request(subject.clone(), "hello".into()))
        .await
        .expect("answered in time")
        .unwrap();
    let plain = sink.next(WAIT).await;
    assert_eq!(plain.header("ce-type"), Some("dev.herald.nats.event"));
    assert_eq!(
        plain.header("ce-source"),
        Some("/apis/v1alpha1/namespaces/ns/natssources/core")
    );
    assert_eq!(plain.header("ce-subject"), Some(subject.as_str()));
    assert_eq!(&plain.body[..], b"hello");

    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "n-1"),
        ("ce-source", "/producer"),
        ("ce-type", "com.example.nats"),
        ("content-type", "application/json"),
    ] {
        headers.insert(k, v);
    }
    client
        .request_with_headers(subject.clone(), headers, r#"{"n":1}"#.into())
        .await
        .unwrap();
    let ce = sink.next(WAIT).await;
    assert_eq!(ce.header("ce-id"), Some("n-1"));
    assert_eq!(ce.header("ce-type"), Some("com.example.nats"));
    assert_eq!(ce.header("content-type"), Some("application/json"));
    assert_eq!(&ce.body[..], br#"{"n":1}"#);
    running.stop().await;
}

#[tokio::test]
async fn jetstream_messages_are_acked_only_after_the_sink_accepted() {
    if !nats_up().await {
        return;
    }
    let client = async_nats::connect(NATS).await.unwrap();
    let js = jetstream::new(client);
    let stream = unique("SRC").to_uppercase();
    let subject = format!("{}.events", stream.to_lowercase());
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..3 {
        js.publish(subject.clone(), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut sink = TestSink::start().await;
    sink.refuse(Refusing::Everything);
    let consumer = unique("durable");
    let running = run(
        source(
            "js",
            &subject,
            &format!("  stream: {stream}\n  consumer: {consumer}\n  initialOffset: earliest\n"),
        ),
        &sink.url,
        Arc::new(SourceEnv::default()),
    );
    // The first message is tried again and again; nothing is acked meanwhile.
    for _ in 0..2 {
        let r = sink.next(WAIT).await;
        assert_eq!(
            r.header("ce-id").map(str::to_string),
            Some(format!("{stream}:1"))
        );
    }
    let mut info = js
        .get_stream(&stream)
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>(&consumer)
        .await
        .unwrap();
    assert_eq!(info.info().await.unwrap().ack_floor.stream_sequence, 0);

    sink.refuse(Refusing::Nothing);
    let mut accepted = Vec::new();
    while accepted.len() < 3 {
        let r = sink.next(WAIT).await;
        if !r.refused {
            accepted.push(String::from_utf8(r.body.to_vec()).unwrap());
        }
    }
    assert_eq!(accepted, ["m0", "m1", "m2"]);
    let deadline = Instant::now() + WAIT;
    while info.info().await.unwrap().ack_floor.stream_sequence < 3 {
        assert!(
            Instant::now() < deadline,
            "the accepted messages were not acked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
    js.delete_stream(&stream).await.unwrap();
}
