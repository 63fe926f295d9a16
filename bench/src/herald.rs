//! Herald under test, started in this process: the one place the benchmark touches
//! herald-broker's serve API, so a change to that API is a change here only.

use crate::load::EVENT_TYPE;
use crate::sink::now_micros;
use crate::{BenchConfig, BenchError, ChannelKind};
use herald_broker::backends::BackendsConfig;
use herald_broker::serve::{self, RunningServer, ServeConfig};
use herald_channels::{KafkaConfig, NatsConfig};
use herald_core::ResourceSet;
use std::path::PathBuf;
use std::time::Duration;

/// A running Herald serving the benchmark's Broker `bench/b`.
pub struct Herald {
    server: RunningServer,
}

impl Herald {
    /// The ingress URL of the Broker `bench/b`.
    pub fn broker_url(&self) -> String {
        self.server.broker_url("bench", "b").to_string()
    }

    /// Stops accepting, drains what was accepted and stops.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Herald with one Broker `bench/b` and `triggers` Triggers, of which `matching` match the
/// benchmark's events, all delivering to the sink.
pub async fn start_herald(
    kind: ChannelKind,
    sink: String,
    triggers: usize,
    matching: usize,
    bench: &BenchConfig,
) -> Result<Herald, BenchError> {
    let resources = resources(&sink, triggers, matching)?;
    let config = serve_config(kind, bench)?;
    let server = serve::start(&resources, config)
        .await
        .map_err(|e| BenchError::Start(format!("herald {kind}"), e.to_string()))?;
    Ok(Herald { server })
}

fn resources(sink: &str, triggers: usize, matching: usize) -> Result<ResourceSet, BenchError> {
    let mut yaml = String::from(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: bench}\n\
         spec:\n  delivery: {retry: 3, backoffPolicy: exponential, backoffDelay: PT0.1S}\n",
    );
    for i in 0..triggers {
        let ty = if i < matching {
            EVENT_TYPE.to_string()
        } else {
            format!("bench.other.{i}")
        };
        yaml.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t{i}, namespace: bench}}\n\
             spec:\n  broker: b\n  filter: {{attributes: {{type: {ty}}}}}\n  subscriber: {{uri: '{sink}'}}\n"
        ));
    }
    herald_core::load_str(std::path::Path::new("bench.yaml"), &yaml)
        .map_err(|e| BenchError::Start("herald".into(), e.to_string()))
}

fn serve_config(kind: ChannelKind, bench: &BenchConfig) -> Result<ServeConfig, BenchError> {
    Ok(ServeConfig {
        listen: "127.0.0.1:0".parse().expect("valid literal"),
        drain_timeout: Duration::from_secs(60),
        channels: BackendsConfig {
            default: kind,
            // Each sled run gets a fresh store in a temporary directory.
            sled: herald_channels::SledSection {
                data_dir: tempdir_for(kind)?,
                ..Default::default()
            },
            nats: NatsConfig {
                url: bench.nats_url.clone(),
                // A fresh stream per run, so earlier runs' events are not consumed.
                stream_prefix: format!("HERALDBENCH{}", now_micros()),
                ..Default::default()
            },
            kafka: KafkaConfig {
                bootstrap_servers: bench.kafka_bootstrap_servers.clone(),
                // A fresh topic per run.
                topic_prefix: format!("herald-bench-{}", now_micros()),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

fn tempdir_for(kind: ChannelKind) -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!(
        "herald-bench-{}-{kind}-{}",
        std::process::id(),
        now_micros()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::Start(dir.display().to_string(), e.to_string()))?;
    Ok(dir)
}
