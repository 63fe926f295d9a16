//! Herald on Kubernetes: the custom resource types of every Knative kind Herald serves
//! ([`resources`]), their mapping onto `herald-core`'s resource model ([`mapping`]) and the
//! CustomResourceDefinitions generated from them ([`definitions`]), and the [`controller`] that
//! feeds them to a data plane.

pub mod controller;
pub mod definitions;
#[cfg(feature = "fake-apiserver")]
pub mod fake_apiserver;
pub mod mapping;
pub mod resources;

/// The kube-rs client this crate speaks through, for callers that build one.
pub use kube;

pub use definitions::{definitions, definitions_yaml};
pub use mapping::{to_resource, MappingError};
