//! Event sources as resources, with Knative's field names so their manifests load unchanged:
//! `sources.knative.dev/v1` PingSource and ContainerSource, `sources.knative.dev/v1beta1`
//! KafkaSource, `sources.knative.dev/v1alpha1` GitHubSource, and Herald's own
//! `sources.herald.dev/v1alpha1` NatsSource. Every source has Knative's `sink` and
//! `ceOverrides`; `delivery` (Knative's DeliverySpec, which KafkaSource has) is accepted on
//! all of them and governs how events are sent to the sink.

use crate::resources::{is_valid_attribute_name, ResourceKey};
use crate::resources::{validate_name, DeliverySpec, Destination, FieldError, ObjectMeta};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PING_API_VERSION: &str = "sources.knative.dev/v1";
pub const CONTAINER_API_VERSION: &str = "sources.knative.dev/v1";
pub const KAFKA_API_VERSION: &str = "sources.knative.dev/v1beta1";
pub const GITHUB_API_VERSION: &str = "sources.knative.dev/v1alpha1";
pub const NATS_API_VERSION: &str = "sources.herald.dev/v1alpha1";
pub const APISERVER_API_VERSION: &str = "sources.knative.dev/v1";

/// Knative's `ceOverrides`: extension attributes set on every event a source emits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

/// What every source spec shares; `field` names are relative to `spec`.
fn validate_common(
    sink: &Destination,
    overrides: &Option<CloudEventOverrides>,
    delivery: &Option<DeliverySpec>,
    errors: &mut Vec<FieldError>,
) {
    sink.validate("spec.sink", errors);
    if let Some(o) = overrides {
        for name in o.extensions.keys() {
            if !is_valid_attribute_name(name) {
                errors.push(FieldError::new(
                    format!("spec.ceOverrides.extensions.{name}"),
                    "not a valid CloudEvents attribute name (lower-case a-z and 0-9 only)",
                ));
            }
        }
    }
    if let Some(d) = delivery {
        d.validate("spec.delivery", errors);
    }
}

macro_rules! source_resource {
    ($name:ident, $spec:ident) => {
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            pub metadata: ObjectMeta,
            pub spec: $spec,
        }

        impl $name {
            pub fn key(&self) -> ResourceKey {
                ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
            }
        }
    };
}

source_resource!(PingSource, PingSourceSpec);
source_resource!(GitHubSource, GitHubSourceSpec);
source_resource!(KafkaSource, KafkaSourceSpec);
source_resource!(ContainerSource, ContainerSourceSpec);
source_resource!(NatsSource, NatsSourceSpec);
source_resource!(ApiServerSource, ApiServerSourceSpec);

/// PingSource: an event on a cron schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSourceSpec {
    /// Five-field cron, or a shortcut (`@hourly`, `@every 10m`, ...).
    pub schedule: String,
    /// IANA time zone the schedule is read in; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

impl PingSource {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let s = &self.spec;
        if s.schedule.trim().is_empty() {
            errors.push(FieldError::new("spec.schedule", "must not be empty"));
        }
        if s.data.is_some() && s.data_base64.is_some() {
            errors.push(FieldError::new(
                "spec.dataBase64",
                "set either data or dataBase64, not both",
            ));
        }
        validate_common(&s.sink, &s.ce_overrides, &s.delivery, &mut errors);
        errors
    }
}

