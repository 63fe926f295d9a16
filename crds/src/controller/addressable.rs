//! Addressable resolution, as Knative's resolver does it: a `ref` to a Kubernetes Service
//! becomes `http://{name}.{namespace}.svc.{cluster domain}`, a `ref` to anything else Herald
//! does not serve itself (a Knative Service, say) becomes its `status.address.url`, with the
//! destination's relative `uri` appended. Refs to Herald's own kinds stay as they are: the data
//! plane addresses those.

use herald_core::{Check, KReference, Kind, Resource, Status};
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::Api;
use serde_json::Value;

/// A destination whose `ref` could not be resolved (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// Where it is, e.g. `spec.subscriber`.
    pub field: String,
    /// `NotFound` or `AddressNotSet`.
    pub reason: String,
    pub message: String,
}

impl Unresolved {
    /// The condition it fails: Knative's `SubscriberResolved` / `DeadLetterSinkResolved`
    /// where the kind has one, else `AddressesResolved`.
    pub fn condition(&self) -> &'static str {
        if self.field.contains("deadLetterSink") {
            "DeadLetterSinkResolved"
        } else if self.field.ends_with("subscriber") {
            "SubscriberResolved"
        } else {
            "AddressesResolved"
        }
    }

    /// Marks `status` with every unresolved destination: its condition fails and so does
    /// Ready, with the first one's reason.
    pub fn mark(status: &mut Status, unresolved: &[Unresolved]) {
        for u in unresolved {
            status.set(u.condition(), &Check::failed(&u.reason, &u.message));
        }
        if let Some(first) = unresolved.first() {
            status.set(
                herald_core::status::READY,
                &Check::failed(&first.reason, &first.message),
            );
        }
    }
}

pub struct Addressables {
    client: kube::Client,
    domain: String,
}

impl Addressables {
    pub fn new(client: kube::Client, cluster_domain: &str) -> Self {
        Self {
            client,
            domain: cluster_domain.to_string(),
        }
    }

    /// `resource` with every ref it can resolve replaced by a `uri`, and the ones it cannot.
    pub async fn resolve(
        &self,
        resource: Resource,
    ) -> Result<(Resource, Vec<Unresolved>), kube::Error> {
        let namespace = resource.key().namespace;
        let mut json = resource.to_json();
        let mut unresolved = Vec::new();
        let mut changed = false;
        let mut pending = Vec::new();
        collect_refs(&json, String::new(), &mut pending);
        for (pointer, field, reference) in pending {
            let ns = reference
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.clone());
            match self.address(&reference, &ns).await? {
                Ok(base) => {
                    let Some(dest) = json.pointer_mut(&pointer).and_then(Value::as_object_mut)
                    else {
                        continue;
                    };
                    dest.remove("ref");
                    let url = match dest.get("uri").and_then(Value::as_str) {
                        Some(path) => format!(
                            "{}/{}",
                            base.trim_end_matches('/'),
                            path.trim_start_matches('/')
                        ),
                        None => base,
                    };
                    dest.insert("uri".into(), url.into());
                    changed = true;
                }
                Err((reason, message)) => unresolved.push(Unresolved {
                    field,
                    reason,
                    message,
                }),
            }
        }
        if !changed {
            return Ok((resource, unresolved));
        }
        let text = json.to_string();
        let resolved = herald_core::load_resource("kubernetes", &text).unwrap_or(resource);
        Ok((resolved, unresolved))
    }

    /// The URL a ref resolves to, or why it does not.
    async fn address(
        &self,
        r: &KReference,
        namespace: &str,
    ) -> Result<Result<String, (String, String)>, kube::Error> {
        let (group, version) = match r.api_version.as_deref().unwrap_or("v1").split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                r.api_version.clone().unwrap_or_else(|| "v1".into()),
            ),
        };
        let what = format!(
            "{} {namespace}/{} ({})",
            r.kind,
            r.name,
            r.api_version.as_deref().unwrap_or("v1")
        );
        if group.is_empty() && r.kind == "Service" {
            let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
            return Ok(match api.get_opt(&r.name).await? {
                Some(_) => Ok(format!("http://{}.{namespace}.svc.{}", r.name, self.domain)),
                None => Err(("NotFound".into(), format!("{what} not found"))),
            });
        }
        let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural_of(&r.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let object = match api.get_opt(&r.name).await {
            Ok(o) => o,
            // No such resource type on this cluster (e.g. Knative Serving not installed).
            Err(kube::Error::Api(e)) if e.code == 404 => None,
            Err(e) => return Err(e),
        };
        Ok(match object {
            None => Err(("NotFound".into(), format!("{what} not found"))),
            Some(o) => match o.data["status"]["address"]["url"].as_str() {
                Some(url) if !url.is_empty() => Ok(url.to_string()),
                _ => Err((
                    "AddressNotSet".into(),
                    format!("{what} has no status.address.url yet"),
                )),
            },
        })
    }
}

/// Kubernetes' guess of a resource name from a kind (`Service` -> `services`).
fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
        || lower.ends_with('x')
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Every destination holding a `ref` to a kind Herald does not serve: its JSON pointer, its
/// field path and the ref.
fn collect_refs(value: &Value, pointer: String, out: &mut Vec<(String, String, KReference)>) {
    match value {
        Value::Object(map) => {
            if let Some(r) = map
                .get("ref")
                .and_then(|r| serde_json::from_value::<KReference>(r.clone()).ok())
            {
                if Kind::of_ref(&r).is_none() {
                    let field = pointer.trim_start_matches('/').replace('/', ".");
                    out.push((pointer.clone(), field, r));
                }
            }
            for (k, v) in map {
                collect_refs(v, format!("{pointer}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_refs(v, format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_kubernetes_guesses() {
        assert_eq!(plural_of("Service"), "services");
        assert_eq!(plural_of("Ingress"), "ingresses");
        assert_eq!(plural_of("Policy"), "policies");
    }

    #[test]
    fn only_refs_to_foreign_kinds_are_collected() {
        let json = serde_json::json!({
            "spec": {
                "subscriber": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "fn"}},
                "delivery": {"deadLetterSink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}}}
            }
        });
        let mut out = Vec::new();
        collect_refs(&json, String::new(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "/spec/subscriber");
        assert_eq!(out[0].1, "spec.subscriber");
    }
}
