//! The data plane: owns the running Brokers, Triggers, Channels, Subscriptions, Sequences and
//! Parallels and applies a desired resource set to itself at runtime. Every feed (the config directory watcher, the admin API, later the
//! Kubernetes controller) calls the same methods: [`DataPlane::apply`],
//! [`DataPlane::apply_set`] and [`DataPlane::delete`].
//!
//! Rules, as a Knative user expects of `kubectl apply`:
//! - an added Trigger starts at the head of its Broker;
//! - a changed Trigger keeps its committed position; deliveries in flight finish under the
//!   spec they started with;
//! - a removed Trigger stops at once and its subscription is deleted from the backend;
//! - a removed Broker answers 404 at once; its channel is closed and deleted from the backend
//!   once no Trigger reads it any more (so Triggers still applied drain what was accepted);
//! - an invalid resource is refused and the running one stays as it was;
//! - a Trigger whose Broker or subscriber does not exist yet is NotReady, and becomes Ready
//!   by itself when they are applied.
//!
//! Channels and Subscriptions follow the same rules as Brokers and Triggers. A Sequence or
//! Parallel is expanded into the Channels and Subscriptions Knative would create for it
//! (owned by it, removed with it), which then run like any other.

mod brokers;
mod channels;
mod eventtypes;
mod expiry;
mod flows;
mod metrics;
mod parked;
mod policies;
mod recorder;
mod routes;
mod sources;
mod status;
mod subscriptions;
mod tap;
mod transforms;
mod triggers;
mod view;

pub use eventtypes::{EventTypeStoreError, STORE_FILE as EVENT_TYPE_STORE_FILE};
pub use metrics::RouteCounters;
pub use parked::{Discarded, ParkedError, ParkedList, Redriven};
pub use status::{Health, NotReady};
pub use tap::{Seen, Watch, TAP_CAPACITY};
pub use transforms::{CompiledTransform, Transforms};
pub use view::ResourceView;

use crate::auth::{Authorizations, InternalTokens};
use crate::backends::{BackendError, Backends, BackendsConfig};
use crate::ingress::{BrokerMap, Brokers};
use arc_swap::ArcSwap;
use brokers::LogEntry;
use herald_channels::Channel;
use herald_core::{
    AuthorizationMode, Broker, Channel as ChannelResource, DeliverySpec, EventPolicy,
    EventTransform, EventType, Kind, Parallel, Resolver, Resource, ResourceKey, ResourceSet,
    Sequence, Subscription, Trigger,
};
use herald_dispatcher::RouteId;
use herald_dispatcher::{DeliveryEngine, EngineConfig, RouteError};
use recorder::EventTypeRecorder;
use routes::Running;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use url::Url;

/// Which feed applied a resource. A feed that applies a whole set (the config directory)
/// removes only the resources it applied itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// `herald serve --config`.
    Files,
    /// The admin API (`herald apply`).
    Api,
    /// The Kubernetes feed (`herald serve --kubernetes`).
    Kubernetes,
    /// Created for a Sequence or Parallel, and removed with it.
    Flow(Kind, ResourceKey),
    /// An EventType recorded from the events a Broker or Channel accepted
    /// (`--eventtype-auto-create`); removed with its Broker or Channel.
    Recorded,
}

#[derive(Clone, Debug)]
pub struct PlaneConfig {
    pub channels: BackendsConfig,
    pub engine: EngineConfig,
    /// Delivery for Triggers whose Trigger and Broker both set none.
    pub default_delivery: DeliverySpec,
    /// Deliveries in flight per Trigger.
    pub max_in_flight: usize,
    /// How long shutdown waits for accepted events to drain before abandoning them.
    pub drain_timeout: Duration,
    /// How old a PingSource tick missed while Herald was down may be and still be emitted
    /// on start.
    pub ping_catch_up: Duration,
    /// The API server ApiServerSources watch; unset, each infers one.
    #[cfg(feature = "kubernetes")]
    pub cluster: Option<herald_sources::apiserver::Cluster>,
    /// With ingress authentication on, the default authorization mode (what applies to a
    /// Broker or Channel no EventPolicy applies to); `None`: authentication is off.
    pub authorization: Option<AuthorizationMode>,
    /// Record an EventType for every (type, source) each Broker and Channel accepts.
    pub eventtype_auto_create: bool,
    /// The key of own-sender tokens (shared by replicas); unset, a fresh one.
    pub internal_tokens: Option<InternalTokens>,
}