/// Knative's `SecretValueFromSource`, plus Herald's standalone forms: the value itself, a file
/// holding it, or an environment variable. `secretKeyRef` needs Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretValueFromSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl SecretValueFromSource {
    pub fn is_empty(&self) -> bool {
        self.secret_key_ref.is_none()
            && self.value.is_none()
            && self.file.is_none()
            && self.env.is_none()
    }

    fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        let set = [
            self.secret_key_ref.is_some(),
            self.value.is_some(),
            self.file.is_some(),
            self.env.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if set > 1 {
            errors.push(FieldError::new(
                field,
                "set one of secretKeyRef, value, file or env",
            ));
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// GitHubSource: GitHub webhook deliveries as events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitHubSourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// `owner/repo`, or `org` for an organization's events.
    pub owner_and_repository: String,
    /// GitHub event names (`push`, `pull_request`, ...); others are answered and dropped.
    pub event_types: Vec<String>,
    /// Used by Knative to register the webhook; standalone Herald does not register it.
    #[serde(default, skip_serializing_if = "SecretValueFromSource::is_empty")]
    pub access_token: SecretValueFromSource,
    /// The webhook secret `X-Hub-Signature-256` is computed with.
    #[serde(default, skip_serializing_if = "SecretValueFromSource::is_empty")]
    pub secret_token: SecretValueFromSource,
    #[serde(
        rename = "githubAPIURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub github_api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

impl GitHubSource {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let s = &self.spec;
        let repo = s.owner_and_repository.trim();
        if repo.is_empty() || repo.split('/').count() > 2 || repo.split('/').any(str::is_empty) {
            errors.push(FieldError::new(
                "spec.ownerAndRepository",
                format!("expected owner/repository or an organization, got {repo:?}"),
            ));
        }
        if s.event_types.is_empty() {
            errors.push(FieldError::new(
                "spec.eventTypes",
                "needs at least one GitHub event type",
            ));
        }
        if s.secret_token.is_empty() {
            errors.push(FieldError::new(
                "spec.secretToken",
                "webhooks must be signed: give the secret (value, file, env or secretKeyRef)",
            ));
        }
        s.secret_token.validate("spec.secretToken", &mut errors);
        s.access_token.validate("spec.accessToken", &mut errors);
        validate_common(&s.sink, &s.ce_overrides, &s.delivery, &mut errors);
        errors
    }
}

/// KafkaSource: records of Kafka topics as events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSourceSpec {
    pub bootstrap_servers: Vec<String>,
    pub topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_offset: Option<InitialOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<Ordering>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i32>,
    /// SASL/TLS settings; not supported by Herald yet (refused when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::any_object")
    )]
    pub net: Option<serde_json::Value>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    Earliest,
    #[default]
    Latest,
}

/// Knative's KafkaSource ordering: `ordered` delivers one event at a time per partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    #[default]
    Ordered,
    Unordered,
}

impl KafkaSource {
    /// Knative's default consumer group is the source's UID; without one, a stable name.
    pub fn consumer_group(&self) -> String {
        self.spec.consumer_group.clone().unwrap_or_else(|| {
            format!(
                "knative-kafkasource-{}-{}",
                self.metadata.namespace(),
                self.metadata.name
            )
        })
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let s = &self.spec;
        if s.bootstrap_servers.iter().all(|b| b.trim().is_empty()) {
            errors.push(FieldError::new(
                "spec.bootstrapServers",
                "needs at least one host:port",
            ));
        }
        if s.topics.iter().all(|t| t.trim().is_empty()) {
            errors.push(FieldError::new("spec.topics", "needs at least one topic"));
        }
        if s.net.as_ref().is_some_and(|n| !is_empty_json(n)) {
            errors.push(FieldError::new(
                "spec.net",
                "SASL and TLS settings are not supported by Herald yet",
            ));
        }
        if s.consumers.is_some_and(|c| c < 1) {
            errors.push(FieldError::new("spec.consumers", "must be >= 1"));
        }
        validate_common(&s.sink, &s.ce_overrides, &s.delivery, &mut errors);
        errors
    }
}

fn is_empty_json(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.values().all(is_empty_json),
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Number(_) => false,
    }
}

/// ContainerSource: a program whose events (POSTed to `$K_SINK`) go to the sink. Standalone
/// Herald runs the first container's `command` and `args` as a local process (the image is
/// not pulled); the rest of the pod template is Kubernetes' business and ignored here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSourceSpec {
    /// A Kubernetes PodTemplateSpec, kept as written.
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::any_object")
    )]
    pub template: PodTemplateSpec,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// The parts of a Kubernetes PodTemplateSpec Herald reads; other fields are kept as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ContainerSource {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let s = &self.spec;
        match s.template.spec.containers.as_slice() {
            [] => errors.push(FieldError::new(
                "spec.template.spec.containers",
                "needs one container",
            )),
            [c] => {
                if c.command.is_empty() {
                    errors.push(FieldError::new(
                        "spec.template.spec.containers[0].command",
                        "standalone Herald runs the container's command as a process: give one",
                    ));
                }
                for (i, e) in c.env.iter().enumerate() {
                    if e.value.is_none() && !e.other.is_empty() {
                        errors.push(FieldError::new(
                            format!("spec.template.spec.containers[0].env[{i}]"),
                            "only literal `value`s are supported outside Kubernetes",
                        ));
                    }
                }
            }
            _ => errors.push(FieldError::new(
                "spec.template.spec.containers",
                "standalone Herald runs exactly one container",
            )),
        }
        validate_common(&s.sink, &s.ce_overrides, &s.delivery, &mut errors);
        errors
    }
}

/// NatsSource (Herald's own): messages of a NATS subject, or of a JetStream stream through a
/// durable consumer, as events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSourceSpec {
    /// `nats://host:port`; the server's NATS backend when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub subject: String,
    /// Read through JetStream: the stream holding `subject`. Core NATS when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Durable consumer name (JetStream only); derived from the source when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_offset: Option<InitialOffset>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

