//! The resource model: Knative Eventing's Broker, Trigger and DeliverySpec with Knative's field
//! names, so a manifest written for Knative deserializes unchanged. Both the YAML loader and
//! (later) the Kubernetes CRDs produce these types; the data plane only ever sees them.

use crate::duration::IsoDuration;
use crate::eventtype::EventType;
use crate::messaging::{Channel, EventTransform, Parallel, Sequence, Subscription};
use crate::policy::EventPolicy;
use crate::sources::{
    ApiServerSource, ContainerSource, GitHubSource, KafkaSource, NatsSource, PingSource,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const EVENTING_API_VERSION: &str = "eventing.knative.dev/v1";
pub const BROKER_CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";
pub const DEFAULT_NAMESPACE: &str = "default";

/// The subset of Kubernetes ObjectMeta Herald reads. Other metadata (uid, resourceVersion, ...)
/// is accepted and ignored, because `kubectl get -o yaml` output must load too.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by the serving control plane (bumped on every spec change); ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

impl ObjectMeta {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// A resource Herald serves, whichever feed (files, admin API, Kubernetes) it came from.
// Resources move through the apply path a few at a time, never per event: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Broker(Broker),
    Trigger(Trigger),
    Channel(Channel),
    Subscription(Subscription),
    Sequence(Sequence),
    Parallel(Parallel),
    EventTransform(EventTransform),
    EventPolicy(EventPolicy),
    EventType(EventType),
    PingSource(PingSource),
    GitHubSource(GitHubSource),
    KafkaSource(KafkaSource),
    ContainerSource(ContainerSource),
    NatsSource(NatsSource),
    ApiServerSource(ApiServerSource),
}

/// The kinds [`Resource`] holds, with the names a user types for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Broker,
    Trigger,
    Channel,
    Subscription,
    Sequence,
    Parallel,
    EventTransform,
    EventPolicy,
    EventType,
    PingSource,
    GitHubSource,
    KafkaSource,
    ContainerSource,
    NatsSource,
    ApiServerSource,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::Broker,
        Kind::Trigger,
        Kind::Channel,
        Kind::Subscription,
        Kind::Sequence,
        Kind::Parallel,
        Kind::EventTransform,
        Kind::EventPolicy,
        Kind::EventType,
        Kind::PingSource,
        Kind::GitHubSource,
        Kind::KafkaSource,
        Kind::ContainerSource,
        Kind::NatsSource,
        Kind::ApiServerSource,
    ];

    /// The source kinds (each runs as a [`crate::sources`] source).
    pub const SOURCES: [Kind; 6] = [
        Kind::PingSource,
        Kind::GitHubSource,
        Kind::KafkaSource,
        Kind::ContainerSource,
        Kind::NatsSource,
        Kind::ApiServerSource,
    ];

    pub fn is_source(self) -> bool {
        Self::SOURCES.contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Broker => "Broker",
            Kind::Trigger => "Trigger",
            Kind::Channel => "Channel",
            Kind::Subscription => "Subscription",
            Kind::Sequence => "Sequence",
            Kind::Parallel => "Parallel",
            Kind::EventTransform => "EventTransform",
            Kind::EventPolicy => "EventPolicy",
            Kind::EventType => "EventType",
            Kind::PingSource => "PingSource",
            Kind::GitHubSource => "GitHubSource",
            Kind::KafkaSource => "KafkaSource",
            Kind::ContainerSource => "ContainerSource",
            Kind::NatsSource => "NatsSource",
            Kind::ApiServerSource => "ApiServerSource",
        }
    }

    /// Lower-case plural, as in API paths (`brokers`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Broker => "brokers",
            Kind::Trigger => "triggers",
            Kind::Channel => "channels",
            Kind::Subscription => "subscriptions",
            Kind::Sequence => "sequences",
            Kind::Parallel => "parallels",
            Kind::EventTransform => "eventtransforms",
            Kind::EventPolicy => "eventpolicies",
            Kind::EventType => "eventtypes",
            Kind::PingSource => "pingsources",
            Kind::GitHubSource => "githubsources",
            Kind::KafkaSource => "kafkasources",
            Kind::ContainerSource => "containersources",
            Kind::NatsSource => "natssources",
            Kind::ApiServerSource => "apiserversources",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Broker | Kind::Trigger => EVENTING_API_VERSION,
            Kind::Channel | Kind::Subscription => crate::messaging::MESSAGING_API_VERSION,
            Kind::Sequence | Kind::Parallel => crate::messaging::FLOWS_API_VERSION,
            Kind::EventTransform => crate::messaging::TRANSFORM_API_VERSION,
            Kind::EventPolicy => crate::policy::EVENT_POLICY_API_VERSION,
            Kind::EventType => crate::eventtype::EVENT_TYPE_API_VERSION,
            Kind::PingSource => crate::sources::PING_API_VERSION,
            Kind::GitHubSource => crate::sources::GITHUB_API_VERSION,
            Kind::KafkaSource => crate::sources::KAFKA_API_VERSION,
            Kind::ContainerSource => crate::sources::CONTAINER_API_VERSION,
            Kind::NatsSource => crate::sources::NATS_API_VERSION,
            Kind::ApiServerSource => crate::sources::APISERVER_API_VERSION,
        }
    }

    /// `eventing.knative.dev`.
    pub fn group(self) -> &'static str {
        self.api_version().split('/').next().unwrap_or_default()
    }

    /// The kind a `ref` names (the concrete channel kinds are Channels here).
    pub fn of_ref(reference: &KReference) -> Option<Kind> {
        if crate::messaging::ChannelFlavor::from_kind(&reference.kind)
            .is_some_and(|f| f.group() == reference.group())
        {
            return Some(Kind::Channel);
        }
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == reference.kind && k.group() == reference.group())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    /// kubectl's spellings: `broker`, `brokers`, `Broker`, `brokers.eventing.knative.dev`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.to_ascii_lowercase();
        let bare = lower.split('.').next().unwrap_or_default();
        Kind::ALL
            .into_iter()
            .find(|k| bare == k.name().to_ascii_lowercase() || bare == k.plural())
            .ok_or_else(|| {
                let all: Vec<_> = Kind::ALL.iter().map(|k| k.plural()).collect();
                format!("unknown kind {text:?} (expected one of {})", all.join(", "))
            })
    }
}

