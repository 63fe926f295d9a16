//! Opens each Broker's channel on the backend its manifest names: the `herald.dev/channel`
//! annotation (`memory`, `sled`, `nats`, `kafka`), or Knative's broker class `Kafka`, else
//! the server's default. Backends are connected
//! lazily, so a server whose Brokers never use NATS never needs it.

#[cfg(feature = "kafka")]
use herald_channels::KafkaBackend;
use herald_channels::{
    Channel, ChannelError, KafkaConfig, MemoryChannel, MemoryChannelConfig, NatsBackend,
    NatsConfig, Retention, SledConfig, SledStore,
};
use herald_core::{Broker, IsoDuration};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// Broker annotation naming its channel backend.
pub const CHANNEL_ANNOTATION: &str = "herald.dev/channel";
/// Broker annotations overriding how long consumed events are kept for replay (sled):
/// an ISO-8601 duration, and a size in bytes.
pub const RETENTION_MAX_AGE_ANNOTATION: &str = "herald.dev/retention.max-age";
pub const RETENTION_MAX_BYTES_ANNOTATION: &str = "herald.dev/retention.max-bytes";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    #[default]
    Memory,
    Sled,
    Nats,
    Kafka,
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" => Ok(Self::Memory),
            "sled" => Ok(Self::Sled),
            "nats" => Ok(Self::Nats),
            other => Err(format!(
                "unknown channel backend {other:?} (expected memory, sled or nats)"
            )),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory",
            Self::Sled => "sled",
            Self::Nats => "nats",
            Self::Kafka => "kafka",
        })
    }
}

#[derive(Clone, Debug)]
pub struct BackendsConfig {
    /// Backend of Brokers that do not name one. The `herald` binary defaults to sled; the
    /// library to memory, so embedding Herald writes nothing to disk unless asked.
    pub default: BackendKind,
    pub memory: MemoryChannelConfig,
    /// Directory of the embedded sled store.
    pub data_dir: PathBuf,
    pub sled: SledConfig,
    pub nats: NatsConfig,
    pub kafka: KafkaConfig,
}

impl Default for BackendsConfig {
    fn default() -> Self {
        Self {
            default: BackendKind::Memory,
            memory: MemoryChannelConfig::default(),
            data_dir: PathBuf::from("herald-data"),
            sled: SledConfig::default(),
            nats: NatsConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("Broker {broker}: annotation {annotation}: {message}")]
    Annotation {
        broker: String,
        annotation: &'static str,
        message: String,
    },
    #[error("Broker {broker}: the {kind} channel is not available: {hint}")]
    Unsupported {
        broker: String,
        kind: BackendKind,
        hint: &'static str,
    },
    #[error("Broker {broker}: cannot open its {kind} channel: {source}")]
    Open {
        broker: String,
        kind: BackendKind,
        source: ChannelError,
    },
}

/// The backends opened so far.
pub struct Backends {
    config: BackendsConfig,
    sled: Option<SledStore>,
    nats: Option<NatsBackend>,
    #[cfg(feature = "kafka")]
    kafka: Option<KafkaBackend>,
}

impl Backends {
    pub fn new(config: BackendsConfig) -> Self {
        Self {
            config,
            sled: None,
            nats: None,
            #[cfg(feature = "kafka")]
            kafka: None,
        }
    }

    pub fn kind_for(&self, broker: &Broker) -> Result<BackendKind, BackendError> {
        match broker.metadata.annotations.get(CHANNEL_ANNOTATION) {
            Some(name) => name.parse().map_err(|message| BackendError::Annotation {
                broker: broker.key().to_string(),
                annotation: CHANNEL_ANNOTATION,
                message,
            }),
            // Knative's Kafka broker class means the same here.
            None if broker.class() == Some("Kafka") => Ok(BackendKind::Kafka),
            None => Ok(self.config.default),
        }
    }

