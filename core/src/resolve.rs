//! Turns a [`Destination`] into a URL. Standalone Herald addresses what it serves itself
//! (Brokers, Channels and their concrete kinds, Sequences, Parallels); refs to other kinds (a
//! Knative Service, say) resolve only on Kubernetes and are reported here. Whether the target
//! exists is the data plane's question, not this one's.

use crate::messaging::{parallel_ingress_channel, sequence_channel};
use crate::resources::{Destination, Kind, ResourceKey};
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("cannot resolve {kind} {name} ({api_version}): outside Kubernetes only URIs and Herald's own Brokers, Channels, Sequences and Parallels can be addressed")]
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

    /// The ingress URL of a Channel: `{base}/channels/{namespace}/{name}`.
    pub fn channel_url(&self, key: &ResourceKey) -> Url {
        let mut url = self.ingress_base.clone();
        url.set_path(&format!("/channels/{}/{}", key.namespace, key.name));
        url
    }

    /// The address of an addressable resource Herald serves (`None` for the kinds that have
    /// none, Trigger and Subscription).
    pub fn address(&self, kind: Kind, key: &ResourceKey) -> Option<Url> {
        match kind {
            Kind::Broker => Some(self.broker_url(key)),
            Kind::Channel => Some(self.channel_url(key)),
            // A Sequence is addressed at its first step's channel, a Parallel at its
            // ingress channel, as Knative does.
            Kind::Sequence => Some(self.channel_url(&sequence_channel(key, 0))),
            Kind::Parallel => Some(self.channel_url(&parallel_ingress_channel(key))),
            Kind::EventTransform => {
                let mut url = self.ingress_base.clone();
                url.set_path(&format!("/transforms/{}/{}", key.namespace, key.name));
                Some(url)
            }
            // A GitHubSource is addressed by GitHub, not by a sink: see `webhook_url`.
            Kind::Trigger | Kind::Subscription => None,
            k if k.is_source() => None,
            _ => None,
        }
    }

    /// Where a GitHubSource receives webhooks: `{base}/sources/github/{namespace}/{name}`.
    pub fn webhook_url(&self, key: &ResourceKey) -> Url {
        let mut url = self.ingress_base.clone();
        url.set_path(&format!("/sources/github/{}/{}", key.namespace, key.name));
        url
    }

    /// The kind and key a destination's `ref` points at, when it is one Herald serves.
    pub fn target(dest: &Destination, namespace: &str) -> Option<(Kind, ResourceKey)> {
        let r = dest.reference.as_ref()?;
        let kind = Kind::of_ref(r)?;
        Some((
            kind,
            ResourceKey::new(r.namespace.as_deref().unwrap_or(namespace), &r.name),
        ))
    }

    /// `namespace` is the namespace of the resource that holds the destination.
    pub fn resolve(&self, dest: &Destination, namespace: &str) -> Result<Url, ResolveError> {
        match (&dest.reference, &dest.uri) {
            (None, Some(uri)) => {
                Url::parse(uri).map_err(|e| ResolveError::BadUri(uri.clone(), e.to_string()))
            }
            (Some(r), uri) => {
                let Some(base) =
                    Self::target(dest, namespace).and_then(|(kind, key)| self.address(kind, &key))
                else {
                    return Err(ResolveError::Unresolvable {
                        api_version: r.api_version.clone().unwrap_or_default(),
                        kind: r.kind.clone(),
                        name: r.name.clone(),
                    });
                };
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
