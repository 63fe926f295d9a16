//! Herald's adapter: its admin API, shaped like the Kubernetes API (`PUT` a Knative resource
//! as JSON under `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`, `GET` it back
//! with status conditions, `DELETE` it). Only HTTP: nothing of Herald's code.

use super::{
    delivery_json, Adapter, AdapterError, AdapterOptions, BrokerRef, DeliverySpec, TriggerSpec,
};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use url::Url;

const EVENTING: &str = "apis/eventing.knative.dev/v1";

pub struct HeraldAdapter {
    admin: Url,
    namespace: String,
    broker: String,
    token: Option<String>,
    client: reqwest::Client,
    /// Whether `apply_broker` created the Broker (then `clean_up` deletes it).
    created_broker: AtomicBool,
}

impl HeraldAdapter {
    /// The Broker's namespace and name are the last two path segments of its ingress URL
    /// (`http://host:port/{namespace}/{name}`); the admin API is on the same origin unless
    /// `--admin` says otherwise.
    pub fn new(broker: &BrokerRef, options: AdapterOptions) -> Result<Self, AdapterError> {
        let segments: Vec<&str> = broker
            .url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let [namespace, name] = segments[..] else {
            return Err(AdapterError::Config(format!(
                "the herald adapter needs a broker URL of the form http://HOST:PORT/NAMESPACE/NAME, \
                 got {}",
                broker.url
            )));
        };
        let admin = match options.admin {
            Some(a) => a,
            None => broker
                .url
                .join("/")
                .map_err(|e| AdapterError::Config(format!("no origin in {}: {e}", broker.url)))?,
        };
        Ok(Self {
            admin,
            namespace: namespace.to_string(),
            broker: name.to_string(),
            token: options.token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|source| AdapterError::Http {
                    what: "building the HTTP client".into(),
                    source,
                })?,
            created_broker: AtomicBool::new(false),
        })
    }

    fn url(&self, plural: &str, name: &str) -> Url {
        let path = format!("{EVENTING}/namespaces/{}/{plural}/{name}", self.namespace);
        self.admin.join(&path).expect("a relative path joins")
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn put(
        &self,
        plural: &str,
        name: &str,
        body: serde_json::Value,
    ) -> Result<u16, AdapterError> {
        let what = format!("applying {plural}/{name}");
        let response = self
            .request(reqwest::Method::PUT, self.url(plural, name))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|source| AdapterError::Http {
                what: what.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(AdapterError::Refused { what, status, body });
        }
        Ok(status)
    }

    async fn status_of(
        &self,
        plural: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, AdapterError> {
        let what = format!("reading {plural}/{name}");
        let response = self
            .request(reqwest::Method::GET, self.url(plural, name))
            .send()
            .await
            .map_err(|source| AdapterError::Http {
                what: what.clone(),
                source,
            })?;
        match response.status().as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => response
                .json()
                .await
                .map(Some)
                .map_err(|source| AdapterError::Http { what, source }),
            status => Err(AdapterError::Refused {
                what,
                status,
                body: response.text().await.unwrap_or_default(),
            }),
        }
    }

    async fn is_ready(&self, plural: &str, name: &str) -> Result<bool, AdapterError> {
        Ok(self.status_of(plural, name).await?.is_some_and(|view| {
            view["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        }))
    }

    async fn delete(&self, plural: &str, name: &str) -> Result<(), AdapterError> {
        let what = format!("deleting {plural}/{name}");
        let response = self
            .request(reqwest::Method::DELETE, self.url(plural, name))
            .send()
            .await
            .map_err(|source| AdapterError::Http {
                what: what.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if status == 404 || response.status().is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(AdapterError::Refused { what, status, body })
    }

    fn metadata(&self, name: &str) -> serde_json::Value {
        serde_json::json!({ "name": name, "namespace": self.namespace })
    }
}

#[async_trait]
impl Adapter for HeraldAdapter {
    async fn apply_broker(
        &self,
        _: &BrokerRef,
        delivery: &DeliverySpec,
    ) -> Result<(), AdapterError> {
        let existed = self.status_of("brokers", &self.broker).await?.is_some();
        let body = serde_json::json!({
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": self.metadata(&self.broker),
            "spec": { "delivery": delivery_json(delivery) },
        });
        self.put("brokers", &self.broker, body).await?;
        self.created_broker.store(!existed, Ordering::Relaxed);
        Ok(())
    }

    async fn apply_trigger(&self, _: &BrokerRef, t: &TriggerSpec) -> Result<(), AdapterError> {
        let mut spec = serde_json::json!({
            "broker": self.broker,
            "filter": { "attributes": t.filter },
            "subscriber": { "uri": t.subscriber.as_str() },
        });
        if let Some(d) = &t.delivery {
            spec["delivery"] = delivery_json(d);
        }
        let body = serde_json::json!({
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": self.metadata(&t.name),
            "spec": spec,
        });
        self.put("triggers", &t.name, body).await.map(|_| ())
    }

    async fn wait_ready(
        &self,
        _: &BrokerRef,
        triggers: &[String],
        deadline: Duration,
    ) -> Result<(), AdapterError> {
        let end = Instant::now() + deadline;
        let mut waiting: Vec<(&str, String)> = vec![("brokers", self.broker.clone())];
        waiting.extend(triggers.iter().map(|t| ("triggers", t.clone())));
        while let Some((plural, name)) = waiting.first().cloned() {
            if self.is_ready(plural, &name).await? {
                waiting.remove(0);
                continue;
            }
            if Instant::now() >= end {
                return Err(AdapterError::NotReady(format!("{plural}/{name}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn clean_up(&self, _: &BrokerRef, triggers: &[String]) -> Result<(), AdapterError> {
        for t in triggers {
            self.delete("triggers", t).await?;
        }
        if self.created_broker.load(Ordering::Relaxed) {
            self.delete("brokers", &self.broker).await?;
        }
        Ok(())
    }
}
