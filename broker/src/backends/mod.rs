//! Opens each Broker's channel on the backend its manifest names: the `herald.dev/channel`
//! annotation (`memory`, `sled`, `nats`, `kafka`), or Knative's broker class `Kafka`, else
//! the server's default, with the Broker's own retention annotations applied. The backends
//! themselves (connected lazily, so a server whose Brokers never use NATS never needs it)
//! are `herald_channels`' [`BackendRegistry`]; this module only reads Knative resources.

pub mod flags;

pub use flags::{BackendConfigError, ChannelArgs, KafkaArgs, MemoryArgs, NatsArgs, SledArgs};
pub use herald_channels::{BackendKind, ChannelsConfig};

use herald_channels::{
    BackendRegistry, Channel, ChannelError, ChannelName, ChannelOptions, Retention,
};
use herald_core::{Broker, IsoDuration};
use serde::Serialize;
use std::sync::Arc;

/// The former name of [`ChannelsConfig`].
pub type BackendsConfig = ChannelsConfig;

/// Broker annotation naming its channel backend.
pub const CHANNEL_ANNOTATION: &str = "herald.dev/channel";
/// Broker annotations overriding how long consumed events are kept for replay (sled):
/// an ISO-8601 duration, and a size in bytes.
pub const RETENTION_MAX_AGE_ANNOTATION: &str = "herald.dev/retention.max-age";
pub const RETENTION_MAX_BYTES_ANNOTATION: &str = "herald.dev/retention.max-bytes";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("Broker {broker}: annotation {annotation}: {message}")]
    Annotation {
        broker: String,
        annotation: &'static str,
        message: String,
    },
    #[error("Broker {broker}: cannot open its {kind} channel: {source}")]
    Open {
        broker: String,
        kind: BackendKind,
        source: ChannelError,
    },
}

/// One backend's health, for /readyz.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendHealth {
    pub kind: BackendKind,
    pub up: bool,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Checks a Broker's channel annotations (backend name, retention) before it is accepted.
pub fn check_broker(broker: &Broker) -> Result<(), BackendError> {
    chosen_kind(broker)?;
    retention_over(Retention::default(), broker)?;
    Ok(())
}

/// The backend a Broker names, if it names one.
fn chosen_kind(broker: &Broker) -> Result<Option<BackendKind>, BackendError> {
    match broker.metadata.annotations.get(CHANNEL_ANNOTATION) {
        Some(name) => name
            .parse()
            .map(Some)
            .map_err(|message| BackendError::Annotation {
                broker: broker.key().to_string(),
                annotation: CHANNEL_ANNOTATION,
                message,
            }),
        // Knative's Kafka broker class means the same here.
        None if broker.class() == Some("Kafka") => Ok(Some(BackendKind::Kafka)),
        None => Ok(None),
    }
}

