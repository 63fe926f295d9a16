//! Recorded EventTypes written back to the API server: each EventType the data plane recorded
//! from the events a Broker or Channel accepted is created once as an
//! `eventing.knative.dev/v1beta3` EventType, owned by that Broker or Channel (an
//! ownerReference, so Kubernetes removes it with them), as Knative's auto-creation does.
//! Every replica writes back what it recorded itself; a replica that finds the object already
//! there (another replica's, or Knative's) leaves it as it is. Once created, the feed reads it
//! back like any declared EventType.

use super::Plane;
use crate::resources::{
    Broker, Channel, EventType, EventTypeSpec, HeraldChannel, InMemoryChannel, KafkaChannel,
};
use herald_core::KReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The UID of the Broker or Channel `reference` names, when the API server has it.
async fn owner_uid(client: &kube::Client, r: &KReference) -> Result<Option<String>, kube::Error> {
    let namespace = r.namespace.as_deref().unwrap_or("default");
    macro_rules! uid_of {
        ($t:ty) => {
            Api::<$t>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await?
                .and_then(|o| o.uid())
        };
    }
    Ok(match r.kind.as_str() {
        "Broker" => uid_of!(Broker),
        "Channel" => uid_of!(Channel),
        "InMemoryChannel" => uid_of!(InMemoryChannel),
        "KafkaChannel" => uid_of!(KafkaChannel),
        "HeraldChannel" => uid_of!(HeraldChannel),
        _ => None,
    })
}

/// Creates `et` owned by its reference's object; `Ok(false)` when that object is not on the
/// API server (so there is nothing to own it yet).
async fn create(client: &kube::Client, et: &herald_core::EventType) -> Result<bool, kube::Error> {
    let Some(reference) = et.reference() else {
        return Ok(false);
    };
    let Some(uid) = owner_uid(client, &reference).await? else {
        return Ok(false);
    };
    let namespace = et.metadata.namespace().to_string();
    let mut object = EventType::new(&et.metadata.name, EventTypeSpec(et.spec.clone()));
    object.metadata.namespace = Some(namespace.clone());
    object.metadata.owner_references = Some(vec![OwnerReference {
        api_version: reference.api_version.clone().unwrap_or_default(),
        kind: reference.kind.clone(),
        name: reference.name.clone(),
        uid,
        ..Default::default()
    }]);
    let api: Api<EventType> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            tracing::info!(eventtype = %et.key(), "recorded EventType written to the API server");
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Writes back what `plane` records until `stop`: on every change, and every `retry` for
/// what could not be written yet (its owner not there, the API server unreachable).
pub async fn write_back(
    client: kube::Client,
    plane: Arc<dyn Plane>,
    retry: Duration,
    stop: CancellationToken,
) {
    let mut changes = plane.recorded_changes();
    let mut written: BTreeSet<(String, String)> = BTreeSet::new();
    let mut tick = tokio::time::interval(retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    changes = None;
                }
            }
            _ = stop.cancelled() => return,
        }
        let recorded = plane.recorded_event_types().await;
        // Once the API server's copy comes back through the feed it is no longer "recorded":
        // forget it, so that if it is deleted there and recorded again, it is written again.
        written.retain(|(ns, name)| {
            recorded
                .iter()
                .any(|et| et.metadata.namespace() == ns && &et.metadata.name == name)
        });
        for et in recorded {
            let id = (
                et.metadata.namespace().to_string(),
                et.metadata.name.clone(),
            );
            if written.contains(&id) {
                continue;
            }
            match create(&client, &et).await {
                Ok(true) => {
                    written.insert(id);
                }
                Ok(false) => {
                    tracing::debug!(eventtype = %et.key(), "its Broker or Channel is not on the API server; not written back")
                }
                Err(e) => {
                    tracing::warn!(eventtype = %et.key(), error = %e, "recorded EventType not written back; retrying")
                }
            }
        }
    }
}