    pub async fn open(
        &mut self,
        broker: &Broker,
    ) -> Result<(BackendKind, Arc<dyn Channel>), BackendError> {
        let kind = self.kind_for(broker)?;
        let name = broker.key().to_string();
        let open_err = |source| BackendError::Open {
            broker: name.clone(),
            kind,
            source,
        };
        let channel: Arc<dyn Channel> = match kind {
            BackendKind::Memory => {
                Arc::new(MemoryChannel::new(name.clone(), self.config.memory.clone()))
            }
            BackendKind::Sled => {
                if self.sled.is_none() {
                    let (dir, config) = (self.config.data_dir.clone(), self.config.sled.clone());
                    // Opening recovers the store from disk: blocking work, off the runtime.
                    let store = tokio::task::spawn_blocking(move || SledStore::open(&dir, config))
                        .await
                        .map_err(|e| {
                            open_err(ChannelError::Backend {
                                channel: name.clone(),
                                detail: e.to_string(),
                            })
                        })?
                        .map_err(open_err)?;
                    self.sled = Some(store);
                }
                self.sled
                    .as_ref()
                    .expect("opened above")
                    .channel(&name)
                    .map_err(open_err)?
            }
            BackendKind::Nats => {
                if self.nats.is_none() {
                    self.nats = Some(
                        NatsBackend::connect(self.config.nats.clone())
                            .await
                            .map_err(open_err)?,
                    );
                }
                self.nats
                    .as_ref()
                    .expect("connected above")
                    .channel(&name)
                    .await
                    .map_err(open_err)?
            }
            #[cfg(feature = "kafka")]
            BackendKind::Kafka => {
                if self.kafka.is_none() {
                    self.kafka = Some(
                        KafkaBackend::connect(self.config.kafka.clone())
                            .await
                            .map_err(open_err)?,
                    );
                }
                self.kafka
                    .as_ref()
                    .expect("connected above")
                    .channel(&name)
                    .await
                    .map_err(open_err)?
            }
            #[cfg(not(feature = "kafka"))]
            BackendKind::Kafka => return Err(BackendError::Unsupported {
                broker: name,
                kind,
                hint:
                    "this herald was built without Kafka support; build it with `--features kafka`",
            }),
        };
        Ok((kind, channel))
    }

    /// The server's retention, with the Broker's annotations applied on top.
    pub fn retention_for(&self, broker: &Broker) -> Result<Retention, BackendError> {
        let mut retention = self.config.sled.retention;
        let annotation = |name: &'static str| broker.metadata.annotations.get(name);
        let bad = |annotation: &'static str, message: String| BackendError::Annotation {
            broker: broker.key().to_string(),
            annotation,
            message,
        };
        if let Some(v) = annotation(RETENTION_MAX_AGE_ANNOTATION) {
            let d: IsoDuration = v
                .parse()
                .map_err(|e| bad(RETENTION_MAX_AGE_ANNOTATION, format!("{e}")))?;
            retention.max_age = Some(d.as_duration());
        }
        if let Some(v) = annotation(RETENTION_MAX_BYTES_ANNOTATION) {
            let n: u64 = v.parse().map_err(|_| {
                bad(
                    RETENTION_MAX_BYTES_ANNOTATION,
                    format!("expected a number of bytes, got {v:?}"),
                )
            })?;
            retention.max_bytes = Some(n);
        }
        Ok(retention)
    }

    /// Flushes and closes what needs it, after every channel has been closed.
    pub async fn close(&self) {
        if let Some(store) = &self.sled {
            store.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(annotations: &[(&str, &str)]) -> Broker {
        let mut b = Broker {
            metadata: Default::default(),
            spec: Default::default(),
        };
        b.metadata.name = "b".into();
        for (k, v) in annotations {
            b.metadata.annotations.insert(k.to_string(), v.to_string());
        }
        b
    }

    #[test]
    fn annotations_choose_the_backend_and_override_retention() {
        let backends = Backends::new(BackendsConfig::default());
        assert_eq!(
            backends.kind_for(&broker(&[])).unwrap(),
            BackendKind::Memory
        );
        assert_eq!(
            backends
                .kind_for(&broker(&[(CHANNEL_ANNOTATION, "nats")]))
                .unwrap(),
            BackendKind::Nats
        );
        let e = backends
            .kind_for(&broker(&[(CHANNEL_ANNOTATION, "kafkaa")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("kafkaa") && e.to_string().contains(CHANNEL_ANNOTATION),
            "{e}"
        );

        let r = backends
            .retention_for(&broker(&[
                (RETENTION_MAX_AGE_ANNOTATION, "PT2H"),
                (RETENTION_MAX_BYTES_ANNOTATION, "1000"),
            ]))
            .unwrap();
        assert_eq!(r.max_age, Some(std::time::Duration::from_secs(7200)));
        assert_eq!(r.max_bytes, Some(1000));
        assert_eq!(
            backends.retention_for(&broker(&[])).unwrap(),
            Retention::default()
        );
        let e = backends
            .retention_for(&broker(&[(RETENTION_MAX_AGE_ANNOTATION, "2 hours")]))
            .unwrap_err();
        assert!(e.to_string().contains(RETENTION_MAX_AGE_ANNOTATION), "{e}");
    }
}
