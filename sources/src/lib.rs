//! Event sources: how events enter Herald from outside. One trait, [`Source`] (run until
//! shutdown, emitting CloudEvents to a [`Sink`]), one registry of source kinds
//! ([`registry`]), one module per kind: [`ping`] (cron), [`github`] (webhooks),
//! [`container`] (a program given `K_SINK`), [`nats`] (messages of a subject or stream,
//! decoded by [`decode`]), [`kafka`] (records of Kafka topics, committed once accepted) and
//! [`apiserver`] (changes of Kubernetes objects; feature `kubernetes`). Each source's counters
//! are in [`metrics`].
//!
//! The same sources run inside `herald serve` (the data plane starts, replaces and stops
//! them as resources change) and alone (`herald source run FILE`); both build them through
//! [`registry::build`] and hand them a [`SourceContext`].

pub mod apiserver;
pub mod backoff;
pub mod clock;
pub mod container;
pub mod decode;
pub mod error;
pub mod github;
pub mod kafka;
pub mod metrics;
pub mod nats;
pub mod ping;
pub mod registry;
pub mod sink;
pub mod supervise;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, SourceError};
pub use github::Webhooks;
pub use metrics::SourceMetrics;
pub use registry::{build, sink_parts, SourceKind, REGISTRY};
pub use sink::{Sink, SinkCounts, SinkError};
pub use supervise::supervise;

use herald_core::{Check, Kind, ResourceKey};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One source kind's running code. Built from its resource by the [`registry`], run once.
#[async_trait::async_trait]
pub trait Source: Send {
    /// Emits events to `ctx.sink` until `ctx.shutdown` is cancelled, finishing the event in
    /// hand. Returns an error only when it cannot go on (its host may start it again).
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError>;
}

/// What a running source is given.
pub struct SourceContext {
    pub kind: Kind,
    pub key: ResourceKey,
    pub sink: Sink,
    pub shutdown: CancellationToken,
    /// The source's own condition (`Deployed` in its status): set it when it is running, or
    /// why not.
    pub health: watch::Sender<Check>,
    pub env: Arc<SourceEnv>,
}

impl SourceContext {
    pub fn report(&self, check: Check) {
        self.health.send_replace(check);
    }
}

/// What the host (serve or `herald source run`) provides to every source.
#[derive(Clone)]
pub struct SourceEnv {
    pub clock: Arc<dyn Clock>,
    /// The server's NATS (its NATS backend), for NatsSources that name none and for the
    /// PingSource tick ledger when replicas share it.
    pub nats_url: Option<String>,
    /// Where PingSources record their last tick (one file each) when NATS is not shared;
    /// without it ticks are remembered in memory only (no catch-up across restarts).
    pub state_dir: Option<PathBuf>,
    /// Share the PingSource tick ledger on `nats_url` (replicas emit each tick once).
    pub shared_ticks: bool,
    /// How old a tick missed while Herald was down may be and still be emitted on start.
    pub ping_catch_up: Duration,
    /// GitHubSource endpoints, served at `/sources/github/{namespace}/{name}`.
    pub webhooks: Webhooks,
    /// Restart backoff of ContainerSource commands: first and longest wait.
    pub restart_backoff: (Duration, Duration),
    /// Where sources count events, sink failures and restarts.
    pub metrics: SourceMetrics,
    /// Whether this host may run leader-only sources (ApiServerSource) now.
    pub leadership: watch::Receiver<Leadership>,
    /// The API server ApiServerSources watch; unset, each infers one (in-cluster config or
    /// KUBECONFIG).
    #[cfg(feature = "kubernetes")]
    pub kubernetes: Option<apiserver::Cluster>,
}

impl Default for SourceEnv {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            nats_url: None,
            state_dir: None,
            shared_ticks: false,
            ping_catch_up: Duration::from_secs(3600),
            webhooks: Webhooks::default(),
            restart_backoff: (Duration::from_millis(500), Duration::from_secs(30)),
            metrics: SourceMetrics::default(),
            leadership: watch::channel(Leadership::Unelected).1,
            #[cfg(feature = "kubernetes")]
            kubernetes: None,
        }
    }
}

/// Where a host stands for sources that must run on one replica only (an ApiServerSource
/// emits each change of an object: two replicas watching would emit it twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// No election (files, `herald source run`): run them.
    Unelected,
    /// This replica holds the leader Lease: run them.
    Leader,
    /// Another replica leads (or none yet): do not run them.
    Standby,
}

impl Leadership {
    pub fn may_run(self) -> bool {
        self != Leadership::Standby
    }
}

/// Knative's source conditions: the sink resolved (`SinkProvided`) and the source running
/// (`Deployed`); Ready is their conjunction.
pub const SINK_PROVIDED: &str = "SinkProvided";
pub const DEPLOYED: &str = "Deployed";