impl NatsSource {
    pub fn consumer_name(&self) -> String {
        self.spec.consumer.clone().unwrap_or_else(|| {
            format!(
                "herald-natssource-{}-{}",
                self.metadata.namespace(),
                self.metadata.name
            )
        })
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let s = &self.spec;
        if s.subject.trim().is_empty() || s.subject.contains(char::is_whitespace) {
            errors.push(FieldError::new(
                "spec.subject",
                format!("{:?} is not a NATS subject", s.subject),
            ));
        }
        if s.stream.is_none() && (s.consumer.is_some() || s.initial_offset.is_some()) {
            errors.push(FieldError::new(
                "spec.stream",
                "consumer and initialOffset need a JetStream stream",
            ));
        }
        if let Some(u) = &s.url {
            if url::Url::parse(u).is_err() {
                errors.push(FieldError::new(
                    "spec.url",
                    format!("{u:?} is not a URL (nats://host:port)"),
                ));
            }
        }
        validate_common(&s.sink, &s.ce_overrides, &s.delivery, &mut errors);
        errors
    }
}

/// ApiServerSource: changes of Kubernetes objects (added, updated, deleted) as events, in
/// Knative's shapes: `dev.knative.apiserver.resource.*` with the object as data
/// (`mode: Resource`), or `dev.knative.apiserver.ref.*` with a reference to it (`mode:
/// Reference`, the default). It watches in its own namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerSourceSpec {
    pub resources: Vec<ApiServerResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<EventMode>,
    /// Only objects whose controller (the owner reference with `controller: true`) has this
    /// apiVersion and kind; an empty field matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ApiVersionKind>,
    /// Knative runs its adapter as this ServiceAccount; Herald watches with its own
    /// identity, so its RBAC must allow `get, list, watch` on the listed resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Watching other namespaces is not supported by Herald yet (refused when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::any_object")
    )]
    pub namespace_selector: Option<serde_json::Value>,
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// One kind of object to watch, optionally narrowed by labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerResource {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiVersionKind {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// What an ApiServerSource event carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum EventMode {
    /// `{apiVersion, kind, name, namespace}` of the object.
    #[default]
    Reference,
    /// The whole object.
    Resource,
}

/// Kubernetes' LabelSelector: every `matchLabels` pair and every expression must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// The selector in the API server's query syntax (`app=web,tier in (a,b),!legacy`).
    pub fn to_query(&self) -> String {
        let mut terms: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &self.match_expressions {
            terms.push(match e.operator.as_str() {
                "In" => format!("{} in ({})", e.key, e.values.join(",")),
                "NotIn" => format!("{} notin ({})", e.key, e.values.join(",")),
                "DoesNotExist" => format!("!{}", e.key),
                _ => e.key.clone(),
            });
        }
        terms.join(",")
    }

    fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        for (i, e) in self.match_expressions.iter().enumerate() {
            e.validate(&format!("{field}.matchExpressions[{i}]"), errors);
        }
    }
}

impl LabelSelectorRequirement {
    /// Kubernetes' semantics of one expression over an object's labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.contains(v)),
            "NotIn" => value.is_none_or(|v| !self.values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    }

    /// The operator is one of Kubernetes' four, with values exactly where it takes them.
    pub fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        match self.operator.as_str() {
            "In" | "NotIn" if self.values.is_empty() => errors.push(FieldError::new(
                field,
                format!("{} needs values", self.operator),
            )),
            "Exists" | "DoesNotExist" if !self.values.is_empty() => errors.push(FieldError::new(
                field,
                format!("{} takes no values", self.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::new(
                format!("{field}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            )),
        }
    }
}

impl ApiServerSource {
    pub fn mode(&self) -> EventMode {
        self.spec.mode.unwrap_or_default()
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        let s = &self.spec;
        if s.resources.is_empty() {
            errors.push(FieldError::new(
                "spec.resources",
                "needs at least one resource to watch",
            ));
        }
        for (i, r) in s.resources.iter().enumerate() {
            if r.api_version.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("spec.resources[{i}].apiVersion"),
                    "must not be empty (e.g. v1, apps/v1)",
                ));
            }
            if r.kind.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("spec.resources[{i}].kind"),
                    "must not be empty",
                ));
            }
            if let Some(sel) = &r.selector {
                sel.validate(&format!("spec.resources[{i}].selector"), &mut errors);
            }
        }
        if s.namespace_selector
            .as_ref()
            .is_some_and(|n| !is_empty_json(n))
        {
            errors.push(FieldError::new(
                "spec.namespaceSelector",
                "watching other namespaces is not supported by Herald yet",
            ));
        }
        validate_common(&s.sink, &s.ce_overrides, &s.delivery, &mut errors);
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::loader::load_str;
    use crate::resources::Resource;
    use std::path::Path;

    const ALL: &str = r#"
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: beat, namespace: ns}
spec:
  schedule: "*/2 * * * *"
  timezone: Europe/Berlin
  contentType: application/json
  data: '{"message": "Hello world!"}'
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
---
apiVersion: sources.knative.dev/v1alpha1
kind: GitHubSource
metadata: {name: gh, namespace: ns}
spec:
  eventTypes: [push, pull_request]
  ownerAndRepository: acme/widgets
  secretToken: {value: s3cret}
  sink: {uri: "http://127.0.0.1:9/x"}
