//! Knative's `messaging.knative.dev` Channel (and its concrete kinds InMemoryChannel and
//! KafkaChannel, and Herald's own `messaging.herald.dev` HeraldChannel) and Subscription, and `flows.knative.dev` Sequence and Parallel, with
//! Knative's field names so their manifests load unchanged.

use crate::resources::{
    validate_name, DeliverySpec, Destination, FieldError, KReference, ObjectMeta, ResourceKey,
};
use serde::{Deserialize, Serialize};

pub const MESSAGING_API_VERSION: &str = "messaging.knative.dev/v1";
pub const FLOWS_API_VERSION: &str = "flows.knative.dev/v1";
/// Herald's own channel kind: a Channel kept on the server's default backend.
pub const HERALD_MESSAGING_API_VERSION: &str = "messaging.herald.dev/v1alpha1";

/// Which kind a channel was written as: Knative's generic `Channel`, or a concrete kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelFlavor {
    #[default]
    Channel,
    InMemoryChannel,
    KafkaChannel,
    /// Herald's own: the server's default backend (or the `herald.dev/channel` annotation's),
    /// as a Channel whose `channelTemplate` names it.
    HeraldChannel,
}

impl ChannelFlavor {
    pub fn kind(self) -> &'static str {
        match self {
            Self::Channel => "Channel",
            Self::InMemoryChannel => "InMemoryChannel",
            Self::KafkaChannel => "KafkaChannel",
            Self::HeraldChannel => "HeraldChannel",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Self::KafkaChannel => "messaging.knative.dev/v1beta1",
            Self::HeraldChannel => HERALD_MESSAGING_API_VERSION,
            _ => MESSAGING_API_VERSION,
        }
    }

    /// The flavor a `kind` names, for refs and channel templates.
    pub fn from_kind(kind: &str) -> Option<Self> {
        [
            Self::Channel,
            Self::InMemoryChannel,
            Self::KafkaChannel,
            Self::HeraldChannel,
        ]
        .into_iter()
        .find(|f| f.kind() == kind)
    }

    /// The API group of its kind (`messaging.knative.dev`).
    pub fn group(self) -> &'static str {
        self.api_version().split('/').next().unwrap_or_default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ChannelSpec,
    /// The kind it was written as (not part of the spec).
    #[serde(skip)]
    pub flavor: ChannelFlavor,
}

impl Channel {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    /// The concrete kind backing it: its own for a concrete kind, else its template's.
    pub fn backing_kind(&self) -> Option<&str> {
        match self.flavor {
            ChannelFlavor::Channel => self.spec.channel_template.as_ref().map(|t| t.kind.as_str()),
            other => Some(other.kind()),
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        if let Some(d) = &self.spec.delivery {
            d.validate("spec.delivery", &mut errors);
        }
        if let Some(t) = &self.spec.channel_template {
            if self.flavor != ChannelFlavor::Channel {
                errors.push(FieldError::new(
                    "spec.channelTemplate",
                    format!(
                        "only a Channel has a template, not a {}",
                        self.flavor.kind()
                    ),
                ));
            }
            t.validate("spec.channelTemplate", &mut errors);
        }
        errors
    }
}

/// The union of the Channel, InMemoryChannel, KafkaChannel and HeraldChannel specs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_template: Option<ChannelTemplate>,
    /// Delivery for Subscriptions that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// Written by Knative's controller into the spec; read and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::any_value"))]
    pub subscribers: Option<serde_json::Value>,
    /// KafkaChannel settings (Herald's Kafka backend uses its own topic settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_partitions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_duration: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelTemplate {
    #[serde(default)]
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::any_object")
    )]
    pub spec: Option<serde_json::Value>,
}

impl ChannelTemplate {
    fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if self.kind.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.kind"),
                "must not be empty",
            ));
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub metadata: ObjectMeta,
    pub spec: SubscriptionSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub channel: KReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

