//! The read-only feed every replica runs: a reflector per kind keeps the Knative objects
//! Herald serves, and each change (and a periodic resync, so a subscriber that appears later
//! is picked up) applies them to the data plane and deletes what went away. Objects being
//! deleted count as gone: the leader's finalizer cleans up their backend resources.

use super::addressable::Addressables;
use super::{KnativeKind, Plane};
use crate::resources::{
    ApiServerSource, Broker, Channel, ContainerSource, EventPolicy, EventTransform, EventType,
    GitHubSource, HeraldChannel, InMemoryChannel, KafkaChannel, KafkaSource, NatsSource, Parallel,
    PingSource, Sequence, Subscription, Trigger,
};
use futures::StreamExt;
use herald_core::{Kind, Resource, ResourceKey};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

type Snapshot = Box<dyn Fn() -> Vec<Resource> + Send + Sync>;

/// Starts the reflector of kind `K`; returns what it currently holds, as resources.
fn reflect<K: KnativeKind>(
    client: &kube::Client,
    changed: Arc<Notify>,
    stop: CancellationToken,
) -> Snapshot {
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(_)) => changed.notify_one(),
                    Some(Err(e)) => tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed; retrying"),
                    None => return,
                },
                _ = stop.cancelled() => return,
            }
        }
    });
    Box::new(move || {
        reader
            .state()
            .iter()
            .filter(|o| o.meta().deletion_timestamp.is_none() && o.is_ours())
            .filter_map(|o| match o.to_resource() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipped");
                    None
                }
            })
            .collect()
    })
}

/// Feeds `plane` from the API server until `stop`.
pub async fn run(
    client: kube::Client,
    plane: Arc<dyn Plane>,
    addressables: Arc<Addressables>,
    kinds: Vec<Kind>,
    resync: Duration,
    stop: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for kind in kinds {
        let (c, s) = (changed.clone(), stop.clone());
        match kind {
            Kind::Broker => snapshots.push(reflect::<Broker>(&client, c, s)),
            Kind::Trigger => snapshots.push(reflect::<Trigger>(&client, c, s)),
            Kind::EventTransform => snapshots.push(reflect::<EventTransform>(&client, c, s)),
            Kind::EventPolicy => snapshots.push(reflect::<EventPolicy>(&client, c, s)),
            Kind::EventType => snapshots.push(reflect::<EventType>(&client, c, s)),
            Kind::Channel => {
                snapshots.push(reflect::<Channel>(&client, c.clone(), s.clone()));
                snapshots.push(reflect::<InMemoryChannel>(&client, c.clone(), s.clone()));
                snapshots.push(reflect::<KafkaChannel>(&client, c.clone(), s.clone()));
                snapshots.push(reflect::<HeraldChannel>(&client, c, s));
            }
            Kind::Subscription => snapshots.push(reflect::<Subscription>(&client, c, s)),
            Kind::Sequence => snapshots.push(reflect::<Sequence>(&client, c, s)),
            Kind::Parallel => snapshots.push(reflect::<Parallel>(&client, c, s)),
            Kind::PingSource => snapshots.push(reflect::<PingSource>(&client, c, s)),
            Kind::GitHubSource => snapshots.push(reflect::<GitHubSource>(&client, c, s)),
            Kind::KafkaSource => snapshots.push(reflect::<KafkaSource>(&client, c, s)),
            Kind::ContainerSource => snapshots.push(reflect::<ContainerSource>(&client, c, s)),
            Kind::NatsSource => snapshots.push(reflect::<NatsSource>(&client, c, s)),
            Kind::ApiServerSource => snapshots.push(reflect::<ApiServerSource>(&client, c, s)),
        }
    }
    let mut tick = tokio::time::interval(resync);
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Let a burst of changes (an initial list) settle into one pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
        sync(&snapshots, &*plane, &addressables).await;
    }
}

/// Applies everything the reflectors hold and deletes what this feed applied that they no
/// longer hold.
async fn sync(snapshots: &[Snapshot], plane: &dyn Plane, addressables: &Addressables) {
    let mut wanted = BTreeSet::new();
    for resource in snapshots.iter().flat_map(|s| s()) {
        wanted.insert((resource.kind(), resource.key()));
        let resource = match addressables.resolve(resource.clone()).await {
            Ok((r, _)) => r,
            Err(e) => {
                tracing::warn!(error = %e, "resolving addresses failed; applying as written");
                resource
            }
        };
        let (kind, key) = (resource.kind(), resource.key());
        if let Err(e) = plane.apply(resource).await {
            tracing::debug!(%kind, %key, error = %e, "not applied");
        }
    }
    let gone: Vec<(Kind, ResourceKey)> = plane
        .applied()
        .await
        .into_iter()
        .filter(|k| !wanted.contains(k))
        .collect();
    for (kind, key) in gone {
        if let Err(e) = plane.delete(kind, &key).await {
            tracing::warn!(%kind, %key, error = %e, "delete failed");
        }
    }
}
