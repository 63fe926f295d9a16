//! Resources as the admin API and `herald get` show them: Knative's object shape with
//! `metadata.generation`, `metadata.creationTimestamp` and `status`.

use super::{Entry, State};
use herald_core::{Broker, Kind, Resource, ResourceKey, Trigger};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct ResourceView {
    #[serde(skip)]
    pub kind: Kind,
    #[serde(skip)]
    pub key: ResourceKey,
    #[serde(skip)]
    pub ready: bool,
    pub object: serde_json::Value,
}

fn view<T: Clone>(kind: Kind, entry: &Entry<T>, wrap: fn(T) -> Resource) -> ResourceView {
    let mut resource = wrap(entry.resource.clone());
    let key = resource.key();
    let meta = resource.metadata_mut();
    meta.namespace = Some(key.namespace.clone());
    meta.generation = Some(entry.generation);
    meta.creation_timestamp = Some(entry.created.clone());
    let mut object = resource.to_json();
    object["status"] = serde_json::to_value(&entry.status).expect("status serializes");
    ResourceView {
        kind,
        key,
        ready: entry.status.is_ready(),
        object,
    }
}

impl State {
    pub(super) fn views(&self, kind: Kind) -> Vec<ResourceView> {
        match kind {
            Kind::Broker => self
                .brokers
                .values()
                .map(|e| view(kind, e, Resource::Broker as fn(Broker) -> Resource))
                .collect(),
            Kind::Trigger => self
                .triggers
                .values()
                .map(|e| view(kind, e, Resource::Trigger as fn(Trigger) -> Resource))
                .collect(),
        }
    }
}
