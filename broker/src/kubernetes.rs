//! `herald serve --kubernetes` (feature `kubernetes`): the data plane fed by herald-crds'
//! reflectors, and with `--controller` the leader-elected reconciler too; the leader alone
//! runs ApiServerSources; every replica writes the EventTypes it records back to the API
//! server. The data plane is the
//! same one every other feed applies to, with its own [`Owner`].

use crate::plane::{ApplyError, DataPlane, Owner};
use async_trait::async_trait;
use herald_core::{Kind, Resource, ResourceKey, Status};
use herald_crds::controller::{
    self, addressable::Addressables, Context, ControllerConfig, Plane, PlaneError,
};
use herald_crds::kube;
use herald_sources::Leadership;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The data plane as the Kubernetes feed's [`Plane`].
pub struct KubernetesFeed(pub Arc<DataPlane>);

fn plane_error(e: ApplyError) -> PlaneError {
    match e {
        ApplyError::Invalid { field, message, .. } => PlaneError::Invalid { field, message },
        other => PlaneError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Plane for KubernetesFeed {
    async fn apply(&self, resource: Resource) -> Result<(), PlaneError> {
        self.0
            .apply(resource, Owner::Kubernetes)
            .await
            .map(|_| ())
            .map_err(plane_error)
    }

    async fn delete(&self, kind: Kind, key: &ResourceKey) -> Result<(), PlaneError> {
        match self.0.delete(kind, key).await {
            Ok(()) | Err(ApplyError::NotFound { .. }) => Ok(()),
            Err(e) => Err(plane_error(e)),
        }
    }

    async fn status(&self, kind: Kind, key: &ResourceKey) -> Option<Status> {
        let view = self.0.get(kind, key).await?;
        serde_json::from_value(view.object["status"].clone()).ok()
    }

    async fn applied(&self) -> Vec<(Kind, ResourceKey)> {
        self.0.owned_by(&Owner::Kubernetes).await
    }

    async fn recorded_event_types(&self) -> Vec<herald_core::EventType> {
        self.0.recorded_event_types().await
    }

    fn recorded_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.0.recorded_changes())
    }
}

/// How `herald serve --kubernetes` runs.
#[derive(Clone, Debug, Default)]
pub struct KubernetesConfig {
    /// Also run the leader-elected controller (status, finalizers).
    pub controller: bool,
    pub controller_config: ControllerConfig,
    /// How often the feed re-applies everything (re-resolving addresses).
    pub resync: Option<Duration>,
}

/// Feeds `plane` from `client` (and reconciles, when leading) until `stop`.
pub async fn run(
    client: kube::Client,
    plane: Arc<DataPlane>,
    config: KubernetesConfig,
    stop: CancellationToken,
) {
    // Leader-only sources (ApiServerSource) run on the controller's leader alone: a replica
    // without the controller never leads.
    plane.set_source_leadership(Leadership::Standby);
    let feed: Arc<dyn Plane> = Arc::new(KubernetesFeed(plane.clone()));
    let kinds = config.controller_config.kinds.clone();
    let addressables = Arc::new(Addressables::new(
        client.clone(),
        &config.controller_config.cluster_domain,
    ));
    // Every replica writes back the EventTypes it recorded itself.
    let write_back = tokio::spawn(controller::eventtypes::write_back(
        client.clone(),
        feed.clone(),
        config.resync.unwrap_or(Duration::from_secs(30)),
        stop.clone(),
    ));
    let reflectors = tokio::spawn(controller::feed::run(
        client.clone(),
        feed.clone(),
        addressables,
        kinds,
        config.resync.unwrap_or(Duration::from_secs(30)),
        stop.clone(),
    ));
    if config.controller {
        let ctx = Context::new(client.clone(), feed, config.controller_config.clone());
        let elected = controller::leader::run_while_leader(
            client,
            &config.controller_config,
            stop.clone(),
            move |leading| {
                let (ctx, plane) = (ctx.clone(), plane.clone());
                async move {
                    plane.set_source_leadership(Leadership::Leader);
                    controller::reconcile::run(ctx, leading.clone()).await;
                    leading.cancelled().await;
                    plane.set_source_leadership(Leadership::Standby);
                }
            },
        )
        .await;
        if let Err(e) = elected {
            tracing::error!(error = %e, "leader election ended");
        }
    }
    let _ = reflectors.await;
    let _ = write_back.await;
}