/// Evaluates `$body` with `$r` bound to the resource inside whichever variant `$value` is.
macro_rules! each_resource {
    ($value:expr, $r:ident => $body:expr) => {
        match $value {
            Resource::Broker($r) => $body,
            Resource::Trigger($r) => $body,
            Resource::Channel($r) => $body,
            Resource::Subscription($r) => $body,
            Resource::Sequence($r) => $body,
            Resource::Parallel($r) => $body,
            Resource::EventTransform($r) => $body,
            Resource::EventPolicy($r) => $body,
            Resource::EventType($r) => $body,
            Resource::PingSource($r) => $body,
            Resource::GitHubSource($r) => $body,
            Resource::KafkaSource($r) => $body,
            Resource::ContainerSource($r) => $body,
            Resource::NatsSource($r) => $body,
            Resource::ApiServerSource($r) => $body,
        }
    };
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Broker(_) => Kind::Broker,
            Resource::Trigger(_) => Kind::Trigger,
            Resource::Channel(_) => Kind::Channel,
            Resource::Subscription(_) => Kind::Subscription,
            Resource::Sequence(_) => Kind::Sequence,
            Resource::Parallel(_) => Kind::Parallel,
            Resource::EventTransform(_) => Kind::EventTransform,
            Resource::EventPolicy(_) => Kind::EventPolicy,
            Resource::EventType(_) => Kind::EventType,
            Resource::PingSource(_) => Kind::PingSource,
            Resource::GitHubSource(_) => Kind::GitHubSource,
            Resource::KafkaSource(_) => Kind::KafkaSource,
            Resource::ContainerSource(_) => Kind::ContainerSource,
            Resource::NatsSource(_) => Kind::NatsSource,
            Resource::ApiServerSource(_) => Kind::ApiServerSource,
        }
    }

    pub fn key(&self) -> ResourceKey {
        let meta = self.metadata();
        ResourceKey::new(meta.namespace(), &meta.name)
    }

    pub fn metadata(&self) -> &ObjectMeta {
        each_resource!(self, r => &r.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_resource!(self, r => &mut r.metadata)
    }

    pub fn validate(&self) -> Vec<FieldError> {
        each_resource!(self, r => r.validate())
    }

    /// Same spec, labels and annotations (what a change is made of).
    pub fn same_as(&self, other: &Resource) -> bool {
        let user_part = |r: &Resource| {
            let mut v = r.to_json();
            if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("generation");
                meta.remove("creationTimestamp");
                meta.insert("namespace".into(), r.key().namespace.into());
            }
            v
        };
        user_part(self) == user_part(other)
    }

    /// `{apiVersion, kind, metadata, spec}` as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value =
            each_resource!(self, r => serde_json::to_value(r)).expect("resources serialize");
        let (api_version, kind) = match self {
            Resource::Channel(c) => (c.flavor.api_version(), c.flavor.kind()),
            other => (other.kind().api_version(), other.kind().name()),
        };
        if let serde_json::Value::Object(m) = &mut value {
            m.insert("apiVersion".into(), api_version.into());
            m.insert("kind".into(), kind.into());
        }
        value
    }
}

/// A namespaced name, the identity of a resource of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Broker {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BrokerSpec,
}

