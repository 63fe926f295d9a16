//! `herald bench`.

use crate::bench;
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Events per case.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    pub senders: usize,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 1024)]
    pub event_size: usize,
    /// Skip the open-loop run at half the maximum rate.
    #[arg(long)]
    pub no_half_load: bool,
    /// Skip the fan-out case (10 of 100 triggers match).
    #[arg(long)]
    pub no_fan_out: bool,
    /// Channel backends to run Herald on, comma-separated (memory, sled, nats, kafka).
    #[arg(long, value_delimiter = ',', default_value = "memory,sled")]
    pub channels: Vec<bench::ChannelKind>,
    /// Also run the NATS cases (raw JetStream baseline and Herald on NATS) on this server.
    #[arg(long)]
    pub nats: bool,
    /// Also run the Kafka cases (raw rdkafka baseline and Herald on Kafka) on these brokers.
    #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
    pub kafka: Option<String>,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let config = bench::BenchConfig {
        events: a.events,
        senders: a.senders,
        event_size: a.event_size,
        half_load: !a.no_half_load,
        fan_out: !a.no_fan_out,
        nats_url: a.nats_url,
        channels: a.channels,
        ..Default::default()
    };
    let mut config = config;
    if let Some(bootstrap) = a.kafka {
        config.kafka_bootstrap_servers = bootstrap;
        if !config.channels.contains(&bench::ChannelKind::Kafka) {
            config.channels.push(bench::ChannelKind::Kafka);
        }
    }
    if a.nats && !config.channels.contains(&bench::ChannelKind::Nats) {
        config.channels.push(bench::ChannelKind::Nats);
    }
    eprintln!(
        "herald bench: {} events of {} bytes per case, {} senders, {} cores",
        config.events,
        config.event_size,
        config.senders,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let results = bench::run(&config).await?;
    print!("{}", bench::render(&results));
    Ok(())
}
