//! Backends as components: each backend module (memory, sled, nats, kafka) has one
//! constructor, `connect`, returning a [`Backend`] that opens that backend's channels. The
//! [`BackendRegistry`] connects each backend on first use and keeps it, so a server whose
//! Brokers never use NATS never needs NATS.

use crate::config::ChannelsConfig;
use crate::{Channel, ChannelError, ChannelName, Retention};
use async_trait::async_trait;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Which backend holds a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    #[default]
    Memory,
    Sled,
    Nats,
    Kafka,
}

impl BackendKind {
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Memory,
        BackendKind::Sled,
        BackendKind::Nats,
        BackendKind::Kafka,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sled => "sled",
            Self::Nats => "nats",
            Self::Kafka => "kafka",
        }
    }
}

impl FromStr for BackendKind {
    type Err = String;

    /// `durable` is another name for `sled`, the durable log's historical name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "durable" {
            return Ok(BackendKind::Sled);
        }
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown channel backend {s:?} (expected memory, sled (or durable), nats or \
                     kafka)"
                )
            })
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for BackendKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for BackendKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What one channel asks of its backend beyond the backend's own configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelOptions {
    /// How long consumed events stay for replay (sled); `None`: the backend's default.
    pub retention: Option<Retention>,
}

/// Whether a backend can serve now, for readiness probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendHealth {
    Up,
    /// Down, with why.
    Down(String),
}

impl BackendHealth {
    pub fn is_up(&self) -> bool {
        matches!(self, BackendHealth::Up)
    }
}

/// One connected backend, from which its channels are opened.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Opens (creating if needed) a channel. Opening one name again gives the same log.
    async fn open(
        &self,
        channel: &ChannelName,
        options: &ChannelOptions,
    ) -> Result<Arc<dyn Channel>, ChannelError>;

    /// Up or down, with why, for /readyz.
    async fn health(&self) -> BackendHealth;

    /// Flushes and disconnects, after every channel has been closed.
    async fn close(&self);
}

/// The backends, connected on first use and kept.
pub struct BackendRegistry {
    config: ChannelsConfig,
    memory: OnceCell<Arc<dyn Backend>>,
    sled: OnceCell<Arc<dyn Backend>>,
    nats: OnceCell<Arc<dyn Backend>>,
    kafka: OnceCell<Arc<dyn Backend>>,
    /// Why the last connection attempt of a backend failed, until one succeeds.
    failures: Mutex<Vec<(BackendKind, String)>>,
}

