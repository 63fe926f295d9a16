//! What the controller needs of every kind it serves, and which objects of a kind are
//! Herald's: Brokers of class `Herald`, the Triggers of those Brokers, and every object of
//! the other kinds this Herald serves.

use super::BROKER_CLASS;
use crate::mapping::ToResource;
use crate::resources::{
    ApiServerSource, Broker, Channel, ContainerSource, EventPolicy, EventTransform, EventType,
    GitHubSource, HeraldChannel, InMemoryChannel, KafkaChannel, KafkaSource, NatsSource, Parallel,
    PingSource, Sequence, Subscription, Trigger,
};
use async_trait::async_trait;
use herald_core::{Status, BROKER_CLASS_ANNOTATION};
use k8s_openapi::NamespaceResourceScope;
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

#[async_trait]
pub trait KnativeKind:
    kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + ToResource
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn status(&self) -> Option<&Status>;

    /// Whether the object itself says it is Herald's (a Broker's class).
    fn is_ours(&self) -> bool {
        true
    }

    /// Whether Herald serves it, asking the API server where the object alone cannot say.
    async fn served(&self, _client: &kube::Client) -> Result<bool, kube::Error> {
        Ok(self.is_ours())
    }
}

macro_rules! plain_kind {
    ($($t:ty),*) => {$(
        impl KnativeKind for $t {
            fn status(&self) -> Option<&Status> {
                self.status.as_ref()
            }
        }
    )*};
}

plain_kind!(
    EventTransform,
    EventPolicy,
    EventType,
    Channel,
    InMemoryChannel,
    KafkaChannel,
    HeraldChannel,
    Subscription,
    Sequence,
    Parallel,
    PingSource,
    GitHubSource,
    KafkaSource,
    ContainerSource,
    NatsSource,
    ApiServerSource
);

/// Whether a Broker is of Herald's class.
pub fn is_herald_broker(broker: &Broker) -> bool {
    broker
        .annotations()
        .get(BROKER_CLASS_ANNOTATION)
        .map(String::as_str)
        == Some(BROKER_CLASS)
}

impl KnativeKind for Broker {
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }

    fn is_ours(&self) -> bool {
        is_herald_broker(self)
    }
}

#[async_trait]
impl KnativeKind for Trigger {
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }

    /// A Trigger is Herald's when its Broker is; one whose Broker does not exist is left to
    /// whichever class's controller the Broker will have.
    async fn served(&self, client: &kube::Client) -> Result<bool, kube::Error> {
        let namespace = self.namespace().unwrap_or_else(|| "default".into());
        let broker = trigger_broker(self, &namespace);
        let api: Api<Broker> = Api::namespaced(client.clone(), &broker.namespace);
        Ok(api
            .get_opt(&broker.name)
            .await?
            .is_some_and(|b| is_herald_broker(&b)))
    }
}

/// The Broker a Trigger reads from, as core defines it.
pub fn trigger_broker(trigger: &Trigger, namespace: &str) -> herald_core::ResourceKey {
    herald_core::Trigger {
        metadata: herald_core::ObjectMeta {
            name: trigger.name_any(),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        spec: trigger.spec.0.clone(),
    }
    .broker_key()
}
