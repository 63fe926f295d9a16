//! Reads Knative-style YAML (multi-document files, or a directory of them) into a
//! [`ResourceSet`]. Every problem is reported with its file, document, resource and field.

use crate::eventtype::{EventType, EventTypeV1beta2};
use crate::messaging::{Channel, ChannelFlavor, EventTransform, Parallel, Sequence, Subscription};
use crate::policy::EventPolicy;
use crate::resources::{Broker, FieldError, Resource, ResourceKey, Trigger};
use crate::sources::{
    ApiServerSource, ContainerSource, GitHubSource, KafkaSource, NatsSource, PingSource,
};
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a resource came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based index of the YAML document within the file.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<T> {
    pub resource: T,
    pub origin: Origin,
}

/// A Knative kind Herald recognises but does not serve yet; kept so callers can warn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub origin: Origin,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSet {
    pub brokers: Vec<Loaded<Broker>>,
    pub triggers: Vec<Loaded<Trigger>>,
    /// Channels, Subscriptions, Sequences and Parallels.
    pub messaging: Vec<Loaded<Resource>>,
    /// PingSources, GitHubSources, KafkaSources, ContainerSources, NatsSources and
    /// ApiServerSources.
    pub sources: Vec<Loaded<Resource>>,
    /// EventPolicies.
    pub policies: Vec<Loaded<EventPolicy>>,
    /// EventTypes (v1beta2 ones converted to v1beta3).
    pub event_types: Vec<Loaded<EventType>>,
    pub deferred: Vec<Deferred>,
}

impl ResourceSet {
    pub fn broker(&self, key: &ResourceKey) -> Option<&Broker> {
        self.brokers
            .iter()
            .map(|b| &b.resource)
            .find(|b| &b.key() == key)
    }

    /// Every served resource, Brokers first, each with where it came from.
    pub fn resources(&self) -> impl Iterator<Item = (Resource, &Origin)> {
        let brokers = self
            .brokers
            .iter()
            .map(|b| (Resource::Broker(b.resource.clone()), &b.origin));
        let triggers = self
            .triggers
            .iter()
            .map(|t| (Resource::Trigger(t.resource.clone()), &t.origin));
        let messaging = self
            .messaging
            .iter()
            .map(|m| (m.resource.clone(), &m.origin));
        let sources = self.sources.iter().map(|m| (m.resource.clone(), &m.origin));
        let policies = self
            .policies
            .iter()
            .map(|p| (Resource::EventPolicy(p.resource.clone()), &p.origin));
        let event_types = self
            .event_types
            .iter()
            .map(|e| (Resource::EventType(e.resource.clone()), &e.origin));
        brokers
            .chain(triggers)
            .chain(messaging)
            .chain(sources)
            .chain(policies)
            .chain(event_types)
    }
}

/// Reads one resource (YAML or JSON; e.g. an admin API request body). `label` names it in
/// errors.
pub fn load_resource(label: &str, text: &str) -> Result<Resource, LoadError> {
    let set = load_str(Path::new(label), text)?;
    let mut resources: Vec<Resource> = set.resources().map(|(r, _)| r).collect();
    let one = |message: String| LoadError {
        problems: vec![LoadProblem {
            origin: None,
            resource: None,
            field: None,
            message,
        }],
    };
    match (resources.len(), set.deferred.first()) {
        (1, _) => Ok(resources.remove(0)),
        (0, Some(d)) => Err(one(format!(
            "{} {} ({}) is recognised but not served by this version of Herald",
            d.kind, d.name, d.api_version
        ))),
        (n, _) => Err(one(format!("expected exactly one resource, got {n}"))),
    }
}

/// One problem found while loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadProblem {
    pub origin: Option<Origin>,
    /// `Kind namespace/name` when known.
    pub resource: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found; loading reports all of them at once rather than the first.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct LoadError {
    pub problems: Vec<LoadProblem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} problem(s) in the configuration:",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

const KNOWN_NOT_SERVED: &[(&str, &str)] =
    &[("sources.knative.dev", "SinkBinding"), ("", "ConfigMap")];

/// Loads a file, or every `.yaml`/`.yml` file of a directory (recursively, in name order).
pub fn load_path(path: &Path) -> Result<ResourceSet, LoadError> {
    let files = collect_files(path).map_err(|message| LoadError {
        problems: vec![LoadProblem {
            origin: None,
            resource: None,
            field: None,
            message,
        }],
    })?;
    let mut builder = Builder::default();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => builder.add_file(&file, &text),
            Err(e) => builder.problem(
                Some(Origin {
                    file: file.clone(),
                    document: 0,
                }),
                None,
                None,
                format!("cannot read file: {e}"),
            ),
        }
    }
    builder.finish()
}

