//! Kubernetes objects onto `herald-core`'s [`Resource`]: the same values the YAML loader
//! produces for the same manifest, so both control planes feed one data plane.

use crate::resources::{
    ApiServerSource, Broker, Channel, ContainerSource, EventPolicy, EventTransform, EventType,
    GitHubSource, HeraldChannel, InMemoryChannel, KafkaChannel, KafkaSource, NatsSource, Parallel,
    PingSource, Sequence, Subscription, Trigger,
};
use herald_core::{ChannelFlavor, Kind, Resource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as KubeMeta;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("a {kind} object has no metadata.name")]
    NoName { kind: &'static str },
}

/// The metadata Herald reads, from a Kubernetes object's.
pub fn meta(kind: &'static str, m: &KubeMeta) -> Result<herald_core::ObjectMeta, MappingError> {
    Ok(herald_core::ObjectMeta {
        name: m.name.clone().ok_or(MappingError::NoName { kind })?,
        namespace: m.namespace.clone(),
        labels: m.labels.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
        generation: m.generation,
        creation_timestamp: m.creation_timestamp.as_ref().map(|t| t.0.to_string()),
    })
}

/// A custom resource Herald serves, seen as the core resource it maps to.
pub trait ToResource {
    /// The core kind it maps to (every channel kind is a Channel).
    const KIND: Kind;
    fn to_resource(&self) -> Result<Resource, MappingError>;
}

macro_rules! to_resource {
    ($crd:ty, $kind:ident, |$meta:ident, $spec:ident| $build:expr) => {
        impl ToResource for $crd {
            const KIND: Kind = Kind::$kind;
            fn to_resource(&self) -> Result<Resource, MappingError> {
                let $meta = meta(stringify!($crd), &self.metadata)?;
                let $spec = self.spec.0.clone();
                Ok($build)
            }
        }
    };
}

to_resource!(Broker, Broker, |metadata, spec| Resource::Broker(
    herald_core::Broker { metadata, spec }
));
to_resource!(Trigger, Trigger, |metadata, spec| Resource::Trigger(
    herald_core::Trigger { metadata, spec }
));
to_resource!(EventTransform, EventTransform, |metadata, spec| {
    Resource::EventTransform(herald_core::EventTransform { metadata, spec })
});
to_resource!(EventPolicy, EventPolicy, |metadata, spec| {
    Resource::EventPolicy(herald_core::EventPolicy { metadata, spec })
});
to_resource!(EventType, EventType, |metadata, spec| {
    Resource::EventType(herald_core::EventType { metadata, spec })
});
to_resource!(Channel, Channel, |metadata, spec| Resource::Channel(
    herald_core::Channel {
        metadata,
        spec,
        flavor: ChannelFlavor::Channel
    }
));
to_resource!(InMemoryChannel, Channel, |metadata, spec| {
    Resource::Channel(herald_core::Channel {
        metadata,
        spec,
        flavor: ChannelFlavor::InMemoryChannel,
    })
});
to_resource!(KafkaChannel, Channel, |metadata, spec| {
    Resource::Channel(herald_core::Channel {
        metadata,
        spec,
        flavor: ChannelFlavor::KafkaChannel,
    })
});
to_resource!(HeraldChannel, Channel, |metadata, spec| {
    Resource::Channel(herald_core::Channel {
        metadata,
        spec,
        flavor: ChannelFlavor::HeraldChannel,
    })
});
to_resource!(Subscription, Subscription, |metadata, spec| {
    Resource::Subscription(herald_core::Subscription { metadata, spec })
});
to_resource!(Sequence, Sequence, |metadata, spec| Resource::Sequence(
    herald_core::Sequence { metadata, spec }
));
to_resource!(Parallel, Parallel, |metadata, spec| Resource::Parallel(
    herald_core::Parallel { metadata, spec }
));

macro_rules! source_to_resource {
    ($($crd:ident),*) => {$(
        to_resource!($crd, $crd, |metadata, spec| Resource::$crd(herald_core::$crd {
            metadata,
            spec
        }));
    )*};
}

source_to_resource!(
    PingSource,
    GitHubSource,
    KafkaSource,
    ContainerSource,
    NatsSource,
    ApiServerSource
);

/// Maps any object Herald serves.
pub fn to_resource<T: ToResource>(object: &T) -> Result<Resource, MappingError> {
    object.to_resource()
}