/// What an apply did, kubectl's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The resource is invalid; nothing was changed.
    #[error("{}{kind} {key}: {field}: {message}", origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default())]
    Invalid {
        /// The file (and document) it came from, for a feed that has one.
        origin: Option<String>,
        kind: Kind,
        key: ResourceKey,
        field: String,
        message: String,
    },
    #[error("{kind} {key} not found")]
    NotFound { kind: Kind, key: ResourceKey },
    #[error("the data plane is shutting down")]
    ShuttingDown,
}

impl ApplyError {
    fn invalid(kind: Kind, key: ResourceKey, field: impl Into<String>, e: impl ToString) -> Self {
        Self::Invalid {
            origin: None,
            kind,
            key,
            field: field.into(),
            message: e.to_string(),
        }
    }
}

/// Where a Trigger reads from, for replay.
#[derive(Clone)]
pub struct TriggerHandle {
    pub broker: ResourceKey,
    pub channel: Arc<dyn Channel>,
    pub subscription: String,
}

/// Whose backend channel a log is: a Broker's or a Channel's.
type LogId = (Kind, ResourceKey);

struct State {
    backends: Backends,
    brokers: BTreeMap<ResourceKey, Entry<Broker>>,
    triggers: BTreeMap<ResourceKey, Entry<Trigger>>,
    channels: BTreeMap<ResourceKey, Entry<ChannelResource>>,
    subscriptions: BTreeMap<ResourceKey, Entry<Subscription>>,
    sequences: BTreeMap<ResourceKey, Entry<Sequence>>,
    parallels: BTreeMap<ResourceKey, Entry<Parallel>>,
    transforms: BTreeMap<ResourceKey, Entry<EventTransform>>,
    policies: BTreeMap<ResourceKey, Entry<EventPolicy>>,
    event_types: BTreeMap<ResourceKey, Entry<EventType>>,
    /// Hands what each log accepts to the EventType recorder (wraps every log's channel).
    recorder: EventTypeRecorder,
    /// PingSources, GitHubSources, ... by kind.
    sources: BTreeMap<Kind, BTreeMap<ResourceKey, Entry<Resource>>>,
    /// The task of each source that runs.
    source_runs: BTreeMap<(Kind, ResourceKey), sources::RunningSource>,
    /// The consumer of each Trigger and Subscription that is running.
    consumers: BTreeMap<RouteId, Running>,
    /// Open backend channels; a deleted Broker's (or Channel's) stays while routes read it.
    logs: BTreeMap<LogId, LogEntry>,
    /// Consumers that were replaced or stopped and are finishing their in-flight deliveries.
    retiring: JoinSet<()>,
    closed: bool,
    /// Parent of every log's tap: cancelled, it ends every watch at once.
    stopping_watches: tokio_util::sync::CancellationToken,
}

pub struct DataPlane {
    state: Mutex<State>,
    ingress: Brokers,
    channel_ingress: Brokers,
    transform_map: Transforms,
    authorizations: Authorizations,
    /// Mints the tokens this server's own senders present to its ingress.
    internal_tokens: InternalTokens,
    resolver: Resolver,
    engine: DeliveryEngine,
    config: PlaneConfig,
    source_env: Arc<herald_sources::SourceEnv>,
    /// Feeds `source_env.leadership`.
    source_leadership: tokio::sync::watch::Sender<herald_sources::Leadership>,
    metrics: Arc<herald_core::metrics::Metrics>,
    /// The recorder's queue, until [`DataPlane::run_event_types`] takes it.
    recorder_queue: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<recorder::Observed>>>,
    /// Moves whenever the recorded EventTypes change (to save them, to write them back).
    recorded_changed: tokio::sync::watch::Sender<u64>,
}

