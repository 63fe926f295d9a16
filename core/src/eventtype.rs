//! Knative's EventType (`eventing.knative.dev/v1beta3`): a kind of event that can be consumed
//! from a Broker or Channel, described by the CloudEvents attributes its events carry
//! (`type`, `source`, `dataschema`, ...) and a `reference` to the Broker or Channel. Declared
//! in YAML like every kind, or recorded by Herald from the events its ingress accepts, named
//! the way Knative's auto-creation names them ([`generated_name`]). `v1beta2` manifests (flat
//! `type`, `source`, `schema`, `broker`) load too and are converted on the way in.

use crate::resources::{validate_name, FieldError, KReference, ObjectMeta, ResourceKey};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

pub const EVENT_TYPE_API_VERSION: &str = "eventing.knative.dev/v1beta3";
/// The previous version, accepted as input and converted to v1beta3.
pub const EVENT_TYPE_V1BETA2: &str = "eventing.knative.dev/v1beta2";

/// The attributes Knative's validation requires every v1beta3 EventType to list.
pub const REQUIRED_ATTRIBUTES: [&str; 4] = ["type", "source", "specversion", "id"];

/// What Knative writes into `spec.description` of the EventTypes it auto-creates.
pub const AUTO_CREATED_DESCRIPTION: &str = "Event Type auto-created by controller";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventType {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: EventTypeSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeSpec {
    /// The Broker or Channel the events can be consumed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The CloudEvents attributes (and extensions) of its events.
    #[serde(default)]
    pub attributes: Vec<EventAttributeDefinition>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventAttributeDefinition {
    pub name: String,
    /// Whether every event of this type carries the attribute.
    #[serde(default)]
    pub required: bool,
    /// The value, or a template of it (`/apis/v1/namespaces/{namespace}/pingsources/{name}`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// A v1beta2 EventType's spec, as written before attributes existed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeSpecV1beta2 {
    #[serde(rename = "type", default)]
    pub event_type: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    /// Knative stores it and never reads it; so does Herald (it is dropped).
    #[serde(default)]
    pub schema_data: Option<String>,
    /// Deprecated in v1beta2: a Broker of the EventType's namespace.
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub reference: Option<KReference>,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EventTypeV1beta2 {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: EventTypeSpecV1beta2,
}

impl From<EventTypeV1beta2> for EventType {
    fn from(old: EventTypeV1beta2) -> Self {
        let s = old.spec;
        let reference = s.reference.or_else(|| {
            s.broker.filter(|b| !b.is_empty()).map(|name| KReference {
                api_version: Some(crate::resources::EVENTING_API_VERSION.into()),
                kind: "Broker".into(),
                name,
                ..Default::default()
            })
        });
        let mut attributes = vec![attribute("type", true, s.event_type)];
        attributes.push(attribute("source", true, s.source.unwrap_or_default()));
        if let Some(schema) = s.schema.filter(|v| !v.is_empty()) {
            attributes.push(attribute("dataschema", false, schema));
        }
        attributes.push(attribute("specversion", true, String::new()));
        attributes.push(attribute("id", true, String::new()));
        EventType {
            metadata: old.metadata,
            spec: EventTypeSpec {
                reference,
                description: s.description,
                attributes,
            },
        }
    }
}

fn attribute(name: &str, required: bool, value: String) -> EventAttributeDefinition {
    EventAttributeDefinition {
        name: name.into(),
        required,
        value,
    }
}

/// What ingress saw of one accepted event, enough to record its EventType.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObservedType {
    pub event_type: String,
    pub source: String,
    pub dataschema: Option<String>,
    pub specversion: String,
}

impl EventType {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    /// The value of attribute `name`, when listed with one.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.spec
            .attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The CloudEvents `type` it describes.
    pub fn event_type(&self) -> &str {
        self.attribute("type").unwrap_or_default()
    }

    pub fn source(&self) -> &str {
        self.attribute("source").unwrap_or_default()
    }

    /// `dataschema`, or the 0.3 `schemaurl`.
    pub fn schema(&self) -> Option<&str> {
        // `schemadata` is the name Knative's own auto-creation writes the schema under.
        self.attribute("dataschema")
            .or_else(|| self.attribute("schemadata"))
            .or_else(|| self.attribute("schemaurl"))
    }

    /// The Broker or Channel it belongs to, its namespace filled in.
    pub fn reference(&self) -> Option<KReference> {
        let mut r = self.spec.reference.clone()?;
        r.namespace
            .get_or_insert_with(|| self.metadata.namespace().into());
        Some(r)
    }

    /// Whether it describes events of `event_type` from `source` on `reference` (the
    /// identity auto-creation keeps one EventType per).
    pub fn describes(&self, reference: &KReference, event_type: &str, source: &str) -> bool {
        self.event_type() == event_type
            && self.source() == source
            && self.reference().is_some_and(|r| same_target(&r, reference))
    }

    /// The EventType Knative's auto-creation makes for `seen` on `reference`: named by
    /// [`generated_name`], listing `type`, `source`, `dataschema` (when the event had one) and
    /// `specversion` as required with their values, and `id`.
    pub fn recorded(reference: KReference, seen: &ObservedType) -> Self {
        let namespace = reference.namespace.clone().unwrap_or_default();
        let name = generated_name(&reference.name, &namespace, &seen.event_type, &seen.source);
        let mut attributes = vec![
            attribute("type", true, seen.event_type.clone()),
            attribute("source", true, seen.source.clone()),
        ];
        if let Some(schema) = &seen.dataschema {
            attributes.push(attribute("dataschema", true, schema.clone()));
        }
        attributes.push(attribute("specversion", true, seen.specversion.clone()));
        // Required, as Knative's auto-creation lists it: every event has an id.
        attributes.push(attribute("id", true, String::new()));
        EventType {
            metadata: ObjectMeta {
                name,
                namespace: Some(namespace),
                ..Default::default()
            },
            spec: EventTypeSpec {
                reference: Some(reference),
                description: AUTO_CREATED_DESCRIPTION.into(),
                attributes,
            },
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = validate_name(&self.metadata)
            .into_iter()
            // Generated names can be longer than a label: a subdomain is what Kubernetes takes.
            .filter(|e| e.field != "metadata.name")
            .collect();
        if !is_dns_subdomain(&self.metadata.name) {
            errors.push(FieldError::new(
                "metadata.name",
                format!(
                    "{:?} is not a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.', at most 253)",
                    self.metadata.name
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.spec.attributes.iter().enumerate() {
            let at = format!("spec.attributes[{i}].name");
            if !crate::resources::is_valid_attribute_name(&a.name) {
                errors.push(FieldError::new(
                    at,
                    format!(
                        "{:?} is not a CloudEvents attribute name (lower-case a-z and 0-9 only)",
                        a.name
                    ),
                ));
            } else if !seen.insert(a.name.as_str()) {
                errors.push(FieldError::new(
                    at,
                    format!("attribute {:?} is listed twice", a.name),
                ));
            }
        }
        let missing: Vec<String> = REQUIRED_ATTRIBUTES
            .iter()
            .filter(|n| !seen.contains(**n))
            .map(|n| format!("{n:?}"))
            .collect();
        if !missing.is_empty() {
            errors.push(FieldError::new(
                "spec.attributes",
                format!(
                    "missing attribute(s) {} (every EventType lists type, source, specversion and id)",
                    missing.join(", ")
                ),
            ));
        }
        if let Some(r) = &self.spec.reference {
            if r.kind.is_empty() {
                errors.push(FieldError::new("spec.reference.kind", "must not be empty"));
            }
            if r.name.is_empty() {
                errors.push(FieldError::new("spec.reference.name", "must not be empty"));
            }
        }
        errors
    }
}

/// Same kind, group, namespace and name (versions may differ).
fn same_target(a: &KReference, b: &KReference) -> bool {
    a.kind == b.kind && a.group() == b.group() && a.namespace == b.namespace && a.name == b.name
}

/// The name Knative's auto-creation gives the EventType of events of `event_type` from
/// `source` seen by the addressable `name` in `namespace`: `et-{name}-{md5 of type, source,
/// namespace and name, in hex}`, made a DNS-1123 subdomain.
pub fn generated_name(name: &str, namespace: &str, event_type: &str, source: &str) -> String {
    let mut hash = Md5::new();
    for part in [event_type, source, namespace, name] {
        hash.update(part.as_bytes());
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    to_dns1123_subdomain(&format!("et-{name}-{hex}"))
}

const SUBDOMAIN_MAX: usize = 253;

/// Knative's `ToDNS1123Subdomain`: a valid name unchanged; otherwise cut to leave room for a
/// generated suffix, lower-cased, stripped of what a subdomain cannot hold and of leading
/// and trailing '-' and '.'.
pub fn to_dns1123_subdomain(name: &str) -> String {
    if is_dns_subdomain(name) {
        return name.to_string();
    }
    let cut: String = name.chars().take(SUBDOMAIN_MAX - 10).collect();
    cut.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.')
        .collect::<String>()
        .trim_matches(|c| c == '-' || c == '.')
        .to_string()
}

/// Kubernetes object names: dot-separated DNS-1123 labels, 253 characters at most.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SUBDOMAIN_MAX
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(name: &str, namespace: &str) -> KReference {
        KReference {
            api_version: Some("eventing.knative.dev/v1".into()),
            kind: "Broker".into(),
            name: name.into(),
            namespace: Some(namespace.into()),
            group: None,
        }
    }

    #[test]
    fn generated_names_are_knatives() {
        // md5("com.example.order.created" + "/shop" + "default" + "default")
        let name = generated_name("default", "default", "com.example.order.created", "/shop");
        let expected = {
            let mut h = Md5::new();
            h.update(b"com.example.order.created/shopdefaultdefault");
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            format!("et-default-{hex}")
        };
        assert_eq!(name, expected);
        assert_eq!(name.len(), "et-default-".len() + 32);
        // A fixed vector, so the hash cannot silently change: md5("") is well known.
        assert_eq!(
            generated_name("", "", "", ""),
            "et--d41d8cd98f00b204e9800998ecf8427e"
        );
        assert!(is_dns_subdomain(&name));
        assert_ne!(
            name,
            generated_name("default", "default", "com.example.order.created", "/other")
        );
    }

    #[test]
    fn subdomains_are_made_valid_as_knative_does() {
        assert_eq!(to_dns1123_subdomain("et-ok-1"), "et-ok-1");
        assert_eq!(to_dns1123_subdomain("-Et_Big.Name-"), "etbig.name");
        let long = "a".repeat(300);
        assert_eq!(to_dns1123_subdomain(&long).len(), 243);
    }

    #[test]
    fn recorded_types_list_knatives_attributes() {
        let seen = ObservedType {
            event_type: "com.example.a".into(),
            source: "/src".into(),
            dataschema: Some("https://example.com/a.json".into()),
            specversion: "1.0".into(),
        };
        let et = EventType::recorded(broker("default", "shop"), &seen);
        assert!(et.validate().is_empty(), "{:?}", et.validate());
        assert_eq!(et.key().namespace, "shop");
        assert_eq!(et.event_type(), "com.example.a");
        assert_eq!(et.source(), "/src");
        assert_eq!(et.schema(), Some("https://example.com/a.json"));
        let names: Vec<_> = et.spec.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["type", "source", "dataschema", "specversion", "id"]);
        assert!(et.describes(&broker("default", "shop"), "com.example.a", "/src"));
        assert!(!et.describes(&broker("other", "shop"), "com.example.a", "/src"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut et = EventType::recorded(
            broker("b", "default"),
            &ObservedType {
                event_type: "t".into(),
                source: "s".into(),
                dataschema: None,
                specversion: "1.0".into(),
            },
        );
        et.spec.attributes.retain(|a| a.name != "id");
        et.spec
            .attributes
            .push(attribute("Bad_Name", false, String::new()));
        et.spec
            .attributes
            .push(attribute("type", true, "again".into()));
        let errors = et.validate();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.attributes[3].name"), "{errors:?}");
        assert!(fields.contains(&"spec.attributes[4].name"), "{errors:?}");
        let missing = errors
            .iter()
            .find(|e| e.field == "spec.attributes")
            .unwrap();
        assert!(missing.message.contains("\"id\""), "{missing}");
        et.metadata.name = "Not A Name".into();
        assert!(et
            .validate()
            .iter()
            .any(|e| e.field == "metadata.name" && e.message.contains("subdomain")));
    }

    #[test]
    fn v1beta2_converts_to_attributes() {
        let old: EventTypeV1beta2 = serde_yaml::from_str(
            "metadata: {name: x}\nspec: {type: a.b, source: /s, schema: 'https://s/x.json', broker: default}\n",
        )
        .unwrap();
        let et = EventType::from(old);
        assert!(et.validate().is_empty(), "{:?}", et.validate());
        assert_eq!(et.event_type(), "a.b");
        assert_eq!(et.schema(), Some("https://s/x.json"));
        let r = et.reference().unwrap();
        assert_eq!((r.kind.as_str(), r.name.as_str()), ("Broker", "default"));
        assert_eq!(r.namespace.as_deref(), Some("default"));
    }
}
