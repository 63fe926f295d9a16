//! The `herald serve` flags of the channel backends, one group per backend, and how they
//! combine with a `--channels-config` file into one [`ChannelsConfig`]: the file first, then
//! every flag (or its environment variable) that was given overrides it. Flags that were not
//! given leave the file's value, or Herald's default, alone.

use herald_channels::{BackendKind, ChannelsConfig, SyncPolicy};
use herald_core::IsoDuration;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackendConfigError {
    #[error("cannot read the channels config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("channels config {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Every channel flag of `herald serve`.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Channels")]
pub struct ChannelArgs {
    /// Channel backend of Brokers without a `herald.dev/channel` annotation:
    /// sled (embedded, durable), memory, nats or kafka [default: sled].
    #[arg(long, env = "HERALD_CHANNEL", value_name = "BACKEND")]
    pub channel: Option<BackendKind>,
    /// A YAML file configuring the backends, one section each (default, memory, sled, nats,
    /// kafka); flags given here override it.
    #[arg(long, env = "HERALD_CHANNELS_CONFIG", value_name = "FILE")]
    pub channels_config: Option<PathBuf>,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[command(flatten)]
    pub sled: SledArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Memory channel")]
pub struct MemoryArgs {
    /// Events the slowest Trigger of a Broker may lag before ingress answers 429 with
    /// Retry-After, on every channel (memory: events held; sled, NATS, Kafka: undelivered)
    /// [default: memory 10000, others 1000000].
    #[arg(long, value_name = "EVENTS")]
    pub max_lag_events: Option<u64>,
}

#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Sled channel")]
pub struct SledArgs {
    /// Directory of the embedded sled store [default: herald-data].
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// When a publish is durable on sled: group (one fsync shared by concurrent publishes),
    /// per-event (one fsync per request), or a flush interval in ms (may lose that window)
    /// [default: group].
    #[arg(long, value_name = "POLICY")]
    pub sync: Option<SyncPolicy>,
    /// Consumed events are kept for replay at most this long (ISO-8601, e.g. PT1H).
    #[arg(long, value_name = "DURATION")]
    pub retention_max_age: Option<IsoDuration>,
    /// Consumed events are kept for replay while the log is below this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub retention_max_bytes: Option<u64>,
}

#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "NATS channel")]
pub struct NatsArgs {
    /// NATS server URL, for Brokers on the nats channel [default: nats://127.0.0.1:4222].
    #[arg(long, env = "HERALD_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
    /// How long JetStream waits for a replica's acknowledgement before redelivering an
    /// event elsewhere (ISO-8601); in-progress deliveries are kept alive meanwhile
    /// [default: PT30S].
    #[arg(long, value_name = "DURATION")]
    pub nats_ack_wait: Option<IsoDuration>,
}

#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Kafka channel")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...), for Brokers on the kafka channel
    /// [default: 127.0.0.1:9092].
    #[arg(long, env = "HERALD_KAFKA_BOOTSTRAP_SERVERS", value_name = "SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// Partitions of a Broker's topic when Herald creates it [default: 4].
    #[arg(long, value_name = "N")]
    pub kafka_partitions: Option<i32>,
    /// Replication factor of a Broker's topic when Herald creates it [default: 1].
    #[arg(long, value_name = "N")]
    pub kafka_replication_factor: Option<i32>,
    /// A librdkafka setting for every Kafka client, KEY=VALUE (repeatable; e.g.
    /// security.protocol=SASL_SSL).
    #[arg(long, value_parser = key_value, value_name = "KEY=VALUE")]
    pub kafka_client_config: Vec<(String, String)>,
    /// A librdkafka consumer setting, KEY=VALUE (repeatable; e.g. session.timeout.ms=10000 to
    /// move a dead replica's partitions sooner).
    #[arg(long, value_parser = key_value, value_name = "KEY=VALUE")]
    pub kafka_consumer_config: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// What the `herald` binary uses where neither the file nor a flag says otherwise: durable
/// sled by default. Memory keeps its own bound (10,000 events, as `--max-lag-events` says):
/// the durable channels' 1,000,000 undelivered events are on disk, but held in memory they
/// are gigabytes of RSS before a 10x overload meets its first 429.
const BINARY_DEFAULTS: &str = "default: sled\n";

impl ChannelArgs {
    /// The file (if any) over the binary's defaults, then the flags given.
    pub fn into_config(self) -> Result<ChannelsConfig, BackendConfigError> {
        let mut config = match &self.channels_config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| BackendConfigError::Read {
                        path: path.clone(),
                        source,
                    })?;
                parse_config(path, &text)?
            }
            None => parse_config(Path::new("(defaults)"), "")?,
        };
        self.apply(&mut config);
        Ok(config)
    }

    fn apply(self, c: &mut ChannelsConfig) {
        if let Some(kind) = self.channel {
            c.default = kind;
        }
        if let Some(n) = self.memory.max_lag_events {
            c.memory.capacity = usize::try_from(n).unwrap_or(usize::MAX);
            c.sled.store.max_lag_events = n;
            c.nats.max_lag_events = n;
            c.kafka.max_lag_events = n;
        }
        let sled = self.sled;
        if let Some(dir) = sled.data_dir {
            c.sled.data_dir = dir;
        }
        if let Some(sync) = sled.sync {
            c.sled.store.sync = sync;
        }
        if let Some(age) = sled.retention_max_age {
            c.sled.store.retention.max_age = Some(age.as_duration());
        }
        if let Some(bytes) = sled.retention_max_bytes {
            c.sled.store.retention.max_bytes = Some(bytes);
        }
        if let Some(url) = self.nats.nats_url {
            c.nats.url = url;
        }
        if let Some(wait) = self.nats.nats_ack_wait {
            c.nats.ack_wait = wait.as_duration();
        }
        let kafka = self.kafka;
        if let Some(servers) = kafka.kafka_bootstrap_servers {
            c.kafka.bootstrap_servers = servers;
        }
        if let Some(n) = kafka.kafka_partitions {
            c.kafka.partitions = n;
        }
        if let Some(n) = kafka.kafka_replication_factor {
            c.kafka.replication_factor = n;
        }
        c.kafka.client.extend(kafka.kafka_client_config);
        c.kafka.consumer.extend(kafka.kafka_consumer_config);
    }
}

