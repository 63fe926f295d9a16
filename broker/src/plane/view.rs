//! Resources as the admin API and `herald get` show them: Knative's object shape with
//! `metadata.generation`, `metadata.creationTimestamp` and `status`.

use super::{Entry, State};
use herald_core::{Kind, Resource, ResourceKey};
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
        fn all<T: Clone>(
            kind: Kind,
            map: &std::collections::BTreeMap<ResourceKey, Entry<T>>,
            wrap: fn(T) -> Resource,
        ) -> Vec<ResourceView> {
            map.values().map(|e| view(kind, e, wrap)).collect()
        }
        match kind {
            Kind::Broker => all(kind, &self.brokers, Resource::Broker),
            Kind::Trigger => all(kind, &self.triggers, Resource::Trigger),
            Kind::Channel => all(kind, &self.channels, Resource::Channel),
            Kind::Subscription => all(kind, &self.subscriptions, Resource::Subscription),
            Kind::Sequence => all(kind, &self.sequences, Resource::Sequence),
            Kind::Parallel => all(kind, &self.parallels, Resource::Parallel),
            Kind::EventTransform => all(kind, &self.transforms, Resource::EventTransform),
            Kind::EventPolicy => all(kind, &self.policies, Resource::EventPolicy),
            Kind::EventType => all(kind, &self.event_types, Resource::EventType),
            source => self
                .sources
                .get(&source)
                .map(|m| {
                    m.values()
                        .map(|e| {
                            let mut v = view(kind, e, std::convert::identity);
                            let status = self.live_source_status(kind, e);
                            v.ready = status.is_ready();
                            v.object["status"] =
                                serde_json::to_value(&status).expect("status serializes");
                            v
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