impl Broker {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    pub fn class(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(BROKER_CLASS_ANNOTATION)
            .map(String::as_str)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerSpec {
    /// Reference to backend settings (Knative points this at a ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<KReference>,
    /// Default delivery for every Trigger of this Broker that has none of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub metadata: ObjectMeta,
    pub spec: TriggerSpec,
}

impl Trigger {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    /// The Broker this Trigger reads from: `spec.brokerRef` when given, else `spec.broker` in
    /// the Trigger's own namespace.
    pub fn broker_key(&self) -> ResourceKey {
        match &self.spec.broker_ref {
            Some(r) => ResourceKey::new(
                r.namespace.as_deref().unwrap_or(self.metadata.namespace()),
                &r.name,
            ),
            None => ResourceKey::new(self.metadata.namespace(), &self.spec.broker),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    #[serde(default)]
    pub broker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_ref: Option<KReference>,
    /// The legacy exact-match filter; ignored when `filters` is non-empty, as in Knative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TriggerFilter>,
    /// The Subscriptions API filter dialect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
    pub subscriber: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TriggerFilter {
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One entry of `spec.filters`: exactly one dialect is set (validated when compiled).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsApiFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::list_of_objects")
    )]
    pub all: Vec<SubscriptionsApiFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::list_of_objects")
    )]
    pub any: Vec<SubscriptionsApiFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::any_object")
    )]
    pub not: Option<Box<SubscriptionsApiFilter>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exact: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prefix: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub suffix: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cesql: Option<String>,
}

/// Where events go: a `uri`, or a `ref` to an addressable resource plus an optional relative
/// `uri` appended to its address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(rename = "CACerts", default, skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl KReference {
    /// API group of the reference (`eventing.knative.dev` for `eventing.knative.dev/v1`).
    pub fn group(&self) -> &str {
        if let Some(g) = &self.group {
            return g;
        }
        match &self.api_version {
            Some(v) => v.split_once('/').map(|(g, _)| g).unwrap_or(""),
            None => "",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    Linear,
    #[default]
    Exponential,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    Json,
    Binary,
}

/// Knative's DeliverySpec: how failed deliveries are retried and where they end up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::iso_duration")
    )]
    pub backoff_delay: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::iso_duration")
    )]
    pub timeout: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::iso_duration")
    )]
    pub retry_after_max: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
}

/// A problem with one field of one resource, e.g. `spec.delivery.retry: must be >= 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Broker {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        if let Some(d) = &self.spec.delivery {
            d.validate("spec.delivery", &mut errors);
        }
        errors
    }
}

impl Trigger {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        if self.spec.broker.is_empty() && self.spec.broker_ref.is_none() {
            errors.push(FieldError::new("spec.broker", "must name a Broker"));
        }
        if let Some(f) = &self.spec.filter {
            for name in f.attributes.keys() {
                if !is_valid_attribute_name(name) {
                    errors.push(FieldError::new(
                        format!("spec.filter.attributes.{name}"),
                        "not a valid CloudEvents attribute name (lower-case a-z and 0-9 only)",
                    ));
                }
            }
        }
        self.spec
            .subscriber
            .validate("spec.subscriber", &mut errors);
        if let Some(d) = &self.spec.delivery {
            d.validate("spec.delivery", &mut errors);
        }
        errors
    }
}

impl Destination {
    pub(crate) fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        match (&self.reference, &self.uri) {
            (None, None) => errors.push(FieldError::new(field, "must set `ref` or `uri`")),
            (None, Some(uri)) => match url::Url::parse(uri) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                Ok(u) => errors.push(FieldError::new(
                    format!("{field}.uri"),
                    format!("scheme {:?} is not http or https", u.scheme()),
                )),
                Err(e) => errors.push(FieldError::new(
                    format!("{field}.uri"),
                    format!("{uri:?} is not an absolute URL: {e}"),
                )),
            },
            (Some(r), uri) => {
                if r.name.is_empty() {
                    errors.push(FieldError::new(
                        format!("{field}.ref.name"),
                        "must not be empty",
                    ));
                }
                if r.kind.is_empty() {
                    errors.push(FieldError::new(
                        format!("{field}.ref.kind"),
                        "must not be empty",
                    ));
                }
                if let Some(uri) = uri {
                    if url::Url::parse(uri).is_ok() {
                        errors.push(FieldError::new(
                            format!("{field}.uri"),
                            "with `ref`, `uri` must be a relative path (e.g. /path)",
                        ));
                    }
                }
            }
        }
    }
}

impl DeliverySpec {
    pub(crate) fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if let Some(retry) = self.retry {
            if retry < 0 {
                errors.push(FieldError::new(
                    format!("{field}.retry"),
                    format!("must be >= 0, got {retry}"),
                ));
            }
        }
        if let Some(dls) = &self.dead_letter_sink {
            dls.validate(&format!("{field}.deadLetterSink"), errors);
        }
        if let Some(t) = &self.timeout {
            if t.as_duration().is_zero() {
                errors.push(FieldError::new(
                    format!("{field}.timeout"),
                    format!("must be greater than zero, got {t}"),
                ));
            }
        }
    }
}

pub(crate) fn validate_name(meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, value) in [
        ("metadata.name", meta.name.as_str()),
        ("metadata.namespace", meta.namespace()),
    ] {
        if !is_dns_label(value) {
            errors.push(FieldError::new(
                field,
                format!("{value:?} is not a DNS-1123 label (lower-case alphanumerics and '-')"),
            ));
        }
    }
    errors
}

/// Kubernetes names used in URL paths must be DNS-1123 labels.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// CloudEvents 1.0 attribute names: lower-case ASCII letters and digits.
pub fn is_valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
