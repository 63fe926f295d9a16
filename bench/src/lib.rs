//! `herald-bench`: measures, in one run on one machine, a bare HTTP forwarder (the baseline)
//! and Herald end to end on each channel backend, plus a fan-out case, and prints events/s,
//! ingress-to-subscriber latency percentiles, peak RSS and each Herald figure as a ratio of
//! the baseline.
//!
//! Everything runs in this process (load generator, Herald or forwarder, sink), so each case
//! competes for the same cores the same way and the ratios compare like with like.

mod forwarder;
mod herald;
mod load;
#[cfg(feature = "kafka")]
mod raw_kafka;
mod raw_nats;
mod report;
mod sink;

use futures::FutureExt;
use herald::start_herald;
pub use report::{render, CaseResult};
use sink::Sink;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Events per case (closed loop, as fast as the system accepts them).
    pub events: usize,
    /// Concurrent senders.
    pub senders: usize,
    /// Size of each event's data, in bytes.
    pub event_size: usize,
    /// Also run each case open-loop at half its measured maximum rate, for latency.
    pub half_load: bool,
    /// Backends to run Herald on.
    pub channels: Vec<ChannelKind>,
    pub fan_out: bool,
    /// NATS server for the nats cases (raw JetStream baseline and Herald on NATS).
    pub nats_url: String,
    /// Kafka-API brokers for the kafka cases (raw rdkafka baseline and Herald on Kafka).
    pub kafka_bootstrap_servers: String,
}

/// The benchmark runs Herald on the same backends `herald serve` offers.
pub use herald_broker::backends::BackendKind as ChannelKind;

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            events: 20_000,
            senders: 32,
            event_size: 1024,
            half_load: true,
            channels: vec![ChannelKind::Memory, ChannelKind::Sled],
            fan_out: true,
            nats_url: "nats://127.0.0.1:4222".into(),
            kafka_bootstrap_servers: "127.0.0.1:9092".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start {0}: {1}")]
    Start(String, String),
    #[error("case {case}: {detail}")]
    Case { case: String, detail: String },
}

/// Runs every case and returns the results in print order (the baseline first).
pub async fn run(config: &BenchConfig) -> Result<Vec<CaseResult>, BenchError> {
    let mut results = Vec::new();
    let sink = Sink::start().await?;

    let fwd = forwarder::start(sink.url()).await?;
    let baseline = measure("forwarder (baseline)", &fwd.url, &sink, config, 1, None).await?;
    fwd.stop().await;
    let http_baseline = Some((baseline.name.clone(), baseline.max.events_per_sec));
    results.push(baseline);

    for kind in &config.channels {
        // Herald on NATS or Kafka is compared with that server used directly.
        let raw = match kind {
            ChannelKind::Nats => Some((
                "raw nats jetstream",
                raw_nats::run(config, &config.nats_url).boxed(),
            )),
            #[cfg(feature = "kafka")]
            ChannelKind::Kafka => Some((
                "raw kafka (rdkafka)",
                raw_kafka::run(config, &config.kafka_bootstrap_servers).boxed(),
            )),
            #[cfg(not(feature = "kafka"))]
            ChannelKind::Kafka => return Err(BenchError::Start(
                "herald kafka".into(),
                "herald-bench was built without Kafka support; build it with `--features kafka`"
                    .into(),
            )),
            _ => None,
        };
        let compare_with = match raw {
            Some((name, run)) => {
                report::reset_peak_rss();
                let raw = CaseResult {
                    name: name.into(),
                    max: run.await?,
                    half: None,
                    peak_rss_kib: report::peak_rss_kib(),
                    baseline: None,
                };
                let pair = Some((raw.name.clone(), raw.max.events_per_sec));
                results.push(raw);
                pair
            }
            None => http_baseline.clone(),
        };
        let server = start_herald(*kind, sink.url(), 1, 1, config).await?;
        let url = server.broker_url();
        let r = measure(
            &format!("herald {kind}"),
            &url,
            &sink,
            config,
            1,
            compare_with,
        )
        .await;
        server.shutdown().await;
        results.push(r?);
    }

    if config.fan_out {
        let server = start_herald(ChannelKind::Memory, sink.url(), 100, 10, config).await?;
        let url = server.broker_url();
        let mut fan = config.clone();
        fan.events = (config.events / 10).max(1000);
        let r = measure(
            "herald memory fan-out 10/100",
            &url,
            &sink,
            &fan,
            10,
            http_baseline,
        )
        .await;
        server.shutdown().await;
        results.push(r?);
    }
    Ok(results)
}

/// Closed-loop maximum, then (optionally) open-loop at half that rate for latency.
async fn measure(
    name: &str,
    url: &str,
    sink: &Sink,
    config: &BenchConfig,
    deliveries_per_event: usize,
    baseline: Option<(String, f64)>,
) -> Result<CaseResult, BenchError> {
    report::reset_peak_rss();
    let max = load::run(name, url, sink, config, deliveries_per_event, None).await?;
    let half = if config.half_load {
        let rate = max.events_per_sec / 2.0;
        Some(load::run(name, url, sink, config, deliveries_per_event, Some(rate)).await?)
    } else {
        None
    };
    Ok(CaseResult {
        name: name.to_string(),
        max,
        half,
        peak_rss_kib: report::peak_rss_kib(),
        baseline,
    })
}
