//! The `herald` binary: `serve`, `send` and `display`.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use herald_broker::backends::{BackendKind, BackendsConfig};
use herald_broker::{admin, display, send, serve};
use herald_channels::{KafkaConfig, NatsConfig, Retention, SledConfig, SyncPolicy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// Herald allocates per event (parsing, headers, bodies); mimalloc handles that pattern
// markedly better than the system allocator under concurrency.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A CloudEvents broker and trigger system, compatible with Knative Eventing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingress and dispatcher for the Brokers and Triggers in --config.
    Serve(ServeArgs),
    /// Build a CloudEvent and POST it to a Broker.
    Send(SendArgs),
    /// Run an event-display subscriber that prints every event it receives.
    Display(DisplayArgs),
    /// Re-deliver retained events to one Trigger of a running Herald.
    Replay(ReplayArgs),
}

#[derive(Args)]
struct ReplayArgs {
    /// The running Herald's ingress URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Broker, as namespace/name or name (namespace "default").
    #[arg(long)]
    broker: String,
    /// Trigger, as name (in the Broker's namespace) or namespace/name.
    #[arg(long)]
    trigger: String,
    /// Where to start: a log offset or an RFC 3339 time (e.g. 2026-11-24T10:00:00Z).
    #[arg(long)]
    from: String,
}

#[derive(Args)]
struct ServeArgs {
    /// A Knative-style YAML file, or a directory of them.
    #[arg(long, short, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Address the ingress listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Channel backend of Brokers without a `herald.dev/channel` annotation:
    /// sled (embedded, durable), memory, nats or kafka.
    #[arg(long, env = "HERALD_CHANNEL", default_value = "sled")]
    channel: BackendKind,
    /// Directory of the embedded sled store.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "herald-data")]
    data_dir: PathBuf,
    /// When a publish is durable on sled: group (one fsync shared by concurrent publishes),
    /// per-event (one fsync per request), or a flush interval in ms (may lose that window).
    #[arg(long, default_value = "group")]
    sync: String,
    /// Consumed events are kept for replay at most this long (ISO-8601, e.g. PT1H).
    #[arg(long)]
    retention_max_age: Option<herald_core::IsoDuration>,
    /// Consumed events are kept for replay while the log is below this many bytes.
    #[arg(long)]
    retention_max_bytes: Option<u64>,
    /// Unconsumed events a Broker holds before ingress answers 429 (sled and memory).
    #[arg(long, default_value_t = 1_000_000)]
    max_lag_events: u64,
    /// NATS server URL, for Brokers on the nats channel.
    #[arg(long, env = "HERALD_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Kafka bootstrap servers (host:port,...), for Brokers on the kafka channel.
    #[arg(
        long,
        env = "HERALD_KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    kafka_bootstrap_servers: String,
    /// Partitions of a Broker's topic when Herald creates it.
    #[arg(long, default_value_t = 4)]
    kafka_partitions: i32,
    /// Replication factor of a Broker's topic when Herald creates it.
    #[arg(long, default_value_t = 1)]
    kafka_replication_factor: i32,
    /// A librdkafka setting for every Kafka client, KEY=VALUE (repeatable; e.g.
    /// security.protocol=SASL_SSL).
    #[arg(long, value_parser = key_value)]
    kafka_client_config: Vec<(String, String)>,
    /// A librdkafka consumer setting, KEY=VALUE (repeatable; e.g. session.timeout.ms=10000 to
    /// move a dead replica's partitions sooner).
    #[arg(long, value_parser = key_value)]
    kafka_consumer_config: Vec<(String, String)>,
    /// How long JetStream waits for a replica's acknowledgement before redelivering an
    /// event elsewhere (ISO-8601); in-progress deliveries are kept alive meanwhile.
    #[arg(long, default_value = "PT30S")]
    nats_ack_wait: herald_core::IsoDuration,
    /// Deliveries in flight per Trigger.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Seconds shutdown waits for accepted events to be delivered.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
}

#[derive(Args)]
struct SendArgs {
    /// Broker URL, e.g. http://127.0.0.1:8080/default/default
    #[arg(long, default_value = "http://127.0.0.1:8080/default/default")]
    to: String,
    /// A CloudEvent in JSON format (or an array, sent as a batch) instead of the flags below.
    #[arg(long, conflicts_with_all = ["ty", "source", "data"])]
    file: Option<PathBuf>,
    #[arg(long = "type", default_value = "dev.herald.example")]
    ty: String,
    #[arg(long, default_value = "herald-cli")]
    source: String,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    /// Event data (sent with --content-type).
    #[arg(long)]
    data: Option<String>,
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Extension attribute, name=value (repeatable).
    #[arg(long = "ext")]
    extensions: Vec<String>,
    /// Send in structured mode instead of binary mode.
    #[arg(long)]
    structured: bool,
}

