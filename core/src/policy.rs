//! Knative's EventPolicy (`eventing.knative.dev/v1alpha1`): who (`from`: subjects, or sources
//! by reference) may send events to which Brokers and Channels (`to`: references or label
//! selectors; none means every one in the policy's namespace), and which events (`filters`).
//! Matching lives here so every control plane and the ingress agree on it.

use crate::resources::{
    validate_name, FieldError, ObjectMeta, ResourceKey, SubscriptionsApiFilter,
};
use crate::sources::LabelSelectorRequirement;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const EVENT_POLICY_API_VERSION: &str = "eventing.knative.dev/v1alpha1";

/// Subjects of Kubernetes service accounts start with this (Knative's OIDC identities).
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventPolicy {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: EventPolicySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicySpec {
    /// The Brokers and Channels it applies to; empty: all of them in its namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<EventPolicyTo>,
    /// Who may send; empty: no one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<EventPolicyFrom>,
    /// Every one must match an event for it to be allowed (Subscriptions API dialect).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
}

/// One target: exactly one of `ref` and `selector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicyTo {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<EventPolicyToRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<EventPolicySelector>,
}

/// A target in the policy's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicyToRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A label selector, optionally narrowed to one kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One sender: exactly one of `ref` (a source, whose identity is its OIDC service account)
/// and `sub` (a subject; a trailing `*` matches any suffix).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicyFrom {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<EventPolicyFromRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicyFromRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    /// The policy's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Broker or Channel a policy may apply to.
#[derive(Clone, Copy, Debug)]
pub struct PolicyTarget<'a> {
    /// `eventing.knative.dev/v1` for a Broker, the channel's own for a Channel.
    pub api_version: &'a str,
    /// `Broker`, `Channel`, `InMemoryChannel`, `KafkaChannel`.
    pub kind: &'a str,
    pub key: &'a ResourceKey,
    pub labels: &'a BTreeMap<String, String>,
}

/// The OIDC subject Knative gives `kind name` of `api_version` in `namespace`: its service
/// account `<name>-oidc-<group>-<kind>`, lower-cased (Knative shortens names past 63
/// characters with a hash; Herald does not).
pub fn oidc_subject(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    format!("{SERVICE_ACCOUNT_PREFIX}:{namespace}:{name}-oidc-{group}-{kind}").to_lowercase()
}

/// The OIDC audience of `kind` `namespace/name` of `api_version`, as Knative writes it
/// (`eventing.knative.dev/broker/ns/name`).
pub fn oidc_audience(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    format!("{group}/{kind}/{namespace}/{name}").to_lowercase()
}

/// Whether `subject` matches `pattern`: equal, or a prefix of it when `pattern` ends in `*`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => subject.starts_with(prefix),
        None => pattern == subject,
    }
}

impl EventPolicy {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.metadata.namespace(), &self.metadata.name)
    }

    /// Whether it applies to `target`: same namespace, and no `to` or one entry matching.
    pub fn applies_to(&self, target: &PolicyTarget) -> bool {
        if target.key.namespace != self.metadata.namespace() {
            return false;
        }
        self.spec.to.is_empty() || self.spec.to.iter().any(|to| to.matches(target))
    }

    /// The subject patterns `from` resolves to (Knative's `status.from`).
    pub fn subjects(&self) -> Vec<String> {
        self.spec
            .from
            .iter()
            .filter_map(|f| match (&f.reference, &f.sub) {
                (Some(r), _) => Some(oidc_subject(
                    &r.api_version,
                    &r.kind,
                    r.namespace.as_deref().unwrap_or(self.metadata.namespace()),
                    &r.name,
                )),
                (None, Some(sub)) => Some(sub.clone()),
                (None, None) => None,
            })
            .collect()
    }

    /// Whether `subject` is one `from` allows.
    pub fn allows(&self, subject: &str) -> bool {
        self.subjects().iter().any(|p| subject_matches(p, subject))
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_name(&self.metadata);
        for (i, from) in self.spec.from.iter().enumerate() {
            let at = format!("spec.from[{i}]");
            match (&from.reference, &from.sub) {
                (None, None) => errors.push(FieldError::new(&at, "must set `ref` or `sub`")),
                (Some(_), Some(_)) => {
                    errors.push(FieldError::new(&at, "must set only one of `ref` and `sub`"))
                }
                (Some(r), None) => required(
                    &format!("{at}.ref"),
                    &r.api_version,
                    &r.kind,
                    &r.name,
                    &mut errors,
                ),
                (None, Some(sub)) => {
                    if sub.is_empty() {
                        errors.push(FieldError::new(format!("{at}.sub"), "must not be empty"));
                    } else if sub.find('*').is_some_and(|i| i + 1 < sub.len()) {
                        errors.push(FieldError::new(
                            format!("{at}.sub"),
                            format!("{sub:?}: '*' is only allowed as the last character"),
                        ));
                    }
                }
            }
        }
        for (i, to) in self.spec.to.iter().enumerate() {
            let at = format!("spec.to[{i}]");
            match (&to.reference, &to.selector) {
                (None, None) => errors.push(FieldError::new(&at, "must set `ref` or `selector`")),
                (Some(_), Some(_)) => errors.push(FieldError::new(
                    &at,
                    "must set only one of `ref` and `selector`",
                )),
                (Some(r), None) => required(
                    &format!("{at}.ref"),
                    &r.api_version,
                    &r.kind,
                    &r.name,
                    &mut errors,
                ),
                (None, Some(s)) => {
                    for (j, e) in s.match_expressions.iter().enumerate() {
                        let field = format!("{at}.selector.matchExpressions[{j}]");
                        e.validate(&field, &mut errors);
                    }
                }
            }
        }
        errors
    }
}

