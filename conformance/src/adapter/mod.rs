//! How the tool gets the Triggers its checks need: one small trait, [`Adapter`], so the checks
//! never know which broker they talk to. An adapter turns the Knative-shaped specs below into
//! whatever its broker is configured with and says when they are ready; [`by_name`] is the one
//! registry of adapters (`--adapter`).

mod herald;

pub use herald::HeraldAdapter;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// The Broker under test, by its ingress address (`status.address.url` in Knative).
#[derive(Clone, Debug)]
pub struct BrokerRef {
    pub url: Url,
}

/// Knative's `DeliverySpec`, the fields the checks use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliverySpec {
    pub retry: Option<u32>,
    pub backoff_policy: Option<BackoffPolicy>,
    pub backoff_delay: Option<Duration>,
    pub dead_letter_sink: Option<Url>,
    /// `json` (structured) or `binary`: Knative's `delivery.format`.
    pub format: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffPolicy {
    Linear,
    Exponential,
}

impl BackoffPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffPolicy::Linear => "linear",
            BackoffPolicy::Exponential => "exponential",
        }
    }
}

/// A Trigger: exact-match attribute filter, subscriber URI, optional delivery.
#[derive(Clone, Debug)]
pub struct TriggerSpec {
    /// A DNS-1123 label.
    pub name: String,
    pub filter: BTreeMap<String, String>,
    pub subscriber: Url,
    pub delivery: Option<DeliverySpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The broker cannot be configured this way; checks that need it are skipped.
    #[error("not supported by this adapter: {0}")]
    Unsupported(String),
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: the broker answered {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{0} did not become ready in time")]
    NotReady(String),
    #[error("{0}")]
    Config(String),
}

/// Sets a broker up for the checks.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// Makes the Broker exist with `delivery` as the default for its Triggers.
    async fn apply_broker(
        &self,
        broker: &BrokerRef,
        delivery: &DeliverySpec,
    ) -> Result<(), AdapterError>;

    /// Creates or replaces a Trigger on the Broker.
    async fn apply_trigger(
        &self,
        broker: &BrokerRef,
        trigger: &TriggerSpec,
    ) -> Result<(), AdapterError>;

    /// Waits until the Broker and these Triggers are ready to deliver.
    async fn wait_ready(
        &self,
        broker: &BrokerRef,
        triggers: &[String],
        deadline: Duration,
    ) -> Result<(), AdapterError>;

    /// Removes what `apply_*` created (Triggers, and the Broker if it did not exist before).
    async fn clean_up(&self, broker: &BrokerRef, triggers: &[String]) -> Result<(), AdapterError>;
}

/// Adapter options from the command line.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// The admin API base URL, where the adapter's broker has one apart from its ingress.
    pub admin: Option<Url>,
    pub token: Option<String>,
}

/// The names `--adapter` accepts.
pub const ADAPTERS: &[&str] = &["herald"];

/// The adapter called `name`.
pub fn by_name(
    name: &str,
    broker: &BrokerRef,
    options: AdapterOptions,
) -> Result<Box<dyn Adapter>, AdapterError> {
    match name {
        "herald" => Ok(Box::new(HeraldAdapter::new(broker, options)?)),
        other => Err(AdapterError::Config(format!(
            "unknown adapter {other:?} (known: {})",
            ADAPTERS.join(", ")
        ))),
    }
}

/// `PT0.2S`-style ISO-8601 duration, as Knative writes `backoffDelay`.
pub fn iso_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

/// The delivery spec as Knative's JSON.
pub fn delivery_json(d: &DeliverySpec) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    if let Some(r) = d.retry {
        m.insert("retry".into(), r.into());
    }
    if let Some(p) = d.backoff_policy {
        m.insert("backoffPolicy".into(), p.as_str().into());
    }
    if let Some(b) = d.backoff_delay {
        m.insert("backoffDelay".into(), iso_duration(b).into());
    }
    if let Some(u) = &d.dead_letter_sink {
        m.insert(
            "deadLetterSink".into(),
            serde_json::json!({ "uri": u.as_str() }),
        );
    }
    if let Some(f) = &d.format {
        m.insert("format".into(), f.clone().into());
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_knative_does() {
        assert_eq!(iso_duration(Duration::from_millis(200)), "PT0.200S");
        assert_eq!(iso_duration(Duration::from_secs(2)), "PT2S");
    }
}
