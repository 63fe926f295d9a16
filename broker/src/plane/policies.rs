//! EventPolicies in the data plane: each is compiled once per change, matched against every
//! Broker and Channel, and published for ingress (see [`crate::auth`]). Brokers and Channels
//! list the policies that apply to them in `status.policies`, as Knative does; a policy's
//! status says whether ingress enforces it (authentication on) and which subjects its
//! `from` resolved to (`status.from`).

use super::{DataPlane, Entry, Owner, State};
use crate::auth::{CompiledPolicy, TargetAuth};
use herald_core::policy::{oidc_audience, oidc_subject, PolicyTarget, EVENT_POLICY_API_VERSION};
use herald_core::{Check, EventPolicy, Kind, ResourceKey};
use herald_dispatcher::{Filter, FilterError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const AUTHENTICATION_ENABLED: &str = "AuthenticationEnabled";
const SUBJECTS_RESOLVED: &str = "SubjectsResolved";
/// Knative's Broker and Channel condition on their policies.
const EVENT_POLICIES_READY: &str = "EventPoliciesReady";

/// Compiles a policy's filters; an error names the field.
pub(super) fn compile(p: &EventPolicy) -> Result<Option<Filter>, FilterError> {
    if p.spec.filters.is_empty() {
        return Ok(None);
    }
    Filter::compile_all(&p.spec.filters, "spec.filters").map(Some)
}

impl DataPlane {
    /// Matches policies to Brokers and Channels, writes their statuses and publishes what
    /// ingress checks. Runs after Brokers and Channels are reconciled.
    pub(super) fn reconcile_policies(&self, state: &mut State) {
        let enabled = self.config.authorization.is_some();
        let mut compiled: Vec<(EventPolicy, Arc<CompiledPolicy>)> = Vec::new();
        for entry in state.policies.values_mut() {
            let p = &entry.resource;
            let subjects = p.subjects();
            let filter = compile(p);
            let filter_check = match &filter {
                Ok(_) => Check::Ok,
                Err(e) => Check::failed("InvalidFilter", e.to_string()),
            };
            let auth_check = if enabled {
                Check::Ok
            } else {
                Check::failed(
                    "OIDCDisabled",
                    "ingress authentication is off (no --ingress-tokens, HERALD_INGRESS_TOKENS or --oidc-jwks): this policy is not enforced",
                )
            };
            entry.status.observed_generation = entry.generation;
            entry.status.set_all(&[
                (AUTHENTICATION_ENABLED, auth_check),
                (SUBJECTS_RESOLVED, filter_check),
            ]);
            entry
                .status
                .extra
                .insert("from".into(), serde_json::json!(subjects));
            if let Ok(filter) = filter {
                compiled.push((
                    p.clone(),
                    Arc::new(CompiledPolicy {
                        name: p.metadata.name.clone(),
                        subjects,
                        filter,
                    }),
                ));
            }
        }
        let mut published = HashMap::new();
        // Channels of one flow accept what that flow's own Subscriptions send between its
        // steps, as the policies Knative creates for a Sequence's channels do.
        let flow_senders = flow_subscription_subjects(state);
        let brokers = state.brokers.iter_mut().map(|(k, e)| {
            (
                Kind::Broker,
                k,
                herald_core::EVENTING_API_VERSION,
                "Broker",
                e_meta(e),
            )
        });
        let mut targets: Vec<_> = brokers.collect();
        targets.extend(state.channels.iter_mut().map(|(k, e)| {
            let flavor = e.resource.flavor;
            (
                Kind::Channel,
                k,
                flavor.api_version(),
                flavor.kind(),
                e_meta(e),
            )
        }));
        for (kind, key, api_version, kind_name, (labels, owner, status)) in targets {
            let target = PolicyTarget {
                api_version,
                kind: kind_name,
                key,
                labels: &labels,
            };
            let applying: Vec<Arc<CompiledPolicy>> = compiled
                .iter()
                .filter(|(p, _)| p.applies_to(&target))
                .map(|(_, c)| c.clone())
                .collect();
            set_policies_status(status, &applying, self.config.authorization);
            let trusted = match &owner {
                Owner::Flow(flow_kind, flow_key) => flow_senders
                    .get(&(*flow_kind, flow_key.clone()))
                    .cloned()
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            published.insert(
                (kind, key.clone()),
                Arc::new(TargetAuth {
                    audience: oidc_audience(api_version, kind_name, &key.namespace, &key.name),
                    policies: applying,
                    trusted,
                }),
            );
        }
        self.authorizations.store(Arc::new(published));
    }
}

type Meta<'a> = (BTreeMap<String, String>, Owner, &'a mut herald_core::Status);

fn e_meta<T: HasLabels>(e: &mut Entry<T>) -> Meta<'_> {
    (e.resource.labels().clone(), e.owner.clone(), &mut e.status)
}

trait HasLabels {
    fn labels(&self) -> &BTreeMap<String, String>;
}

impl HasLabels for herald_core::Broker {
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.metadata.labels
    }
}

impl HasLabels for herald_core::Channel {
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.metadata.labels
    }
}

/// The OIDC subjects of the Subscriptions each flow owns.
fn flow_subscription_subjects(state: &State) -> HashMap<(Kind, ResourceKey), Vec<String>> {
    let mut out: HashMap<(Kind, ResourceKey), Vec<String>> = HashMap::new();
    for (key, e) in &state.subscriptions {
        if let Owner::Flow(kind, flow) = &e.owner {
            out.entry((*kind, flow.clone()))
                .or_default()
                .push(oidc_subject(
                    Kind::Subscription.api_version(),
                    Kind::Subscription.name(),
                    &key.namespace,
                    &key.name,
                ));
        }
    }
    out
}

/// `status.policies` (name and apiVersion of each applying policy) and the
/// `EventPoliciesReady` condition, as Knative reports them.
fn set_policies_status(
    status: &mut herald_core::Status,
    applying: &[Arc<CompiledPolicy>],
    mode: Option<herald_core::AuthorizationMode>,
) {
    if applying.is_empty() {
        status.extra.remove("policies");
    } else {
        let list: Vec<_> = applying
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "apiVersion": EVENT_POLICY_API_VERSION}))
            .collect();
        status.extra.insert("policies".into(), list.into());
    }
    let (check, why) = match (applying.is_empty(), mode) {
        (true, Some(mode)) => (
            Check::Ok,
            Some((
                "DefaultAuthorizationMode",
                format!("no EventPolicy applies; the default authorization mode is {mode}"),
            )),
        ),
        (false, Some(_)) => (Check::Ok, None),
        (true, None) => (
            Check::Ok,
            Some((
                "AuthenticationDisabled",
                "ingress authentication is off: anyone may send".to_string(),
            )),
        ),
        (false, None) => (
            Check::failed(
                "OIDCDisabled",
                "EventPolicies apply, but ingress authentication is off: they are not enforced",
            ),
            None,
        ),
    };
    status.set(EVENT_POLICIES_READY, &check);
    // A true condition may still say why (Knative's reason for the default mode).
    if let (Some((reason, message)), Some(c)) = (
        why,
        status
            .conditions
            .iter_mut()
            .find(|c| c.kind == EVENT_POLICIES_READY),
    ) {
        c.reason = Some(reason.to_string());
        c.message = Some(message);
    }
}