fn required(at: &str, api_version: &str, kind: &str, name: &str, errors: &mut Vec<FieldError>) {
    for (field, value) in [("apiVersion", api_version), ("kind", kind), ("name", name)] {
        if value.is_empty() {
            errors.push(FieldError::new(
                format!("{at}.{field}"),
                "must not be empty",
            ));
        }
    }
}

impl EventPolicyTo {
    fn matches(&self, target: &PolicyTarget) -> bool {
        match (&self.reference, &self.selector) {
            (Some(r), _) => {
                same_kind(Some(&r.api_version), Some(&r.kind), target) && r.name == target.key.name
            }
            (None, Some(s)) => {
                same_kind(s.api_version.as_deref(), s.kind.as_deref(), target)
                    && s.matches(target.labels)
            }
            (None, None) => false,
        }
    }
}

/// A kind (and group, when an apiVersion is given) naming the target's; a generic
/// `Channel` names every channel kind.
fn same_kind(api_version: Option<&str>, kind: Option<&str>, target: &PolicyTarget) -> bool {
    let group = |v: &str| {
        v.split_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default()
    };
    let group_ok = api_version.is_none_or(|v| group(v) == group(target.api_version));
    let kind_ok = kind.is_none_or(|k| {
        k == target.kind
            || (k == "Channel" && crate::messaging::ChannelFlavor::from_kind(target.kind).is_some())
    });
    group_ok && kind_ok
}

impl EventPolicySelector {
    /// Kubernetes label selector semantics: every label and every expression must match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }
}

/// Knative's `default-authorization-mode`: what applies to a Broker or Channel no policy
/// applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorizationMode {
    AllowAll,
    /// Only service accounts of the target's namespace (Knative's default).
    #[default]
    AllowSameNamespace,
    DenyAll,
}

impl AuthorizationMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::AllowAll => "allow-all",
            Self::AllowSameNamespace => "allow-same-namespace",
            Self::DenyAll => "deny-all",
        }
    }

    /// Whether `subject` may send to a target in `namespace` under this mode.
    pub fn allows(self, subject: &str, namespace: &str) -> bool {
        match self {
            Self::AllowAll => true,
            Self::AllowSameNamespace => {
                subject.starts_with(&format!("{SERVICE_ACCOUNT_PREFIX}:{namespace}:"))
            }
            Self::DenyAll => false,
        }
    }
}