impl DataPlane {
    /// A data plane whose Brokers are addressed at `ingress_base` (this server's ingress).
    pub fn new(config: PlaneConfig, ingress_base: Url) -> Result<Arc<Self>, PlaneError> {
        let metrics = herald_core::metrics::Metrics::new();
        let internal_tokens = config.internal_tokens.clone().unwrap_or_default();
        let mut engine = DeliveryEngine::new(config.engine.clone())?.with_metrics(metrics.clone());
        if config.authorization.is_some() {
            engine = engine.with_credentials(Arc::new(crate::auth::OwnSenders::new(
                ingress_base.clone(),
                internal_tokens.clone(),
            )));
        }
        let (source_leadership, leadership) =
            tokio::sync::watch::channel(herald_sources::Leadership::Unelected);
        let source_env = herald_sources::SourceEnv {
            leadership,
            ..source_env(&config, &metrics)
        };
        let (recorder, recorder_queue) = if config.eventtype_auto_create {
            let (r, q) = EventTypeRecorder::new(&metrics);
            (r, Some(q))
        } else {
            (EventTypeRecorder::disabled(), None)
        };
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                backends: Backends::new(config.channels.clone()),
                brokers: BTreeMap::new(),
                triggers: BTreeMap::new(),
                channels: BTreeMap::new(),
                subscriptions: BTreeMap::new(),
                sequences: BTreeMap::new(),
                parallels: BTreeMap::new(),
                transforms: BTreeMap::new(),
                policies: BTreeMap::new(),
                event_types: BTreeMap::new(),
                recorder,
                sources: BTreeMap::new(),
                source_runs: BTreeMap::new(),
                consumers: BTreeMap::new(),
                logs: BTreeMap::new(),
                retiring: JoinSet::new(),
                closed: false,
                stopping_watches: Default::default(),
            }),
            ingress: Arc::new(ArcSwap::from_pointee(BrokerMap::default())),
            channel_ingress: Arc::new(ArcSwap::from_pointee(BrokerMap::default())),
            transform_map: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            authorizations: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            internal_tokens,
            resolver: Resolver::new(ingress_base),
            engine,
            source_env: Arc::new(source_env),
            source_leadership,
            config,
            metrics,
            recorder_queue: std::sync::Mutex::new(recorder_queue),
            recorded_changed: tokio::sync::watch::channel(0).0,
        }))
    }

    /// The Brokers ingress accepts for, updated on every apply.
    pub fn ingress(&self) -> Brokers {
        self.ingress.clone()
    }

    /// The EventTransforms served at `/transforms/{ns}/{name}`, updated on every apply.
    pub fn transforms(&self) -> Transforms {
        self.transform_map.clone()
    }

    /// What ingress checks per Broker and Channel (their EventPolicies), updated on every
    /// apply.
    pub fn authorizations(&self) -> Authorizations {
        self.authorizations.clone()
    }

    /// The key of the tokens this server's own senders present to its ingress, which
    /// ingress must accept.
    pub fn internal_tokens(&self) -> InternalTokens {
        self.internal_tokens.clone()
    }

    /// Whether this replica runs leader-only sources (ApiServerSource) now; the Kubernetes
    /// feed sets it from the controller's Lease. Until set, they run.
    pub fn set_source_leadership(&self, leadership: herald_sources::Leadership) {
        self.source_leadership.send_replace(leadership);
    }

    /// The GitHubSources receiving webhooks (`/sources/github/{ns}/{name}`).
    pub fn webhooks(&self) -> herald_sources::Webhooks {
        self.source_env.webhooks.clone()
    }

    /// The Channels ingress accepts for (`/channels/{ns}/{name}`), updated on every apply.
    pub fn channel_ingress(&self) -> Brokers {
        self.channel_ingress.clone()
    }

    /// Applies one resource (created or changed).
    pub async fn apply(&self, resource: Resource, owner: Owner) -> Result<Applied, ApplyError> {
        validate(&resource)?;
        let mut state = self.state.lock().await;
        if state.closed {
            return Err(ApplyError::ShuttingDown);
        }
        let applied = state.upsert(resource, owner);
        self.reconcile(&mut state).await;
        Ok(applied)
    }

    /// Makes the resources owned by `owner` exactly `set`: applies each, removes the ones
    /// `owner` applied before that `set` no longer holds. All or nothing: one invalid
    /// resource and nothing changes.
    pub async fn apply_set(
        &self,
        set: &ResourceSet,
        owner: Owner,
    ) -> Result<Vec<(Kind, ResourceKey, Applied)>, ApplyError> {
        let mut resources = Vec::new();
        for (r, from) in set.resources() {
            validate(&r).map_err(|e| match e {
                ApplyError::Invalid {
                    kind,
                    key,
                    field,
                    message,
                    ..
                } => ApplyError::Invalid {
                    origin: Some(from.to_string()),
                    kind,
                    key,
                    field,
                    message,
                },
                other => other,
            })?;
            resources.push(r);
        }
        let mut state = self.state.lock().await;
        if state.closed {
            return Err(ApplyError::ShuttingDown);
        }
        let mut applied = Vec::new();
        let keep: Vec<(Kind, ResourceKey)> =
            resources.iter().map(|r| (r.kind(), r.key())).collect();
        for r in resources {
            let (kind, key) = (r.kind(), r.key());
            let how = state.upsert(r, owner.clone());
            if how != Applied::Unchanged {
                applied.push((kind, key, how));
            }
        }
        let gone: Vec<(Kind, ResourceKey)> = state
            .owned_by(&owner)
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        for (kind, key) in gone {
            state.remove(kind, &key).await;
            tracing::info!(%kind, %key, "deleted");
        }
        self.reconcile(&mut state).await;
        Ok(applied)
    }

    pub async fn delete(&self, kind: Kind, key: &ResourceKey) -> Result<(), ApplyError> {
        let mut state = self.state.lock().await;
        if !state.remove(kind, key).await {
            return Err(ApplyError::NotFound {
                kind,
                key: key.clone(),
            });
        }
        tracing::info!(%kind, %key, "deleted");
        if kind == Kind::EventType {
            self.recorded_changed.send_modify(|v| *v += 1);
        }
        self.reconcile(&mut state).await;
        Ok(())
    }

    /// Brings what runs in line with what is applied: expands flows, opens channels,
    /// starts, updates and stops consumers, deletes channels no one needs, publishes the
    /// ingress maps, and writes every status.
    async fn reconcile(&self, state: &mut State) {
        state.expand_flows().await;
        self.reconcile_brokers(state).await;
        self.reconcile_channels(state).await;
        self.reconcile_triggers(state).await;
        self.reconcile_subscriptions(state).await;
        self.release_logs(state).await;
        self.flow_status(state);
        self.reconcile_transforms(state);
        self.reconcile_policies(state);
        self.reconcile_event_types(state);
        self.reconcile_sources(state).await;
        self.ingress.store(Arc::new(
            state.addressable(Kind::Broker, state.brokers.keys()),
        ));
        self.channel_ingress.store(Arc::new(
            state.addressable(Kind::Channel, state.channels.keys()),
        ));
    }

    /// Every resource `owner` applied last.
    pub async fn owned_by(&self, owner: &Owner) -> Vec<(Kind, ResourceKey)> {
        self.state.lock().await.owned_by(owner)
    }

    pub async fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<ResourceView> {
        let state = self.state.lock().await;
        state
            .views(kind)
            .into_iter()
            .filter(|v| namespace.is_none_or(|ns| v.key.namespace == ns))
            .collect()
    }

    pub async fn get(&self, kind: Kind, key: &ResourceKey) -> Option<ResourceView> {
        let state = self.state.lock().await;
        state.views(kind).into_iter().find(|v| &v.key == key)
    }

    pub async fn trigger(&self, key: &ResourceKey) -> Option<TriggerHandle> {
        let state = self.state.lock().await;
        let running = state.consumers.get(&RouteId::trigger(key.clone()))?;
        Some(TriggerHandle {
            broker: running.log.1.clone(),
            channel: running.channel.clone(),
            subscription: running.subscription.clone(),
        })
    }

    /// Stops: channels close (subscriptions end once safe), consumers drain up to the drain
    /// timeout, then whatever is still in flight is abandoned.
    pub async fn shutdown(&self) {
        self.shutdown_within(self.config.drain_timeout).await
    }

    /// [`shutdown`](Self::shutdown) with what is left of the drain timeout (the listener
    /// may have used some of it finishing requests).
    pub async fn shutdown_within(&self, drain_timeout: Duration) {
        let mut state = self.state.lock().await;
        state.closed = true;
        self.ingress.store(Arc::new(BrokerMap::default()));
        for c in state.logs.values() {
            c.channel.close().await;
        }
        let mut consumers = std::mem::take(&mut state.retiring);
        for (_, r) in std::mem::take(&mut state.source_runs) {
            r.stop.cancel();
            consumers.spawn(async move {
                let _ = r.task.await;
            });
        }
        let mut controls = Vec::new();
        for (_, r) in std::mem::take(&mut state.consumers) {
            controls.push(r.control.clone());
            consumers.spawn(async move {
                let _ = r.task.await;
            });
        }
        let drained = tokio::time::timeout(drain_timeout, async {
            while consumers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::error!(
                ?drain_timeout,
                "drain timeout passed; abandoning remaining deliveries"
            );
            for c in &controls {
                c.abort.cancel();
            }
            while consumers.join_next().await.is_some() {}
        }
        state.backends.close().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Engine(#[from] herald_dispatcher::engine::EngineError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What sources get from this server: its NATS (shared tick ledger when NATS is the default
/// backend), a state directory beside sled's when sled is, the catch-up window, and the
/// per-source counters on this server's `/metrics`.
fn source_env(
    config: &PlaneConfig,
    metrics: &herald_core::metrics::Metrics,
) -> herald_sources::SourceEnv {
    use herald_channels::BackendKind;
    let channels = &config.channels;
    herald_sources::SourceEnv {
        nats_url: Some(channels.nats.url.clone()),
        shared_ticks: channels.default == BackendKind::Nats,
        state_dir: (channels.default == BackendKind::Sled)
            .then(|| channels.sled.data_dir.join("sources")),
        ping_catch_up: config.ping_catch_up,
        metrics: herald_sources::SourceMetrics::register(metrics),
        #[cfg(feature = "kubernetes")]
        kubernetes: config.cluster.clone(),
        ..Default::default()
    }
}

/// Refuses what can never run, before anything changes.
fn validate(resource: &Resource) -> Result<(), ApplyError> {
    let (kind, key) = (resource.kind(), resource.key());
    if let Some(e) = resource.validate().into_iter().next() {
        return Err(ApplyError::invalid(kind, key, e.field, e.message));
    }
    let owner = match resource {
        Resource::Trigger(t) => {
            return herald_dispatcher::route::check_trigger(t)
                .map(|_| ())
                .map_err(|e: RouteError| ApplyError::invalid(kind, key, e.field(), e))
        }
        Resource::Broker(b) => crate::backends::LogOwner::Broker(b),
        Resource::Channel(c) => crate::backends::LogOwner::Channel(c),
        Resource::EventTransform(t) => {
            return transforms::compile(t)
                .map(|_| ())
                .map_err(|(field, e)| ApplyError::invalid(kind, key, field, e))
        }
        Resource::EventPolicy(p) => {
            return policies::compile(p)
                .map(|_| ())
                .map_err(|e| ApplyError::invalid(kind, key, e.field.clone(), e.message))
        }
        r if kind.is_source() => {
            return match herald_sources::build(r) {
                Some(Err(e)) => Err(ApplyError::invalid(kind, key, e.field, e.message)),
                _ => Ok(()),
            }
        }
        _ => return Ok(()),
    };
    crate::backends::check_owner(owner)
        .map_err(|e| ApplyError::invalid(kind, key, "metadata.annotations", e))
}

impl State {
    /// The open logs of `keys` (of `kind`), for an ingress map.
    fn addressable<'a>(
        &self,
        kind: Kind,
        keys: impl Iterator<Item = &'a ResourceKey>,
    ) -> BrokerMap {
        keys.filter_map(|k| self.log(kind, k).map(|c| (k.clone(), c)))
            .collect()
    }

    fn upsert(&mut self, resource: Resource, owner: Owner) -> Applied {
        let key = resource.key();
        match resource {
            Resource::Broker(r) => upsert(&mut self.brokers, key, r, owner, Resource::Broker),
            Resource::Trigger(r) => upsert(&mut self.triggers, key, r, owner, Resource::Trigger),
            Resource::Channel(r) => upsert(&mut self.channels, key, r, owner, Resource::Channel),
            Resource::Subscription(r) => upsert(
                &mut self.subscriptions,
                key,
                r,
                owner,
                Resource::Subscription,
            ),
            Resource::Sequence(r) => upsert(&mut self.sequences, key, r, owner, Resource::Sequence),
            Resource::Parallel(r) => upsert(&mut self.parallels, key, r, owner, Resource::Parallel),
            Resource::EventTransform(r) => upsert(
                &mut self.transforms,
                key,
                r,
                owner,
                Resource::EventTransform,
            ),
            Resource::EventPolicy(r) => {
                upsert(&mut self.policies, key, r, owner, Resource::EventPolicy)
            }
            Resource::EventType(r) => {
                upsert(&mut self.event_types, key, r, owner, Resource::EventType)
            }
            source => upsert(
                self.sources.entry(source.kind()).or_default(),
                key,
                source,
                owner,
                std::convert::identity,
            ),
        }
    }

    fn owned_by(&self, owner: &Owner) -> Vec<(Kind, ResourceKey)> {
        fn of<T>(
            kind: Kind,
            map: &BTreeMap<ResourceKey, Entry<T>>,
            owner: &Owner,
        ) -> impl Iterator<Item = (Kind, ResourceKey)> {
            map.iter()
                .filter(|(_, e)| &e.owner == owner)
                .map(move |(k, _)| (kind, k.clone()))
                .collect::<Vec<_>>()
                .into_iter()
        }
        of(Kind::Broker, &self.brokers, owner)
            .chain(of(Kind::Trigger, &self.triggers, owner))
            .chain(of(Kind::Channel, &self.channels, owner))
            .chain(of(Kind::Subscription, &self.subscriptions, owner))
            .chain(of(Kind::Sequence, &self.sequences, owner))
            .chain(of(Kind::Parallel, &self.parallels, owner))
            .chain(of(Kind::EventTransform, &self.transforms, owner))
            .chain(of(Kind::EventPolicy, &self.policies, owner))
            .chain(of(Kind::EventType, &self.event_types, owner))
            .chain(
                self.sources
                    .iter()
                    .flat_map(|(kind, m)| of(*kind, m, owner))
                    .collect::<Vec<_>>(),
            )
            .collect()
    }

    /// Forgets a resource; a Trigger's or Subscription's consumer stops at once and its
    /// subscription is deleted from the backend. What a flow owned goes on the next
    /// reconcile.
    async fn remove(&mut self, kind: Kind, key: &ResourceKey) -> bool {
        let found = match kind {
            Kind::Broker => self.brokers.remove(key).is_some(),
            Kind::Trigger => self.triggers.remove(key).is_some(),
            Kind::Channel => self.channels.remove(key).is_some(),
            Kind::Subscription => self.subscriptions.remove(key).is_some(),
            Kind::Sequence => self.sequences.remove(key).is_some(),
            Kind::Parallel => self.parallels.remove(key).is_some(),
            Kind::EventTransform => self.transforms.remove(key).is_some(),
            Kind::EventPolicy => self.policies.remove(key).is_some(),
            Kind::EventType => {
                // Recorded again when its events come back.
                self.recorder.forget_all();
                self.event_types.remove(key).is_some()
            }
            source => {
                if let Some(r) = self.source_runs.remove(&(source, key.clone())) {
                    r.retire(&mut self.retiring);
                }
                self.sources
                    .get_mut(&source)
                    .is_some_and(|m| m.remove(key).is_some())
            }
        };
        let route = RouteId {
            kind: kind.name(),
            key: key.clone(),
        };
        if let Some(running) = self.consumers.remove(&route) {
            running.remove().await;
        }
        found
    }
}

/// One applied resource with what the plane keeps about it.
struct Entry<T> {
    resource: T,
    /// The feed that applied it last.
    owner: Owner,
    /// Bumped on every change of spec, labels or annotations.
    generation: i64,
    created: String,
    status: herald_core::Status,
}

fn upsert<T: Clone>(
    entries: &mut BTreeMap<ResourceKey, Entry<T>>,
    key: ResourceKey,
    resource: T,
    owner: Owner,
    wrap: fn(T) -> Resource,
) -> Applied {
    match entries.get_mut(&key) {
        Some(e) => {
            e.owner = owner;
            if wrap(e.resource.clone()).same_as(&wrap(resource.clone())) {
                return Applied::Unchanged;
            }
            e.generation += 1;
            e.resource = resource;
            Applied::Configured
        }
        None => {
            entries.insert(
                key,
                Entry {
                    resource,
                    owner,
                    generation: 1,
                    created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    status: Default::default(),
                },
            );
            Applied::Created
        }
    }
}
