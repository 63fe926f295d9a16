//! Herald's Kubernetes control plane, one more feed into the data plane's apply path:
//! - [`feed`]: on every replica, read-only reflectors apply the Knative objects Herald serves
//!   to that replica's data plane (and delete the ones that went away);
//! - [`reconcile`]: on the one replica holding the [`leader`] Lease, a kube-rs controller per
//!   kind adds a finalizer, applies, and writes status (Ready with reasons,
//!   observedGeneration, `address.url`) through the status subresource; on delete it removes
//!   what the resource holds in the channel backend, then the finalizer;
//! - [`eventtypes`]: the EventTypes the data plane recorded from events are created on the
//!   API server, owned by their Broker or Channel;
//! - [`addressable`]: `ref`s to Services and Knative Services (anything with
//!   `status.address.url`) resolve to URLs before the data plane sees them.
//!
//! The data plane itself stays behind the [`Plane`] trait, so this crate depends on
//! `herald-core` only.

pub mod addressable;
pub mod eventtypes;
pub mod feed;
pub mod kinds;
pub mod leader;
pub mod reconcile;

use async_trait::async_trait;
use herald_core::{Kind, Resource, ResourceKey, Status};
use std::sync::Arc;
use std::time::Duration;

pub use kinds::KnativeKind;

/// Brokers of this class (annotation `eventing.knative.dev/broker.class`) are Herald's.
pub const BROKER_CLASS: &str = "Herald";
/// The finalizer Herald puts on what it serves, removed once the backend is cleaned up.
pub const FINALIZER: &str = "herald.dev/finalizer";

/// Why the data plane did not take a resource.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    /// The resource can never run as written (the status says why; no retry).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The data plane cannot act now (shutting down, a backend down): retried with backoff.
    #[error("the data plane is unavailable: {0}")]
    Unavailable(String),
}

/// The data plane as the Kubernetes feed sees it: Herald's `DataPlane`, fed with its own
/// owner, implements it.
#[async_trait]
pub trait Plane: Send + Sync + 'static {
    /// Applies (creates or changes) a resource.
    async fn apply(&self, resource: Resource) -> Result<(), PlaneError>;
    /// Removes a resource and what it holds in the channel backend (streams, consumers,
    /// topics, groups). Removing what is not there is no error.
    async fn delete(&self, kind: Kind, key: &ResourceKey) -> Result<(), PlaneError>;
    /// The resource's status as the data plane reports it.
    async fn status(&self, kind: Kind, key: &ResourceKey) -> Option<Status>;
    /// Every resource this feed applied and has not deleted.
    async fn applied(&self) -> Vec<(Kind, ResourceKey)>;
    /// The EventTypes the data plane recorded from events (rather than was given), to write
    /// back to the API server.
    async fn recorded_event_types(&self) -> Vec<herald_core::EventType> {
        Vec::new()
    }
    /// Moves whenever those change; `None` when it never tells.
    fn recorded_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// How the controller behaves; the defaults suit a cluster, tests shorten them.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Name and namespace of the leader Lease.
    pub lease_name: String,
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal, and how long before expiry the holder
    /// renews it.
    pub lease_duration: Duration,
    pub lease_grace: Duration,
    /// How soon a resource that is not ready is looked at again (e.g. a subscriber that may
    /// appear).
    pub not_ready_requeue: Duration,
    /// How often a ready resource is looked at again.
    pub resync: Duration,
    /// The first and the longest wait after a failed reconcile.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Which kinds this Herald serves: on a cluster running Knative Eventing, Brokers (of
    /// class Herald) and Triggers only.
    pub kinds: Vec<Kind>,
    /// The cluster's DNS suffix, for Service addresses.
    pub cluster_domain: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            lease_name: "herald-controller".into(),
            lease_namespace: "herald".into(),
            identity: std::env::var("POD_NAME").unwrap_or_else(|_| "herald".into()),
            lease_duration: Duration::from_secs(15),
            lease_grace: Duration::from_secs(5),
            not_ready_requeue: Duration::from_secs(10),
            resync: Duration::from_secs(300),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            kinds: Kind::ALL.to_vec(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub plane: Arc<dyn Plane>,
    pub config: ControllerConfig,
    pub addressables: addressable::Addressables,
    pub backoff: reconcile::Backoff,
}

impl Context {
    pub fn new(client: kube::Client, plane: Arc<dyn Plane>, config: ControllerConfig) -> Arc<Self> {
        Arc::new(Self {
            addressables: addressable::Addressables::new(client.clone(), &config.cluster_domain),
            backoff: reconcile::Backoff::new(config.backoff_base, config.backoff_max),
            client,
            plane,
            config,
        })
    }
}

/// Errors of one reconcile; each is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    #[error(transparent)]
    Plane(#[from] PlaneError),
    #[error("resolving addresses: {0}")]
    Resolve(#[source] kube::Error),
}