impl BackendRegistry {
    pub fn new(config: ChannelsConfig) -> Self {
        Self {
            config,
            memory: OnceCell::new(),
            sled: OnceCell::new(),
            nats: OnceCell::new(),
            kafka: OnceCell::new(),
            failures: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> &ChannelsConfig {
        &self.config
    }

    /// The backend of channels that name none.
    pub fn default_kind(&self) -> BackendKind {
        self.config.default
    }

    fn cell(&self, kind: BackendKind) -> &OnceCell<Arc<dyn Backend>> {
        match kind {
            BackendKind::Memory => &self.memory,
            BackendKind::Sled => &self.sled,
            BackendKind::Nats => &self.nats,
            BackendKind::Kafka => &self.kafka,
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Vec<(BackendKind, String)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend, connected now if it is not yet. A failed connection is tried again on
    /// the next call.
    pub async fn backend(&self, kind: BackendKind) -> Result<Arc<dyn Backend>, ChannelError> {
        let connected = self
            .cell(kind)
            .get_or_try_init(|| connect(kind, &self.config))
            .await;
        match &connected {
            Ok(_) => self.failures().retain(|(k, _)| *k != kind),
            Err(e) => {
                let mut failures = self.failures();
                failures.retain(|(k, _)| *k != kind);
                failures.push((kind, e.to_string()));
            }
        }
        connected.cloned()
    }

    /// Opens a channel on the backend `kind`.
    pub async fn open(
        &self,
        kind: BackendKind,
        channel: &ChannelName,
        options: &ChannelOptions,
    ) -> Result<Arc<dyn Channel>, ChannelError> {
        self.backend(kind).await?.open(channel, options).await
    }

    /// The health of every backend used so far: those connected, and those whose connection
    /// failed (down, with why).
    pub async fn health(&self) -> Vec<(BackendKind, BackendHealth)> {
        let mut out = Vec::new();
        for kind in BackendKind::ALL {
            if let Some(backend) = self.cell(kind).get() {
                out.push((kind, backend.health().await));
            }
        }
        for (kind, why) in self.failures().iter() {
            if self.cell(*kind).get().is_none() {
                out.push((*kind, BackendHealth::Down(why.clone())));
            }
        }
        out.sort_by_key(|(kind, _)| *kind);
        out
    }

    /// Closes every connected backend, after every channel has been closed.
    pub async fn close(&self) {
        for kind in BackendKind::ALL {
            if let Some(backend) = self.cell(kind).get() {
                backend.close().await;
            }
        }
    }
}

/// Each backend module's one constructor.
async fn connect(
    kind: BackendKind,
    config: &ChannelsConfig,
) -> Result<Arc<dyn Backend>, ChannelError> {
    match kind {
        BackendKind::Memory => Ok(crate::memory::connect(config.memory.clone())),
        BackendKind::Sled => crate::sled::connect(config.sled.clone()).await,
        BackendKind::Nats => crate::nats::connect(config.nats.clone()).await,
        #[cfg(feature = "kafka")]
        BackendKind::Kafka => crate::kafka::connect(config.kafka.clone()).await,
        #[cfg(not(feature = "kafka"))]
        BackendKind::Kafka => Err(ChannelError::backend(
            "kafka",
            "this herald was built without Kafka support; build it with the `kafka` feature",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_name_parses_including_kafka() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.to_string().parse::<BackendKind>().unwrap(), kind);
        }
        assert_eq!("kafka".parse::<BackendKind>().unwrap(), BackendKind::Kafka);
        assert_eq!("durable".parse::<BackendKind>().unwrap(), BackendKind::Sled);
        let e = "kafkaa".parse::<BackendKind>().unwrap_err();
        assert!(e.contains("kafkaa") && e.contains("kafka)"), "{e}");
    }

    #[tokio::test]
    async fn backends_connect_on_first_use_and_report_health() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ChannelsConfig::default();
        config.sled.data_dir = dir.path().to_path_buf();
        // Nothing listens there: NATS is down, with why.
        config.nats.url = "nats://127.0.0.1:1".into();
        let registry = BackendRegistry::new(config);
        assert!(registry.health().await.is_empty(), "nothing used yet");

        let name = ChannelName::from("ns/b");
        let memory = registry
            .open(BackendKind::Memory, &name, &ChannelOptions::default())
            .await
            .unwrap();
        let again = registry
            .open(BackendKind::Memory, &name, &ChannelOptions::default())
            .await
            .unwrap();
        let mut sub = memory.subscribe("s").await.unwrap();
        again
            .publish(vec![crate::memory::tests::event("1")])
            .await
            .unwrap();
        let d = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();

        let sled = registry
            .open(BackendKind::Sled, &name, &ChannelOptions::default())
            .await
            .unwrap();
        assert_eq!(sled.name(), "ns/b");
        assert!(registry
            .open(BackendKind::Nats, &name, &ChannelOptions::default())
            .await
            .is_err());

        let health = registry.health().await;
        assert_eq!(health.len(), 3, "{health:?}");
        assert_eq!(health[0], (BackendKind::Memory, BackendHealth::Up));
        assert_eq!(health[1], (BackendKind::Sled, BackendHealth::Up));
        match &health[2] {
            (BackendKind::Nats, BackendHealth::Down(why)) => {
                assert!(why.contains("127.0.0.1:1"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        registry.close().await;
        let health = registry.health().await;
        assert!(
            !health[1].1.is_up(),
            "a closed sled store is down: {health:?}"
        );
    }
}