/// The flags as one configuration: `args.into_config()`.
pub fn channels_config(args: ChannelArgs) -> Result<ChannelsConfig, BackendConfigError> {
    args.into_config()
}

/// Reads a channels config file over the binary's defaults.
fn parse_config(path: &Path, text: &str) -> Result<ChannelsConfig, BackendConfigError> {
    let bad = |message: String| BackendConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut merged: serde_yaml::Value =
        serde_yaml::from_str(BINARY_DEFAULTS).expect("valid literal");
    let file: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    match file {
        serde_yaml::Value::Null => {}
        file @ serde_yaml::Value::Mapping(_) => merge(&mut merged, file),
        _ => return Err(bad("expected a mapping of backend sections".into())),
    }
    serde_yaml::from_value(merged).map_err(|e| bad(e.to_string()))
}

/// Lays `over` onto `base`, mapping by mapping.
fn merge(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
    match (base, over) {
        (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use herald_channels::{KafkaConfig, NatsConfig, SledConfig};
    use std::time::Duration;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        channels: ChannelArgs,
    }

    fn config(args: &[&str]) -> ChannelsConfig {
        let cli = Cli::try_parse_from(std::iter::once("herald").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.channels.into_config().unwrap()
    }

    #[test]
    fn without_flags_the_defaults_are_todays() {
        let c = config(&[]);
        assert_eq!(c.default, BackendKind::Sled);
        assert_eq!(c.sled.data_dir, PathBuf::from("herald-data"));
        assert_eq!(c.sled.store.sync, SyncPolicy::Group);
        assert_eq!(c.sled.store.max_lag_events, 1_000_000);
        assert_eq!(c.memory.capacity, 10_000);
        assert_eq!(c.sled.store.retention, Default::default());
        assert_eq!(c.nats.url, NatsConfig::default().url);
        assert_eq!(c.nats.ack_wait, Duration::from_secs(30));
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.kafka.partitions, 4);
        assert_eq!(c.kafka.replication_factor, 1);
    }

    #[test]
    fn every_flag_lands_in_its_section() {
        let c = config(&[
            "--channel",
            "kafka",
            "--data-dir",
            "/d",
            "--sync",
            "250",
            "--retention-max-age",
            "PT1H",
            "--retention-max-bytes",
            "99",
            "--max-lag-events",
            "7",
            "--nats-url",
            "nats://n:1",
            "--nats-ack-wait",
            "PT5S",
            "--kafka-bootstrap-servers",
            "k:1",
            "--kafka-partitions",
            "3",
            "--kafka-replication-factor",
            "2",
            "--kafka-client-config",
            "security.protocol=SSL",
            "--kafka-consumer-config",
            "session.timeout.ms=10000",
        ]);
        assert_eq!(c.default, BackendKind::Kafka, "--channel kafka is accepted");
        assert_eq!(c.sled.data_dir, PathBuf::from("/d"));
        assert_eq!(
            c.sled.store.sync,
            SyncPolicy::Interval(Duration::from_millis(250))
        );
        assert_eq!(
            c.sled.store.retention.max_age,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(c.sled.store.retention.max_bytes, Some(99));
        assert_eq!((c.sled.store.max_lag_events, c.memory.capacity), (7, 7));
        assert_eq!((c.nats.max_lag_events, c.kafka.max_lag_events), (7, 7));
        assert_eq!(c.nats.url, "nats://n:1");
        assert_eq!(c.nats.ack_wait, Duration::from_secs(5));
        assert_eq!(c.kafka.bootstrap_servers, "k:1");
        assert_eq!((c.kafka.partitions, c.kafka.replication_factor), (3, 2));
        assert_eq!(c.kafka.client["security.protocol"], "SSL");
        assert_eq!(c.kafka.consumer["session.timeout.ms"], "10000");
        let e = Cli::try_parse_from(["herald", "--sync", "sometimes"]).err();
        assert!(e.is_some(), "a bad --sync is refused");
        let e = Cli::try_parse_from(["herald", "--channel", "kafkaa"]).err();
        assert!(e.is_some_and(|e| e.to_string().contains("kafkaa")));
    }

    #[test]
    fn the_file_comes_first_and_flags_given_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("channels.yaml");
        std::fs::write(
            &file,
            "nats: {url: 'nats://file:4222', ackWait: 10s}\n\
             sled: {dataDir: /from-file, maxLagEvents: 5, retention: {maxAge: PT2H}}\n\
             kafka: {partitions: 12, client: {a: file, b: file}}\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = config(&[
            "--channels-config",
            path,
            "--nats-url",
            "nats://flag:4222",
            "--kafka-client-config",
            "b=flag",
        ]);
        // Not set in the file: the binary's default.
        assert_eq!(c.default, BackendKind::Sled);
        assert_eq!(c.nats.url, "nats://flag:4222", "the flag wins");
        assert_eq!(c.nats.ack_wait, Duration::from_secs(10), "the file's");
        assert_eq!(c.sled.data_dir, PathBuf::from("/from-file"));
        assert_eq!(c.sled.store.max_lag_events, 5);
        assert_eq!(
            c.sled.store.retention.max_age,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(c.sled.store.sync, SledConfig::default().sync);
        assert_eq!(c.kafka.partitions, 12);
        assert_eq!(c.kafka.client["a"], "file");
        assert_eq!(c.kafka.client["b"], "flag");
        assert_eq!(c.kafka.topic_prefix, KafkaConfig::default().topic_prefix);

        std::fs::write(&file, "sled: {dataDri: /x}\n").unwrap();
        let cli = Cli::try_parse_from(["herald", "--channels-config", path]).unwrap();
        let e = cli.channels.into_config().unwrap_err();
        assert!(
            e.to_string().contains("dataDri") && e.to_string().contains(path),
            "{e}"
        );
        let cli = Cli::try_parse_from(["herald", "--channels-config", "/no/such/file"]).unwrap();
        assert!(matches!(
            cli.channels.into_config(),
            Err(BackendConfigError::Read { .. })
        ));
    }

    #[test]
    fn each_backend_has_its_own_help_heading() {
        let help = Cli::command().render_long_help().to_string();
        for heading in [
            "Channels:",
            "Memory channel:",
            "Sled channel:",
            "NATS channel:",
            "Kafka channel:",
        ] {
            assert!(help.contains(heading), "{heading} missing from\n{help}");
        }
    }
}
