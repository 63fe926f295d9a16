//! The NATS baseline: the same work Herald's NATS channel asks of JetStream, done directly
//! with the same client library — publish 1-KiB messages (waiting for each publish ack) from
//! `senders` tasks and consume them from a durable pull consumer with explicit acks.

use super::load::{finish_raw, RunResult};
use super::sink::{latency_histogram, now_micros};
use super::{BenchConfig, BenchError};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub async fn run(config: &BenchConfig, url: &str) -> Result<RunResult, BenchError> {
    let err = |detail: String| BenchError::Case {
        case: "raw nats".into(),
        detail,
    };
    let client = async_nats::connect(url)
        .await
        .map_err(|e| err(format!("cannot connect to {url}: {e}")))?;
    let js = jetstream::new(client);
    let name = format!("HERALD_BENCH_RAW_{}", std::process::id());
    let subject = format!("herald-bench-raw.{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            "raw",
            consumer::pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err(e.to_string()))?;

    let events = config.events;
    let receiver = tokio::spawn(async move {
        let mut latencies = latency_histogram();
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let mut last = 0;
        for _ in 0..events {
            let message = messages
                .next()
                .await
                .ok_or("consumer ended")?
                .map_err(|e| e.to_string())?;
            let now = now_micros();
            if let Some(sent) = message
                .headers
                .as_ref()
                .and_then(|h| h.get("ts"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
            {
                let _ = latencies.record(now.saturating_sub(sent).max(1));
            }
            message.ack().await.map_err(|e| e.to_string())?;
            last = now;
        }
        Ok::<_, String>((latencies, last))
    });

    let body = Bytes::from(vec![b'x'; config.event_size]);
    let next = Arc::new(AtomicUsize::new(0));
    let start = now_micros();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..config.senders {
        let (js, subject, body, next) = (js.clone(), subject.clone(), body.clone(), next.clone());
        senders.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < events {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("ts", now_micros().to_string().as_str());
                let ack = js
                    .publish_with_headers(subject.clone(), headers, body.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        });
    }
    let result = finish_raw(events, start, senders, receiver, err).await?;
    let _ = js.delete_stream(&name).await;
    Ok(result)
}
