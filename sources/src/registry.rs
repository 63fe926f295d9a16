//! The source kinds Herald runs, one entry each (as vector registers its components): the
//! resource kind and the function that checks a resource of it and builds its [`Source`].
//! A new kind is a new module and one line here.

use crate::error::ConfigError;
use crate::Source;
use herald_core::{CloudEventOverrides, DeliverySpec, Destination, Kind, Resource};

pub struct SourceKind {
    pub kind: Kind,
    /// Checks what the loader cannot (a cron expression, a time zone, base64) and builds the
    /// source; a problem names the field.
    pub build: fn(&Resource) -> Result<Box<dyn Source>, ConfigError>,
}

pub const REGISTRY: &[SourceKind] = &[
    SourceKind {
        kind: Kind::PingSource,
        build: |r| match r {
            Resource::PingSource(p) => Ok(Box::new(crate::ping::build(p)?)),
            _ => unreachable!("registered for PingSource"),
        },
    },
    SourceKind {
        kind: Kind::GitHubSource,
        build: |r| match r {
            Resource::GitHubSource(g) => Ok(Box::new(crate::github::build(g)?)),
            _ => unreachable!("registered for GitHubSource"),
        },
    },
    SourceKind {
        kind: Kind::ContainerSource,
        build: |r| match r {
            Resource::ContainerSource(c) => Ok(Box::new(crate::container::build(c)?)),
            _ => unreachable!("registered for ContainerSource"),
        },
    },
    SourceKind {
        kind: Kind::NatsSource,
        build: |r| match r {
            Resource::NatsSource(n) => Ok(Box::new(crate::nats::build(n)?)),
            _ => unreachable!("registered for NatsSource"),
        },
    },
    SourceKind {
        kind: Kind::KafkaSource,
        build: |r| match r {
            Resource::KafkaSource(k) => Ok(Box::new(crate::kafka::build(k)?)),
            _ => unreachable!("registered for KafkaSource"),
        },
    },
    SourceKind {
        kind: Kind::ApiServerSource,
        build: |r| match r {
            Resource::ApiServerSource(a) => crate::apiserver::build(a),
            _ => unreachable!("registered for ApiServerSource"),
        },
    },
];

/// Builds the source of `resource`; `None` when it is not a source kind.
pub fn build(resource: &Resource) -> Option<Result<Box<dyn Source>, ConfigError>> {
    REGISTRY
        .iter()
        .find(|k| k.kind == resource.kind())
        .map(|k| (k.build)(resource))
}

/// Parts of a source spec.
pub type SinkParts<'a> = (
    &'a Destination,
    Option<&'a DeliverySpec>,
    Option<&'a CloudEventOverrides>,
);

/// The sink, delivery and `ceOverrides` every source spec has; `None` for other kinds.
pub fn sink_parts(r: &Resource) -> Option<SinkParts<'_>> {
    Some(match r {
        Resource::PingSource(s) => (
            &s.spec.sink,
            s.spec.delivery.as_ref(),
            s.spec.ce_overrides.as_ref(),
        ),
        Resource::GitHubSource(s) => (
            &s.spec.sink,
            s.spec.delivery.as_ref(),
            s.spec.ce_overrides.as_ref(),
        ),
        Resource::KafkaSource(s) => (
            &s.spec.sink,
            s.spec.delivery.as_ref(),
            s.spec.ce_overrides.as_ref(),
        ),
        Resource::ContainerSource(s) => (
            &s.spec.sink,
            s.spec.delivery.as_ref(),
            s.spec.ce_overrides.as_ref(),
        ),
        Resource::NatsSource(s) => (
            &s.spec.sink,
            s.spec.delivery.as_ref(),
            s.spec.ce_overrides.as_ref(),
        ),
        Resource::ApiServerSource(s) => (
            &s.spec.sink,
            s.spec.delivery.as_ref(),
            s.spec.ce_overrides.as_ref(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_source_kind_is_registered_once() {
        for kind in herald_core::Kind::SOURCES {
            let n = super::REGISTRY.iter().filter(|k| k.kind == kind).count();
            assert_eq!(n, 1, "{kind}");
        }
    }
}
