//! The crate's errors: a source's configuration that cannot run ([`ConfigError`], naming the
//! field) and a running source that cannot go on ([`SourceError`]).

use herald_core::{Kind, ResourceKey};

/// A field of a source's spec that cannot run, e.g. `spec.schedule: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {key}: {field}: {message}")]
pub struct ConfigError {
    pub kind: Kind,
    pub key: ResourceKey,
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
}
