//! The Kafka baseline: the same work Herald's Kafka channel asks of the broker, done directly
//! with the same client library (rdkafka) — produce 1-KiB records from `senders` tasks,
//! each waiting for its delivery report, and consume them with a consumer group.

use super::load::{finish_raw, RunResult};
use super::sink::{latency_histogram, now_micros};
use super::{BenchConfig, BenchError};
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(config: &BenchConfig, bootstrap: &str) -> Result<RunResult, BenchError> {
    let err = |detail: String| BenchError::Case {
        case: "raw kafka".into(),
        detail,
    };
    let topic = format!("herald-bench-raw-{}-{}", std::process::id(), now_micros());
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<_> = client.create().map_err(|e| err(e.to_string()))?;
    admin
        .create_topics(
            &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|e| err(format!("cannot create {topic}: {e}")))?;
    let producer: FutureProducer = client
        .clone()
        // Herald's producer settings, so the comparison is like for like.
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(|e| err(e.to_string()))?;
    let consumer: StreamConsumer = client
        .clone()
        .set("group.id", format!("{topic}-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .map_err(|e| err(e.to_string()))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| err(e.to_string()))?;

    let events = config.events;
    // The clock starts only once the consumer has joined its group and read a warm-up
    // record, as Herald's consumers have before its case starts.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let mut latencies = latency_histogram();
        let mut stream = consumer.stream();
        stream
            .next()
            .await
            .ok_or("consumer ended")?
            .map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let mut last = 0;
        for _ in 0..events {
            let message = stream
                .next()
                .await
                .ok_or("consumer ended")?
                .map_err(|e| e.to_string())?;
            let now = now_micros();
            let sent = message.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "ts")
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            });
            if let Some(sent) = sent {
                let _ = latencies.record(now.saturating_sub(sent).max(1));
            }
            last = now;
        }
        Ok::<_, String>((latencies, last))
    });
    producer
        .send(
            FutureRecord::<(), _>::to(&topic).payload("warm-up"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| err(format!("warm-up record: {e}")))?;
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .map_err(|_| err("the consumer did not join within 60 s".into()))?
        .map_err(|_| err("the consumer stopped before the warm-up record".into()))?;

    let body = Arc::new(vec![b'x'; config.event_size]);
    let next = Arc::new(AtomicUsize::new(0));
    let start = now_micros();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..config.senders {
        let (producer, topic, body, next) =
            (producer.clone(), topic.clone(), body.clone(), next.clone());
        senders.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < events {
                let ts = now_micros().to_string();
                let headers = OwnedHeaders::new().insert(Header {
                    key: "ts",
                    value: Some(ts.as_str()),
                });
                let record = FutureRecord::<(), _>::to(&topic)
                    .payload(body.as_slice())
                    .headers(headers);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e.to_string())?;
            }
            Ok::<_, String>(())
        });
    }
    finish_raw(events, start, senders, receiver, err).await
}
