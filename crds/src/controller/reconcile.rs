//! The leader's reconcilers, one kube-rs `Controller` per kind: add the finalizer, resolve
//! addresses, apply to the data plane, write status through the status subresource (Ready
//! with reasons, observedGeneration, `address.url`); on delete, remove what the resource holds
//! in the backend, then the finalizer. Failures requeue with exponential backoff per object.

use super::addressable::Unresolved;
use super::{Context, Error, KnativeKind, PlaneError, FINALIZER};
use crate::resources::{
    ApiServerSource, Broker, Channel, ContainerSource, EventPolicy, EventTransform, EventType,
    GitHubSource, HeraldChannel, InMemoryChannel, KafkaChannel, KafkaSource, NatsSource, Parallel,
    PingSource, Sequence, Subscription, Trigger,
};
use futures::StreamExt;
use herald_core::{Check, Kind, ResourceKey};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exponential backoff per object: `base`, `2 * base`, ... up to `max`; a success resets it.
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failure of `object` and says how long to wait before the next try.
    pub fn failed(&self, object: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(object.to_string()).or_insert(0);
        let delay = self
            .base
            .saturating_mul(2u32.saturating_pow(*n))
            .min(self.max);
        *n = n.saturating_add(1);
        delay
    }

    pub fn succeeded(&self, object: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(object);
    }
}

fn object_id<K: KnativeKind>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// One reconcile of one object.
pub async fn reconcile<K: KnativeKind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_else(|| "default".into());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let ours = obj.finalizers().iter().any(|f| f == FINALIZER);
    if !ours && (obj.meta().deletion_timestamp.is_some() || !obj.served(&ctx.client).await?) {
        // Another class's, or going away before Herald ever served it.
        return Ok(Action::await_change());
    }
    let id = object_id(&*obj);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(&api, &*o, &ctx).await,
            Event::Cleanup(o) => cleanup(&*o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.backoff.succeeded(&id);
    }
    result
}

/// Failed reconciles wait longer each time, so a broken object never hot-loops.
pub fn error_policy<K: KnativeKind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&object_id(&*obj));
    tracing::warn!(object = %object_id(&*obj), %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn key_of<K: KnativeKind>(obj: &K) -> ResourceKey {
    ResourceKey::new(
        obj.namespace().unwrap_or_else(|| "default".into()),
        obj.name_any(),
    )
}

async fn apply<K: KnativeKind>(api: &Api<K>, obj: &K, ctx: &Context) -> Result<Action, Error> {
    let resource = obj.to_resource()?;
    let (kind, key) = (K::KIND, key_of(obj));
    let (resource, unresolved) = ctx
        .addressables
        .resolve(resource)
        .await
        .map_err(Error::Resolve)?;
    let mut status = match ctx.plane.apply(resource).await {
        Ok(()) => ctx.plane.status(kind, &key).await.unwrap_or_default(),
        Err(PlaneError::Invalid { field, message }) => {
            // Refused as written: say why; the next change of the object is looked at.
            let mut s = obj.status().cloned().unwrap_or_default();
            s.set_all(&[(
                "SpecValid",
                Check::failed("InvalidSpec", format!("{field}: {message}")),
            )]);
            s
        }
        Err(e) => return Err(e.into()),
    };
    Unresolved::mark(&mut status, &unresolved);
    status.observed_generation = obj.meta().generation.unwrap_or_default();
    if obj.status() != Some(&status) {
        // Only status, and only through the status subresource.
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
        tracing::info!(%kind, %key, ready = status.is_ready(), "status written");
    }
    Ok(if status.is_ready() {
        Action::requeue(ctx.config.resync)
    } else {
        Action::requeue(ctx.config.not_ready_requeue)
    })
}

async fn cleanup<K: KnativeKind>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let key = key_of(obj);
    ctx.plane.delete(K::KIND, &key).await?;
    tracing::info!(kind = %K::KIND, %key, "deleted; backend resources removed");
    Ok(Action::await_change())
}

/// Runs one controller for kind `K` until `stop`.
async fn run_kind<K: KnativeKind>(ctx: Arc<Context>, stop: CancellationToken) {
    let api: Api<K> = Api::all(ctx.client.clone());
    let stopped = stop.clone();
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(async move { stopped.cancelled().await })
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Triggers are also looked at when their Broker changes (its class, its readiness).
async fn run_triggers(ctx: Arc<Context>, stop: CancellationToken) {
    let api: Api<Trigger> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let triggers = controller.store();
    let stopped = stop.clone();
    controller
        .watches(
            Api::<Broker>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |broker| {
                let key =
                    ResourceKey::new(broker.namespace().unwrap_or_default(), broker.name_any());
                triggers
                    .state()
                    .into_iter()
                    .filter(|t| {
                        let ns = t.namespace().unwrap_or_else(|| "default".into());
                        super::kinds::trigger_broker(t, &ns) == key
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(async move { stopped.cancelled().await })
        .run(reconcile::<Trigger>, error_policy::<Trigger>, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Runs the controllers of every kind `ctx` serves until `stop`.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for kind in ctx.config.kinds.clone() {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        match kind {
            Kind::Broker => tasks.spawn(run_kind::<Broker>(ctx, stop)),
            Kind::Trigger => tasks.spawn(run_triggers(ctx, stop)),
            Kind::EventTransform => tasks.spawn(run_kind::<EventTransform>(ctx, stop)),
            Kind::EventPolicy => tasks.spawn(run_kind::<EventPolicy>(ctx, stop)),
            Kind::EventType => tasks.spawn(run_kind::<EventType>(ctx, stop)),
            Kind::Channel => {
                tasks.spawn(run_kind::<InMemoryChannel>(ctx.clone(), stop.clone()));
                tasks.spawn(run_kind::<KafkaChannel>(ctx.clone(), stop.clone()));
                tasks.spawn(run_kind::<HeraldChannel>(ctx.clone(), stop.clone()));
                tasks.spawn(run_kind::<Channel>(ctx, stop))
            }
            Kind::Subscription => tasks.spawn(run_kind::<Subscription>(ctx, stop)),
            Kind::Sequence => tasks.spawn(run_kind::<Sequence>(ctx, stop)),
            Kind::Parallel => tasks.spawn(run_kind::<Parallel>(ctx, stop)),
            Kind::PingSource => tasks.spawn(run_kind::<PingSource>(ctx, stop)),
            Kind::GitHubSource => tasks.spawn(run_kind::<GitHubSource>(ctx, stop)),
            Kind::KafkaSource => tasks.spawn(run_kind::<KafkaSource>(ctx, stop)),
            Kind::ContainerSource => tasks.spawn(run_kind::<ContainerSource>(ctx, stop)),
            Kind::NatsSource => tasks.spawn(run_kind::<NatsSource>(ctx, stop)),
            Kind::ApiServerSource => tasks.spawn(run_kind::<ApiServerSource>(ctx, stop)),
        };
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_on_success() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| b.failed("x").as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(b.failed("y").as_millis(), 100, "per object");
        b.succeeded("x");
        assert_eq!(b.failed("x").as_millis(), 100);
    }
}