impl Subscription {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    /// The channel it reads, in its own namespace unless the ref names one.
    pub fn channel_key(&self) -> ResourceKey {
        let r = &self.spec.channel;
        ResourceKey::new(
            r.namespace.as_deref().unwrap_or(self.metadata.namespace()),
            &r.name,
        )
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let c = &self.spec.channel;
        if c.name.is_empty() {
            errors.push(FieldError::new("spec.channel.name", "must not be empty"));
        }
        if ChannelFlavor::from_kind(&c.kind).is_none() {
            errors.push(FieldError::new(
                "spec.channel.kind",
                format!(
                    "{:?} is not a channel kind Herald serves (Channel, InMemoryChannel, KafkaChannel, HeraldChannel)",
                    c.kind
                ),
            ));
        }
        match (&self.spec.subscriber, &self.spec.reply) {
            (None, None) => errors.push(FieldError::new(
                "spec.subscriber",
                "a Subscription needs a subscriber, a reply, or both",
            )),
            (s, r) => {
                if let Some(s) = s {
                    s.validate("spec.subscriber", &mut errors);
                }
                if let Some(r) = r {
                    r.validate("spec.reply", &mut errors);
                }
            }
        }
        if let Some(d) = &self.spec.delivery {
            d.validate("spec.delivery", &mut errors);
        }
        errors
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    pub metadata: ObjectMeta,
    pub spec: SequenceSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequenceSpec {
    pub steps: Vec<SequenceStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_template: Option<ChannelTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
}

/// A step: a destination and, optionally, its own delivery. Destination's fields are written
/// out rather than `#[serde(flatten)]`ed, because serde cannot refuse unknown fields through a
/// flatten, and a typo here must be an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequenceStep {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(rename = "CACerts", default, skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

impl SequenceStep {
    pub fn destination(&self) -> Destination {
        Destination {
            reference: self.reference.clone(),
            uri: self.uri.clone(),
            ca_certs: self.ca_certs.clone(),
            audience: self.audience.clone(),
        }
    }
}

impl Sequence {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        if self.spec.steps.is_empty() {
            errors.push(FieldError::new("spec.steps", "needs at least one step"));
        }
        for (i, step) in self.spec.steps.iter().enumerate() {
            step.destination()
                .validate(&format!("spec.steps[{i}]"), &mut errors);
            if let Some(d) = &step.delivery {
                d.validate(&format!("spec.steps[{i}].delivery"), &mut errors);
            }
        }
        if let Some(r) = &self.spec.reply {
            r.validate("spec.reply", &mut errors);
        }
        if let Some(t) = &self.spec.channel_template {
            t.validate("spec.channelTemplate", &mut errors);
        }
        errors
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parallel {
    pub metadata: ObjectMeta,
    pub spec: ParallelSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParallelSpec {
    pub branches: Vec<ParallelBranch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_template: Option<ChannelTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParallelBranch {
    /// Passes an event on by replying with it; an empty answer drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Destination>,
    pub subscriber: Destination,
    /// This branch's replies; the Parallel's `reply` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

impl Parallel {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        if self.spec.branches.is_empty() {
            errors.push(FieldError::new(
                "spec.branches",
                "needs at least one branch",
            ));
        }
        for (i, b) in self.spec.branches.iter().enumerate() {
            let field = format!("spec.branches[{i}]");
            if let Some(f) = &b.filter {
                f.validate(&format!("{field}.filter"), &mut errors);
            }
            b.subscriber
                .validate(&format!("{field}.subscriber"), &mut errors);
            if let Some(r) = &b.reply {
                r.validate(&format!("{field}.reply"), &mut errors);
            }
            if let Some(d) = &b.delivery {
                d.validate(&format!("{field}.delivery"), &mut errors);
            }
        }
        if let Some(r) = &self.spec.reply {
            r.validate("spec.reply", &mut errors);
        }
        if let Some(t) = &self.spec.channel_template {
            t.validate("spec.channelTemplate", &mut errors);
        }
        errors
    }
}

// The channels and subscriptions a flow is built from, named as Knative names them.

/// The channel feeding step `i` of a Sequence: `{sequence}-kn-sequence-{i}`.
pub fn sequence_channel(sequence: &ResourceKey, i: usize) -> ResourceKey {
    ResourceKey::new(
        &sequence.namespace,
        format!("{}-kn-sequence-{i}", sequence.name),
    )
}

/// The channel every branch of a Parallel reads: `{parallel}-kn-parallel`.
pub fn parallel_ingress_channel(parallel: &ResourceKey) -> ResourceKey {
    ResourceKey::new(
        &parallel.namespace,
        format!("{}-kn-parallel", parallel.name),
    )
}

/// The channel of branch `i`, fed by its filter: `{parallel}-kn-parallel-{i}`.
pub fn parallel_branch_channel(parallel: &ResourceKey, i: usize) -> ResourceKey {
    ResourceKey::new(
        &parallel.namespace,
        format!("{}-kn-parallel-{i}", parallel.name),
    )
}

/// The subscription of branch `i`'s filter on the ingress channel.
pub fn parallel_filter_subscription(parallel: &ResourceKey, i: usize) -> ResourceKey {
    ResourceKey::new(
        &parallel.namespace,
        format!("{}-kn-parallel-filter-{i}", parallel.name),
    )
}

pub const TRANSFORM_API_VERSION: &str = "eventing.knative.dev/v1alpha1";

/// Knative's EventTransform: a JSONata expression applied to each event it receives (given as
/// the JSON format of the event, answered by an event in the same form). Without a `sink` the
/// transformed event is the reply; with one it is sent there, and the sink's reply (optionally
/// transformed by `reply.jsonata`) is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventTransform {
    pub metadata: ObjectMeta,
    pub spec: EventTransformSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTransformSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonata: Option<Jsonata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<TransformReply>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jsonata {
    pub expression: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonata: Option<Jsonata>,
    /// Drop the sink's reply instead of returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard: Option<bool>,
}

impl EventTransform {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        if self.spec.jsonata.is_none() {
            errors.push(FieldError::new("spec.jsonata", "must give an expression"));
        }
        if let Some(s) = &self.spec.sink {
            s.validate("spec.sink", &mut errors);
        }
        if let Some(r) = &self.spec.reply {
            if self.spec.sink.is_none() {
                errors.push(FieldError::new(
                    "spec.reply",
                    "only an EventTransform with a sink has a reply to transform",
                ));
            }
            if r.jsonata.is_some() && r.discard == Some(true) {
                errors.push(FieldError::new(
                    "spec.reply",
                    "set either jsonata or discard, not both",
                ));
            }
        }
        errors
    }
}
