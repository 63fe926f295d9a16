//! Herald on Kubernetes: the custom resource types of every Knative kind Herald serves
//! ([`resources`]), their mapping onto `herald-core`'s resource model ([`mapping`]) and the
//! CustomResourceDefinitions generated from them ([`definitions`]).

pub mod definitions;
pub mod mapping;
pub mod resources;

pub use definitions::{definitions, definitions_yaml};
pub use mapping::{to_resource, MappingError};