/// `base`, with the Broker's retention annotations applied on top.
fn retention_over(mut retention: Retention, broker: &Broker) -> Result<Retention, BackendError> {
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

/// Brokers' channels, on the backends of the registry.
pub struct Backends {
    registry: BackendRegistry,
}

impl Backends {
    pub fn new(config: ChannelsConfig) -> Self {
        Self {
            registry: BackendRegistry::new(config),
        }
    }

    pub fn registry(&self) -> &BackendRegistry {
        &self.registry
    }

    pub fn kind_for(&self, broker: &Broker) -> Result<BackendKind, BackendError> {
        Ok(chosen_kind(broker)?.unwrap_or(self.registry.default_kind()))
    }

    /// The server's retention, with the Broker's annotations applied on top.
    pub fn retention_for(&self, broker: &Broker) -> Result<Retention, BackendError> {
        retention_over(self.registry.config().sled.store.retention, broker)
    }

    /// What the Broker's channel asks of its backend.
    pub fn options_for(&self, broker: &Broker) -> Result<ChannelOptions, BackendError> {
        Ok(ChannelOptions {
            retention: Some(self.retention_for(broker)?),
        })
    }

    /// Opens the Broker's channel (the same one again for a Broker opened before, unless it
    /// was deleted).
    pub async fn open(
        &self,
        broker: &Broker,
    ) -> Result<(BackendKind, Arc<dyn Channel>), BackendError> {
        let kind = self.kind_for(broker)?;
        let options = self.options_for(broker)?;
        let key = broker.key();
        let channel = self
            .registry
            .open(kind, &ChannelName::from(&key), &options)
            .await
            .map_err(|source| BackendError::Open {
                broker: key.to_string(),
                kind,
                source,
            })?;
        Ok((kind, channel))
    }

    /// The health of every backend used so far.
    pub async fn health(&self) -> Vec<BackendHealth> {
        self.registry
            .health()
            .await
            .into_iter()
            .map(|(kind, health)| BackendHealth {
                kind,
                up: health.is_up(),
                message: match health {
                    herald_channels::BackendHealth::Up => None,
                    herald_channels::BackendHealth::Down(why) => Some(why),
                },
            })
            .collect()
    }

    /// Flushes and closes what needs it, after every channel has been closed.
    pub async fn close(&self) {
        self.registry.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use herald_channels::{ChannelError, Position, SledSection};
    use std::time::{Duration, Instant};

    fn broker(name: &str, annotations: &[(&str, &str)]) -> Broker {
        let mut b = Broker {
            metadata: Default::default(),
            spec: Default::default(),
        };
        b.metadata.name = name.into();
        for (k, v) in annotations {
            b.metadata.annotations.insert(k.to_string(), v.to_string());
        }
        b
    }

    #[test]
    fn annotations_choose_the_backend_and_override_retention() {
        let backends = Backends::new(ChannelsConfig::default());
        assert_eq!(
            backends.kind_for(&broker("b", &[])).unwrap(),
            BackendKind::Memory
        );
        for (name, kind) in [
            ("nats", BackendKind::Nats),
            ("kafka", BackendKind::Kafka),
            ("sled", BackendKind::Sled),
        ] {
            let b = broker("b", &[(CHANNEL_ANNOTATION, name)]);
            assert_eq!(backends.kind_for(&b).unwrap(), kind);
            check_broker(&b).unwrap();
        }
        let bad = broker("b", &[(CHANNEL_ANNOTATION, "kafkaa")]);
        let e = backends.kind_for(&bad).unwrap_err();
        assert!(
            e.to_string().contains("kafkaa") && e.to_string().contains(CHANNEL_ANNOTATION),
            "{e}"
        );
        assert!(check_broker(&bad).is_err());

        let r = backends
            .retention_for(&broker(
                "b",
                &[
                    (RETENTION_MAX_AGE_ANNOTATION, "PT2H"),
                    (RETENTION_MAX_BYTES_ANNOTATION, "1000"),
                ],
            ))
            .unwrap();
        assert_eq!(r.max_age, Some(Duration::from_secs(7200)));
        assert_eq!(r.max_bytes, Some(1000));
        assert_eq!(
            backends.retention_for(&broker("b", &[])).unwrap(),
            Retention::default()
        );
        let bad_age = broker("b", &[(RETENTION_MAX_AGE_ANNOTATION, "2 hours")]);
        let e = backends.retention_for(&bad_age).unwrap_err();
        assert!(e.to_string().contains(RETENTION_MAX_AGE_ANNOTATION), "{e}");
        assert!(check_broker(&bad_age).is_err());
    }

    /// Whether offset 0 can still be replayed on the channel. If so, the replay (which the
    /// seek started) is consumed again, so the event is consumed once more.
    async fn replayable(
        channel: &Arc<dyn Channel>,
        sub: &mut Box<dyn herald_channels::Subscription>,
    ) -> bool {
        match channel.seek("s", Position::Offset(0)).await {
            Ok(_) => {
                consume_one(sub).await;
                true
            }
            Err(ChannelError::NotRetained { .. }) => false,
            Err(e) => panic!("seek failed: {e}"),
        }
    }

    async fn consume_one(sub: &mut Box<dyn herald_channels::Subscription>) {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a delivery within 10s")
            .unwrap()
            .expect("subscription open");
        d.ack().await.unwrap();
    }

    #[tokio::test]
    async fn a_brokers_retention_annotation_bounds_its_own_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ChannelsConfig {
            default: BackendKind::Sled,
            sled: SledSection {
                data_dir: dir.path().to_path_buf(),
                ..Default::default()
            },
            ..Default::default()
        };
        // The server keeps consumed events an hour; one Broker only a moment.
        config.sled.store.retention.max_age = Some(Duration::from_secs(3600));
        config.sled.store.commit_interval = Duration::from_millis(10);
        config.sled.store.compaction_interval = Duration::from_millis(20);
        let backends = Backends::new(config);
        let short = broker("short", &[(RETENTION_MAX_AGE_ANNOTATION, "PT0.05S")]);
        let long = broker("long", &[]);
        let mut opened = Vec::new();
        for b in [&short, &long] {
            let (kind, channel) = backends.open(b).await.unwrap();
            assert_eq!(kind, BackendKind::Sled);
            let mut sub = channel.subscribe("s").await.unwrap();
            let event = EventBuilderV10::new()
                .id("1")
                .source("/t")
                .ty("t")
                .build()
                .unwrap();
            channel.publish(vec![event]).await.unwrap();
            consume_one(&mut sub).await;
            opened.push((channel, sub));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let (short_channel, short_sub) = &mut opened[0];
        while replayable(short_channel, short_sub).await {
            assert!(
                Instant::now() < deadline,
                "the short-retention Broker still holds its consumed event"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (long_channel, long_sub) = &mut opened[1];
        assert!(
            replayable(long_channel, long_sub).await,
            "the other Broker keeps its event for the server's hour"
        );
        backends.close().await;
    }
}