/// Loads YAML text; `file` only names it in errors.
pub fn load_str(file: &Path, text: &str) -> Result<ResourceSet, LoadError> {
    let mut builder = Builder::default();
    builder.add_file(file, text);
    builder.finish()
}

fn collect_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot list directory {}: {e}", dir.display()))?;
        for entry in entries {
            let p = entry
                .map_err(|e| format!("cannot list directory {}: {e}", dir.display()))?
                .path();
            if p.is_dir() {
                dirs.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[derive(Default)]
struct Builder {
    set: ResourceSet,
    problems: Vec<LoadProblem>,
    seen: BTreeMap<(String, ResourceKey), Origin>,
}

impl Builder {
    fn problem(
        &mut self,
        origin: Option<Origin>,
        resource: Option<String>,
        field: Option<String>,
        message: String,
    ) {
        self.problems.push(LoadProblem {
            origin,
            resource,
            field,
            message,
        });
    }

    fn add_file(&mut self, file: &Path, text: &str) {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let origin = Origin {
                file: file.to_path_buf(),
                document: i + 1,
            };
            match <Value as serde::Deserialize>::deserialize(doc) {
                // `---` followed by nothing is an empty document, not an error.
                Ok(Value::Null) => {}
                Ok(value) => self.add_document(origin, value),
                Err(e) => {
                    self.problem(Some(origin), None, None, format!("invalid YAML: {e}"));
                    // The YAML stream cannot be resumed after a syntax error.
                    return;
                }
            }
        }
    }

    fn add_document(&mut self, origin: Origin, value: Value) {
        let str_at = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind)) = (str_at("apiVersion"), str_at("kind")) else {
            self.problem(
                Some(origin),
                None,
                None,
                "document needs string fields `apiVersion` and `kind`".into(),
            );
            return;
        };
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let namespace = value
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(crate::resources::DEFAULT_NAMESPACE)
            .to_string();
        let label = format!("{kind} {namespace}/{name}");
        let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");

        if let Value::Mapping(m) = &value {
            for key in m.keys() {
                let k = key.as_str().unwrap_or("");
                if !matches!(k, "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                    self.problem(
                        Some(origin.clone()),
                        Some(label.clone()),
                        Some(k.to_string()),
                        "unknown top-level field".into(),
                    );
                }
            }
        }

        match (api_version.as_str(), kind.as_str()) {
            ("eventing.knative.dev/v1", "Broker") => {
                if let Some(b) = self.typed::<Broker>(&origin, &label, value) {
                    let errors = b.validate();
                    if self.report(&origin, &label, errors)
                        && self.unique("Broker", b.key(), &origin, &label)
                    {
                        self.set.brokers.push(Loaded {
                            resource: b,
                            origin,
                        });
                    }
                }
            }
            ("eventing.knative.dev/v1", "Trigger") => {
                if let Some(t) = self.typed::<Trigger>(&origin, &label, value) {
                    let errors = t.validate();
                    if self.report(&origin, &label, errors)
                        && self.unique("Trigger", t.key(), &origin, &label)
                    {
                        self.set.triggers.push(Loaded {
                            resource: t,
                            origin,
                        });
                    }
                }
            }
            ("messaging.knative.dev/v1", "Channel")
            | ("messaging.knative.dev/v1", "InMemoryChannel")
            | ("messaging.knative.dev/v1beta1", "KafkaChannel")
            | ("messaging.herald.dev/v1alpha1", "HeraldChannel") => {
                let flavor = ChannelFlavor::from_kind(&kind).expect("matched above");
                if let Some(mut c) = self.typed::<Channel>(&origin, &label, value) {
                    c.flavor = flavor;
                    self.add_messaging(Resource::Channel(c), origin, &label);
                }
            }
            ("messaging.knative.dev/v1", "Subscription") => {
                if let Some(r) = self.typed::<Subscription>(&origin, &label, value) {
                    self.add_messaging(Resource::Subscription(r), origin, &label);
                }
            }
            ("flows.knative.dev/v1", "Sequence") => {
                if let Some(r) = self.typed::<Sequence>(&origin, &label, value) {
                    self.add_messaging(Resource::Sequence(r), origin, &label);
                }
            }
            ("flows.knative.dev/v1", "Parallel") => {
                if let Some(r) = self.typed::<Parallel>(&origin, &label, value) {
                    self.add_messaging(Resource::Parallel(r), origin, &label);
                }
            }
            ("eventing.knative.dev/v1alpha1", "EventTransform") => {
                if let Some(r) = self.typed::<EventTransform>(&origin, &label, value) {
                    self.add_messaging(Resource::EventTransform(r), origin, &label);
                }
            }
            ("eventing.knative.dev/v1alpha1", "EventPolicy") => {
                if let Some(p) = self.typed::<EventPolicy>(&origin, &label, value) {
                    let errors = p.validate();
                    if self.report(&origin, &label, errors)
                        && self.unique("EventPolicy", p.key(), &origin, &label)
                    {
                        self.set.policies.push(Loaded {
                            resource: p,
                            origin,
                        });
                    }
                }
            }
            ("eventing.knative.dev/v1beta3", "EventType") => {
                if let Some(e) = self.typed::<EventType>(&origin, &label, value) {
                    self.add_event_type(e, origin, &label);
                }
            }
            ("eventing.knative.dev/v1beta2", "EventType") => {
                if let Some(e) = self.typed::<EventTypeV1beta2>(&origin, &label, value) {
                    self.add_event_type(e.into(), origin, &label);
                }
            }
            ("sources.knative.dev/v1", "PingSource") => {
                if let Some(r) = self.typed::<PingSource>(&origin, &label, value) {
                    self.add_source(Resource::PingSource(r), origin, &label);
                }
            }
            ("sources.knative.dev/v1alpha1", "GitHubSource") => {
                if let Some(r) = self.typed::<GitHubSource>(&origin, &label, value) {
                    self.add_source(Resource::GitHubSource(r), origin, &label);
                }
            }
            ("sources.knative.dev/v1beta1", "KafkaSource") => {
                if let Some(r) = self.typed::<KafkaSource>(&origin, &label, value) {
                    self.add_source(Resource::KafkaSource(r), origin, &label);
                }
            }
            ("sources.knative.dev/v1", "ContainerSource") => {
                if let Some(r) = self.typed::<ContainerSource>(&origin, &label, value) {
                    self.add_source(Resource::ContainerSource(r), origin, &label);
                }
            }
            ("sources.herald.dev/v1alpha1", "NatsSource") => {
                if let Some(r) = self.typed::<NatsSource>(&origin, &label, value) {
                    self.add_source(Resource::NatsSource(r), origin, &label);
                }
            }
            ("sources.knative.dev/v1", "ApiServerSource") => {
                if let Some(r) = self.typed::<ApiServerSource>(&origin, &label, value) {
                    self.add_source(Resource::ApiServerSource(r), origin, &label);
                }
            }
            _ if KNOWN_NOT_SERVED
                .iter()
                .any(|(g, k)| *g == group && *k == kind) =>
            {
                self.set.deferred.push(Deferred {
                    api_version,
                    kind,
                    name,
                    origin,
                });
            }
            _ => self.problem(
                Some(origin),
                Some(label),
                Some("kind".into()),
                format!("unsupported resource {api_version} {kind}"),
            ),
        }
    }

    fn add_messaging(&mut self, resource: Resource, origin: Origin, label: &str) {
        let errors = resource.validate();
        if self.report(&origin, label, errors)
            && self.unique(resource.kind().name(), resource.key(), &origin, label)
        {
            self.set.messaging.push(Loaded { resource, origin });
        }
    }

    fn add_event_type(&mut self, e: EventType, origin: Origin, label: &str) {
        let errors = e.validate();
        if self.report(&origin, label, errors) && self.unique("EventType", e.key(), &origin, label)
        {
            self.set.event_types.push(Loaded {
                resource: e,
                origin,
            });
        }
    }

    fn add_source(&mut self, resource: Resource, origin: Origin, label: &str) {
        let errors = resource.validate();
        if self.report(&origin, label, errors)
            && self.unique(resource.kind().name(), resource.key(), &origin, label)
        {
            self.set.sources.push(Loaded { resource, origin });
        }
    }

    fn typed<T: DeserializeOwned>(
        &mut self,
        origin: &Origin,
        label: &str,
        mut value: Value,
    ) -> Option<T> {
        if let Value::Mapping(m) = &mut value {
            for k in ["apiVersion", "kind", "status"] {
                m.remove(k);
            }
        }
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                self.problem(
                    Some(origin.clone()),
                    Some(label.to_string()),
                    field,
                    e.into_inner().to_string(),
                );
                None
            }
        }
    }

    fn report(&mut self, origin: &Origin, label: &str, errors: Vec<FieldError>) -> bool {
        let ok = errors.is_empty();
        for e in errors {
            self.problem(
                Some(origin.clone()),
                Some(label.to_string()),
                Some(e.field),
                e.message,
            );
        }
        ok
    }

    fn unique(&mut self, kind: &str, key: ResourceKey, origin: &Origin, label: &str) -> bool {
        if let Some(first) = self.seen.get(&(kind.to_string(), key.clone())) {
            let message = format!("duplicate {kind} {key}, first defined in {first}");
            self.problem(Some(origin.clone()), Some(label.to_string()), None, message);
            return false;
        }
        self.seen.insert((kind.to_string(), key), origin.clone());
        true
    }

    fn finish(self) -> Result<ResourceSet, LoadError> {
        if self.problems.is_empty() {
            Ok(self.set)
        } else {
            Err(LoadError {
                problems: self.problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::BackoffPolicy;

    fn load(text: &str) -> Result<ResourceSet, LoadError> {
        load_str(Path::new("test.yaml"), text)
    }

    const GOOD: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: shop
  annotations:
    eventing.knative.dev/broker.class: Herald
spec:
  delivery:
    retry: 2
    backoffPolicy: linear
    backoffDelay: PT0.5S
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t1
  namespace: shop
  uid: 1234
spec:
  broker: default
  filter:
    attributes:
      type: a.b
  subscriber:
    uri: http://127.0.0.1:9/x
---
"#;

    #[test]
    fn loads_brokers_and_triggers_from_multi_document_yaml() {
        let set = load(GOOD).unwrap();
        assert_eq!(set.brokers.len(), 1);
        let b = &set.brokers[0].resource;
        assert_eq!(b.key(), ResourceKey::new("shop", "default"));
        assert_eq!(b.class(), Some("Herald"));
        let d = b.spec.delivery.as_ref().unwrap();
        assert_eq!(d.retry, Some(2));
        assert_eq!(d.backoff_policy, Some(BackoffPolicy::Linear));
        assert_eq!(
            d.backoff_delay.as_ref().unwrap().as_duration().as_millis(),
            500
        );
        let t = &set.triggers[0];
        assert_eq!(t.origin.document, 2);
        assert_eq!(t.resource.broker_key(), ResourceKey::new("shop", "default"));
        assert_eq!(
            t.resource.spec.filter.as_ref().unwrap().attributes["type"],
            "a.b"
        );
    }

    #[test]
    fn unknown_field_names_file_resource_and_field() {
        let text = GOOD.replace("backoffDelay: PT0.5S", "backofDelay: PT0.5S");
        let err = load(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("test.yaml (document 1)"), "{msg}");
        assert!(msg.contains("Broker shop/default"), "{msg}");
        assert!(msg.contains("spec.delivery"), "{msg}");
        assert!(msg.contains("backofDelay"), "{msg}");
    }

    #[test]
    fn invalid_values_are_reported_with_their_field() {
        let text = GOOD
            .replace("retry: 2", "retry: -1")
            .replace("uri: http://127.0.0.1:9/x", "uri: not a url");
        let err = load(&text).unwrap_err();
        let fields: Vec<_> = err
            .problems
            .iter()
            .map(|p| p.field.clone().unwrap_or_default())
            .collect();
        assert!(fields.contains(&"spec.delivery.retry".to_string()), "{err}");
        assert!(fields.contains(&"spec.subscriber.uri".to_string()), "{err}");
        let bad_duration = GOOD.replace("PT0.5S", "5 seconds");
        let err = load(&bad_duration).unwrap_err();
        assert_eq!(
            err.problems[0].field.as_deref(),
            Some("spec.delivery.backoffDelay"),
            "{err}"
        );
        assert!(err.to_string().contains("5 seconds"), "{err}");
    }

    #[test]
    fn duplicates_and_unknown_kinds_are_errors() {
        let text = format!("{GOOD}\n{GOOD}");
        let err = load(&text).unwrap_err();
        assert!(
            err.to_string().contains("duplicate Broker shop/default"),
            "{err}"
        );
        let err =
            load("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported resource example.com/v1 Widget"),
            "{err}"
        );
    }

    #[test]
    fn loads_event_policies_and_names_their_bad_fields() {
        let policy = r#"
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {name: only-alice, namespace: shop}
spec:
  to:
  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
  from:
  - sub: alice
  filters:
  - exact: {type: order.created}
"#;
        let set = load(policy).unwrap();
        assert_eq!(set.policies.len(), 1);
        let p = &set.policies[0].resource;
        assert_eq!(p.key(), ResourceKey::new("shop", "only-alice"));
        assert!(p.allows("alice"));
        assert_eq!(set.resources().count(), 1);
        let err = load(&policy.replace("sub: alice", "sub: 'al*ce'")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("test.yaml (document 1)"), "{msg}");
        assert!(msg.contains("EventPolicy shop/only-alice"), "{msg}");
        assert!(msg.contains("spec.from[0].sub"), "{msg}");
        let err = load(&policy.replace("from:", "form:")).unwrap_err();
        assert!(err.to_string().contains("form"), "{err}");
    }

    const EVENT_TYPE: &str = r#"
apiVersion: eventing.knative.dev/v1beta3
kind: EventType
metadata: {name: order-created, namespace: shop}
spec:
  reference: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
  description: An order was placed
  attributes:
  - {name: type, required: true, value: com.example.order.created}
  - {name: source, required: true, value: /shop/orders}
  - {name: dataschema, required: false, value: "https://example.com/order.json"}
  - {name: specversion, required: true, value: "1.0"}
  - {name: id, required: true}
"#;

    #[test]
    fn loads_event_types_and_names_their_bad_fields() {
        let set = load(EVENT_TYPE).unwrap();
        assert_eq!(set.event_types.len(), 1);
        let e = &set.event_types[0].resource;
        assert_eq!(e.key(), ResourceKey::new("shop", "order-created"));
        assert_eq!(e.event_type(), "com.example.order.created");
        assert_eq!(e.schema(), Some("https://example.com/order.json"));
        assert_eq!(set.resources().count(), 1);
        assert!(set.deferred.is_empty());
        let err = load(&EVENT_TYPE.replace("  - {name: id, required: true}\n", "")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("EventType shop/order-created"), "{msg}");
        assert!(
            msg.contains("spec.attributes: missing attribute(s) \"id\""),
            "{msg}"
        );
        let err = load(&EVENT_TYPE.replace("name: type,", "name: Type,")).unwrap_err();
        assert!(err.to_string().contains("spec.attributes[0].name"), "{err}");
        let err = load(&EVENT_TYPE.replace(
            "required: true, value: /shop",
            "requird: true, value: /shop",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("requird"), "{err}");
        assert!(err.to_string().contains("spec.attributes[1]"), "{err}");
    }

    #[test]
    fn loads_v1beta2_event_types_as_v1beta3() {
        let old = "apiVersion: eventing.knative.dev/v1beta2\nkind: EventType\nmetadata: {name: old}\nspec: {type: a.b, source: /s, broker: default}\n";
        let set = load(old).unwrap();
        let e = &set.event_types[0].resource;
        assert_eq!((e.event_type(), e.source()), ("a.b", "/s"));
        assert_eq!(e.reference().unwrap().name, "default");
    }

    #[test]
    fn yaml_syntax_error_is_reported() {
        let err = load("apiVersion: [unclosed\n").unwrap_err();
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }

    #[test]
    fn loads_a_directory_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let (broker, trigger) = GOOD.split_once("---").unwrap();
        std::fs::write(dir.path().join("a.yaml"), broker).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), trigger).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        let set = load_path(dir.path()).unwrap();
        assert_eq!((set.brokers.len(), set.triggers.len()), (1, 1));
        assert!(set.triggers[0].origin.file.ends_with("sub/b.yml"));
    }

    /// The shared Knative-shaped samples must load unchanged.
    #[test]
    fn knative_samples_load_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/knative-samples");
        if !dir.exists() {
            assert!(std::env::var("CI").is_err(), "{} is missing", dir.display());
            eprintln!("skipping: {} not found", dir.display());
            return;
        }
        let set = load_path(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.brokers.len(), 1);
        assert_eq!(set.triggers.len(), 2);
        let big = set
            .triggers
            .iter()
            .find(|t| t.resource.metadata.name == "big-orders")
            .unwrap();
        assert_eq!(big.resource.spec.filters.len(), 1);
        assert_eq!(
            big.resource.spec.subscriber.uri.as_deref(),
            Some("/inspect")
        );
        let kinds: Vec<_> = set
            .sources
            .iter()
            .map(|s| s.resource.kind().name())
            .collect();
        for k in ["PingSource", "KafkaSource", "GitHubSource"] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        let served: Vec<_> = set
            .messaging
            .iter()
            .map(|m| m.resource.kind().name())
            .collect();
        for k in ["Channel", "Subscription", "Sequence", "Parallel"] {
            assert!(served.contains(&k), "{k} missing from {served:?}");
        }
    }
}
