//! The `herald-bench` binary: runs every case of the end-to-end benchmark and prints the table.

use clap::Parser;
use herald_bench::{BenchConfig, ChannelKind};

// Herald under test runs in this process; the same allocator as the `herald` binary keeps the
// figures those of a real deployment.
#[global_allocator]
static GLOBAL: herald_broker::heap::Heap = herald_broker::heap::Heap;

/// Benchmark Herald against a bare HTTP forwarder (and raw NATS/Kafka clients) on this machine.
#[derive(Parser)]
#[command(name = "herald-bench", version)]
struct BenchArgs {
    /// Events per case.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 1024)]
    event_size: usize,
    /// Skip the open-loop run at half the maximum rate.
    #[arg(long)]
    no_half_load: bool,
    /// Skip the fan-out case (10 of 100 triggers match).
    #[arg(long)]
    no_fan_out: bool,
    /// Channel backends to run Herald on, comma-separated (memory, sled, nats, kafka).
    #[arg(long, value_delimiter = ',', default_value = "memory,sled")]
    channels: Vec<ChannelKind>,
    /// Also run the NATS cases (raw JetStream baseline and Herald on NATS) on this server.
    #[arg(long)]
    nats: bool,
    /// Also run the Kafka cases (raw rdkafka baseline and Herald on Kafka) on these brokers.
    #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
    kafka: Option<String>,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = BenchArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // An empty RUST_LOG (as some shells export) means "not set", not "no directives".
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
                // The benchmark's own output is the point; Herald's info logs would drown it.
                .unwrap_or_else(|| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = BenchConfig {
        events: a.events,
        senders: a.senders,
        event_size: a.event_size,
        half_load: !a.no_half_load,
        fan_out: !a.no_fan_out,
        nats_url: a.nats_url,
        channels: a.channels,
        ..Default::default()
    };
    if let Some(bootstrap) = a.kafka {
        config.kafka_bootstrap_servers = bootstrap;
        if !config.channels.contains(&ChannelKind::Kafka) {
            config.channels.push(ChannelKind::Kafka);
        }
    }
    if a.nats && !config.channels.contains(&ChannelKind::Nats) {
        config.channels.push(ChannelKind::Nats);
    }
    eprintln!(
        "herald-bench: {} events of {} bytes per case, {} senders, {} cores",
        config.events,
        config.event_size,
        config.senders,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let results = herald_bench::run(&config).await?;
    print!("{}", herald_bench::render(&results));
    Ok(())
}