impl std::fmt::Display for AuthorizationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::AllowAll, Self::AllowSameNamespace, Self::DenyAll]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("{s:?} is not an authorization mode (allow-all, allow-same-namespace, deny-all)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> EventPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn broker<'a>(key: &'a ResourceKey, labels: &'a BTreeMap<String, String>) -> PolicyTarget<'a> {
        PolicyTarget {
            api_version: "eventing.knative.dev/v1",
            kind: "Broker",
            key,
            labels,
        }
    }

    #[test]
    fn sub_wildcards_match_by_prefix_only_at_the_end() {
        assert!(subject_matches("alice", "alice"));
        assert!(!subject_matches("alice", "alice2"));
        assert!(subject_matches(
            "system:serviceaccount:shop:*",
            "system:serviceaccount:shop:x"
        ));
        assert!(!subject_matches(
            "system:serviceaccount:shop:*",
            "system:serviceaccount:ops:x"
        ));
        assert!(subject_matches("*", "anyone"));
    }

    #[test]
    fn to_refs_selectors_and_empty_to() {
        let p = policy(
            "metadata: {name: p, namespace: shop}\n\
             spec:\n  to:\n  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: orders}\n  \
             - selector: {kind: Broker, matchLabels: {team: a}, matchExpressions: [{key: tier, operator: NotIn, values: [dev]}]}\n  \
             from: [{sub: alice}]\n",
        );
        let none = BTreeMap::new();
        let team_a: BTreeMap<_, _> = [("team".to_string(), "a".to_string())].into();
        let dev: BTreeMap<_, _> = [("team", "a"), ("tier", "dev")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let orders = ResourceKey::new("shop", "orders");
        let other = ResourceKey::new("shop", "other");
        let elsewhere = ResourceKey::new("ops", "orders");
        assert!(p.applies_to(&broker(&orders, &none)));
        assert!(!p.applies_to(&broker(&other, &none)));
        assert!(p.applies_to(&broker(&other, &team_a)));
        assert!(!p.applies_to(&broker(&other, &dev)));
        assert!(!p.applies_to(&broker(&elsewhere, &none)), "other namespace");
        let channel = PolicyTarget {
            api_version: "messaging.knative.dev/v1",
            kind: "InMemoryChannel",
            key: &other,
            labels: &team_a,
        };
        assert!(!p.applies_to(&channel), "the selector names Brokers only");
        let all = policy("metadata: {name: p, namespace: shop}\nspec: {from: [{sub: a}]}\n");
        assert!(all.applies_to(&broker(&other, &none)));
        assert!(all.applies_to(&channel));
        assert!(!all.applies_to(&broker(&elsewhere, &none)));
    }

    #[test]
    fn from_refs_resolve_to_the_sources_oidc_subject() {
        let p = policy(
            "metadata: {name: p, namespace: shop}\n\
             spec:\n  from:\n  - ref: {apiVersion: sources.knative.dev/v1, kind: PingSource, name: tick}\n  \
             - sub: 'system:serviceaccount:ops:*'\n",
        );
        let tick = "system:serviceaccount:shop:tick-oidc-sources.knative.dev-pingsource";
        assert_eq!(
            p.subjects(),
            [tick, "system:serviceaccount:ops:*"].map(String::from)
        );
        assert!(p.allows(tick));
        assert!(p.allows("system:serviceaccount:ops:bob"));
        assert!(!p.allows("system:serviceaccount:shop:bob"));
        let empty = policy("metadata: {name: p}\nspec: {}\n");
        assert!(!empty.allows("anyone"), "no `from` allows no one");
    }

    #[test]
    fn validation_names_the_field() {
        let p = policy(
            "metadata: {name: p}\n\
             spec:\n  from: [{sub: 'a*b'}, {}, {ref: {kind: PingSource, name: x}, sub: y}]\n  \
             to: [{ref: {kind: Broker, name: b}}, {selector: {matchExpressions: [{key: k, operator: Has}]}}]\n",
        );
        let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.from[0].sub",
                "spec.from[1]",
                "spec.from[2]",
                "spec.to[0].ref.apiVersion",
                "spec.to[1].selector.matchExpressions[0].operator",
            ]
        );
    }

    #[test]
    fn default_modes() {
        let sa = "system:serviceaccount:shop:app";
        assert!(AuthorizationMode::AllowAll.allows("alice", "shop"));
        assert!(AuthorizationMode::AllowSameNamespace.allows(sa, "shop"));
        assert!(!AuthorizationMode::AllowSameNamespace.allows(sa, "ops"));
        assert!(!AuthorizationMode::AllowSameNamespace.allows("alice", "shop"));
        assert!(!AuthorizationMode::DenyAll.allows(sa, "shop"));
        assert_eq!("deny-all".parse(), Ok(AuthorizationMode::DenyAll));
        assert!("deny".parse::<AuthorizationMode>().is_err());
    }
}