---
apiVersion: sources.knative.dev/v1beta1
kind: KafkaSource
metadata: {name: k, namespace: ns}
spec:
  bootstrapServers: ["127.0.0.1:9092"]
  topics: [orders]
  initialOffset: earliest
  ordering: unordered
  sink: {uri: "http://127.0.0.1:9/x"}
  delivery: {retry: 3, deadLetterSink: {uri: "http://127.0.0.1:9/dls"}}
---
apiVersion: sources.knative.dev/v1
kind: ContainerSource
metadata: {name: c, namespace: ns}
spec:
  template:
    spec:
      containers:
        - name: heartbeat
          image: ignored.example/heartbeat
          command: [sh, -c, "echo hi"]
          env: [{name: PERIOD, value: "1"}]
          resources: {limits: {cpu: 100m}}
  sink: {uri: "http://127.0.0.1:9/x"}
  ceOverrides: {extensions: {team: blue}}
---
apiVersion: sources.herald.dev/v1alpha1
kind: NatsSource
metadata: {name: n, namespace: ns}
spec:
  subject: orders.>
  stream: ORDERS
  sink: {uri: "http://127.0.0.1:9/x"}
---
apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {name: pods, namespace: ns}
spec:
  mode: Resource
  serviceAccountName: pod-watcher
  resources:
    - apiVersion: v1
      kind: Pod
      selector:
        matchLabels: {app: web}
        matchExpressions: [{key: tier, operator: In, values: [front, back]}, {key: legacy, operator: DoesNotExist}]
  owner: {apiVersion: apps/v1, kind: ReplicaSet}
  sink: {uri: "http://127.0.0.1:9/x"}
"#;

    #[test]
    fn every_source_kind_loads_with_knative_field_names() {
        let set = load_str(Path::new("s.yaml"), ALL).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<_> = set
            .sources
            .iter()
            .map(|s| s.resource.kind().name())
            .collect();
        assert_eq!(
            kinds,
            [
                "PingSource",
                "GitHubSource",
                "KafkaSource",
                "ContainerSource",
                "NatsSource",
                "ApiServerSource"
            ]
        );
        let Resource::ApiServerSource(a) = &set.sources[5].resource else {
            panic!()
        };
        assert_eq!(a.mode(), super::EventMode::Resource);
        let selector = a.spec.resources[0].selector.as_ref().unwrap();
        assert_eq!(selector.to_query(), "app=web,tier in (front,back),!legacy");
        let Resource::KafkaSource(k) = &set.sources[2].resource else {
            panic!()
        };
        assert_eq!(k.spec.initial_offset, Some(super::InitialOffset::Earliest));
        assert_eq!(k.consumer_group(), "knative-kafkasource-ns-k");
        // Round trip: what the admin API shows loads again unchanged.
        for s in &set.sources {
            let text = serde_json::to_string(&s.resource.to_json()).unwrap();
            let again = crate::loader::load_resource("again", &text).unwrap();
            assert_eq!(again, s.resource);
        }
    }

    #[test]
    fn a_typo_or_bad_value_names_the_source_and_field() {
        let typo = ALL.replace("timezone:", "timeZone:");
        let err = load_str(Path::new("s.yaml"), &typo).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("PingSource ns/beat"), "{msg}");
        assert!(msg.contains("timeZone"), "{msg}");
        let bad = ALL
            .replace("topics: [orders]", "topics: []")
            .replace("operator: In, values: [front, back]", "operator: In")
            .replace("secretToken: {value: s3cret}", "");
        let err = load_str(Path::new("s.yaml"), &bad).unwrap_err();
        let fields: Vec<_> = err
            .problems
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.resource.clone().unwrap_or_default(),
                    p.field.clone().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            fields.contains(&"KafkaSource ns/k spec.topics".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"GitHubSource ns/gh spec.secretToken".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(
                &"ApiServerSource ns/pods spec.resources[0].selector.matchExpressions[0]"
                    .to_string()
            ),
            "{fields:?}"
        );
    }
}