#[derive(Args)]
struct DisplayArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Full listen address; overrides --port.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // An empty RUST_LOG (as some shells export) means "not set", not "no directives".
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
                .unwrap_or_else(|| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(a) => run_serve(a).await,
        Command::Send(a) => run_send(a).await,
        Command::Display(a) => run_display(a).await,
        Command::Replay(a) => run_replay(a).await,
    }
}

async fn run_serve(a: ServeArgs) -> anyhow::Result<()> {
    let resources = match &a.config {
        Some(path) => herald_core::load_path(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            tracing::warn!("no --config given: serving no Brokers");
            Default::default()
        }
    };
    let sync = match a.sync.as_str() {
        "group" => SyncPolicy::Group,
        "per-event" => SyncPolicy::PerEvent,
        ms => SyncPolicy::Interval(Duration::from_millis(ms.parse().map_err(|_| {
            anyhow::anyhow!(
                "--sync must be group, per-event or a number of milliseconds, got {ms:?}"
            )
        })?)),
    };
    let config = serve::ServeConfig {
        listen: a.listen,
        max_body_bytes: a.max_body_bytes,
        channels: BackendsConfig {
            default: a.channel,
            memory: herald_channels::MemoryChannelConfig {
                capacity: a.max_lag_events.min(usize::MAX as u64) as usize,
                ..Default::default()
            },
            data_dir: a.data_dir,
            sled: SledConfig {
                sync,
                retention: Retention {
                    max_age: a.retention_max_age.map(|d| d.as_duration()),
                    max_bytes: a.retention_max_bytes,
                },
                max_lag_events: a.max_lag_events,
                ..Default::default()
            },
            nats: NatsConfig {
                url: a.nats_url,
                ack_wait: a.nats_ack_wait.as_duration(),
                ..Default::default()
            },
            kafka: KafkaConfig {
                bootstrap_servers: a.kafka_bootstrap_servers,
                partitions: a.kafka_partitions,
                replication_factor: a.kafka_replication_factor,
                client: a.kafka_client_config.into_iter().collect(),
                consumer: a.kafka_consumer_config.into_iter().collect(),
                ..Default::default()
            },
        },
        max_in_flight: a.max_in_flight,
        drain_timeout: Duration::from_secs(a.drain_timeout),
        ..Default::default()
    };
    let server = serve::start(&resources, config).await?;
    for b in &resources.brokers {
        let key = b.resource.key();
        eprintln!(
            "Broker {key}: {}",
            server.broker_url(&key.namespace, &key.name)
        );
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining accepted events");
        token.cancel();
    });
    server.wait().await;
    Ok(())
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run_send(a: SendArgs) -> anyhow::Result<()> {
    let events = match &a.file {
        Some(path) => send::read_events(path)?,
        None => vec![send::build_event(&send::EventOptions {
            id: a.id,
            source: a.source,
            ty: a.ty,
            subject: a.subject,
            data: a.data,
            content_type: a.content_type,
            extensions: a.extensions,
        })?],
    };
    let count = events.len();
    let (status, body) = send::send(&a.to, events, a.structured)
        .await
        .with_context(|| format!("sending to {}", a.to))?;
    if !(200..300).contains(&status) {
        bail!("{} answered {status}: {}", a.to, body.trim());
    }
    println!("sent {count} event(s) to {}: {status}", a.to);
    Ok(())
}

async fn run_display(a: DisplayArgs) -> anyhow::Result<()> {
    let addr = a
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], a.port)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!(
        "event display listening on http://{}",
        listener.local_addr()?
    );
    let printer: display::Printer = Arc::new(|text| println!("{text}"));
    axum::serve(listener, display::router(printer))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn run_replay(a: ReplayArgs) -> anyhow::Result<()> {
    // Reject a bad position before contacting the server.
    admin::parse_position(&a.from).map_err(anyhow::Error::msg)?;
    let request = admin::ReplayRequest {
        broker: a.broker,
        trigger: a.trigger,
        from: a.from,
    };
    let response = admin::request_replay(&a.server, &request)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "replaying to trigger {} from offset {}",
        response.trigger, response.offset
    );
    Ok(())
}
