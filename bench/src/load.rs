//! The load generator: `senders` concurrent HTTP clients POST 1-KiB-style binary-mode events,
//! either as fast as accepted (closed loop) or on a fixed schedule (open loop at a rate).

use super::sink::{now_micros, Sink};
use super::{BenchConfig, BenchError};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The end of a raw-client baseline: waits for every sender, then (up to 300 s) for the
/// receiver's latencies and last arrival (µs), and measures the run from `start` (µs).
pub async fn finish_raw(
    events: usize,
    start: u64,
    mut senders: tokio::task::JoinSet<Result<(), String>>,
    receiver: tokio::task::JoinHandle<Result<(hdrhistogram::Histogram<u64>, u64), String>>,
    err: impl Fn(String) -> BenchError,
) -> Result<RunResult, BenchError> {
    while let Some(r) = senders.join_next().await {
        r.map_err(|e| err(e.to_string()))?.map_err(&err)?;
    }
    let (latencies, last) = tokio::time::timeout(Duration::from_secs(300), receiver)
        .await
        .map_err(|_| err("consumer did not receive everything within 300 s".into()))?
        .map_err(|e| err(e.to_string()))?
        .map_err(&err)?;
    Ok(RunResult::measured(
        events, events, start, last, &latencies, 0,
    ))
}

pub const EVENT_TYPE: &str = "bench.event";

#[derive(Clone, Debug)]
pub struct RunResult {
    pub events: usize,
    pub deliveries: usize,
    /// Seconds from the first send to the last arrival at the sink.
    pub seconds: f64,
    pub events_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Sends answered 429/503 and retried (backpressure at work).
    pub pushed_back: u64,
}

impl RunResult {
    /// A closed-loop result: `events` sent from `start_us`, the last one arriving at
    /// `last_us`, with their latencies (µs).
    pub fn measured(
        events: usize,
        deliveries: usize,
        start_us: u64,
        last_us: u64,
        latencies: &hdrhistogram::Histogram<u64>,
        pushed_back: u64,
    ) -> Self {
        let seconds = last_us.saturating_sub(start_us) as f64 / 1e6;
        Self {
            events,
            deliveries,
            seconds,
            events_per_sec: events as f64 / seconds.max(1e-9),
            p50_us: latencies.value_at_quantile(0.50),
            p99_us: latencies.value_at_quantile(0.99),
            p999_us: latencies.value_at_quantile(0.999),
            pushed_back,
        }
    }
}

pub async fn run(
    name: &str,
    url: &str,
    sink: &Sink,
    config: &BenchConfig,
    deliveries_per_event: usize,
    rate: Option<f64>,
) -> Result<RunResult, BenchError> {
    let case_err = |detail: String| BenchError::Case {
        case: name.to_string(),
        detail,
    };
    sink.state.reset();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.senders)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| case_err(e.to_string()))?;
    let body = Bytes::from(payload(config.event_size));
    let next = Arc::new(AtomicUsize::new(0));
    let pushed_back = Arc::new(AtomicU64::new(0));
    let start = now_micros();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..config.senders {
        let (client, body, next, pushed_back) = (
            client.clone(),
            body.clone(),
            next.clone(),
            pushed_back.clone(),
        );
        let (url, events) = (url.to_string(), config.events);
        senders.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<(), String>(());
                }
                if let Some(rate) = rate {
                    let due = start + (i as f64 / rate * 1e6) as u64;
                    let now = now_micros();
                    if due > now {
                        tokio::time::sleep(Duration::from_micros(due - now)).await;
                    }
                }
                send_one(&client, &url, i, &body, &pushed_back).await?;
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r.map_err(|e| case_err(e.to_string()))?.map_err(case_err)?;
    }
    let expected = (config.events * deliveries_per_event) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let arrived = sink.state.arrived.notified();
        if sink.state.received.load(Ordering::SeqCst) >= expected {
            break;
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
            return Err(case_err(format!(
                "only {} of {expected} deliveries arrived within 300 s",
                sink.state.received.load(Ordering::SeqCst)
            )));
        }
    }
    let last = sink.state.last_arrival_micros.load(Ordering::SeqCst);
    let latencies = sink
        .state
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(RunResult::measured(
        config.events,
        expected as usize,
        start,
        last,
        &latencies,
        pushed_back.load(Ordering::Relaxed),
    ))
}

async fn send_one(
    client: &reqwest::Client,
    url: &str,
    i: usize,
    body: &Bytes,
    pushed_back: &AtomicU64,
) -> Result<(), String> {
    loop {
        let response = client
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("bench-{i}"))
            .header("ce-source", "/bench")
            .header("ce-type", EVENT_TYPE)
            .header("ce-benchts", now_micros().to_string())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        match response.status().as_u16() {
            200..=299 => return Ok(()),
            429 | 503 => {
                pushed_back.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s => {
                return Err(format!(
                    "event {i} answered {s}: {}",
                    response.text().await.unwrap_or_default()
                ))
            }
        }
    }
}

/// A JSON object of exactly `size` bytes (at least 12: the 11-byte wrapper and one pad byte).
fn payload(size: usize) -> Vec<u8> {
    let pad = size.saturating_sub(11).max(1);
    format!("{{\"pad\": \"{}\"}}", "x".repeat(pad)).into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn payload_has_the_requested_size() {
        assert_eq!(super::payload(1024).len(), 1024);
    }
}
