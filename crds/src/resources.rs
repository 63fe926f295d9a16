//! The Kubernetes custom resources Herald serves, with Knative's API groups, versions, kinds
//! and field names. Each spec is `herald-core`'s own spec type (the one the YAML loader
//! produces), wrapped only so kube can derive the resource around it; every status is
//! Knative's (`conditions`, `observedGeneration`, `address.url`).

use herald_core::Status;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Declares one Knative kind: `$spec` wraps `$inner` (a core spec) and kube derives `$kind`,
/// the object with `metadata`, `spec` and a Knative `status`, around it.
macro_rules! knative_kind {
    ($(#[$doc:meta])* $spec:ident($inner:ty) => $group:tt / $version:tt, $kind:tt, $plural:tt, $short:tt) => {
        $(#[$doc])*
        #[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = $group,
            version = $version,
            kind = $kind,
            plural = $plural,
            shortname = $short,
            namespaced,
            status = "Status",
            derive = "PartialEq",
            category = "all",
            category = "knative",
            category = "herald",
            printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.address.url"}"#,
            printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
            printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
        )]
        #[serde(transparent)]
        pub struct $spec(pub $inner);

        impl From<$inner> for $spec {
            fn from(inner: $inner) -> Self {
                Self(inner)
            }
        }
    };
}

knative_kind!(
    /// `eventing.knative.dev/v1` Broker; Herald serves those of class `Herald`.
    BrokerSpec(herald_core::BrokerSpec) => "eventing.knative.dev" / "v1", "Broker", "brokers", "kbroker"
);
knative_kind!(
    /// `eventing.knative.dev/v1` Trigger; served when its Broker is.
    TriggerSpec(herald_core::TriggerSpec) => "eventing.knative.dev" / "v1", "Trigger", "triggers", "ktrigger"
);
knative_kind!(
    /// `eventing.knative.dev/v1alpha1` EventTransform.
    EventTransformSpec(herald_core::EventTransformSpec) => "eventing.knative.dev" / "v1alpha1", "EventTransform", "eventtransforms", "et"
);
knative_kind!(
    /// `eventing.knative.dev/v1alpha1` EventPolicy: who may send to which Brokers and Channels.
    EventPolicySpec(herald_core::EventPolicySpec) => "eventing.knative.dev" / "v1alpha1", "EventPolicy", "eventpolicies", "ep"
);
/// `eventing.knative.dev/v1beta3` EventType: a kind of event a Broker or Channel offers,
/// declared, or recorded by Herald from the events it accepted (then owned by that Broker or
/// Channel).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1beta3",
    kind = "EventType",
    plural = "eventtypes",
    namespaced,
    status = "Status",
    derive = "PartialEq",
    category = "all",
    category = "knative",
    category = "herald",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.attributes[?(@.name==\"type\")].value"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.attributes[?(@.name==\"source\")].value"}"#,
    printcolumn = r#"{"name":"Reference Kind","type":"string","jsonPath":".spec.reference.kind"}"#,
    printcolumn = r#"{"name":"Reference Name","type":"string","jsonPath":".spec.reference.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct EventTypeSpec(pub herald_core::EventTypeSpec);

impl From<herald_core::EventTypeSpec> for EventTypeSpec {
    fn from(inner: herald_core::EventTypeSpec) -> Self {
        Self(inner)
    }
}

knative_kind!(
    /// `messaging.knative.dev/v1` Channel (its `channelTemplate` names the concrete kind).
    ChannelSpec(herald_core::ChannelSpec) => "messaging.knative.dev" / "v1", "Channel", "channels", "kchannel"
);
knative_kind!(
    /// `messaging.knative.dev/v1` InMemoryChannel.
    InMemoryChannelSpec(herald_core::ChannelSpec) => "messaging.knative.dev" / "v1", "InMemoryChannel", "inmemorychannels", "imc"
);
knative_kind!(
    /// `messaging.knative.dev/v1beta1` KafkaChannel.
    KafkaChannelSpec(herald_core::ChannelSpec) => "messaging.knative.dev" / "v1beta1", "KafkaChannel", "kafkachannels", "kc"
);
knative_kind!(
    /// `messaging.herald.dev/v1alpha1` HeraldChannel, Herald's own: a Channel on the server's
    /// default backend, what a Channel whose `channelTemplate` names it is backed by.
    HeraldChannelSpec(herald_core::ChannelSpec) => "messaging.herald.dev" / "v1alpha1", "HeraldChannel", "heraldchannels", "hc"
);
knative_kind!(
    /// `messaging.knative.dev/v1` Subscription.
    SubscriptionSpec(herald_core::SubscriptionSpec) => "messaging.knative.dev" / "v1", "Subscription", "subscriptions", "sub"
);
knative_kind!(
    /// `flows.knative.dev/v1` Sequence.
    SequenceSpec(herald_core::SequenceSpec) => "flows.knative.dev" / "v1", "Sequence", "sequences", "seq"
);
knative_kind!(
    /// `flows.knative.dev/v1` Parallel.
    ParallelSpec(herald_core::ParallelSpec) => "flows.knative.dev" / "v1", "Parallel", "parallels", "par"
);
knative_kind!(
    /// `sources.knative.dev/v1` PingSource.
    PingSourceSpec(herald_core::PingSourceSpec) => "sources.knative.dev" / "v1", "PingSource", "pingsources", "ping"
);
knative_kind!(
    /// `sources.knative.dev/v1alpha1` GitHubSource.
    GitHubSourceSpec(herald_core::GitHubSourceSpec) => "sources.knative.dev" / "v1alpha1", "GitHubSource", "githubsources", "ghs"
);
knative_kind!(
    /// `sources.knative.dev/v1beta1` KafkaSource.
    KafkaSourceSpec(herald_core::KafkaSourceSpec) => "sources.knative.dev" / "v1beta1", "KafkaSource", "kafkasources", "ks"
);
knative_kind!(
    /// `sources.knative.dev/v1` ContainerSource.
    ContainerSourceSpec(herald_core::ContainerSourceSpec) => "sources.knative.dev" / "v1", "ContainerSource", "containersources", "cs"
);
knative_kind!(
    /// `sources.knative.dev/v1` ApiServerSource.
    ApiServerSourceSpec(herald_core::ApiServerSourceSpec) => "sources.knative.dev" / "v1", "ApiServerSource", "apiserversources", "apiss"
);
knative_kind!(
    /// `sources.herald.dev/v1alpha1` NatsSource, Herald's own.
    NatsSourceSpec(herald_core::NatsSourceSpec) => "sources.herald.dev" / "v1alpha1", "NatsSource", "natssources", "ns-src"
);
