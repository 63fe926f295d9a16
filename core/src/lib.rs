//! Herald's core: the resource model every control plane feeds (the standalone YAML loader
//! today, Kubernetes CRDs later) and the small value types the data plane shares.

pub mod duration;
pub mod eventtype;
pub mod loader;
pub mod messaging;
pub mod metrics;
pub mod policy;
pub mod resolve;
pub mod resources;
#[cfg(feature = "schema")]
pub mod schema;
pub mod sources;
pub mod status;

pub use duration::IsoDuration;
pub use eventtype::{EventAttributeDefinition, EventType, EventTypeSpec};
pub use loader::{load_path, load_resource, load_str, LoadError, Loaded, Origin, ResourceSet};
pub use messaging::*;
pub use policy::{AuthorizationMode, EventPolicy, EventPolicySpec};
pub use resolve::{ResolveError, Resolver};
pub use resources::*;
pub use sources::*;
pub use status::{Check, Condition, ConditionStatus, Status};
