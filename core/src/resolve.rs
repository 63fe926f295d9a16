//! Turns a [`Destination`] into a URL. Standalone Herald can address its own Brokers; refs to
//! other kinds (a Knative Service, say) resolve only on Kubernetes and are reported here.

use crate::resources::{Destination, ResourceKey};
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("cannot resolve {kind} {name} ({api_version}): only Brokers and URIs can be addressed outside Kubernetes")]
    Unresolvable {
        api_version: String,
        kind: String,
        name: String,
    },
    #[error("destination {0:?} is not a valid URL: {1}")]
    BadUri(String, String),
    #[error("destination sets neither `ref` nor `uri`")]
    Empty,
}

/// Resolves destinations against the base URL of this Herald's ingress.
#[derive(Clone, Debug)]
pub struct Resolver {
    pub ingress_base: Url,
}

impl Resolver {
    pub fn new(ingress_base: Url) -> Self {
        Self { ingress_base }
    }

    /// The ingress URL of a Broker: `{base}/{namespace}/{name}`, as Knative's MT broker.
    pub fn broker_url(&self, key: &ResourceKey) -> Url {
        let mut url = self.ingress_base.clone();
        url.set_path(&format!("/{}/{}", key.namespace, key.name));
        url
    }

    /// `namespace` is the namespace of the resource that holds the destination.
    pub fn resolve(&self, dest: &Destination, namespace: &str) -> Result<Url, ResolveError> {
        match (&dest.reference, &dest.uri) {
            (None, Some(uri)) => {
                Url::parse(uri).map_err(|e| ResolveError::BadUri(uri.clone(), e.to_string()))
            }
            (Some(r), uri) => {
                if r.group() != "eventing.knative.dev" || r.kind != "Broker" {
                    return Err(ResolveError::Unresolvable {
                        api_version: r.api_version.clone().unwrap_or_default(),
                        kind: r.kind.clone(),
                        name: r.name.clone(),
                    });
                }
                let key = ResourceKey::new(r.namespace.as_deref().unwrap_or(namespace), &r.name);
                let base = self.broker_url(&key);
                match uri {
                    None => Ok(base),
                    Some(path) => {
                        let joined = format!(
                            "{}/{}",
                            base.as_str().trim_end_matches('/'),
                            path.trim_start_matches('/')
                        );
                        Url::parse(&joined)
                            .map_err(|e| ResolveError::BadUri(path.clone(), e.to_string()))
                    }
                }
            }
            (None, None) => Err(ResolveError::Empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::KReference;

    fn resolver() -> Resolver {
        Resolver::new(Url::parse("http://127.0.0.1:8080").unwrap())
    }

    #[test]
    fn uri_and_broker_refs_resolve() {
        let d = Destination {
            uri: Some("http://x:1/a".into()),
            ..Default::default()
        };
        assert_eq!(
            resolver().resolve(&d, "ns").unwrap().as_str(),
            "http://x:1/a"
        );
        let d = Destination {
            reference: Some(KReference {
                api_version: Some("eventing.knative.dev/v1".into()),
                kind: "Broker".into(),
                name: "b".into(),
                ..Default::default()
            }),
            uri: Some("/extra".into()),
            ..Default::default()
        };
        assert_eq!(
            resolver().resolve(&d, "ns").unwrap().as_str(),
            "http://127.0.0.1:8080/ns/b/extra"
        );
    }

    #[test]
    fn other_kinds_are_unresolvable_with_their_name() {
        let d = Destination {
            reference: Some(KReference {
                api_version: Some("serving.knative.dev/v1".into()),
                kind: "Service".into(),
                name: "fraud-check".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = resolver().resolve(&d, "ns").unwrap_err();
        assert!(e.to_string().contains("Service fraud-check"), "{e}");
    }
}
