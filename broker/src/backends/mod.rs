//! Opens the channel of each Broker and each messaging Channel on the backend its manifest
//! names: the `herald.dev/channel` annotation (`memory`, `sled`, `nats`, `kafka`), else what
//! its kind implies (Knative's broker class `Kafka`; a Channel's InMemoryChannel, KafkaChannel or
//! NatsJetStreamChannel template), else the server's default, with its retention annotations
//! applied. The backends themselves (connected lazily, so a server whose Brokers never use
//! NATS never needs it) are `herald_channels`' [`BackendRegistry`]; this module only reads
//! Knative resources.

pub mod flags;

pub use flags::{BackendConfigError, ChannelArgs, KafkaArgs, MemoryArgs, NatsArgs, SledArgs};
pub use herald_channels::{BackendKind, ChannelsConfig};

use herald_channels::{
    BackendRegistry, Channel, ChannelError, ChannelName, ChannelOptions, Retention,
};
use herald_core::{Broker, IsoDuration, ObjectMeta};
use serde::Serialize;
use std::sync::Arc;

/// The former name of [`ChannelsConfig`].
pub type BackendsConfig = ChannelsConfig;

/// Annotation naming a Broker's (or Channel's) channel backend.
pub const CHANNEL_ANNOTATION: &str = "herald.dev/channel";
/// Annotations overriding how long consumed events are kept for replay (sled): an ISO-8601
/// duration, and a size in bytes.
pub const RETENTION_MAX_AGE_ANNOTATION: &str = "herald.dev/retention.max-age";
pub const RETENTION_MAX_BYTES_ANNOTATION: &str = "herald.dev/retention.max-bytes";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{owner}: annotation {annotation}: {message}")]
    Annotation {
        owner: String,
        annotation: &'static str,
        message: String,
    },
    #[error("{owner}: cannot open its {kind} channel: {source}")]
    Open {
        owner: String,
        kind: BackendKind,
        #[source]
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

/// What a backend channel is opened for.
#[derive(Clone, Copy)]
pub enum LogOwner<'a> {
    Broker(&'a Broker),
    Channel(&'a herald_core::Channel),
}

impl LogOwner<'_> {
    fn metadata(&self) -> &ObjectMeta {
        match self {
            LogOwner::Broker(b) => &b.metadata,
            LogOwner::Channel(c) => &c.metadata,
        }
    }

    fn label(&self) -> String {
        match self {
            LogOwner::Broker(b) => format!("Broker {}", b.key()),
            LogOwner::Channel(c) => format!("{} {}", c.flavor.kind(), c.key()),
        }
    }

    /// The name its events are stored under. A Broker's is its key (kept from the first
    /// release, so stored data is found again); a Channel's is prefixed, so a Channel never
    /// shares a log with a Broker of the same name.
    pub fn channel_name(&self) -> ChannelName {
        match self {
            LogOwner::Broker(b) => ChannelName::from(&b.key()),
            LogOwner::Channel(c) => ChannelName::new(format!("channel/{}", c.key())),
        }
    }

    /// The backend its kind implies when no annotation names one.
    fn implied_kind(&self) -> Option<BackendKind> {
        match self {
            // Knative's Kafka broker class means the same here.
            LogOwner::Broker(b) => (b.class() == Some("Kafka")).then_some(BackendKind::Kafka),
            LogOwner::Channel(c) => match c.backing_kind() {
                Some("InMemoryChannel") => Some(BackendKind::Memory),
                Some("KafkaChannel") => Some(BackendKind::Kafka),
                Some("NatsJetStreamChannel") => Some(BackendKind::Nats),
                // HeraldChannel (and no template): the server's default backend.
                _ => None,
            },
        }
    }

    fn annotation(&self, name: &str) -> Option<&String> {
        self.metadata().annotations.get(name)
    }
}

/// Checks a Broker's or Channel's channel annotations (backend name, retention) before it is
/// accepted.
pub fn check_owner(owner: LogOwner<'_>) -> Result<(), BackendError> {
    chosen_kind(owner)?;
    retention_over(Retention::default(), owner)?;
    Ok(())
}

/// The backend the resource names or implies, if any.
fn chosen_kind(owner: LogOwner<'_>) -> Result<Option<BackendKind>, BackendError> {
    match owner.annotation(CHANNEL_ANNOTATION) {
        Some(name) => name
            .parse()
            .map(Some)
            .map_err(|message| BackendError::Annotation {
                owner: owner.label(),
                annotation: CHANNEL_ANNOTATION,
                message,
            }),
        None => Ok(owner.implied_kind()),
    }
}

/// `base`, with the resource's retention annotations applied on top.
fn retention_over(
    mut retention: Retention,
    owner: LogOwner<'_>,
) -> Result<Retention, BackendError> {
    let bad = |annotation: &'static str, message: String| BackendError::Annotation {
        owner: owner.label(),
        annotation,
        message,
    };
    if let Some(v) = owner.annotation(RETENTION_MAX_AGE_ANNOTATION) {
        let d: IsoDuration = v
            .parse()
            .map_err(|e| bad(RETENTION_MAX_AGE_ANNOTATION, format!("{e}")))?;
        retention.max_age = Some(d.as_duration());
    }
    if let Some(v) = owner.annotation(RETENTION_MAX_BYTES_ANNOTATION) {
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

/// Brokers' and Channels' channels, on the backends of the registry.
pub struct Backends {
    registry: BackendRegistry,
}

impl Backends {
    pub fn new(config: ChannelsConfig) -> Self {
        Self {
            registry: BackendRegistry::new(config),
        }
    }

    pub fn kind_of(&self, owner: LogOwner<'_>) -> Result<BackendKind, BackendError> {
        Ok(chosen_kind(owner)?.unwrap_or(self.registry.default_kind()))
    }

    /// What the resource's channel asks of its backend: the server's retention, with the
    /// resource's annotations applied on top.
    pub fn options_for(&self, owner: LogOwner<'_>) -> Result<ChannelOptions, BackendError> {
        Ok(ChannelOptions {
            retention: Some(retention_over(
                self.registry.config().sled.store.retention,
                owner,
            )?),
        })
    }

    /// Opens the channel of a Broker or Channel (the same one again for one opened before,
    /// unless it was deleted).
    pub async fn open_for(
        &self,
        owner: LogOwner<'_>,
    ) -> Result<(BackendKind, Arc<dyn Channel>), BackendError> {
        let kind = self.kind_of(owner)?;
        let options = self.options_for(owner)?;
        let channel = self
            .registry
            .open(kind, &owner.channel_name(), &options)
            .await
            .map_err(|source| BackendError::Open {
                owner: owner.label(),
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
            backends
                .kind_of(LogOwner::Broker(&broker("b", &[])))
                .unwrap(),
            BackendKind::Memory
        );
        for (name, kind) in [
            ("nats", BackendKind::Nats),
            ("kafka", BackendKind::Kafka),
            ("sled", BackendKind::Sled),
        ] {
            let b = broker("b", &[(CHANNEL_ANNOTATION, name)]);
            assert_eq!(backends.kind_of(LogOwner::Broker(&b)).unwrap(), kind);
            check_owner(LogOwner::Broker(&b)).unwrap();
        }
        let bad = broker("b", &[(CHANNEL_ANNOTATION, "kafkaa")]);
        let e = backends.kind_of(LogOwner::Broker(&bad)).unwrap_err();
        assert!(
            e.to_string().contains("kafkaa") && e.to_string().contains(CHANNEL_ANNOTATION),
            "{e}"
        );
        assert!(check_owner(LogOwner::Broker(&bad)).is_err());

        let retention = |b: &Broker| {
            backends
                .options_for(LogOwner::Broker(b))
                .map(|o| o.retention.expect("always set"))
        };
        let r = retention(&broker(
            "b",
            &[
                (RETENTION_MAX_AGE_ANNOTATION, "PT2H"),
                (RETENTION_MAX_BYTES_ANNOTATION, "1000"),
            ],
        ))
        .unwrap();
        assert_eq!(r.max_age, Some(Duration::from_secs(7200)));
        assert_eq!(r.max_bytes, Some(1000));
        assert_eq!(retention(&broker("b", &[])).unwrap(), Retention::default());
        let bad_age = broker("b", &[(RETENTION_MAX_AGE_ANNOTATION, "2 hours")]);
        let e = retention(&bad_age).unwrap_err();
        assert!(e.to_string().contains(RETENTION_MAX_AGE_ANNOTATION), "{e}");
        assert!(check_owner(LogOwner::Broker(&bad_age)).is_err());
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
            let (kind, channel) = backends.open_for(LogOwner::Broker(b)).await.unwrap();
            assert_eq!(kind, BackendKind::Sled);
            let mut sub = channel.subscribe("s").await.unwrap();
            let event = EventBuilderV10::new()
                .id("1")
                .source("/t")
                .ty("t")
                .build()
                .unwrap();
            channel.publish(vec![event.into()]).await.unwrap();
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
